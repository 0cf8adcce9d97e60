//! Sessions that move between nodes.
//!
//! Every persistent session has one record in the bucket `MQ_SESS`, keyed by its client id:
//! the node that owns it, its owner identity, expiry and subscriptions, and a *checkpoint*, a
//! sequence number of the stream `MQ_MSGS` such that every QoS 1/2 message at or before it
//! that the session's filters match has been acknowledged by its client (or dropped).
//!
//! - **Ownership is fenced** by compare-and-set on the record's revision: a node writes a
//!   record only at the revision it last read or wrote. A node that finds the record changed
//!   under it has lost the session, and drops its own copy (disconnecting its connection).
//!   Two nodes can never both own a session.
//! - **A client connecting to another node** (`claim`): the new node reads the record; when
//!   its owner is alive it asks it (`mqc.sess.<node>`, request/reply) to give the session up:
//!   that node disconnects the client (v5 0x8E), ends its copy and answers with the session's
//!   last state. The new node then takes the record over (compare-and-set) and rebuilds the
//!   session (`session present` = 1). When the owner is dead (gone from `MQ_NODES`), the new
//!   node takes the record as it was last written.
//! - **Nothing unacknowledged is lost in the move** (`replay`): once the session's
//!   subscriptions are in place on the new node (so that anything newer reaches it live), the
//!   new node reads the stream from the checkpoint up to where its own stream consumer has
//!   handed messages on, and queues the ones the session's filters match. Messages the client
//!   had already acknowledged after the checkpoint come again: QoS 1/2 are at least once
//!   across a move (exactly once within a node).
//! - **The checkpoint** advances when the owner sees the session *drained* (nothing queued,
//!   nothing in flight): the stream position its consumer had reached just before it looked
//!   is then acknowledged. Records are written every [`SYNC`] when they changed, so a
//!   killed node's sessions replay at most the messages of the last few seconds twice.
//!
//! QoS 0 messages queued for an offline session do not move (they are at most once), nor do
//! delayed wills (a will of a node that dies is published by the wills' reaper).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use hermod_broker::api::{BrokerHandle, MovedSession, SessionState, WeakBrokerHandle};
use hermod_broker::message::Message;
use hermod_proto::{QoS, RetainHandling, SubscriptionOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::node::{Assets, Inner, STREAM, unix_ms, will_key};
use crate::subject::{self, Interest};
use crate::wire;

/// Bucket of persistent sessions' records, keyed by base64url(client id).
pub const SESSIONS_BUCKET: &str = "MQ_SESS";
/// How often a node writes the records of its sessions that changed.
pub const SYNC: Duration = Duration::from_secs(2);
/// How long a node waits for the owner of a session to give it up.
const RELEASE_WAIT: Duration = Duration::from_secs(6);
/// How long `replay` waits for this node's stream consumer to serve the session's filters.
const SERVED_WAIT: Duration = Duration::from_secs(8);

/// The record of one persistent session in `MQ_SESS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The node that owns it.
    pub node: String,
    /// The username of the identity that created it (`None`: anonymous).
    pub user: Option<String>,
    /// Session expiry interval in seconds (`None`: never).
    pub expiry: Option<u64>,
    /// Its subscriptions.
    pub subs: Vec<SubRecord>,
    /// Stream sequence up to which every matching message was acknowledged.
    pub checkpoint: u64,
    /// A connection holds it.
    pub online: bool,
    /// When its last connection ended (Unix ms), while offline.
    pub disconnected_ms: Option<u64>,
}

/// One subscription of a [`SessionRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubRecord {
    /// The full filter (`$share/...` included).
    pub filter: String,
    /// Maximum QoS.
    pub qos: u8,
    /// No Local.
    #[serde(default)]
    pub nl: bool,
    /// Retain As Published.
    #[serde(default)]
    pub rap: bool,
    /// Retain Handling.
    #[serde(default)]
    pub rh: u8,
    /// v5 subscription identifier.
    #[serde(default)]
    pub id: Option<u32>,
}

impl SubRecord {
    fn of((filter, o, id): &(String, SubscriptionOptions, Option<u32>)) -> Self {
        Self {
            filter: filter.clone(),
            qos: o.qos as u8,
            nl: o.no_local,
            rap: o.retain_as_published,
            rh: o.retain_handling as u8,
            id: *id,
        }
    }

