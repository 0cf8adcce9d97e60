//! Wills cluster-wide: this node keeps the wills of its connected clients in `MQ_WILLS`, and
//! the survivors publish (once) those of a node that died, since it cannot.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use hermod_broker::api::BrokerHandle;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use super::{Inner, unix_ms};
use crate::wire;

/// A change to this node's wills in `MQ_WILLS`.
#[derive(Debug)]
pub(super) enum WillOp {
    Put(String, Bytes),
    Delete(String),
    /// Answered once every op before it is done.
    Flush(oneshot::Sender<()>),
}

/// First byte of a will that waits for its Will Delay Interval: then the Unix ms it is due,
/// then the will as `wire` encodes it (whose own first byte is its format, 1).
const DELAYED: u8 = 0xD1;

/// The bucket value of a will due at `due_ms`.
pub(super) fn delayed_value(due_ms: u64, wire: &Bytes) -> Bytes {
    let mut v = Vec::with_capacity(9 + wire.len());
    v.push(DELAYED);
    v.extend_from_slice(&due_ms.to_be_bytes());
    v.extend_from_slice(wire);
    v.into()
}

/// A bucket value: when it is due (`None`: at once) and the will.
fn split_due(v: Bytes) -> (Option<u64>, Bytes) {
    if v.first() == Some(&DELAYED) && v.len() >= 9 {
        let mut due = [0u8; 8];
        due.copy_from_slice(&v[1..9]);
        (Some(u64::from_be_bytes(due)), v.slice(9..))
    } else {
        (None, v)
    }
}

pub(crate) fn will_key(node: &str, client_id: &str) -> String {
    format!("{node}.{}", super::keys::client_key(client_id))
}

/// How often a node looks for the wills of nodes that died.
pub const REAP_EVERY: Duration = Duration::from_secs(3);

/// Keeps this node's wills in `MQ_WILLS` and publishes those of nodes that died.
///
/// At start, the wills this node's name left from an earlier run are published first (their
/// connections died with that run). Then, every [`REAP_EVERY`], when a node has left the
/// liveness bucket (heartbeats stopped for [`NODE_TTL`](super::NODE_TTL)), each survivor tries
/// to take each of its wills with a compare-and-set delete; the one that wins publishes it, so
/// a will is published once. A node that comes back after being taken for dead (a long pause, a
/// partition) may publish a will again when its client then disconnects.
pub(super) async fn wills_task(
    inner: Arc<Inner>,
    broker: BrokerHandle,
    mut ops: mpsc::UnboundedReceiver<WillOp>,
) {
    let mut assets = inner.assets.clone();
    let Ok(a) = assets.wait_for(Option::is_some).await.map(|a| a.clone()) else {
        return;
    };
    let Some(a) = a else { return };
    let node = inner.config.node.clone();
    // Leftovers of this node's previous run: reaped by us (no one else would before our
    // heartbeat lapses, and we are back).
    let mut live: HashSet<String> = HashSet::new();
    reap(&inner, &broker, &a.wills, &|n: &str| n == node, true).await;
    // Wills of dead nodes still waiting for their delay: looked at again every tick.
    let mut waiting = false;
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tokio::select! {
            op = ops.recv() => {
                let Some(op) = op else { break };
                match op {
                    WillOp::Put(cid, bytes) => {
                        if let Err(e) = a.wills.put(will_key(&node, &cid), bytes).await {
                            debug!(error = %e, "cluster: will not kept in NATS");
                        }
                    }
                    WillOp::Delete(cid) => {
                        if let Err(e) = a.wills.delete(will_key(&node, &cid)).await {
                            debug!(error = %e, "cluster: will not removed from NATS");
                        }
                    }
                    WillOp::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
            _ = tick.tick() => {
                let Ok(now) = live_nodes(&a.nodes).await else { continue };
                // Only when a node has gone (or at the first look): listing every will is
                // not free.
                let gone = live.is_empty() || live.iter().any(|n| !now.contains(n));
                if (gone || waiting) && now.contains(&node) {
                    let dead = |n: &str| n != node && !now.contains(n);
                    waiting = reap(&inner, &broker, &a.wills, &dead, false).await;
                }
                live = now;
            }
        }
    }
}

async fn live_nodes(nodes: &jetstream::kv::Store) -> Result<HashSet<String>, String> {
    let mut keys = nodes.keys().await.map_err(|e| e.to_string())?;
    let mut out = HashSet::new();
    while let Some(k) = keys.next().await {
        out.insert(k.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Publishes (once, cluster-wide) the wills whose node `dead` says is gone; a delayed will
/// only once it is due. Returns whether delayed ones wait. `restart`: the wills are this
/// node's own from its previous run; its delayed ones are dropped, not published: its store
/// restored them with their sessions and publishes them when due (a node with `sync =
/// "memory"` has lost them).
async fn reap(
    inner: &Inner,
    broker: &BrokerHandle,
    wills: &jetstream::kv::Store,
    dead: &(dyn Fn(&str) -> bool + Sync),
    restart: bool,
) -> bool {
    let Ok(mut keys) = wills.keys().await else {
        return true;
    };
    let mut waiting = false;
    let mut mine = Vec::new();
    while let Some(Ok(k)) = keys.next().await {
        if k.split_once('.').is_some_and(|(n, _)| dead(n)) {
            mine.push(k);
        }
    }
    for key in mine {
        let Ok(Some(entry)) = wills.entry(&key).await else {
            continue;
        };
        if entry.operation != jetstream::kv::Operation::Put {
            continue;
        }
        let (due, value) = split_due(entry.value);
        if due.is_some_and(|d| d > unix_ms()) && !restart {
            waiting = true;
            continue;
        }
        // Whoever deletes this revision first publishes it.
        if wills
            .delete_expect_revision(&key, Some(entry.revision))
            .await
            .is_err()
            || (restart && due.is_some())
        {
            continue;
        }
        match wire::decode(value, Instant::now(), unix_ms()) {
            Ok(r) => {
                inner.counters.wills_reaped.fetch_add(1, Ordering::Relaxed);
                info!(node = %r.node, topic = %r.message.topic, "cluster: publishing the will of a client whose node died");
                broker.publish_will(r.message);
            }
            Err(e) => {
                inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(key = %key, error = %e, "cluster: malformed will ignored");
            }
        }
    }
    waiting
}
