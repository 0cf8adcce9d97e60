//! One rule's task: its internal connection, the rule applied to each message, the actions'
//! writes, and the acknowledgement once every action is done.
//!
//! A message is acknowledged to the broker only when all its actions have finished: written,
//! or failed for good (counted). A failure that may pass (a sink unreachable, its queue full,
//! a 5xx) is retried with backoff, for as long as it takes; meanwhile the message stays
//! unacknowledged in the rule's session, and once the inflight window is full the broker keeps
//! the rest in the store (on disk) — bounded by the rule's `max_buffered`. After a restart the
//! broker re-sends what was not acknowledged: writes are at-least-once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hermod_broker::api::{BrokerHandle, InternalOptions};
use hermod_client::{ConnectOptions, Connection, PacketIdAllocator};
use hermod_proto::{
    Packet, PacketId, ProtocolVersion, Publish, PublishAck, PublishProperties, QoS, ReasonCode,
    Subscribe, SubscribeProperties, SubscriptionOptions,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::actions::{Action, Job, Outcome, Payload, Result_};
use super::input;
use super::stats::{RuleCounters, bump};
use crate::sql::{Input, Rule, Source};

/// Messages the broker may have in flight to a rule at once (its Receive Maximum): how many
/// writes can be under way together, which is what lets the sinks batch.
pub(crate) const RECEIVE_MAX: u16 = 2000;
/// Why a rule's connection ended when the broker is stopping (the rule stops too, quietly).
const SHUTTING_DOWN: &str = "the broker is shutting down";
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Packets or completions handled in one turn of a rule's loop before its writes are flushed
/// (bounded, so that a flood of one kind cannot starve the other).
const TURN: usize = 256;

/// An action's result, sent back from a sink's callback.
pub(crate) struct Completion {
    pub(crate) generation: u64,
    pub(crate) job: u64,
    pub(crate) action: usize,
    pub(crate) outcome: Outcome,
}

/// A message under way: its packet id (QoS 1) and the actions not finished yet.
struct Pending {
    packet_id: Option<PacketId>,
    remaining: usize,
}

pub(crate) struct RuleTask {
    pub(crate) name: Arc<str>,
    pub(crate) rule: Rule,
    pub(crate) actions: Vec<Action>,
    pub(crate) counters: Arc<RuleCounters>,
    pub(crate) handle: BrokerHandle,
    pub(crate) options: InternalOptions,
    pub(crate) stop: watch::Receiver<bool>,
    /// A persistent session (messages buffered in the store) or a clean one (in memory).
    pub(crate) durable: bool,
}

/// What ended one connection of the rule.
enum End {
    Stop,
    Lost(String),
}

impl RuleTask {
    pub(crate) fn client_id(name: &str) -> String {
        format!("{}rule/{name}", hermod_broker::api::INTERNAL_CLIENT_PREFIX)
    }

    pub(crate) async fn run(mut self) {
        let mut generation = 0;
        loop {
            generation += 1;
            match self.session(generation).await {
                End::Stop => return,
                End::Lost(why) => {
                    if *self.stop.borrow() || why == SHUTTING_DOWN {
                        debug!(rule = %self.name, "rule stopped: {why}");
                        return;
                    }
                    warn!(rule = %self.name, "rule connection lost ({why}); reconnecting in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.stop.changed() => return,
                    }
                }
            }
        }
    }

    /// One internal connection, from CONNECT to its end.
    async fn session(&mut self, generation: u64) -> End {
        let stream = self.handle.connect_internal(self.options);
        let mut conn = Connection::over(stream, ProtocolVersion::V5);
        let mut opts = ConnectOptions::new(Self::client_id(&self.name))
            .version(ProtocolVersion::V5)
            .clean_start(!self.durable)
            .session_expiry(if self.durable { u32::MAX } else { 0 });
        opts.receive_maximum = Some(RECEIVE_MAX);
        let ack = match conn.handshake(&opts).await {
            Ok(a) => a,
            Err(e) => return End::Lost(format!("CONNECT: {e}")),
        };
        let server_receive_max = usize::from(ack.properties.receive_maximum.unwrap_or(u16::MAX));
        let filters: Vec<(String, SubscriptionOptions)> = self
            .rule
            .sources()
            .iter()
            .filter_map(|s| match s {
                Source::Topic(f) => Some((
                    f.clone(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        // What the rule republishes does not come back to it.
                        no_local: true,
                        retain_as_published: true,
                        ..SubscriptionOptions::default()
                    },
                )),
                Source::Event(_) => None,
            })
            .collect();
        let mut ids = PacketIdAllocator::new();
        if !filters.is_empty() {
            let Some(pid) = ids.allocate() else {
                return End::Lost("no packet id".into());
            };
            let sub = Packet::Subscribe(Subscribe {
                packet_id: pid,
                filters,
                properties: SubscribeProperties::default(),
            });
            if let Err(e) = conn.send(&sub).await {
                return End::Lost(format!("SUBSCRIBE: {e}"));
            }
        }
        info!(rule = %self.name, session_present = ack.session_present, "rule running");
        let (mut reader, mut writer) = conn.split();
        // The reader never waits on this loop: the broker sends at most RECEIVE_MAX PUBLISHes
        // plus one answer per packet this loop sends, so the channel stays bounded.
        let (pkt_tx, mut pkt_rx) = mpsc::unbounded_channel();
        let read = tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(Some(p)) => {
                        if pkt_tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => return,
                }
            }
        });
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
        let mut events = self.subscribe_events();
        let mut state = State {
            generation,
            pending: HashMap::new(),
            next_job: 0,
            retries: VecDeque::new(),
            republish_waiting: VecDeque::new(),
            republish_inflight: HashMap::new(),
            server_receive_max,
            ids,
            done_tx,
        };
        let end = loop {
            let next_retry = state.retries.front().map(|(at, _)| *at);
            tokio::select! {
                biased;
                _ = self.stop.changed() => break End::Stop,
                p = pkt_rx.recv() => match p {
                    Some(p) => {
                        if let Err(why) = self.on_packet(p, &mut state, &mut writer) {
                            break End::Lost(why);
                        }
                        // And what else has arrived, so that the writes of a burst reach the
                        // sinks together and its answers go out in one write.
                        let mut lost = None;
                        for _ in 1..TURN {
                            let Ok(p) = pkt_rx.try_recv() else { break };
                            if let Err(why) = self.on_packet(p, &mut state, &mut writer) {
                                lost = Some(why);
                                break;
                            }
                        }
                        if let Some(why) = lost {
                            break End::Lost(why);
                        }
                    }
                    None => break End::Lost("the broker closed the connection".into()),
                },
                Some(c) = done_rx.recv() => {
                    // A sink reports a whole batch at once: its acknowledgements go out in one
                    // write instead of one per message (each waking the broker's side).
                    self.on_completion(c, &mut state, &mut writer);
                    for _ in 1..TURN {
                        let Ok(c) = done_rx.try_recv() else { break };
                        self.on_completion(c, &mut state, &mut writer);
                    }
                }
                () = sleep_until(next_retry), if next_retry.is_some() => self.retry_due(&mut state, &mut writer),
                Some(e) = recv_event(&mut events), if events.is_some() => {
                    if let Some(i) = input::from_event(&e) {
                        self.on_input(&i, None, &mut state, &mut writer);
                    }
                }
            }
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

    fn subscribe_events(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<hermod_broker::api::Event>> {
        self.rule
            .sources()
            .iter()
            .any(|s| matches!(s, Source::Event(_)))
            .then(|| self.handle.events())
    }

    fn on_packet(&self, p: Packet, state: &mut State, writer: &mut Writer) -> Result<(), String> {
        match p {
            Packet::Publish(p) => {
                let input = input::from_publish(&p, &self.name);
                self.on_input(&input, p.packet_id, state, writer);
            }
            Packet::SubscribeAck(a) if a.reasons.iter().any(|r| r.is_error()) => {
                warn!(rule = %self.name, reasons = ?a.reasons, "a topic of the rule was refused");
            }
            Packet::PublishAck(a) => {
                state.ids.release(a.packet_id);
                if let Some((job, action)) = state.republish_inflight.remove(&a.packet_id) {
                    let outcome = if a.reason.is_error() {
                        Outcome::Failed(format!("republish refused: {:?}", a.reason))
                    } else {
                        Outcome::Done
                    };
                    self.finish(job, action, outcome, state, writer);
                    self.send_waiting_republish(state, writer);
                }
            }
            Packet::Disconnect(d) if d.reason == ReasonCode::SERVER_SHUTTING_DOWN => {
                return Err(SHUTTING_DOWN.to_owned());
            }
            Packet::Disconnect(d) => return Err(format!("DISCONNECT {:?}", d.reason)),
            _ => {}
        }
        Ok(())
    }

    /// Runs the rule on one input and starts its actions (or acknowledges it at once).
    fn on_input(
        &self,
        input: &Input,
        packet_id: Option<PacketId>,
        state: &mut State,
        writer: &mut Writer,
    ) {
        bump(&self.counters.matched);
        let row = match self.rule.apply(input) {
            Ok(Some(row)) => row,
            Ok(None) => {
                bump(&self.counters.no_result);
                ack(packet_id, writer, &self.counters);
                return;
            }
            Err(e) => {
                bump(&self.counters.failed);
                debug!(rule = %self.name, topic = %input.topic, error = %e.message, "rule failed on a message");
                ack(packet_id, writer, &self.counters);
                return;
            }
        };
        bump(&self.counters.passed);
        let job = state.next_job;
        state.next_job += 1;
        state.pending.insert(
            job,
            Pending {
                packet_id,
                remaining: self.actions.len(),
            },
        );
        for (i, action) in self.actions.iter().enumerate() {
            match action.render(&row) {
                Ok(payload) => {
                    bump(&self.counters.actions[i].pending);
                    self.submit(
                        Job {
                            job,
                            action: i,
                            payload,
                            attempt: 0,
                        },
                        state,
                        writer,
                    );
                }
                Err(e) => {
                    bump(&self.counters.actions[i].pending);
                    self.finish(job, i, Outcome::Failed(e), state, writer);
                }
            }
        }
    }

    fn submit(&self, job: Job, state: &mut State, writer: &mut Writer) {
        if let Payload::Republish { .. } = job.payload {
            state.republish_waiting.push_back(job);
            self.send_waiting_republish(state, writer);
            return;
        }
        let tx = state.done_tx.clone();
        let generation = state.generation;
        let (id, action) = (job.job, job.action);
        let retry = job.clone();
        let report = move |r: Result_| {
            let outcome = match r {
                Result_::Ok => Outcome::Done,
                Result_::Permanent(why) => Outcome::Failed(why),
                Result_::Transient(why) => Outcome::Retry(why, Box::new(retry)),
            };
            let _ = tx.send(Completion {
                generation,
                job: id,
                action,
                outcome,
            });
        };
        if let Err(refused) = self.actions[action].send(&job.payload, report) {
            // The sink did not take it (queue full, not connected yet): try again later.
            self.schedule_retry(job, &refused, state);
        }
    }

    fn send_waiting_republish(&self, state: &mut State, writer: &mut Writer) {
        while let Some(job) = state.republish_waiting.front() {
            let Payload::Republish {
                topic,
                payload,
                qos,
                retain,
            } = &job.payload
            else {
                state.republish_waiting.pop_front();
                continue;
            };
            let packet_id = if *qos == QoS::AtMostOnce {
                None
            } else {
                if state.republish_inflight.len() >= state.server_receive_max.min(1000) {
                    return;
                }
                match state.ids.allocate() {
                    Some(id) => Some(id),
                    None => return,
                }
            };
            let publish = Packet::Publish(Publish {
                dup: false,
                qos: *qos,
                retain: *retain,
                topic: topic.clone(),
                packet_id,
                payload: payload.clone(),
                properties: PublishProperties::default(),
            });
            let Some(job) = state.republish_waiting.pop_front() else {
                return;
            };
            if let Err(e) = writer.queue(&publish) {
                if let Some(id) = packet_id {
                    state.ids.release(id);
                }
                self.finish(
                    job.job,
                    job.action,
                    Outcome::Failed(format!("republish: {e}")),
                    state,
                    writer,
                );
                continue;
            }
            match packet_id {
                Some(id) => {
                    state.republish_inflight.insert(id, (job.job, job.action));
                }
                None => self.finish(job.job, job.action, Outcome::Done, state, writer),
            }
        }
    }

    fn on_completion(&self, c: Completion, state: &mut State, writer: &mut Writer) {
        if c.generation != state.generation {
            // A write of an earlier connection: that message was re-sent to this one.
            return;
        }
        match c.outcome {
            Outcome::Retry(why, job) => {
                let job = *job;
                self.schedule_retry(job, &why, state);
            }
            outcome => self.finish(c.job, c.action, outcome, state, writer),
        }
    }

    fn schedule_retry(&self, mut job: Job, why: &str, state: &mut State) {
        let counters = &self.counters.actions[job.action];
        bump(&counters.retried);
        if job.attempt == 0 || job.attempt.is_power_of_two() {
            warn!(rule = %self.name, action = %counters.target, attempt = job.attempt + 1, "write failed, will retry: {why}");
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << job.attempt.min(10))
            .min(MAX_BACKOFF);
        job.attempt += 1;
        let at = Instant::now() + backoff;
        // Kept in deadline order (backoffs differ by attempt).
        let pos = state.retries.partition_point(|(t, _)| *t <= at);
        state.retries.insert(pos, (at, job));
    }

    fn retry_due(&self, state: &mut State, writer: &mut Writer) {
        let now = Instant::now();
        while state.retries.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, job)) = state.retries.pop_front() {
                self.submit(job, state, writer);
            }
        }
    }

    /// One action of a message is done (or failed for good); the message is acknowledged
    /// when it was its last.
    fn finish(
        &self,
        job: u64,
        action: usize,
        outcome: Outcome,
        state: &mut State,
        writer: &mut Writer,
    ) {
        let counters = &self.counters.actions[action];
        counters
            .pending
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        match outcome {
            Outcome::Done => bump(&counters.succeeded),
            Outcome::Failed(why) => {
                let n = counters
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n < 10 || n.is_power_of_two() {
                    warn!(rule = %self.name, action = %counters.target, failures = n + 1, "write failed for good, message skipped: {why}");
                }
            }
            Outcome::Retry(..) => {}
        }
        let Some(p) = state.pending.get_mut(&job) else {
            return;
        };
        p.remaining = p.remaining.saturating_sub(1);
        if p.remaining == 0 {
            let packet_id = p.packet_id;
            state.pending.remove(&job);
            ack(packet_id, writer, &self.counters);
        }
    }
}

