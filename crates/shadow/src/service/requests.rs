//! The request task: the internal MQTT 5 session `$hermod/shadow`, the engine applied to each
//! request, the store written, then the replies published and the request acknowledged.
//!
//! **Order per thing.** Requests for one thing (classic and named shadows together, and
//! `$hermod` and `$aws` alike: they are the same documents) are handled one at a time, in
//! arrival order: a request waits while the one before it is being committed. Requests for
//! different things go on concurrently, so the store's group commit writes many things' updates
//! in one fsync. One loop does all of this (no task per thing): the engine is synchronous and
//! fast, and only the commit waits, on a spawned future that reports back.
//!
//! **Durability.** An update's (or delete's) new document is committed with
//! [`KvSpace::put`] before any of its replies is published, so `accepted` is never published
//! for what `kill -9` would lose. If the commit fails, the request is answered 500 instead;
//! the store keeps the write queued and commits it once the disk works (see `api::kv`), so
//! a later `get` may show that update: a client that got 500 should `get` before retrying.
//!
//! **Session.** Clean (non-persistent): requests are not written to the store on their way in,
//! which would double the disk writes of every update. A request the broker delivered but the
//! service had not answered when the broker stopped is lost, as AWS does not promise either:
//! clients retry on a timeout (the AWS SDKs do), using `clientToken` and `version` to tell.
//!
//! The broker holds at most 100,000 requests for the service beyond the 1,000 it has in
//! flight (its session's queue limit); past that, new requests are dropped (counted by the
//! broker as drops for `$hermod/shadow`), which only a sustained overload reaches.
//!
//! **Replies** are published at QoS 1, not retained. A request (MQTT 5) with a Response Topic
//! gets its `accepted`/`rejected` reply there, with its Correlation Data, instead of on the
//! standard topic; `update/delta` and `update/documents` go to the standard topics always
//! (other clients watch those). The service publishes as the broker, past the ACL, so a
//! Response Topic is used only if the requester may publish there itself
//! (`BrokerHandle::may_publish` with the requester's client id and username, which the broker
//! stamps on the delivery); one starting with `$` never is. Otherwise the standard topic is used. The request is acknowledged (PUBACK) after
//! its replies are written.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hermod_broker::api::{
    BrokerHandle, INTERNAL_CLIENT_PREFIX, InternalOptions, KvSpace, ORIGIN_CLIENT_ID,
    ORIGIN_USERNAME,
};
use hermod_client::{ConnectOptions, Connection, PacketIdAllocator};
use hermod_proto::{
    Packet, PacketId, ProtocolVersion, Publish, PublishAck, PublishProperties, QoS, ReasonCode,
    Subscribe, SubscribeProperties, SubscriptionOptions,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::stats::Counters;
use crate::Shadow;
use crate::engine::{Engine, Outcome, StoreChange};
use crate::error::Rejection;
use crate::topic::{self, Prefix, Request};

/// Requests the broker may have in flight to the service at once (its Receive Maximum): how
/// many can wait here (per-thing queues, commits under way) before the broker keeps the rest.
const RECEIVE_MAX: u16 = 1000;
/// Why the connection ended when the broker is stopping.
const SHUTTING_DOWN: &str = "the broker is shutting down";

/// The service's client id.
pub(crate) fn client_id() -> String {
    format!("{INTERNAL_CLIENT_PREFIX}shadow")
}

/// Where a shadow is stored in the `"shadow"` namespace: `{thing}` for the classic shadow,
/// `{thing}/name/{shadow}` for a named one (names never contain `/`).
pub fn store_key(request: &Request) -> String {
    match &request.shadow {
        None => request.thing.clone(),
        Some(name) => format!("{}/name/{name}", request.thing),
    }
}

/// The thing and the shadow name (`None`: the classic shadow) of a key from [`store_key`].
#[must_use]
pub fn split_store_key(key: &str) -> (&str, Option<&str>) {
    match key.split_once("/name/") {
        Some((thing, name)) => (thing, Some(name)),
        None => (key, None),
    }
}

pub(crate) struct RequestTask {
    pub(crate) handle: BrokerHandle,
    pub(crate) engine: Arc<Engine>,
    pub(crate) kv: KvSpace,
    pub(crate) counters: Arc<Counters>,
    pub(crate) aws_compat: bool,
    pub(crate) max_pending_per_thing: usize,
    /// Shadows one thing may have, and shadows in all ([`super::ShadowConfig`]).
    pub(crate) max_shadows_per_thing: usize,
    pub(crate) max_shadows: usize,
    pub(crate) stop: watch::Receiver<bool>,
    /// Requests from [`ShadowClient`]s.
    pub(crate) local: mpsc::Receiver<LocalRequest>,
}

/// One request, from its PUBLISH to its PUBACK.
struct Job {
    request: Request,
    payload: Bytes,
    packet_id: Option<PacketId>,
    /// A usable v5 Response Topic, with the Correlation Data to send back.
    response: Option<(String, Option<Bytes>)>,
    /// Set while its document is being committed: what to publish once it is.
    outcome: Option<Outcome>,
    /// A request made in process ([`ShadowClient`]): its `accepted`/`rejected` answer goes here
    /// instead of being published (delta and documents are published as for any request).
    answer: Option<oneshot::Sender<Answer>>,
}

/// The answer to a request made through a [`ShadowClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `accepted` (true) or `rejected`.
    pub accepted: bool,
    /// The reply document (AWS's error document when rejected).
    pub payload: Vec<u8>,
}

