//! What a node says about the cluster: `hermod ctl cluster status`, `GET /api/v5/cluster`
//! and the `hermod_cluster_*` metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::node::{ClusterView, Inner, unix_ms};

/// A node's liveness record in the `MQ_NODES` bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node name.
    pub node: String,
    /// Hermod version.
    pub version: String,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// Its last heartbeat (Unix ms).
    pub heartbeat_ms: u64,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// The NATS connection: `connected`, `disconnected` or `pending`.
    pub nats_state: String,
    /// The NATS server this node is connected to (its name and version), when connected.
    pub nats_server: Option<String>,
    /// JetStream assets created or found (QoS 1/2 publishes are refused until then).
    pub jetstream_ready: bool,
    /// Replicas of the stream and buckets.
    pub replicas: Option<usize>,
    /// Live nodes (heartbeat within the last 10 s), sorted by name.
    pub nodes: Vec<NodeRecord>,
    /// Messages sent to other nodes (all QoS).
    pub forwarded: u64,
    /// Messages received from other nodes.
    pub received: u64,
    /// QoS 1/2 messages JetStream did not take.
    pub forward_failures: u64,
    /// Messages dropped before NATS (queue full or NATS refused).
    pub dropped: u64,
    /// Sessions this node holds for the cluster (persistent ones have a record in `MQ_SESS`).
    #[serde(default)]
    pub sessions: u64,
    /// Persistent sessions moved here from other nodes.
    #[serde(default)]
    pub sessions_moved_in: u64,
    /// Persistent sessions given up to other nodes.
    #[serde(default)]
    pub sessions_moved_out: u64,
}

impl ClusterView {
    /// The status now; the list of nodes is read from NATS (bounded by 2 s).
    pub async fn status(&self) -> ClusterStatus {
        let i = &self.inner;
        let state = i.client.connection_state();
        let connected = matches!(state, async_nats::connection::State::Connected);
        let info = i.client.server_info();
        let assets = i.assets.borrow().clone();
        let mut nodes = Vec::new();
        if let Some(a) = assets.as_ref().filter(|_| connected) {
            let read = async {
                let mut out = Vec::new();
                if let Ok(mut keys) = a.nodes.keys().await {
                    while let Some(Ok(k)) = keys.next().await {
                        if let Ok(Some(v)) = a.nodes.get(&k).await
                            && let Ok(r) = serde_json::from_slice::<NodeRecord>(&v)
                        {
                            out.push(r);
                        }
                    }
                }
                out
            };
            if let Ok(v) = tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
                nodes = v;
            }
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let c = &i.counters;
        ClusterStatus {
            node: i.config.node.clone(),
            nats_state: state.to_string(),
            nats_server: connected.then(|| format!("{} ({})", info.server_name, info.version)),
            jetstream_ready: i.ready.load(Ordering::Relaxed),
            replicas: assets.map(|a| a.replicas),
            nodes,
            forwarded: c.forwarded.iter().map(|n| n.load(Ordering::Relaxed)).sum(),
            received: c.received.load(Ordering::Relaxed),
            forward_failures: c.forward_failures.load(Ordering::Relaxed),
            dropped: c.dropped_queue_full.load(Ordering::Relaxed)
                + c.dropped_nats_error.load(Ordering::Relaxed),
            sessions: i.sessions.count() as u64,
            sessions_moved_in: i.sessions.moved_in.load(Ordering::Relaxed),
            sessions_moved_out: i.sessions.moved_out.load(Ordering::Relaxed),
        }
    }
}

