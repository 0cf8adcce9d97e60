//! One node's membership of the cluster: the NATS connection, the JetStream assets, and the
//! tasks that carry messages both ways.
//!
//! Out (this node's publishes, through [`Backbone::forward`]): one queue, bounded in bytes, and
//! one task that empties it in order, so messages leave in the order they were published:
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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, message::PublishMessage as JsPublish};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use hermod_broker::api::{Backbone, BrokerHandle};
use hermod_broker::message::Message;
use hermod_broker::store::{Commit, StoreError};
use hermod_proto::QoS;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::subject::{self, Interest};
use crate::wire;

/// Stream of QoS 1/2 copies.
pub const STREAM: &str = "MQ_MSGS";
/// Bucket of retained messages, keyed by topic.
pub const RETAINED_BUCKET: &str = "MQ_RET";
/// Bucket of the wills of connected clients, keyed `<node>.<base64url(client id)>`: what the
/// other nodes publish when that node dies.
pub const WILLS_BUCKET: &str = "MQ_WILLS";
/// Bucket of live nodes, keyed by node name, expiring after [`NODE_TTL`].
pub const NODES_BUCKET: &str = "MQ_NODES";
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
    /// Bumped at every change of `interest`: the core (QoS 0) subscriptions and the stream
    /// consumer (QoS 1/2) follow it.
    interest_changed: watch::Sender<u64>,
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
    pub(crate) replicas: usize,
}

/// One message on its way out.
#[derive(Debug)]
struct Out {
    message: Arc<Message>,
    size: usize,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// The broker's side of the backbone: cheap, synchronous, never blocks.
#[derive(Debug)]
struct Hook(Arc<Inner>);

/// Topics that stay on their node: `$SYS` (each node reports itself) and the broker's own
/// services (`$hermod/...`: shadows and presence run per node).
fn node_local(topic: &str) -> bool {
    topic.starts_with("$SYS/") || topic == "$SYS" || topic.starts_with("$hermod/")
}

impl Backbone for Hook {
    fn forward(&self, message: &Arc<Message>) -> Option<Commit> {
        if node_local(&message.topic) {
            return None;
        }
        let inner = &self.0;
        let size = message.size();
        let queued = inner.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > inner.config.max_queued_bytes {
            inner.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            inner
                .counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return (message.qos != QoS::AtMostOnce).then(|| {
                Commit::failed(StoreError::Backbone {
                    detail: "the queue to NATS is full".into(),
                })
            });
        }
        let (done, commit) = if message.qos == QoS::AtMostOnce {
            (None, None)
        } else {
            let (tx, commit) = Commit::pending();
            (Some(tx), Some(commit))
        };
        let out = Out {
            message: message.clone(),
            size,
            done,
        };
        if inner.out.send(out).is_err() {
            // The cluster has stopped.
            inner.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return (message.qos != QoS::AtMostOnce).then(|| {
                Commit::failed(StoreError::Backbone {
                    detail: "the cluster service has stopped".into(),
                })
            });
        }
        commit
    }

    fn carries(&self, topic: &str) -> bool {
        !node_local(topic)
    }

    fn subscribed(&self, filter: &str) {
        self.0.change_interest(filter, true);
    }

    fn unsubscribed(&self, filter: &str) {
        self.0.change_interest(filter, false);
    }

    fn will(&self, client_id: &str, will: Option<&Message>) {
        let op = match will {
            Some(m) => WillOp::Put(
                client_id.to_owned(),
                wire::encode(m, &self.0.config.node, Instant::now(), unix_ms()),
            ),
            None => WillOp::Delete(client_id.to_owned()),
        };
        let _ = self.0.will_ops.send(op);
    }

    fn connected(&self, client_id: &str) {
        let at = unix_ms();
        self.0
            .recent_connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(client_id.to_owned(), at);
        let _ = self.0.connects.send((client_id.to_owned(), at));
    }
}

impl Inner {
    fn change_interest(&self, filter: &str, added: bool) {
        let changed = match hermod_proto::topic::parse_shared(filter) {
            // A shared group is served through the cluster's queue group and durable consumer
            // (`group_task`), not through this node's interest.
            Ok(Some((group, inner))) => count(
                &mut self
                    .shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                (group.to_owned(), inner.to_owned()),
                added,
            ),
            _ => count(
                &mut self
                    .interest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                subject::first_level_interest(filter),
                added,
            ),
        };
        if changed {
            self.interest_changed.send_modify(|g| *g += 1);
        }
    }