/// A request made in process, e.g. by the admin API.
pub(crate) struct LocalRequest {
    pub(crate) request: Request,
    pub(crate) payload: Bytes,
    pub(crate) answer: oneshot::Sender<Answer>,
}

/// Makes shadow requests in process, through the service's own queue: the same order per
/// thing, the same commit before the answer, the same delta and documents published. Cheap to
/// clone. For the admin API and `hermod ctl`, which are not MQTT clients.
#[derive(Debug, Clone)]
pub struct ShadowClient {
    pub(crate) tx: mpsc::Sender<LocalRequest>,
}

/// The shadow service is not running (disabled, stopping, or between two connections).
#[derive(Debug, thiserror::Error)]
#[error("the shadow service is not running")]
pub struct ShadowUnavailable;

impl ShadowClient {
    /// Sends `payload` to the operation of `request` and waits for the answer.
    ///
    /// # Errors
    /// [`ShadowUnavailable`] when the service does not take or answer it.
    pub async fn request(
        &self,
        request: Request,
        payload: Bytes,
    ) -> Result<Answer, ShadowUnavailable> {
        let (answer, rx) = oneshot::channel();
        self.tx
            .send(LocalRequest {
                request,
                payload,
                answer,
            })
            .await
            .map_err(|_| ShadowUnavailable)?;
        rx.await.map_err(|_| ShadowUnavailable)
    }
}

/// A commit finished: for the job at the front of `thing`'s queue.
struct Committed {
    generation: u64,
    thing: String,
    result: Result<(), String>,
}

/// What goes out, in order: replies (QoS 1, need a packet id) and PUBACKs of requests.
enum Out {
    Publish(Box<Publish>),
    Ack(PacketId),
}

/// What one connection keeps.
struct State {
    generation: u64,
    /// Things with a request under way; the front is the one being handled.
    queues: HashMap<String, VecDeque<Job>>,
    out: VecDeque<Out>,
    inflight: usize,
    server_receive_max: usize,
    ids: PacketIdAllocator,
    done_tx: mpsc::UnboundedSender<Committed>,
}

type Writer = hermod_client::PacketWriter<tokio::io::WriteHalf<tokio::io::DuplexStream>>;

enum End {
    Stop,
    Lost(String),
}