impl ClusterStatus {
    /// The text `hermod ctl cluster status` prints.
    #[must_use]
    pub fn render(&self) -> String {
        let now = unix_ms();
        let mut s = String::new();
        let _ = writeln!(s, "node {}", self.node);
        let _ = writeln!(
            s,
            "NATS: {}{}",
            self.nats_state,
            self.nats_server
                .as_ref()
                .map(|n| format!(", server {n}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "JetStream: {}",
            match (self.jetstream_ready, self.replicas) {
                _ if self.nats_state != "connected" => {
                    "unreachable while NATS is (QoS 1/2 publishes are refused)".into()
                }
                (true, Some(r)) => format!("ready, {r} replica{}", if r == 1 { "" } else { "s" }),
                _ => "not ready (QoS 1/2 publishes are refused)".into(),
            }
        );
        if self.nats_state == "connected" {
            let _ = writeln!(s, "nodes ({}):", self.nodes.len());
        } else {
            let _ = writeln!(s, "nodes: unknown while NATS is unreachable");
        }
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "  {:<20} hermod {:<8} up {:>6}s  last seen {:.1}s ago{}",
                n.node,
                n.version,
                now.saturating_sub(n.started_ms) / 1000,
                now.saturating_sub(n.heartbeat_ms) as f64 / 1000.0,
                if n.node == self.node {
                    "  (this node)"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            s,
            "messages: {} forwarded, {} received, {} refused by JetStream, {} dropped",
            self.forwarded, self.received, self.forward_failures, self.dropped
        );
        let _ = writeln!(
            s,
            "sessions: {} held here, {} moved here, {} moved away",
            self.sessions, self.sessions_moved_in, self.sessions_moved_out
        );
        s
    }
}

/// The `hermod_cluster_*` series, Prometheus text.
pub(crate) fn prometheus_text(i: &Inner) -> String {
    let c = &i.counters;
    let connected = matches!(
        i.client.connection_state(),
        async_nats::connection::State::Connected
    );
    let mut s = String::new();
    let mut one = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(s, "{name}{labels} {v}");
        }
    };
    one(
        "hermod_cluster_nats_connected",
        "gauge",
        "Whether this node is connected to NATS (1) or not (0).",
        &[("", u64::from(connected))],
    );
    one(
        "hermod_cluster_jetstream_ready",
        "gauge",
        "Whether the JetStream stream and buckets exist (1) or not yet (0).",
        &[("", u64::from(i.ready.load(Ordering::Relaxed)))],
    );
    let f = |q: usize| c.forwarded[q].load(Ordering::Relaxed);
    one(
        "hermod_cluster_forwarded_messages_total",
        "counter",
        "Messages published on this node and sent to the other nodes.",
        &[
            ("{qos=\"0\"}", f(0)),
            ("{qos=\"1\"}", f(1)),
            ("{qos=\"2\"}", f(2)),
        ],
    );
    one(
        "hermod_cluster_received_messages_total",
        "counter",
        "Messages received from other nodes.",
        &[("", c.received.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_forward_failures_total",
        "counter",
        "QoS 1/2 messages JetStream did not take (their publisher was not acknowledged).",
        &[("", c.forward_failures.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_dropped_messages_total",
        "counter",
        "Messages not sent to the other nodes.",
        &[
            (
                "{reason=\"queue_full\"}",
                c.dropped_queue_full.load(Ordering::Relaxed),
            ),
            (
                "{reason=\"nats_error\"}",
                c.dropped_nats_error.load(Ordering::Relaxed),
            ),
        ],
    );
    one(
        "hermod_cluster_malformed_messages_total",
        "counter",
        "Messages from the backbone that could not be decoded.",
        &[("", c.malformed.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_retained_applied_total",
        "counter",
        "Retained messages applied from the cluster's bucket.",
        &[("", c.retained_applied.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_takeovers_total",
        "counter",
        "Connections closed here because their client id connected to another node.",
        &[("", c.takeovers.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_wills_reaped_total",
        "counter",
        "Wills of clients whose node died, published by this node.",
        &[("", c.wills_reaped.load(Ordering::Relaxed))],
    );
    let ss = &i.sessions;
    one(
        "hermod_cluster_sessions_owned",
        "gauge",
        "Sessions this node holds for the cluster.",
        &[("", ss.count() as u64)],
    );
    one(
        "hermod_cluster_sessions_moved_total",
        "counter",
        "Persistent sessions moved between this node and others.",
        &[
            ("{direction=\"in\"}", ss.moved_in.load(Ordering::Relaxed)),
            ("{direction=\"out\"}", ss.moved_out.load(Ordering::Relaxed)),
        ],
    );
    one(
        "hermod_cluster_sessions_replayed_messages_total",
        "counter",
        "Messages read back from the stream for sessions that moved here.",
        &[("", ss.replayed.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_session_conflicts_total",
        "counter",
        "Local session copies dropped because another node owns the session.",
        &[("", ss.conflicts.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_shared_held",
        "gauge",
        "Shared-group QoS 1/2 messages given to members here and not yet acknowledged by them.",
        &[("", i.shared_acks.held.load(Ordering::Relaxed))],
    );
    one(
        "hermod_cluster_queued_bytes",
        "gauge",
        "Bytes of messages waiting to be sent to NATS.",
        &[("", i.queued_bytes.load(Ordering::Relaxed) as u64)],
    );
    one(
        "hermod_cluster_interests",
        "gauge",
        "Topic interests (first levels, or all) this node subscribes to on NATS.",
        &[("", i.interests.load(Ordering::Relaxed) as u64)],
    );
    s
}
