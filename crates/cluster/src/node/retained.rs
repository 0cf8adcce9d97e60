//! Retained messages cluster-wide: kept in the `MQ_RET` bucket (written by the out pipeline)
//! and watched by every node into its own retained store, so that all nodes apply them in one
//! order, and a node that was away drops what the cluster no longer has.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use hermod_broker::api::BrokerHandle;
use tracing::{debug, info};

use super::hook::node_local;
use super::keys::{base64url, sha256_hex};
use super::{Inner, unix_ms};
use crate::wire;

/// The `MQ_RET` key of a topic: base64url of the topic (KV keys allow `[-/_=.A-Za-z0-9]`),
/// or `h` + SHA-256 hex for topics too long for a NATS subject.
#[must_use]
pub fn retained_key(topic: &str) -> String {
    if topic.len() <= 1024 {
        base64url(topic)
    } else {
        format!("h{}", sha256_hex(&[topic.as_bytes()], 32))
    }
}

/// Applies the cluster's retained messages to this node, in the bucket's order; at start (and
/// after each reconnect of the watch) removes the local ones the cluster no longer has.
pub(super) async fn retained_task(inner: Arc<Inner>, broker: BrokerHandle) {
    let mut assets = inner.assets.clone();
    let Ok(a) = assets.wait_for(Option::is_some).await.map(|a| a.clone()) else {
        return;
    };
    let Some(a) = a else { return };
    loop {
        if let Err(e) = watch_retained(&inner, &broker, &a.retained).await {
            debug!(error = %e, "cluster: retained watch ended; restarting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn watch_retained(
    inner: &Inner,
    broker: &BrokerHandle,
    kv: &jetstream::kv::Store,
) -> Result<(), String> {
    // The last value of every key first (the bucket keeps one per key), then the changes.
    let mut watch = kv
        .watch_with_history(">")
        .await
        .map_err(|e| e.to_string())?;
    let mut initial = kv.status().await.map_err(|e| e.to_string())?.values();
    let mut present: Option<HashSet<Arc<str>>> = Some(HashSet::new());
    if initial == 0 {
        reconcile(broker, present.take().unwrap_or_default());
    }
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.operation == jetstream::kv::Operation::Put {
            match wire::decode(entry.value, Instant::now(), unix_ms()) {
                Ok(r) => {
                    if let Some(p) = present.as_mut()
                        && !r.message.payload.is_empty()
                    {
                        p.insert(r.message.topic.clone());
                    }
                    inner
                        .counters
                        .retained_applied
                        .fetch_add(1, Ordering::Relaxed);
                    broker.set_retained(r.message);
                }
                Err(e) => {
                    inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    debug!(key = %entry.key, error = %e, "cluster: malformed retained message ignored");
                }
            }
        }
        if present.is_some() {
            initial = initial.saturating_sub(1);
            if initial == 0 {
                reconcile(broker, present.take().unwrap_or_default());
            }
        }
    }
    Ok(())
}

/// Removes the local retained messages (of topics the cluster carries) that the cluster's
/// bucket does not have: set or cleared elsewhere while this node was away.
fn reconcile(broker: &BrokerHandle, present: HashSet<Arc<str>>) {
    let mut removed = 0;
    for topic in broker.retained_topics() {
        if !node_local(&topic) && !present.contains(&topic) && broker.delete_retained_here(&topic) {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(
            removed,
            "cluster: removed retained messages the cluster no longer has"
        );
    }
}
