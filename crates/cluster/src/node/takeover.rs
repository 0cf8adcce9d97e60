//! Liveness and one connection per client id: the heartbeat that keeps this node in
//! `MQ_NODES` (which the wills' reaping reads), and the `mqc.connected` announcements through
//! which a client id admitted on one node is taken over from any other [MQTT-3.1.4-2].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hermod_broker::api::BrokerHandle;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{HEARTBEAT, Inner, unix_ms};

/// Says every [`HEARTBEAT`] that this node is alive (the bucket forgets it after
/// [`NODE_TTL`](super::NODE_TTL)).
pub(super) async fn heartbeat_task(inner: Arc<Inner>) {
    let mut assets = inner.assets.clone();
    let Ok(a) = assets.wait_for(Option::is_some).await.map(|a| a.clone()) else {
        return;
    };
    let Some(a) = a else { return };
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let record = crate::status::NodeRecord {
            node: inner.config.node.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_ms: inner.started_ms,
            heartbeat_ms: unix_ms(),
        };
        let Ok(value) = serde_json::to_vec(&record) else {
            continue;
        };
        if let Err(e) = a.nodes.put(&inner.config.node, Bytes::from(value)).await {
            debug!(error = %e, "cluster: heartbeat not written");
        }
    }
}

/// Subject on which nodes announce the client ids they admit.
pub const CONNECTED_SUBJECT: &str = "mqc.connected";
/// How long a node remembers when it admitted a client id (for simultaneous connects).
pub const RECENT_CONNECT: Duration = Duration::from_secs(30);

/// An announcement on [`CONNECTED_SUBJECT`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Connected {
    /// Client id.
    c: String,
    /// The node that admitted it.
    n: String,
    /// When (Unix ms, the admitting node's clock).
    t: u64,
}

/// One connection per client id in the whole cluster [MQTT-3.1.4-2]: announces the client ids
/// admitted here, and disconnects (as a takeover, v5 0x8E) a local connection whose client id
/// was admitted on another node later. Of two near-simultaneous connects, the one admitted
/// later (by the nodes' clocks; ties by node name) stays, and both nodes agree on which.
pub(super) async fn takeover_task(
    inner: Arc<Inner>,
    broker: BrokerHandle,
    mut connects: mpsc::UnboundedReceiver<(String, u64)>,
) {
    let mut sub = loop {
        match inner.client.subscribe(CONNECTED_SUBJECT).await {
            Ok(s) => break s,
            Err(e) => {
                debug!(error = %e, "cluster: cannot subscribe to connect announcements yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let mut prune = tokio::time::interval(RECENT_CONNECT);
    loop {
        tokio::select! {
            c = connects.recv() => {
                let Some((client_id, at)) = c else { break };
                let m = Connected { c: client_id, n: inner.config.node.clone(), t: at };
                if let Ok(b) = serde_json::to_vec(&m)
                    && let Err(e) = inner.client.publish(CONNECTED_SUBJECT, Bytes::from(b)).await
                {
                    debug!(error = %e, "cluster: connect not announced");
                }
            }
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                let Ok(m) = serde_json::from_slice::<Connected>(&msg.payload) else {
                    inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if m.n == inner.config.node {
                    continue;
                }
                let local = inner
                    .recent_connects
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&m.c)
                    .copied();
                // Admitted here earlier than there (or long ago): this one goes.
                let older = local.is_none_or(|t| (t, inner.config.node.as_str()) < (m.t, m.n.as_str()));
                if older && broker.take_over(&m.c) {
                    inner.counters.takeovers.fetch_add(1, Ordering::Relaxed);
                    info!(client_id = %m.c, node = %m.n, "cluster: client connected to another node; taken over");
                }
            }
            _ = prune.tick() => {
                let cutoff = unix_ms().saturating_sub(RECENT_CONNECT.as_millis() as u64);
                inner
                    .recent_connects
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|_, t| *t >= cutoff);
            }
        }
    }
}