/// The clock the service stamps shadows with: Unix seconds.
#[must_use]
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl RequestTask {
    pub(crate) async fn run(mut self) {
        purge_expired_tombstones(&self.kv, now_secs()).await;
        let mut generation = 0;
        loop {
            generation += 1;
            match self.session(generation).await {
                End::Stop => return,
                End::Lost(why) => {
                    if *self.stop.borrow() || why == SHUTTING_DOWN {
                        debug!("shadow service stopped: {why}");
                        return;
                    }
                    warn!("shadow service connection lost ({why}); reconnecting in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.stop.changed() => return,
                    }
                }
            }
        }
    }

    fn filters(&self) -> Vec<(String, SubscriptionOptions)> {
        let mut prefixes = vec![Prefix::Hermod];
        if self.aws_compat {
            prefixes.push(Prefix::Aws);
        }
        prefixes
            .into_iter()
            .flat_map(topic::subscription_filters)
            .map(|f| {
                (
                    f.to_owned(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        // Replies never match these filters (other levels), and a reply sent to
                        // a Response Topic that looks like a request does not come back either.
                        no_local: true,
                        ..SubscriptionOptions::default()
                    },
                )
            })
            .collect()
    }

    /// One internal connection, from CONNECT to its end.
    async fn session(&mut self, generation: u64) -> End {
        let options = InternalOptions {
            max_queued_messages: 100_000,
            ..InternalOptions::default()
        };
        let stream = self.handle.connect_internal(options);
        let mut conn = Connection::over(stream, ProtocolVersion::V5);
        let mut opts = ConnectOptions::new(client_id())
            .version(ProtocolVersion::V5)
            .clean_start(true)
            .session_expiry(0);
        opts.receive_maximum = Some(RECEIVE_MAX);
        let ack = match conn.handshake(&opts).await {
            Ok(a) => a,
            Err(e) => return End::Lost(format!("CONNECT: {e}")),
        };
        let server_receive_max = usize::from(ack.properties.receive_maximum.unwrap_or(u16::MAX));
        let mut ids = PacketIdAllocator::new();
        let Some(pid) = ids.allocate() else {
            return End::Lost("no packet id".into());
        };
        let sub = Packet::Subscribe(Subscribe {
            packet_id: pid,
            filters: self.filters(),
            properties: SubscribeProperties::default(),
        });
        if let Err(e) = conn.send(&sub).await {
            return End::Lost(format!("SUBSCRIBE: {e}"));
        }
        info!(aws_compat = self.aws_compat, "shadow service running");
        let (mut reader, mut writer) = conn.split();
        // The reader never waits on this loop: the broker sends at most RECEIVE_MAX PUBLISHes
        // plus one answer per packet this loop sends, so the channel stays bounded.
        let (pkt_tx, mut pkt_rx) = mpsc::unbounded_channel();
        let read = tokio::spawn(async move {
            while let Ok(Some(p)) = reader.recv().await {
                if pkt_tx.send(p).is_err() {
                    return;
                }
            }
        });
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Committed>();
        let mut state = State {
            generation,
            queues: HashMap::new(),
            out: VecDeque::new(),
            inflight: 0,
            server_receive_max,
            ids,
            done_tx,
        };
        let end = loop {
            tokio::select! {
                biased;
                _ = self.stop.changed() => break End::Stop,
                Some(c) = done_rx.recv() => self.on_committed(c, &mut state),
                Some(l) = self.local.recv() => {
                    let job = Job {
                        request: l.request,
                        payload: l.payload,
                        packet_id: None,
                        response: None,
                        outcome: None,
                        answer: Some(l.answer),
                    };
                    self.enqueue(job, &mut state);
                }
                p = pkt_rx.recv() => match p {
                    Some(p) => {
                        if let Err(why) = self.on_packet(p, &mut state) {
                            break End::Lost(why);
                        }
                    }
                    None => break End::Lost("the broker closed the connection".into()),
                },
            }
            drain(&mut state, &mut writer);
            if writer.pending_write() > 0
                && let Err(e) = writer.flush().await
            {
                break End::Lost(format!("write: {e}"));
            }
        };
        read.abort();
        if matches!(end, End::Stop) {
            let _ = writer.send(&Packet::Disconnect(Default::default())).await;
        }
        end
    }

    fn on_packet(&self, p: Packet, state: &mut State) -> Result<(), String> {
        match p {
            Packet::Publish(p) => self.on_publish(p, state),
            Packet::PublishAck(a) => {
                state.ids.release(a.packet_id);
                state.inflight = state.inflight.saturating_sub(1);
            }
            Packet::SubscribeAck(a) if a.reasons.iter().any(|r| r.is_error()) => {
                warn!(reasons = ?a.reasons, "a shadow topic filter was refused");
            }
            Packet::Disconnect(d) if d.reason == ReasonCode::SERVER_SHUTTING_DOWN => {
                return Err(SHUTTING_DOWN.to_owned());
            }
            Packet::Disconnect(d) => return Err(format!("DISCONNECT {:?}", d.reason)),
            _ => {}
        }
        Ok(())
    }

    fn on_publish(&self, p: Publish, state: &mut State) {
        let Some(request) = topic::parse(&p.topic) else {
            // Not a request (a reply topic a client published to, an unknown operation).
            ack(p.packet_id, state);
            return;
        };
        // The requester, as the broker stamped it on the delivery: the reply goes to its
        // Response Topic only if it may publish there itself (the service publishes past the
        // ACL, so it must not write where the requester could not).
        let origin = |key: &str| {
            p.properties
                .user_properties
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let requester = origin(ORIGIN_CLIENT_ID).unwrap_or_default().to_owned();
        let requester_user = origin(ORIGIN_USERNAME).map(str::to_owned);
        let response = p
            .properties
            .response_topic
            .filter(|t| usable_response_topic(t))
            .filter(|t| {
                let allowed = self
                    .handle
                    .may_publish(&requester, requester_user.as_deref(), t);
                if !allowed {
                    debug!(client_id = %requester, topic = %t, "Response Topic not writable by the requester: standard topic used");
                }
                allowed
            })
            .map(|t| (t, p.properties.correlation_data));
        let job = Job {
            request,
            payload: p.payload,
            packet_id: p.packet_id,
            response,
            outcome: None,
            answer: None,
        };
        self.enqueue(job, state);
    }

    /// Queues `job` behind its thing's earlier requests (or refuses it with 429).
    fn enqueue(&self, job: Job, state: &mut State) {
        let thing = job.request.thing.clone();
        let queue = state.queues.entry(thing.clone()).or_default();
        if queue.len() >= self.max_pending_per_thing {
            let outcome = Engine::reject_payload(
                &job.request,
                Rejection::throttled(),
                &job.payload,
                now_secs(),
            );
            self.finish(job, outcome, state);
            return;
        }
        queue.push_back(job);
        if queue.len() == 1 {
            self.advance(&thing, state);
        }
    }

    /// Handles `thing`'s requests from the front of its queue until one waits for its commit
    /// (or none is left).
    fn advance(&self, thing: &str, state: &mut State) {
        loop {
            let Some(queue) = state.queues.get_mut(thing) else {
                return;
            };
            let Some(job) = queue.front_mut() else {
                state.queues.remove(thing);
                return;
            };
            let now = now_secs();
            let key = store_key(&job.request);
            let current = match self.kv.get(&key).map(|b| Shadow::from_bytes(&b)) {
                None => Ok(None),
                Some(Ok(s)) => Ok(Some(s)),
                Some(Err(e)) => Err(e),
            };
            let new_key = matches!(current, Ok(None));
            let outcome = match current {
                Ok(current) => {
                    let outcome =
                        self.engine
                            .handle(&job.request, &job.payload, current.as_ref(), now);
                    match outcome.store {
                        Some(_) if new_key => match self.over_shadow_limits(&job.request) {
                            Some(why) => Engine::reject_payload(
                                &job.request,
                                Rejection::bad_request(why),
                                &job.payload,
                                now,
                            ),
                            None => outcome,
                        },
                        _ => outcome,
                    }
                }
                Err(e) => {
                    warn!(key, error = %e, "stored shadow cannot be read; answering 500");
                    Engine::reject_payload(&job.request, Rejection::internal(), &job.payload, now)
                }
            };
            if let Some(StoreChange::Put(shadow)) = &outcome.store {
                let bytes = Bytes::from(shadow.to_bytes());
                job.outcome = Some(outcome);
                let kv = self.kv.clone();
                let tx = state.done_tx.clone();
                let generation = state.generation;
                let thing = thing.to_owned();
                tokio::spawn(async move {
                    let result = kv.put(&key, bytes).await.map_err(|e| e.to_string());
                    let _ = tx.send(Committed {
                        generation,
                        thing,
                        result,
                    });
                });
                return;
            }
            let Some(job) = queue.pop_front() else {
                return;
            };
            self.finish(job, outcome, state);
        }
    }

    /// Why one more shadow may not be created for `request`'s thing, if it may not: any client
    /// may create its own thing's shadows, so their number is bounded, per thing and in all.
    fn over_shadow_limits(&self, request: &Request) -> Option<String> {
        let thing = &request.thing;
        let of_thing = self.kv.count_prefix(&format!("{thing}/name/"))
            + usize::from(self.kv.get(thing).is_some());
        if of_thing >= self.max_shadows_per_thing {
            return Some(format!(
                "Too many shadows for this thing (limit {})",
                self.max_shadows_per_thing
            ));
        }
        if self.kv.len() >= self.max_shadows {
            return Some(format!("Too many shadows (limit {})", self.max_shadows));
        }
        None
    }

    fn on_committed(&self, c: Committed, state: &mut State) {
        if c.generation != state.generation {
            // A commit of an earlier connection: its request went with that connection.
            return;
        }
        let Some(mut job) = state.queues.get_mut(&c.thing).and_then(VecDeque::pop_front) else {
            return;
        };
        let outcome = match (c.result, job.outcome.take()) {
            (Ok(()), Some(outcome)) => outcome,
            (result, _) => {
                if let Err(e) = result {
                    warn!(thing = %c.thing, error = %e, "shadow not committed; answering 500");
                }
                Engine::reject_payload(
                    &job.request,
                    Rejection::internal(),
                    &job.payload,
                    now_secs(),
                )
            }
        };
        self.finish(job, outcome, state);
        self.advance(&c.thing, state);
    }

    /// Counts the answer, queues its replies and then the request's PUBACK.
    fn finish(&self, job: Job, outcome: Outcome, state: &mut State) {
        let op = job.request.op;
        if outcome.is_accepted() {
            self.counters.accepted(op);
        } else {
            self.counters.rejected(op, rejection_code(&outcome));
        }
        let answer_suffix = if outcome.is_accepted() {
            "/accepted"
        } else {
            "/rejected"
        };
        let answer_topic = format!("{}{answer_suffix}", job.request.topic());
        let mut answer = job.answer;
        for reply in outcome.replies {
            if reply.topic == answer_topic
                && let Some(tx) = answer.take()
            {
                let _ = tx.send(Answer {
                    accepted: answer_suffix == "/accepted",
                    payload: reply.payload,
                });
                continue;
            }
            let (topic, correlation_data) = match &job.response {
                Some((topic, data)) if reply.topic == answer_topic => (topic.clone(), data.clone()),
                _ => (reply.topic, None),
            };
            state.out.push_back(Out::Publish(Box::new(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic,
                packet_id: None,
                payload: Bytes::from(reply.payload),
                properties: PublishProperties {
                    correlation_data,
                    ..PublishProperties::default()
                },
            })));
        }
        if let Some(id) = job.packet_id {
            state.out.push_back(Out::Ack(id));
        }
    }
}

