//! One node's membership of the cluster: the NATS connection, the JetStream assets, and the
//! tasks that carry messages both ways.
//!
//! Out (this node's publishes, through
//! [`Backbone::forward`](hermod_broker::api::Backbone::forward)): one queue, bounded in bytes,
//! and one task that empties it in order, so messages leave in the order they were published:
//! - QoS 0: core NATS `mq.0.<topic>`, at once;
//! - QoS 1/2: JetStream `mqs.<topic>` (stream `MQ_MSGS`, replicated); once JetStream has
//!   acknowledged it, the publisher's PUBACK/PUBREC (its ack waits on the commit `forward`
//!   returned). Acknowledgements are awaited in order, up to [`MAX_ACKS_IN_FLIGHT`] at a time;
//! - retained: also into the bucket `MQ_RET` (in the same ordered pipeline), which every node
//!   watches into its own retained store, so all nodes apply retained messages in one order.
//!
//! In: QoS 0 from core NATS, through subscriptions per distinct first topic level of this
//! node's subscriptions (see `subject`); QoS 1/2 from the stream itself, through one ordered
//! consumer filtered on the same levels, so that a QoS 1/2 message JetStream acknowledged
//! reaches every interested node even if the publisher's node or a NATS server dies right
//! after (a core copy would be lost with the connection that carried it: seen in the test
//! that kills a NATS server). Both go to `BrokerHandle::publish_remote`.
//!
//! One sub-module per concern, each a task (or the pieces of one) over the shared `Inner`:
//! `setup` (connection, JetStream assets), `hook` (the broker's side), `out` (the ordered out
//! pipeline), `interest` (core QoS 0 in), `stored` (QoS 1/2 in), `shared` (shared groups),
//! `retained`, `wills`, `takeover` (liveness and one connection per client id).

mod hook;
mod inbound;
mod interest;
mod keys;
mod out;
mod retained;
mod setup;
mod shared;
pub(crate) mod shared_acks;
mod stored;
mod takeover;
mod wills;

pub(crate) use keys::client_key;
pub use retained::retained_key;
pub use shared::group_name;
pub use takeover::{CONNECTED_SUBJECT, RECENT_CONNECT};
pub use wills::REAP_EVERY;
pub(crate) use wills::will_key;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use hermod_broker::api::BrokerHandle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::ClusterConfig;
use crate::subject::Interest;

use hook::Hook;
use interest::interest_task;
use out::{Out, out_task};
use retained::retained_task;
use setup::{connect, setup};
use shared::shared_task;
use stored::stored_task;
use takeover::{heartbeat_task, takeover_task};
use wills::{WillOp, wills_task};

/// Stream of QoS 1/2 copies.
pub const STREAM: &str = "MQ_MSGS";
/// Bucket of retained messages, keyed by topic.
pub const RETAINED_BUCKET: &str = "MQ_RET";
/// Bucket of the wills of connected clients, keyed `<node>.<base64url(client id)>`: what the
/// other nodes publish when that node dies.
pub const WILLS_BUCKET: &str = "MQ_WILLS";
/// Bucket of live nodes, keyed by node name, expiring after [`NODE_TTL`].
pub const NODES_BUCKET: &str = "MQ_NODES";
/// How long a pull request to a stream consumer waits for messages. The idle heartbeat the
/// server sends is half of it, and a consumer that misses two in a row is recreated: a consumer
/// lost with its NATS server (the nodes' stream consumers have one replica) is noticed within
/// seconds, where the client's default (30 s pulls, 15 s heartbeats) took over a minute.
pub(crate) const PULL_EXPIRES: Duration = Duration::from_secs(4);
/// Distinct first levels a node subscribes to one by one before it takes everything.
pub const MAX_LEVELS: usize = 256;
/// JetStream acknowledgements awaited at once by the out task.
pub const MAX_ACKS_IN_FLIGHT: usize = 4096;
/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node that stopped saying so stays listed.
pub const NODE_TTL: Duration = Duration::from_secs(10);

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The NATS connection could not even be set up (bad URL, unreadable TLS files).
    #[error("cluster: cannot connect to NATS {urls}: {detail}")]
    Connect {
        /// The configured URLs.
        urls: String,
        /// What went wrong.
        detail: String,
    },
    /// A backbone was already attached to this broker.
    #[error("cluster: this broker already has a backbone")]
    AlreadyAttached,
}