    fn options(&self) -> (String, SubscriptionOptions, Option<u32>) {
        let options = SubscriptionOptions {
            qos: QoS::from_u8(self.qos).unwrap_or(QoS::AtMostOnce),
            no_local: self.nl,
            retain_as_published: self.rap,
            retain_handling: match self.rh {
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => RetainHandling::SendAtSubscribe,
            },
        };
        (self.filter.clone(), options, self.id)
    }
}

impl SessionRecord {
    fn expired(&self, now_ms: u64) -> bool {
        match (self.expiry, self.disconnected_ms) {
            (Some(e), Some(at)) => now_ms >= at.saturating_add(e.saturating_mul(1000)),
            _ => false,
        }
    }

    fn moved(&self) -> MovedSession {
        MovedSession {
            owner: self.user.as_deref().map(Arc::from),
            expiry: self.expiry.map(Duration::from_secs),
            subscriptions: self.subs.iter().map(SubRecord::options).collect(),
            position: self.checkpoint,
        }
    }
}

/// What the owner answers when asked to give a session up.
#[derive(Debug, Serialize, Deserialize)]
struct Released {
    /// An error: the session could not be given up (the new node refuses the client).
    error: Option<String>,
    /// The session as it ended here; `None`: there was none.
    state: Option<ReleasedState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReleasedState {
    user: Option<String>,
    expiry: Option<u64>,
    subs: Vec<SubRecord>,
    /// A newer checkpoint (the session was drained when it ended); `None`: the record's.
    checkpoint: Option<u64>,
}

/// What this node knows of one session it owns.
#[derive(Debug, Clone, Default)]
struct Owned {
    /// The record's revision as last read or written here (`None`: not written yet).
    revision: Option<u64>,
    checkpoint: u64,
    /// The record as last written here.
    written: Option<SessionRecord>,
}

/// The sessions side of a node (in `Inner`).
#[derive(Debug)]
pub(crate) struct Sessions {
    owned: Mutex<HashMap<String, Owned>>,
    /// The last stream sequence this node's consumer handed on (set before it is routed),
    /// or where the consumer started: every message at or before it that this node's
    /// subscriptions wanted has reached their mailboxes.
    pub(crate) position: AtomicU64,
    /// The interest generation the stream consumer serves now, and the stream's end when it
    /// started serving it (messages up to there are not handed on for interests new then).
    pub(crate) served: watch::Sender<(u64, u64)>,
    /// Sessions moved here from another node.
    pub(crate) moved_in: AtomicU64,
    /// Sessions given up to another node.
    pub(crate) moved_out: AtomicU64,
    /// Messages read back from the stream for moved sessions.
    pub(crate) replayed: AtomicU64,
    /// Local copies dropped because another node owns the session.
    pub(crate) conflicts: AtomicU64,
    /// Sessions whose record is to be written now (a subscription changed, the connection
    /// ended), and the wake-up of the task that writes them.
    dirty: Mutex<HashSet<String>>,
    dirty_notify: Notify,
    /// The broker, for `claim` when the cluster cannot be asked.
    broker: std::sync::OnceLock<WeakBrokerHandle>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            owned: Mutex::new(HashMap::new()),
            position: AtomicU64::new(0),
            served: watch::channel((0, 0)).0,
            moved_in: AtomicU64::new(0),
            moved_out: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            dirty: Mutex::new(HashSet::new()),
            dirty_notify: Notify::new(),
            broker: std::sync::OnceLock::new(),
        }
    }
}