    /// The shared groups with members here now.
    fn groups(&self) -> HashSet<(String, String)> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The interests to subscribe to now: `All` alone when any filter starts with a wildcard
    /// (it covers the others, which would otherwise deliver twice).
    fn wanted(&self) -> HashSet<Interest> {
        let map = self
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Past MAX_LEVELS distinct first levels, one subscription to everything is cheaper
        // (and a consumer's filter list stays small).
        if map.contains_key(&Interest::All) || map.len() > MAX_LEVELS {
            return HashSet::from([Interest::All]);
        }
        map.keys().cloned().collect()
    }
}

/// Counts one more (or one less) of `key`; true when it appeared or disappeared.
fn count<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, added: bool) -> bool {
    if added {
        let n = map.entry(key).or_insert(0);
        *n += 1;
        *n == 1
    } else {
        match map.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                map.remove(&key);
                true
            }
            None => false,
        }
    }
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
        let client = connect(config, false).await?;
        let shared_client = connect(config, true).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.ack_timeout);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (interest_tx, _) = watch::channel(0u64);
        let (connects_tx, connects_rx) = mpsc::unbounded_channel();
        let (wills_tx, wills_rx) = mpsc::unbounded_channel();
        let (assets_tx, assets_rx) = watch::channel(None);
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
            interest_changed: interest_tx,
            connects: connects_tx,
            will_ops: wills_tx,
            recent_connects: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            interests: AtomicUsize::new(0),
            started_ms: unix_ms(),
            assets: assets_rx,
        });
        if !broker.attach_backbone(Arc::new(Hook(inner.clone()))) {
            return Err(ClusterError::AlreadyAttached);
        }
        let tasks = vec![
            tokio::spawn(setup(inner.clone(), assets_tx)),
            tokio::spawn(out_task(inner.clone(), out_rx)),
            tokio::spawn(interest_task(inner.clone(), broker.clone())),
            tokio::spawn(stored_task(inner.clone(), broker.clone())),
            tokio::spawn(shared_task(inner.clone(), broker.clone())),
            tokio::spawn(retained_task(inner.clone(), broker.clone())),
            tokio::spawn(heartbeat_task(inner.clone())),
            tokio::spawn(takeover_task(inner.clone(), broker.clone(), connects_rx)),
            tokio::spawn(wills_task(inner.clone(), broker.clone(), wills_rx)),
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

/// The main connection (`echo` false: this node does not receive what it publishes), or the
/// shared groups' one (`echo` true).
async fn connect(config: &ClusterConfig, echo: bool) -> Result<async_nats::Client, ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!(
            "hermod {}{}",
            config.node,
            if echo { " shared" } else { "" }
        ))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5));
    if !echo {
        options = options.no_echo();
    }
    if let (Some(u), Some(p)) = (&config.user, &config.password) {
        options = options.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &config.token {
        options = options.token(t.clone());
    }
    if let Some(ca) = &config.cafile {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(c), Some(k)) = (&config.certfile, &config.keyfile) {
        options = options.add_client_certificate(c.clone(), k.clone());
    }
    let node = config.node.clone();
    options = options.event_callback(move |event| {
        let echo = echo;
        let node = node.clone();
        async move {
            match event {
                async_nats::Event::Connected if !echo => info!(%node, "cluster: connected to NATS"),
                async_nats::Event::Disconnected if !echo => {
                    warn!(%node, "cluster: disconnected from NATS; local clients are still served, QoS 1/2 publishes are refused until it is back");
                }
                other => debug!(%node, event = %other, "cluster: NATS event"),
            }
        }
    });
    let urls = config.nats.join(",");
    options
        .connect(config.nats.as_slice())
        .await
        .map_err(|e| ClusterError::Connect {
            urls,
            detail: e.to_string(),
        })
}