/// Drops the tombstones of shadows deleted more than 48 hours ago (the engine already ignores
/// them). Run before the service subscribes, so no request can race with a removal; so they go
/// at a restart, not while the broker runs. Returns how many went.
pub(crate) async fn purge_expired_tombstones(kv: &KvSpace, now: i64) -> usize {
    let mut purged = 0;
    for (key, value) in kv.entries() {
        if Shadow::from_bytes(&value).is_ok_and(|s| s.is_expired_tombstone(now)) {
            match kv.delete(&key).await {
                Ok(()) => purged += 1,
                Err(e) => warn!(key, error = %e, "expired shadow tombstone not removed"),
            }
        }
    }
    if purged > 0 {
        info!(purged, "expired shadow tombstones removed");
    }
    purged
}

/// The error code of a rejection's payload (`{"code": 409, ...}`); 500 if unreadable.
fn rejection_code(outcome: &Outcome) -> u16 {
    outcome
        .replies
        .first()
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
        .and_then(|v| v.get("code").and_then(serde_json::Value::as_u64))
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(500)
}

/// A Response Topic the service may publish to: a valid topic name not under `$`.
fn usable_response_topic(t: &str) -> bool {
    !t.is_empty() && !t.starts_with('$') && !t.contains(['+', '#', '\0']) && t.len() <= 65_535
}

fn ack(packet_id: Option<PacketId>, state: &mut State) {
    if let Some(id) = packet_id {
        state.out.push_back(Out::Ack(id));
    }
}

/// Writes what is waiting, in order, as far as the broker's receive maximum allows.
fn drain(state: &mut State, writer: &mut Writer) {
    loop {
        let id = match state.out.front() {
            None => return,
            Some(Out::Ack(_)) => None,
            Some(Out::Publish(_)) => {
                if state.inflight >= state.server_receive_max {
                    return;
                }
                let Some(id) = state.ids.allocate() else {
                    return;
                };
                Some(id)
            }
        };
        match state.out.pop_front() {
            Some(Out::Publish(mut p)) => {
                p.packet_id = id;
                let topic = p.topic.clone();
                if let Err(e) = writer.queue(&Packet::Publish(*p)) {
                    warn!(%topic, error = %e, "shadow reply not sent");
                    if let Some(id) = id {
                        state.ids.release(id);
                    }
                } else {
                    state.inflight += 1;
                }
            }
            Some(Out::Ack(ack)) => {
                let _ = writer.queue(&Packet::PublishAck(PublishAck::new(ack)));
            }
            None => return,
        }
    }
}