impl Sessions {
    fn owned(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owned>> {
        self.owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client connected here: its session is this node's from now on (a new one starts
    /// at the current stream position: nothing before it was for it).
    pub(crate) fn connected(&self, client_id: &str) {
        let checkpoint = self.position.load(Ordering::SeqCst);
        self.owned()
            .entry(client_id.to_owned())
            .or_insert_with(|| Owned {
                checkpoint,
                ..Owned::default()
            });
    }

    /// [`hermod_broker::api::Backbone::session_changed`]: its record is written at once, not
    /// at the next [`SYNC`] (a subscription not yet recorded would not move).
    pub(crate) fn changed(&self, client_id: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(client_id.to_owned());
        self.dirty_notify.notify_one();
    }

    fn take_dirty(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_iter()
        .collect()
    }

    fn adopt(&self, client_id: &str, revision: u64, record: SessionRecord) {
        self.owned().insert(
            client_id.to_owned(),
            Owned {
                revision: Some(revision),
                checkpoint: record.checkpoint,
                written: Some(record),
            },
        );
    }

    pub(crate) fn set_broker(&self, broker: WeakBrokerHandle) {
        let _ = self.broker.set(broker);
    }

    /// Sessions owned here now.
    pub(crate) fn count(&self) -> usize {
        self.owned().len()
    }
}

/// The record's key: client ids may hold any character (and be long), keys may not.
#[must_use]
pub fn session_key(client_id: &str) -> String {
    crate::node::client_key(client_id)
}

fn release_subject(node: &str) -> String {
    format!("mqc.sess.{node}")
}

fn assets(inner: &Inner) -> Result<Assets, String> {
    inner
        .assets
        .borrow()
        .clone()
        .ok_or_else(|| "JetStream is not ready".to_owned())
}

/// A record read from the bucket: `(record, revision)`; the record is `None` for a deleted
/// (or unreadable) one, whose revision still fences the next write.
async fn read(
    bucket: &kv::Store,
    key: &str,
) -> Result<(Option<SessionRecord>, Option<u64>), String> {
    match bucket.entry(key).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => {
            let record = serde_json::from_slice(&e.value).ok();
            if record.is_none() {
                warn!(key, "cluster: unreadable session record ignored");
            }
            Ok((record, Some(e.revision)))
        }
        Ok(Some(e)) => Ok((None, Some(e.revision))),
        Ok(None) => Ok((None, None)),
        Err(e) => Err(format!("session record: {e}")),
    }
}

/// Writes `record` at `revision` (create when `None`); the new revision, or `Err` when
/// another node changed it first (or NATS failed).
async fn write(
    bucket: &kv::Store,
    key: &str,
    record: &SessionRecord,
    revision: Option<u64>,
) -> Result<u64, String> {
    let bytes = Bytes::from(serde_json::to_vec(record).map_err(|e| e.to_string())?);
    match revision {
        Some(rev) => bucket
            .update(key, bytes, rev)
            .await
            .map_err(|e| e.to_string()),
        None => bucket.create(key, bytes).await.map_err(|e| e.to_string()),
    }
}

/// [`hermod_broker::api::Backbone::claim`]: where the client id's session lives, moved here
/// when it lives on another node.
pub(crate) async fn claim(
    inner: Arc<Inner>,
    client_id: String,
    username: Option<String>,
    clean_start: bool,
    persistent: bool,
) -> Result<Option<MovedSession>, String> {
    match claim_in_cluster(&inner, &client_id, username, clean_start, persistent).await {
        Ok(m) => Ok(m),
        Err(Unsettled::Refused(e)) => Err(e),
        Err(Unsettled::Unreachable(e)) => {
            // The cluster cannot be asked (NATS away, JetStream not ready yet): a session that
            // ends with its connection needs nothing from it, and a session this node holds
            // is served as it is (another node can take it only from its last record, once
            // this node has been cut off past the liveness TTL; see docs/cluster.md).
            let here = inner
                .sessions
                .broker
                .get()
                .and_then(WeakBrokerHandle::upgrade)
                .is_some_and(|b| b.client(&client_id).is_some());
            if (clean_start && !persistent) || (here && !clean_start) {
                debug!(%client_id, error = %e, "cluster: not asked (unreachable); served here");
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Why `claim_in_cluster` did not settle where a session lives.
enum Unsettled {
    /// The cluster could not be asked at all (NATS, JetStream).
    Unreachable(String),
    /// It was asked, and the session cannot be had now (its node did not give it up, the
    /// record kept changing).
    Refused(String),
}

async fn claim_in_cluster(
    inner: &Arc<Inner>,
    client_id: &str,
    username: Option<String>,
    clean_start: bool,
    persistent: bool,
) -> Result<Option<MovedSession>, Unsettled> {
    use Unsettled::{Refused, Unreachable};
    let (inner, client_id) = (inner.clone(), client_id.to_owned());
    if !matches!(
        inner.client.connection_state(),
        async_nats::connection::State::Connected
    ) {
        return Err(Unreachable("not connected to NATS".into()));
    }
    let a = assets(&inner).map_err(Unreachable)?;
    let key = session_key(&client_id);
    let node = &inner.config.node;
    for _ in 0..4 {
        let (record, revision) = read(&a.sessions, &key).await.map_err(Unreachable)?;
        let Some(record) = record else {
            if !persistent {
                return Ok(None);
            }
            // No session anywhere: this node's from now on, recorded before CONNACK so that a
            // client bouncing to another node at once finds it here.
            let record = SessionRecord {
                node: node.clone(),
                user: username.clone(),
                expiry: None,
                subs: Vec::new(),
                checkpoint: inner.sessions.position.load(Ordering::SeqCst),
                online: true,
                disconnected_ms: None,
            };
            match write(&a.sessions, &key, &record, revision).await {
                Ok(rev) => {
                    inner.sessions.adopt(&client_id, rev, record);
                    return Ok(None);
                }
                Err(e) => {
                    debug!(%client_id, error = %e, "cluster: session record taken meanwhile; again");
                    continue;
                }
            }
        };
        if record.user != username {
            // Another identity's session: not taken from its node, nor discarded; the broker
            // refuses this client [sessions belong to an identity].
            return Ok(Some(record.moved()));
        }
        if record.node == *node {
            if let Some(rev) = revision {
                inner.sessions.adopt(&client_id, rev, record);
            }
            return Ok(None);
        }
        let alive = matches!(a.nodes.get(&record.node).await, Ok(Some(_)));
        let moved = if alive {
            match ask_release(&inner, &record.node, &client_id)
                .await
                .map_err(Refused)?
            {
                None => None,
                Some(s) => Some(SessionRecord {
                    user: s.user,
                    expiry: s.expiry,
                    subs: s.subs,
                    checkpoint: s.checkpoint.unwrap_or(record.checkpoint),
                    ..record
                }),
            }
        } else if record.expired(unix_ms()) {
            None
        } else {
            info!(%client_id, from = %record.node, "cluster: taking over the session of a node that is gone");
            Some(record)
        };
        match moved {
            Some(mut r) if !clean_start => {
                let from = std::mem::replace(&mut r.node, node.clone());
                r.online = true;
                r.disconnected_ms = None;
                match write(&a.sessions, &key, &r, revision).await {
                    Ok(rev) => {
                        // A will of the session waiting for its delay on its old node is
                        // cancelled by this connection [MQTT-3.1.3-9].
                        if let Err(e) = a.wills.delete(will_key(&from, &client_id)).await {
                            debug!(%client_id, error = %e, "cluster: delayed will not removed");
                        }
                        inner.sessions.adopt(&client_id, rev, r.clone());
                        inner.sessions.moved_in.fetch_add(1, Ordering::Relaxed);
                        info!(%client_id, subscriptions = r.subs.len(), checkpoint = r.checkpoint, "cluster: session moved here");
                        return Ok(Some(r.moved()));
                    }
                    Err(e) => {
                        debug!(%client_id, error = %e, "cluster: session record changed meanwhile; again");
                    }
                }
            }
            _ => {
                // Nothing to move (a clean start discards it; expired; gone): the record goes,
                // and a persistent session starts here afresh.
                let Some(rev) = revision else {
                    return Ok(None);
                };
                match a.sessions.delete_expect_revision(&key, Some(rev)).await {
                    Ok(()) if !persistent => return Ok(None),
                    Ok(()) => {}
                    Err(e) => {
                        debug!(%client_id, error = %e, "cluster: session record changed meanwhile; again");
                    }
                }
            }
        }
    }
    Err(Refused(
        "the session's record kept changing under concurrent connects".into(),
    ))
}

/// Asks `owner` to give `client_id`'s session up: `Ok(None)` when it had none.
async fn ask_release(
    inner: &Inner,
    owner: &str,
    client_id: &str,
) -> Result<Option<ReleasedState>, String> {
    let request = inner.client.request(
        release_subject(owner),
        Bytes::copy_from_slice(client_id.as_bytes()),
    );
    let reply = match tokio::time::timeout(RELEASE_WAIT, request).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return Err(format!("node {owner}, which holds the session: {e}")),
        Err(_) => {
            return Err(format!(
                "node {owner}, which holds the session, did not answer"
            ));
        }
    };
    let released: Released = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("node {owner}: unreadable answer: {e}"))?;
    if let Some(e) = released.error {
        return Err(format!("node {owner}: {e}"));
    }
    Ok(released.state)
}

/// [`hermod_broker::api::Backbone::replay`]: the stream's messages after the checkpoint that
/// the moved session's filters match, up to where this node's consumer has handed messages
/// on (newer ones reach the session live: its subscriptions are in place).
pub(crate) async fn replay(
    inner: Arc<Inner>,
    client_id: String,
    moved: MovedSession,
    limit: usize,
) -> Result<Vec<Message>, String> {
    let filters: Vec<String> = moved
        .subscriptions
        .iter()
        .filter(|(f, o, _)| !f.starts_with("$share/") && o.qos != QoS::AtMostOnce)
        .map(|(f, _, _)| f.clone())
        .collect();
    if filters.is_empty() {
        return Ok(Vec::new());
    }
    // Wait until the stream consumer serves the interests as they are now (the session's
    // subscriptions included), then read how far it got.
    let wanted = *inner.interest_changed.borrow();
    let mut served = inner.sessions.served.subscribe();
    let end = tokio::time::timeout(SERVED_WAIT, served.wait_for(|(g, _)| *g >= wanted))
        .await
        .map_err(|_| "this node's stream consumer did not start in time".to_owned())?
        .map_err(|_| "the cluster has stopped".to_owned())?
        .1;
    // Up to where the consumer has handed messages on, or skips them for interests that are
    // new to it: newer ones reach the session live.
    let upto = inner.sessions.position.load(Ordering::SeqCst).max(end);
    let from = moved.position.saturating_add(1);
    if from > upto {
        return Ok(Vec::new());
    }
    let mut subjects: Vec<String> = Vec::new();
    let interests: std::collections::HashSet<Interest> = filters
        .iter()
        .map(|f| subject::first_level_interest(f))
        .collect();
    if interests.contains(&Interest::All) {
        subjects.extend(subject::interest_subjects(subject::STORED, &Interest::All));
    } else {
        for i in &interests {
            subjects.extend(subject::interest_subjects(subject::STORED, i));
        }
        subjects.extend(subject::always_subjects(subject::STORED));
    }
    let stream = inner
        .js
        .get_stream(STREAM)
        .await
        .map_err(|e| format!("stream {STREAM}: {e}"))?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subjects: subjects,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| format!("replay consumer: {e}"))?;
    if consumer.cached_info().num_pending == 0 {
        // Nothing of its first levels since the checkpoint.
        return Ok(Vec::new());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("replay consumer: {e}"))?;
    let mut out = Vec::new();
    let mut first: Option<u64> = None;
    loop {
        // The consumer has nothing more to give once it reached `upto` (or the stream's end,
        // when messages up to `upto` did not match its filters).
        let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
        let m = match next {
            Err(_) | Ok(None) => break,
            Ok(Some(Err(e))) => return Err(format!("replay: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let Ok(info) = m.info() else { continue };
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > upto {
            break;
        }
        first.get_or_insert(seq);
        if let Ok(r) = wire::decode(
            m.message.payload.clone(),
            std::time::Instant::now(),
            unix_ms(),
        ) && filters
            .iter()
            .any(|f| hermod_proto::topic::matches(f, &r.message.topic))
        {
            out.push(r.message);
            if out.len() >= limit {
                warn!(%client_id, limit, "cluster: moved session: more missed messages than its queue holds; the rest are dropped");
                break;
            }
        }
        if seq >= upto || pending == 0 {
            break;
        }
    }
    if let Some(f) = first
        && f > from
    {
        // Only when what the consumer skipped is gone from the stream (max_age, max_bytes):
        // messages between did not match its filters otherwise.
        if let Ok(mut s) = inner.js.get_stream(STREAM).await
            && let Ok(i) = s.info().await
            && i.state.first_sequence > from
        {
            warn!(%client_id, from, first = i.state.first_sequence, "cluster: moved session: messages it missed were already removed from the stream ([cluster] max_age / max_bytes)");
        }
    }
    inner
        .sessions
        .replayed
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    debug!(%client_id, from, upto, replayed = out.len(), "cluster: moved session replayed");
    Ok(out)
}

/// Answers the other nodes' requests to give a session up, and keeps the records of this
/// node's sessions.
pub(crate) async fn sessions_task(inner: Arc<Inner>, broker: BrokerHandle) {
    let mut assets = inner.assets.clone();
    let Ok(a) = assets.wait_for(Option::is_some).await.map(|a| a.clone()) else {
        return;
    };
    let Some(a) = a else { return };
    let requests = loop {
        match inner
            .client
            .subscribe(release_subject(&inner.config.node))
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                warn!(error = %e, "cluster: cannot serve session hand-overs; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    reconcile(&inner, &broker, &a).await;
    let mut requests = requests;
    let mut tick = tokio::time::interval(SYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = requests.next() => {
                let Some(r) = r else { return };
                // Giving a session up waits for its connection to close: not in this loop.
                tokio::spawn(release(inner.clone(), broker.clone(), r));
            }
            _ = tick.tick() => sync(&inner, &broker, &a, None).await,
            () = inner.sessions.dirty_notify.notified() => {
                let ids = inner.sessions.take_dirty();
                sync(&inner, &broker, &a, Some(ids)).await;
            }
        }
    }
}

/// Gives a session up to the node that asks for it.
async fn release(inner: Arc<Inner>, broker: BrokerHandle, request: async_nats::Message) {
    let Some(reply) = request.reply else { return };
    let Ok(client_id) = std::str::from_utf8(&request.payload) else {
        return;
    };
    // From now on this node does not write the record (the asker does).
    inner.sessions.owned().remove(client_id);
    // Read before looking at the session: if it is drained, everything up to here was
    // acknowledged.
    let position = inner.sessions.position.load(Ordering::SeqCst);
    let existed = broker.client(client_id).is_some();
    let state = broker.release_session(client_id).await;
    let answer = match state {
        None if existed && broker.client(client_id).is_some() => Released {
            error: Some("its connection here did not close in time".into()),
            state: None,
        },
        None => Released {
            error: None,
            state: None,
        },
        Some(s) => {
            inner.sessions.moved_out.fetch_add(1, Ordering::Relaxed);
            Released {
                error: None,
                state: Some(ReleasedState {
                    user: s.owner.as_deref().map(str::to_owned),
                    expiry: s.expiry.map(|d| d.as_secs()),
                    subs: s.subscriptions.iter().map(SubRecord::of).collect(),
                    checkpoint: s.drained.then_some(position),
                }),
            }
        }
    };
    let bytes = serde_json::to_vec(&answer).unwrap_or_default();
    if let Err(e) = inner.client.publish(reply, bytes.into()).await {
        warn!(%client_id, error = %e, "cluster: cannot answer a session hand-over");
    }
}

/// Writes the records of this node's sessions that changed; drops the local copy of a
/// session whose record another node took.
async fn sync(inner: &Inner, broker: &BrokerHandle, a: &Assets, only: Option<Vec<String>>) {
    let owned: Vec<(String, Owned)> = {
        let all = inner.sessions.owned();
        match only {
            Some(ids) => ids
                .into_iter()
                .filter_map(|k| all.get(&k).cloned().map(|v| (k, v)))
                .collect(),
            None => all.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    };
    for (client_id, o) in owned {
        let key = session_key(&client_id);
        let position = inner.sessions.position.load(Ordering::SeqCst);
        let Some(state) = broker.session_state(&client_id).await else {
            if broker.client(&client_id).is_none() {
                // Ended here: its record goes (if it is still this node's).
                if let Some(rev) = o.revision {
                    let _ = a.sessions.delete_expect_revision(&key, Some(rev)).await;
                }
                forget(inner, &client_id, o.revision);
            }
            continue;
        };
        if state.expiry == Some(Duration::ZERO) {
            // Ends with its connection (and cannot become persistent [MQTT-3.14.2-2]): no
            // record (a stale one goes), and no more looking at it.
            let gone = match o.revision {
                Some(rev) => a
                    .sessions
                    .delete_expect_revision(&key, Some(rev))
                    .await
                    .is_ok(),
                None => true,
            };
            if gone {
                forget(inner, &client_id, o.revision);
            }
            continue;
        }
        let checkpoint = if state.drained {
            position.max(o.checkpoint)
        } else {
            o.checkpoint
        };
        let record = record_of(inner, &state, checkpoint, o.written.as_ref());
        if o.written.as_ref() == Some(&record) {
            continue;
        }
        match write(&a.sessions, &key, &record, o.revision).await {
            Ok(rev) => {
                let mut owned = inner.sessions.owned();
                if let Some(e) = owned.get_mut(&client_id)
                    && e.revision == o.revision
                {
                    *e = Owned {
                        revision: Some(rev),
                        checkpoint,
                        written: Some(record),
                    };
                }
            }
            Err(e) => {
                // Another node changed the record: if it owns the session now, the copy here
                // is stale and goes.
                match read(&a.sessions, &key).await {
                    Ok((Some(r), _)) if r.node != inner.config.node => {
                        warn!(%client_id, owner = %r.node, "cluster: session owned by another node; local copy dropped");
                        inner.sessions.conflicts.fetch_add(1, Ordering::Relaxed);
                        forget(inner, &client_id, o.revision);
                        broker.release_session(&client_id).await;
                    }
                    Ok((_, rev)) => {
                        debug!(%client_id, error = %e, "cluster: session record out of date; re-read");
                        if let Some(e) = inner.sessions.owned().get_mut(&client_id) {
                            e.revision = rev;
                            e.written = None;
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

fn forget(inner: &Inner, client_id: &str, revision: Option<u64>) {
    let mut owned = inner.sessions.owned();
    if owned.get(client_id).is_some_and(|e| e.revision == revision) {
        owned.remove(client_id);
    }
}

fn record_of(
    inner: &Inner,
    s: &SessionState,
    checkpoint: u64,
    before: Option<&SessionRecord>,
) -> SessionRecord {
    let mut subs: Vec<SubRecord> = s.subscriptions.iter().map(SubRecord::of).collect();
    subs.sort_by(|a, b| a.filter.cmp(&b.filter));
    SessionRecord {
        node: inner.config.node.clone(),
        user: s.owner.as_deref().map(str::to_owned),
        expiry: s.expiry.map(|d| d.as_secs()),
        subs,
        checkpoint,
        online: s.online,
        disconnected_ms: if s.online {
            None
        } else {
            before
                .and_then(|b| b.disconnected_ms)
                .or_else(|| Some(unix_ms()))
        },
    }
}

/// At start: the sessions this node restored from its store are its own only if the cluster
/// says so. One another node took over while this one was away is dropped here; one with no
/// record is recorded as this node's.
async fn reconcile(inner: &Inner, broker: &BrokerHandle, a: &Assets) {
    let mut dropped = 0usize;
    for c in broker.clients() {
        let client_id = c.client_id.to_string();
        if client_id.starts_with(hermod_broker::api::INTERNAL_CLIENT_PREFIX) {
            continue;
        }
        match read(&a.sessions, &session_key(&client_id)).await {
            Ok((Some(r), rev)) if r.node == inner.config.node => {
                if let Some(rev) = rev {
                    inner.sessions.adopt(&client_id, rev, r);
                }
            }
            Ok((Some(r), _)) if !r.expired(unix_ms()) => {
                debug!(%client_id, owner = %r.node, "cluster: restored session is owned elsewhere now");
                broker.release_session(&client_id).await;
                dropped += 1;
            }
            Ok(_) => inner.sessions.connected(&client_id),
            Err(e) => {
                warn!(%client_id, error = %e, "cluster: cannot check a restored session");
                inner.sessions.connected(&client_id);
            }
        }
    }
    if dropped > 0 {
        info!(
            dropped,
            "cluster: restored sessions that moved to other nodes meanwhile were dropped"
        );
    }
}