/// What one connection of a rule keeps.
pub(crate) struct State {
    generation: u64,
    pending: HashMap<u64, Pending>,
    next_job: u64,
    /// Actions waiting for their next attempt, by deadline.
    retries: VecDeque<(Instant, Job)>,
    republish_waiting: VecDeque<Job>,
    republish_inflight: HashMap<PacketId, (u64, usize)>,
    server_receive_max: usize,
    ids: PacketIdAllocator,
    done_tx: mpsc::UnboundedSender<Completion>,
}

/// The write half of a rule's internal connection.
type Writer = hermod_client::PacketWriter<tokio::io::WriteHalf<tokio::io::DuplexStream>>;

fn ack(packet_id: Option<PacketId>, writer: &mut Writer, counters: &RuleCounters) {
    bump(&counters.acked);
    if let Some(id) = packet_id {
        let _ = writer.queue(&Packet::PublishAck(PublishAck::new(id)));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn recv_event(
    rx: &mut Option<tokio::sync::broadcast::Receiver<hermod_broker::api::Event>>,
) -> Option<hermod_broker::api::Event> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match r.recv().await {
            Ok(e) => return Some(e),
            // Events are best effort: a rule that falls behind skips some (counted by the
            // broker's event bus), it never slows the broker.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                *rx = None;
                return std::future::pending().await;
            }
        }
    }
}
