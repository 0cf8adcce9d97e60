//! Shared subscriptions cluster-wide (`$share/{group}/{filter}`): each message to one member
//! among all nodes, through a NATS queue group (QoS 0) and a durable JetStream consumer (QoS
//! 1/2) per group, both named by [`group_name`] so that every node finds the same ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use hermod_broker::api::BrokerHandle;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::keys::sha256_hex;
use super::{Inner, PULL_EXPIRES, STREAM, unix_ms};
use crate::{subject, wire};

/// Serves this node's shared groups (`$share/{group}/{filter}`) cluster-wide: one task per
/// group with members here, started and stopped as members come and go.
pub(super) async fn shared_task(inner: Arc<Inner>, broker: BrokerHandle) {
    let mut changed = inner.interest_changed.subscribe();
    let mut active: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
    loop {
        let wanted = inner.groups();
        active.retain(|g, task| {
            let keep = wanted.contains(g);
            if !keep {
                task.abort();
            }
            keep
        });
        for g in wanted {
            if let std::collections::hash_map::Entry::Vacant(e) = active.entry(g) {
                let (group, filter) = e.key().clone();
                e.insert(tokio::spawn(group_task(
                    inner.clone(),
                    broker.clone(),
                    group,
                    filter,
                )));
            }
        }
        if changed.changed().await.is_err() {
            break;
        }
    }
    for (_, t) in active {
        t.abort();
    }
}

/// The NATS queue group and JetStream consumer name of a shared group: `hs_` and 16 hex
/// digits of SHA-256(group, filter), the same on every node.
#[must_use]
pub fn group_name(group: &str, filter: &str) -> String {
    format!(
        "hs_{}",
        sha256_hex(&[group.as_bytes(), &[0], filter.as_bytes()], 8)
    )
}

/// One shared group, cluster-wide: each message to one member among all nodes [MQTT-4.8.2].
/// - QoS 0: every node with members queue-subscribes (NATS queue group `hs_...`) to the
///   group's subjects on the shared connection; NATS gives each message to one of them.
/// - QoS 1/2: one durable JetStream consumer per group (`hs_...`, filtered on the group's
///   subjects, starting with the messages stored after its creation); every node with
///   members pulls from it. A message is acknowledged to JetStream once the member here
///   that got it has acknowledged it (see [`super::shared_acks`]), and refused (redelivered,
///   to any node) when the group has no member here that takes it. Unused consumers are
///   removed by JetStream after an hour without pulls.
async fn group_task(inner: Arc<Inner>, broker: BrokerHandle, group: String, filter: String) {
    let name = group_name(&group, &filter);
    let mut subs = Vec::new();
    for s in subject::filter_to_subjects(subject::LIVE_QOS0, &filter) {
        match inner
            .shared_client
            .queue_subscribe(s.clone(), name.clone())
            .await
        {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                warn!(subject = %s, error = %e, "cluster: cannot subscribe for a shared group")
            }
        }
    }
    let mut qos0 = futures_util::stream::select_all(subs);
    let decode = |payload: Bytes| match wire::decode(payload, Instant::now(), unix_ms()) {
        Ok(r) => {
            inner.counters.received.fetch_add(1, Ordering::Relaxed);
            Some(r.message)
        }
        Err(e) => {
            inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
            debug!(error = %e, "cluster: malformed shared message ignored");
            None
        }
    };
    let mut assets = inner.assets.clone();
    let mut stored: Option<jetstream::consumer::pull::Stream> = None;
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            m = qos0.next(), if !qos0.is_empty() => {
                if let Some(message) = m.and_then(|m| decode(m.payload)) {
                    let _ = broker.publish_shared(&group, &filter, message).await;
                }
            }
            m = async { stored.as_mut()?.next().await }, if stored.is_some() => {
                match m {
                    Some(Ok(m)) => match decode(m.message.payload.clone()) {
                        Some(mut message) => {
                            // Acknowledged to JetStream when the broker is done with it (the
                            // member acknowledged it), or refused when no member here took it.
                            message.settle = Some(inner.shared_acks.track(m));
                            let _ = broker.publish_shared(&group, &filter, message).await;
                        }
                        // Malformed: never deliverable.
                        None => {
                            if let Err(e) = m.ack().await {
                                debug!(error = %e, "cluster: shared message ack not sent");
                            }
                        }
                    },
                    Some(Err(e)) => {
                        debug!(error = %e, group = %group, "cluster: shared consumer error; recreating");
                        stored = None;
                    }
                    None => stored = None,
                }
            }
            _ = retry.tick(), if stored.is_none() => {
                if assets.borrow_and_update().is_none() {
                    continue;
                }
                match group_consumer(&inner, &name, &filter).await {
                    Ok(s) => stored = Some(s),
                    Err(e) => debug!(error = %e, group = %group, "cluster: shared consumer not ready"),
                }
            }
        }
    }
}

async fn group_consumer(
    inner: &Inner,
    name: &str,
    filter: &str,
) -> Result<jetstream::consumer::pull::Stream, String> {
    let stream = inner
        .js
        .get_stream(STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .get_or_create_consumer(
            name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subjects: subject::filter_to_subjects(subject::STORED, filter),
                deliver_policy: jetstream::consumer::DeliverPolicy::New,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: inner.config.shared_redelivery,
                max_ack_pending: 10_000,
                inactive_threshold: Duration::from_secs(3600),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    consumer
        .stream()
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_EXPIRES / 2)
        .messages()
        .await
        .map_err(|e| e.to_string())
}