/// Counters for `/metrics` and `hermod ctl cluster status`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages sent to other nodes, by QoS.
    pub forwarded: [AtomicU64; 3],
    /// Messages received from other nodes.
    pub received: AtomicU64,
    /// QoS 1/2 messages JetStream did not take (the publisher was not acknowledged).
    pub forward_failures: AtomicU64,
    /// Messages not forwarded because the out queue was full.
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 messages NATS refused (disconnected, too large).
    pub dropped_nats_error: AtomicU64,
    /// Messages from the backbone that could not be decoded.
    pub malformed: AtomicU64,
    /// Retained messages applied from the bucket.
    pub retained_applied: AtomicU64,
    /// Local connections disconnected because their client id connected to another node.
    pub takeovers: AtomicU64,
    /// Wills of clients of dead nodes published here.
    pub wills_reaped: AtomicU64,
}

/// What the tasks share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClusterConfig,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) counters: Counters,
    pub(crate) queued_bytes: AtomicUsize,
    out: mpsc::UnboundedSender<Out>,
    interest: Mutex<HashMap<Interest, usize>>,
    /// Local members per shared group `(group, filter)`.
    shared: Mutex<HashMap<(String, String), usize>>,
    /// A second connection, with echo: the shared groups' queue subscriptions must receive this
    /// node's own QoS 0 messages too (the main connection has `no_echo`).
    shared_client: async_nats::Client,
    /// Shared-group messages handed to the broker, acknowledged to JetStream when settled.
    pub(crate) shared_acks: shared_acks::SharedAcks,
    /// Bumped at every change of `interest`: the core (QoS 0) subscriptions and the stream
    /// consumer (QoS 1/2) follow it.
    pub(crate) interest_changed: watch::Sender<u64>,
    /// Bumped at every (re)connection of `client` to a NATS server: the stream consumer, which
    /// may have lived on the server that was lost, is recreated from where it was.
    pub(crate) connected: watch::Sender<u64>,
    /// Sessions that move between nodes: the ones owned here, and the stream position.
    pub(crate) sessions: crate::sessions::Sessions,
    /// Wills to keep in (or remove from) `MQ_WILLS`, in order.
    will_ops: mpsc::UnboundedSender<WillOp>,
    /// Client ids admitted here, to announce on `mqc.connected`.
    connects: mpsc::UnboundedSender<(String, u64)>,
    /// When each client id was admitted here, for the last [`RECENT_CONNECT`]: decides which of
    /// two near-simultaneous connections on two nodes stays.
    recent_connects: Mutex<HashMap<String, u64>>,
    pub(crate) ready: AtomicBool,
    /// Interests subscribed on NATS now.
    pub(crate) interests: AtomicUsize,
    pub(crate) started_ms: u64,
    pub(crate) assets: watch::Receiver<Option<Assets>>,
}

/// The JetStream assets, once created (or found).
#[derive(Debug, Clone)]
pub(crate) struct Assets {
    pub(crate) retained: jetstream::kv::Store,
    pub(crate) nodes: jetstream::kv::Store,
    pub(crate) wills: jetstream::kv::Store,
    pub(crate) sessions: jetstream::kv::Store,
    pub(crate) replicas: usize,
}

/// A running cluster membership. Stop it with [`Cluster::shutdown`].
#[derive(Debug)]
pub struct Cluster {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

/// A cheap handle for status queries (the admin API, `hermod ctl cluster status`).
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub(crate) inner: Arc<Inner>,
}