/// Creates (or finds) the stream and buckets, retrying until NATS answers.
async fn setup(inner: Arc<Inner>, assets: watch::Sender<Option<Assets>>) {
    let mut delay = Duration::from_millis(100);
    let mut logged = false;
    // Connecting and creating the assets take a moment at every start: said only if it lasts.
    let started = Instant::now();
    loop {
        match create_assets(&inner).await {
            Ok(a) => {
                info!(node = %inner.config.node, replicas = a.replicas, "cluster: JetStream ready");
                inner.ready.store(true, Ordering::SeqCst);
                let _ = assets.send(Some(a));
                return;
            }
            Err(e) => {
                if logged || started.elapsed() < Duration::from_secs(5) {
                    debug!(error = %e, "cluster: JetStream not ready yet");
                } else {
                    let hint = if e.contains("10047") {
                        " (JetStream has no room for the stream: lower [cluster] max_bytes or raise the NATS servers' max_file_store)"
                    } else {
                        ""
                    };
                    warn!(error = %e, "cluster: JetStream not ready yet (retrying){hint}; QoS 1/2 publishes are refused meanwhile");
                    logged = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn create_assets(inner: &Inner) -> Result<Assets, String> {
    if !matches!(
        inner.client.connection_state(),
        async_nats::connection::State::Connected
    ) {
        return Err("not connected to NATS".into());
    }
    // Auto: 3 copies on a NATS cluster, 1 on a single server (which cannot replicate).
    let replicas = inner.config.replicas.unwrap_or_else(|| {
        if inner.client.server_info().cluster.is_some() {
            3
        } else {
            1
        }
    });
    try_create(inner, replicas).await
}

async fn try_create(inner: &Inner, replicas: usize) -> Result<Assets, String> {
    let c = &inner.config;
    // Requests of their own, 5 s: when nodes start together, the node that loses the race to
    // create an asset can wait for an answer that never comes (seen: 30 s with a 30 s
    // timeout); the retry then finds the asset.
    let mut js = jetstream::new(inner.client.clone());
    js.set_timeout(Duration::from_secs(5));
    let js = &js;
    js.get_or_create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["mqs.>".into()],
        num_replicas: replicas,
        max_age: c.max_age,
        max_bytes: i64::try_from(c.max_bytes).unwrap_or(i64::MAX),
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {STREAM}: {e}"))?;
    let retained = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: RETAINED_BUCKET.into(),
            history: 1,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    let nodes = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: NODES_BUCKET.into(),
            history: 1,
            max_age: NODE_TTL,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        },
    )
    .await?;
    let wills = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: WILLS_BUCKET.into(),
            history: 1,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    Ok(Assets {
        retained,
        nodes,
        wills,
        replicas,
    })
}

/// The bucket if it exists, else created. Every node does this at start, often at the same
/// moment: looking first keeps them from queueing behind each other's creation (seen: 30 s).
async fn ensure_kv(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
) -> Result<jetstream::kv::Store, String> {
    let bucket = config.bucket.clone();
    if let Ok(kv) = js.get_key_value(&bucket).await {
        return Ok(kv);
    }
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        // Created by another node in between.
        Err(e) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| format!("bucket {bucket}: {e}")),
    }
}

type Acked = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Empties the out queue in order (see the module docs).
async fn out_task(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut acks: FuturesOrdered<Acked> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = acks.next(), if !acks.is_empty() => {}
            out = rx.recv(), if acks.len() < MAX_ACKS_IN_FLIGHT => {
                let Some(out) = out else { break };
                inner.queued_bytes.fetch_sub(out.size, Ordering::Relaxed);
                if let Some(pending) = send(&inner, out).await {
                    acks.push_back(pending);
                }
            }
        }
    }
    while acks.next().await.is_some() {}
}

fn failed(inner: &Inner, done: Option<oneshot::Sender<Result<(), StoreError>>>, detail: String) {
    inner
        .counters
        .forward_failures
        .fetch_add(1, Ordering::Relaxed);
    if let Some(done) = done {
        let _ = done.send(Err(StoreError::Backbone { detail }));
    }
}

/// Sends one message; for QoS 1/2 and retained messages returns what completes it once
/// JetStream has acknowledged.
async fn send(inner: &Arc<Inner>, out: Out) -> Option<Acked> {
    let m = &out.message;
    let bytes = wire::encode(m, &inner.config.node, Instant::now(), unix_ms());
    let has_assets = inner.assets.borrow().is_some();
    let retained_ack = if m.retain {
        match has_assets {
            true => {
                let subject = format!("$KV.{RETAINED_BUCKET}.{}", retained_key(&m.topic));
                match inner
                    .js
                    .send_publish(subject, JsPublish::build().payload(bytes.clone()))
                    .await
                {
                    Ok(ack) => Some(ack),
                    Err(e) => {
                        warn!(topic = %m.topic, error = %e, "cluster: retained message not stored in NATS");
                        None
                    }
                }
            }
            false => None,
        }
    } else {
        None
    };
    if m.qos == QoS::AtMostOnce {
        let subject = subject::topic_to_subject("mq.0", &m.topic);
        match inner.client.publish(subject, bytes).await {
            Ok(()) => {
                inner.counters.forwarded[0].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                inner
                    .counters
                    .dropped_nats_error
                    .fetch_add(1, Ordering::Relaxed);
                debug!(topic = %m.topic, error = %e, "cluster: QoS 0 message not forwarded");
            }
        }
        return retained_ack.map(|ack| -> Acked {
            Box::pin(async move {
                let _ = ack.await;
            })
        });
    }
    if !inner.ready.load(Ordering::Relaxed) {
        failed(inner, out.done, "JetStream is not ready".into());
        return None;
    }
    let stored = subject::topic_to_subject("mqs", &m.topic);
    let ack = match inner
        .js
        .send_publish(stored, JsPublish::build().payload(bytes.clone()))
        .await
    {
        Ok(ack) => ack,
        Err(e) => {
            failed(inner, out.done, format!("JetStream publish: {e}"));
            return None;
        }
    };
    let inner = inner.clone();
    let qos = m.qos as usize;
    Some(Box::pin(async move {
        let mut result = ack.await.map(|_| ()).map_err(|e| e.to_string());
        if let Some(r) = retained_ack {
            let r = r.await.map(|_| ()).map_err(|e| format!("retained: {e}"));
            result = result.and(r);
        }
        match result {
            Ok(()) => {
                inner.counters.forwarded[qos.min(2)].fetch_add(1, Ordering::Relaxed);
                if let Some(done) = out.done {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => failed(&inner, out.done, format!("JetStream ack: {e}")),
        }
    }))
}

/// The `MQ_RET` key of a topic: base64url of the topic (KV keys allow `[-/_=.A-Za-z0-9]`),
/// or `h` + SHA-256 hex for topics too long for a NATS subject.
#[must_use]
pub fn retained_key(topic: &str) -> String {
    use base64::Engine as _;
    if topic.len() <= 1024 {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic)
    } else {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(topic.as_bytes());
        let mut s = String::from("h");
        for b in digest {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// Keeps one NATS subscription set per wanted interest, and hands what arrives to the broker.
async fn interest_task(inner: Arc<Inner>, broker: BrokerHandle) {
    let mut changed = inner.interest_changed.subscribe();
    let mut active: HashMap<Interest, JoinHandle<()>> = HashMap::new();
    // `mq.*.%T` (topics whose first level alone is too long for a subject): once, while any
    // level is wanted and `All` (which covers it) is not.
    let mut always: Option<JoinHandle<()>> = None;
    loop {
        let wanted = inner.wanted();
        // Unsubscribe first: an overlap would deliver twice (QoS 0 is at most once).
        active.retain(|i, task| {
            let keep = wanted.contains(i);
            if !keep {
                task.abort();
            }
            keep
        });
        let want_always = !wanted.is_empty() && !wanted.contains(&Interest::All);
        if !want_always && let Some(t) = always.take() {
            t.abort();
        }
        for i in wanted {
            if active.contains_key(&i) {
                continue;
            }
            let subs = subscribe(&inner, subject::interest_subjects(subject::LIVE_QOS0, &i)).await;
            active.insert(
                i,
                tokio::spawn(receive(inner.clone(), broker.clone(), subs)),
            );
        }
        if want_always && always.is_none() {
            let subs = subscribe(&inner, subject::always_subjects(subject::LIVE_QOS0)).await;
            always = Some(tokio::spawn(receive(inner.clone(), broker.clone(), subs)));
        }
        inner.interests.store(active.len(), Ordering::Relaxed);
        if changed.changed().await.is_err() {
            break;
        }
    }
    for (_, t) in active {
        t.abort();
    }
    if let Some(t) = always {
        t.abort();
    }
}

async fn subscribe(inner: &Inner, subjects: Vec<String>) -> Vec<async_nats::Subscriber> {
    let mut subs = Vec::new();
    for s in subjects {
        match inner.client.subscribe(s.clone()).await {
            Ok(sub) => subs.push(sub),
            Err(e) => warn!(subject = %s, error = %e, "cluster: cannot subscribe"),
        }
    }
    subs
}

async fn receive(inner: Arc<Inner>, broker: BrokerHandle, subs: Vec<async_nats::Subscriber>) {
    let mut all = futures_util::stream::select_all(subs);
    while let Some(msg) = all.next().await {
        match wire::decode(msg.payload, Instant::now(), unix_ms()) {
            Ok(r) if r.node == inner.config.node => {}
            Ok(r) => {
                inner.counters.received.fetch_add(1, Ordering::Relaxed);
                broker.publish_remote(r.message).await;
            }
            Err(e) => {
                inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(subject = %msg.subject, error = %e, "cluster: malformed message ignored");
            }
        }
    }
}

/// Serves this node's shared groups (`$share/{group}/{filter}`) cluster-wide: one task per
/// group with members here, started and stopped as members come and go.
async fn shared_task(inner: Arc<Inner>, broker: BrokerHandle) {
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
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(group.as_bytes());
    h.update([0]);
    h.update(filter.as_bytes());
    let mut s = String::from("hs_");
    for b in &h.finalize()[..8] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One shared group, cluster-wide: each message to one member among all nodes [MQTT-4.8.2].
/// - QoS 0: every node with members queue-subscribes (NATS queue group `hs_...`) to the
///   group's subjects on the shared connection; NATS gives each message to one of them.
/// - QoS 1/2: one durable JetStream consumer per group (`hs_...`, filtered on the group's
///   subjects, starting with the messages stored after its creation); every node with
///   members pulls from it. A message is acknowledged to JetStream once a member here has it
///   queued, and refused (redelivered, to any node) when the group has no member here now.
///   Unused consumers are removed by JetStream after an hour without pulls.
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
    let deliver = async |payload: Bytes| -> Option<bool> {
        match wire::decode(payload, Instant::now(), unix_ms()) {
            Ok(r) => {
                inner.counters.received.fetch_add(1, Ordering::Relaxed);
                Some(broker.publish_shared(&group, &filter, r.message).await)
            }
            Err(e) => {
                inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "cluster: malformed shared message ignored");
                None
            }
        }
    };
    let mut assets = inner.assets.clone();
    let mut stored: Option<jetstream::consumer::pull::Stream> = None;
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            m = qos0.next(), if !qos0.is_empty() => {
                if let Some(m) = m {
                    let _ = deliver(m.payload).await;
                }
            }
            m = async { stored.as_mut()?.next().await }, if stored.is_some() => {
                match m {
                    Some(Ok(m)) => {
                        let ack = match deliver(m.message.payload.clone()).await {
                            Some(false) => jetstream::AckKind::Nak(Some(Duration::from_millis(200))),
                            // Delivered, or malformed (never deliverable): done.
                            _ => jetstream::AckKind::Ack,
                        };
                        if let Err(e) = m.ack_with(ack).await {
                            debug!(error = %e, "cluster: shared message ack not sent");
                        }
                    }
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
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 10_000,
                inactive_threshold: Duration::from_secs(3600),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// Receives the QoS 1/2 messages of the other nodes from the stream: one ordered consumer (an
/// ephemeral, single-replica consumer that the client recreates after a gap), filtered on this
/// node's interests, starting after the last message it handed on. When the interests change
/// the consumer is recreated from there with the new filters, so a message stored while a
/// subscription was being added is not missed once the interest is in place. It starts at the
/// stream's end: a node that starts does not replay history (offline sessions on other nodes'
/// behalf are the planned session replay's job).
async fn stored_task(inner: Arc<Inner>, broker: BrokerHandle) {
    let mut assets = inner.assets.clone();
    if assets.wait_for(Option::is_some).await.is_err() {
        return;
    }
    let mut changed = inner.interest_changed.subscribe();
    // The last message handed on, and the interests the consumer that delivered it served.
    let mut last: Option<u64> = None;
    let mut served: HashSet<Interest> = HashSet::new();
    loop {
        let mut stream = match inner.js.get_stream(STREAM).await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "cluster: stream not reachable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Where the stream ends now: a new interest starts after it (a new subscription does
        // not get what was published before it), the interests already served go on from
        // `last`, so messages up to `end` are handed on only for those.
        let end = match stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => {
                debug!(error = %e, "cluster: stream info failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let start = last.map_or(end + 1, |seq| seq + 1);
        changed.borrow_and_update();
        let wanted = inner.wanted();
        let mut filters: Vec<String> = Vec::new();
        for i in &wanted {
            filters.extend(subject::interest_subjects(subject::STORED, i));
        }
        if !wanted.is_empty() && !wanted.contains(&Interest::All) {
            filters.extend(subject::always_subjects(subject::STORED));
        }
        if filters.is_empty() {
            // Nothing wanted: wait for a subscription (and start after what is there then).
            last = None;
            served.clear();
            if changed.changed().await.is_err() {
                return;
            }
            continue;
        }
        let earlier = std::mem::replace(&mut served, wanted.clone());
        let old_only = move |topic: &str| {
            earlier.contains(&Interest::All)
                || earlier.contains(&subject::first_level_interest(topic))
        };
        let Ok(stream) = inner.js.get_stream(STREAM).await else {
            continue;
        };
        let config = jetstream::consumer::pull::OrderedConfig {
            filter_subjects: filters,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        };
        debug!(start, filters = ?config.filter_subjects, "cluster: stream consumer");
        let messages = match stream.create_consumer(config).await {
            Ok(c) => c.messages().await,
            Err(e) => {
                debug!(error = %e, "cluster: stream consumer not created; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "cluster: stream consumer failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                r = changed.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break; // new filters, from `last`
                }
                m = messages.next() => {
                    match m {
                        Some(Ok(m)) => {
                            let seq = m.info().map(|i| i.stream_sequence).ok();
                            if let Some(seq) = seq {
                                last = Some(seq);
                            }
                            match wire::decode(m.message.payload.clone(), Instant::now(), unix_ms()) {
                                Ok(r) if r.node == inner.config.node => {}
                                // Stored before a new interest appeared: only for the old ones.
                                Ok(r) if seq.is_some_and(|q| q <= end) && !old_only(&r.message.topic) => {}
                                Ok(r) => {
                                    inner.counters.received.fetch_add(1, Ordering::Relaxed);
                                    broker.publish_remote(r.message).await;
                                }
                                Err(e) => {
                                    inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
                                    debug!(error = %e, "cluster: malformed stored message ignored");
                                }
                            }
                        }
                        Some(Err(e)) => {
                            debug!(error = %e, "cluster: stream consumer error; recreating");
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
    }
}

/// Applies the cluster's retained messages to this node, in the bucket's order; at start (and
/// after each reconnect of the watch) removes the local ones the cluster no longer has.
async fn retained_task(inner: Arc<Inner>, broker: BrokerHandle) {
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
        if !node_local(&topic) && !present.contains(&topic) && broker.delete_retained(&topic) {
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

/// Says every [`HEARTBEAT`] that this node is alive (the bucket forgets it after [`NODE_TTL`]).
async fn heartbeat_task(inner: Arc<Inner>) {
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

/// A change to this node's wills in `MQ_WILLS`.
#[derive(Debug)]
enum WillOp {
    Put(String, Bytes),
    Delete(String),
    /// Answered once every op before it is done.
    Flush(oneshot::Sender<()>),
}

fn will_key(node: &str, client_id: &str) -> String {
    use base64::Engine as _;
    format!(
        "{node}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(client_id)
    )
}

/// How often a node looks for the wills of nodes that died.
pub const REAP_EVERY: Duration = Duration::from_secs(3);

/// Keeps this node's wills in `MQ_WILLS` and publishes those of nodes that died.
///
/// At start, the wills this node's name left from an earlier run are published first (their
/// connections died with that run). Then, every [`REAP_EVERY`], when a node has left the
/// liveness bucket (heartbeats stopped for [`NODE_TTL`]), each survivor tries to take each of
/// its wills with a compare-and-set delete; the one that wins publishes it, so a will is
/// published once. A node that comes back after being taken for dead (a long pause, a
/// partition) may publish a will again when its client then disconnects.
async fn wills_task(
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
    reap(&inner, &broker, &a.wills, &|n: &str| n == node).await;
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
                if gone && now.contains(&node) {
                    reap(&inner, &broker, &a.wills, &|n: &str| n != node && !now.contains(n)).await;
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

/// Publishes (once, cluster-wide) the wills whose node `dead` says is gone.
async fn reap(
    inner: &Inner,
    broker: &BrokerHandle,
    wills: &jetstream::kv::Store,
    dead: &(dyn Fn(&str) -> bool + Sync),
) {
    let Ok(mut keys) = wills.keys().await else {
        return;
    };
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
        // Whoever deletes this revision first publishes it.
        if wills
            .delete_expect_revision(&key, Some(entry.revision))
            .await
            .is_err()
        {
            continue;
        }
        match wire::decode(entry.value, Instant::now(), unix_ms()) {
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
async fn takeover_task(
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

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