impl Cluster {
    /// Connects to NATS (in the background: a NATS that is down at start is retried, and the
    /// node serves its local clients meanwhile), creates or finds the JetStream assets, and
    /// attaches the backbone to `broker`.
    ///
    /// # Errors
    /// The connection cannot be set up at all, or `broker` already has a backbone.
    pub async fn start(broker: BrokerHandle, config: &ClusterConfig) -> Result<Self, ClusterError> {
        let (connected_tx, _) = watch::channel(0u64);
        let client = connect(config, false, connected_tx.clone()).await?;
        let shared_client = connect(config, true, watch::channel(0u64).0).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.ack_timeout);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (interest_tx, _) = watch::channel(0u64);
        let (connects_tx, connects_rx) = mpsc::unbounded_channel();
        let (wills_tx, wills_rx) = mpsc::unbounded_channel();
        let (assets_tx, assets_rx) = watch::channel(None);
        let (shared_acks, shared_acks_rx) = shared_acks::SharedAcks::new();
        let shared_held = shared_acks.held.clone();
        let inner = Arc::new(Inner {
            config: config.clone(),
            client,
            js,
            counters: Counters::default(),
            queued_bytes: AtomicUsize::new(0),
            out: out_tx,
            interest: Mutex::new(HashMap::new()),
            shared: Mutex::new(HashMap::new()),
            shared_client,
            shared_acks,
            interest_changed: interest_tx,
            connected: connected_tx,
            sessions: crate::sessions::Sessions::default(),
            connects: connects_tx,
            will_ops: wills_tx,
            recent_connects: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            interests: AtomicUsize::new(0),
            started_ms: unix_ms(),
            assets: assets_rx,
        });
        inner.sessions.set_broker(broker.downgrade());
        if !broker.attach_backbone(Arc::new(Hook(inner.clone()))) {
            return Err(ClusterError::AlreadyAttached);
        }
        let tasks = vec![
            tokio::spawn(setup(inner.clone(), assets_tx)),
            tokio::spawn(out_task(inner.clone(), out_rx)),
            tokio::spawn(interest_task(inner.clone(), broker.clone())),
            tokio::spawn(stored_task(inner.clone(), broker.clone())),
            tokio::spawn(shared_task(inner.clone(), broker.clone())),
            tokio::spawn(shared_acks::shared_acks_task(
                config.shared_redelivery,
                shared_held,
                shared_acks_rx,
            )),
            tokio::spawn(retained_task(inner.clone(), broker.clone())),
            tokio::spawn(heartbeat_task(inner.clone())),
            tokio::spawn(takeover_task(inner.clone(), broker.clone(), connects_rx)),
            tokio::spawn(wills_task(inner.clone(), broker.clone(), wills_rx)),
            tokio::spawn(crate::sessions::sessions_task(
                inner.clone(),
                broker.clone(),
            )),
        ];
        info!(node = %config.node, nats = ?config.nats, "cluster: joining");
        Ok(Self { inner, tasks })
    }

    /// A handle for status queries.
    #[must_use]
    pub fn view(&self) -> ClusterView {
        ClusterView {
            inner: self.inner.clone(),
        }
    }

    /// Prometheus text of the cluster's metrics, for `BrokerHandle::add_metrics_source`.
    #[must_use]
    pub fn metrics_source(&self) -> hermod_broker::api::MetricsSource {
        let inner = Arc::downgrade(&self.inner);
        Arc::new(move || {
            inner
                .upgrade()
                .map(|i| crate::status::prometheus_text(&i))
                .unwrap_or_default()
        })
    }

    /// Stops as if the process had died: no liveness entry removed, no will withdrawn, no
    /// flush. For tests of what the other nodes do then.
    pub async fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.inner.client.drain().await;
        let _ = self.inner.shared_client.drain().await;
    }

    /// Leaves the cluster: the wills withdrawn by closing connections are removed, the node's
    /// liveness entry too, pending messages are flushed to NATS (bounded by 2 s each), and the
    /// tasks end.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.will_ops.send(WillOp::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        if let Some(a) = self.inner.assets.borrow().clone() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                a.nodes.delete(&self.inner.config.node),
            )
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.client.flush()).await;
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        info!(node = %self.inner.config.node, "cluster: left");
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
