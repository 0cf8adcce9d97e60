//! Broker-wide counters and histograms, read by logs, tests, `$SYS`, the admin API and
//! Prometheus (through [`Metrics::snapshot`]).
//!
//! # Off the shared cache lines
//! A counter that every connection task bumps on every message (one `AtomicU64` shared by all
//! cores) makes its cache line bounce between cores on the hot path. Here every counter is
//! split into [`SHARDS`] copies, each shard on cache lines of its own, and a thread adds to the
//! shard it was given (round-robin, once per thread): with a Tokio worker per core, no two
//! cores write the same line. Reading sums the shards (a few hundred loads: for scrapes and
//! `$SYS`, never on the hot path).
//!
//! Connection tasks go one step further: they count into a plain [`Local`] array (no atomic
//! at all) and [`Metrics::flush`] it into their thread's shard once per pass of their loop,
//! before writing to the socket, so a counter is up to date before the client sees the answer
//! to what it counted. Everything else (the delivery stage, mailboxes, the store writer) adds
//! to the shards directly.
//!
//! Histograms are sharded counters too (one per bucket, plus the sum in nanoseconds): no lock
//! anywhere. Gauges that only change at connect and close (open connections, connected
//! clients and their maximum) are plain atomics.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hermod_proto::{Packet, QoS};

use crate::api::{DropReason, Event, EventBus};
use crate::message::ClientId;

/// Copies of every counter. More than the cores of most brokers: threads beyond this share.
pub const SHARDS: usize = 16;

/// Slots of the fixed part of a shard (also the indices of a [`Local`]).
mod slot {
    use super::{DisconnectReason, HIST_SLOTS};

    pub(super) const MSG_RECEIVED: usize = 0; // + QoS (3)
    pub(super) const MSG_SENT: usize = 3; // + QoS (3)
    pub(super) const PUB_BYTES_RECEIVED: usize = 6;
    pub(super) const PUB_BYTES_SENT: usize = 7;
    pub(super) const BYTES_RECEIVED: usize = 8;
    pub(super) const BYTES_SENT: usize = 9;
    pub(super) const PACKETS_RECEIVED: usize = 10; // + packet type (16)
    pub(super) const PACKETS_SENT: usize = 26; // + packet type (16)
    pub(super) const DROPPED: usize = 42; // + DropReason (5)
    pub(super) const DISCONNECTS: usize = 47; // + DisconnectReason
    pub(super) const AUTH: usize = DISCONNECTS + DisconnectReason::ALL.len(); // success, failure
    pub(super) const ACL: usize = AUTH + 2; // (publish, subscribe, receive) x (allowed, denied)
    pub(super) const CLIENTS_EXPIRED: usize = ACL + 6;
    pub(super) const SOCKETS_ACCEPTED: usize = CLIENTS_EXPIRED + 1;
    pub(super) const CONNECTIONS_REFUSED: usize = SOCKETS_ACCEPTED + 1;
    pub(super) const PROTOCOL_ERRORS: usize = CONNECTIONS_REFUSED + 1;
    pub(super) const LATENCY: usize = PROTOCOL_ERRORS + 1; // buckets, +Inf, sum (ns)
    pub(super) const COMMIT: usize = LATENCY + HIST_SLOTS;
    /// Slots of the fixed part (at most 128: a [`super::Local`]'s dirty mask is a `u128`).
    pub(super) const FIXED: usize = COMMIT + HIST_SLOTS;
    /// Connects by listener and result follow the fixed part.
    pub(super) const CONNECTS: usize = FIXED;
}

const _: () = assert!(slot::FIXED <= 128);

/// Upper bounds (seconds) of the histogram buckets: 50 µs to 10 s.
pub const HISTOGRAM_BOUNDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
const BOUNDS_NS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Buckets, the +Inf bucket, and the sum in nanoseconds.
const HIST_SLOTS: usize = BOUNDS_NS.len() + 2;

fn bucket(ns: u64) -> usize {
    BOUNDS_NS
        .iter()
        .position(|&b| ns <= b)
        .unwrap_or(BOUNDS_NS.len())
}

/// Why a connection ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// DISCONNECT from the client (with or without its will).
    Normal,
    /// The peer closed or the socket failed without DISCONNECT.
    Lost,
    /// Another connection with the same client id took over.
    TakenOver,
    /// An operator disconnected the client.
    Kicked,
    /// No packet within 1.5 x keep alive.
    Keepalive,
    /// A malformed packet or protocol violation.
    ProtocolError,
    /// A store commit an acknowledgement waited for failed.
    StoreFailed,
    /// The broker shut down.
    Shutdown,
}

impl DisconnectReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 8] = [
        Self::Normal,
        Self::Lost,
        Self::TakenOver,
        Self::Kicked,
        Self::Keepalive,
        Self::ProtocolError,
        Self::StoreFailed,
        Self::Shutdown,
    ];

    /// Its label value (`taken_over`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Lost => "lost",
            Self::TakenOver => "taken_over",
            Self::Kicked => "kicked",
            Self::Keepalive => "keepalive",
            Self::ProtocolError => "protocol_error",
            Self::StoreFailed => "store_failed",
            Self::Shutdown => "shutdown",
        }
    }
}

/// How a CONNECT was answered, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectResult {
    /// CONNACK success.
    Success,
    /// A protocol level Hermod does not speak.
    UnsupportedProtocol,
    /// Client id not valid, or (3.1.1) a keep alive above the maximum.
    ClientIdRejected,
    /// An authentication method was asked for (none is supported).
    BadAuthMethod,
    /// Wrong credentials (or a source that could not answer, or no certificate identity).
    BadCredentials,
    /// Not authorised (anonymous refused, another identity's session).
    NotAuthorized,
    /// A `[[banned]]` entry matched.
    Banned,
    /// The address is blocked after repeated failed logins.
    Blocked,
    /// The password hashing queue stayed full.
    ServerBusy,
    /// The store is down, or the session's holder did not hand it over in time.
    ServerUnavailable,
    /// The will cannot be accepted (retain, topic, ACL).
    WillRejected,
    /// Closed without a CONNACK (bad or missing CONNECT).
    Closed,
}

impl ConnectResult {
    /// Every result, in label order.
    pub const ALL: [Self; 12] = [
        Self::Success,
        Self::UnsupportedProtocol,
        Self::ClientIdRejected,
        Self::BadAuthMethod,
        Self::BadCredentials,
        Self::NotAuthorized,
        Self::Banned,
        Self::Blocked,
        Self::ServerBusy,
        Self::ServerUnavailable,
        Self::WillRejected,
        Self::Closed,
    ];

    /// Its label value (`bad_credentials`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::ClientIdRejected => "client_id_rejected",
            Self::BadAuthMethod => "bad_auth_method",
            Self::BadCredentials => "bad_credentials",
            Self::NotAuthorized => "not_authorized",
            Self::Banned => "banned",
            Self::Blocked => "blocked",
            Self::ServerBusy => "server_busy",
            Self::ServerUnavailable => "server_unavailable",
            Self::WillRejected => "will_rejected",
            Self::Closed => "closed",
        }
    }
}

/// What an ACL check was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AclKind {
    Publish = 0,
    Subscribe = 1,
    Receive = 2,
}

/// The packet type names, by MQTT packet type number (0 and 15... as the spec numbers them).
pub const PACKET_TYPES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// The MQTT packet type number of `p`.
#[must_use]
pub(crate) fn packet_type(p: &Packet) -> usize {
    match p {
        Packet::Connect(_) => 1,
        Packet::ConnectAck(_) => 2,
        Packet::Publish(_) => 3,
        Packet::PublishAck(_) => 4,
        Packet::PublishReceived(_) => 5,
        Packet::PublishRelease(_) => 6,
        Packet::PublishComplete(_) => 7,
        Packet::Subscribe(_) => 8,
        Packet::SubscribeAck(_) => 9,
        Packet::Unsubscribe(_) => 10,
        Packet::UnsubscribeAck(_) => 11,
        Packet::PingRequest => 12,
        Packet::PingResponse => 13,
        Packet::Disconnect(_) => 14,
        Packet::Auth(_) => 15,
    }
}

fn drop_index(r: DropReason) -> usize {
    DropReason::ALL.iter().position(|&x| x == r).unwrap_or(0)
}

fn disconnect_index(r: DisconnectReason) -> usize {
    DisconnectReason::ALL
        .iter()
        .position(|&x| x == r)
        .unwrap_or(0)
}

fn connect_index(r: ConnectResult) -> usize {
    ConnectResult::ALL.iter().position(|&x| x == r).unwrap_or(0)
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// This thread's shard (given round-robin at its first count).
fn shard_id() -> usize {
    SHARD.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
        s.set(v);
        v
    })
}

/// Padding (in `u64`s) before, between and after the shards: 128 bytes, two cache lines on
/// CPUs that prefetch pairs, so no two shards (nor a shard and another allocation) share one.
const PAD: usize = 16;

/// Counters, gauges and histograms. Relaxed ordering: these are statistics, not
/// synchronisation.
#[derive(Debug)]
pub struct Metrics {
    /// `SHARDS` copies of `len` counters, `stride` apart, starting at `PAD`.
    cells: Box<[AtomicU64]>,
    stride: usize,
    /// Listener names (configuration order), for the connects counters.
    listeners: Vec<String>,
    /// Gauge: connections open now (after accept, before close).
    pub connections: AtomicU64,
    /// Gauge: clients connected now (CONNACK success sent, connection not closed yet).
    pub(crate) clients_connected: AtomicU64,
    /// The most clients connected at once.
    pub(crate) clients_maximum: AtomicU64,
    /// Gauge: 1 while the durable store can write, 0 while a disk error keeps it unavailable (or
    /// when there is no store).
    pub store_available: AtomicU64,
    /// Where drops are reported as [`Event::MessageDropped`] (free until watched).
    events: Arc<EventBus>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Vec::new(), Arc::default())
    }
}

/// A connection task's own counters: plain integers, added to the shared shards by
/// [`Metrics::flush`].
#[derive(Debug, Clone)]
pub(crate) struct Local {
    v: [u64; slot::FIXED],
    dirty: u128,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            v: [0; slot::FIXED],
            dirty: 0,
        }
    }
}

impl Local {
    #[inline]
    fn add(&mut self, i: usize, n: u64) {
        self.v[i] += n;
        self.dirty |= 1 << i;
    }

    /// A PUBLISH received with this QoS and payload size.
    #[inline]
    pub(crate) fn publish_received(&mut self, qos: QoS, payload: usize) {
        self.add(slot::MSG_RECEIVED + qos as usize, 1);
        self.add(slot::PUB_BYTES_RECEIVED, payload as u64);
    }

    /// A PUBLISH sent with this QoS and payload size.
    #[inline]
    pub(crate) fn publish_sent(&mut self, qos: QoS, payload: usize) {
        self.add(slot::MSG_SENT + qos as usize, 1);
        self.add(slot::PUB_BYTES_SENT, payload as u64);
    }

    /// A packet of type `t` (see [`packet_type`]) received.
    #[inline]
    pub(crate) fn packet_received(&mut self, t: usize) {
        self.add(slot::PACKETS_RECEIVED + (t & 15), 1);
    }

    /// A packet of type `t` sent.
    #[inline]
    pub(crate) fn packet_sent(&mut self, t: usize) {
        self.add(slot::PACKETS_SENT + (t & 15), 1);
    }

    #[inline]
    pub(crate) fn bytes_received(&mut self, n: usize) {
        self.add(slot::BYTES_RECEIVED, n as u64);
    }

    #[inline]
    pub(crate) fn bytes_sent(&mut self, n: usize) {
        if n > 0 {
            self.add(slot::BYTES_SENT, n as u64);
        }
    }

    /// An ACL check and its answer.
    #[inline]
    pub(crate) fn acl(&mut self, kind: AclKind, allowed: bool) {
        self.add(slot::ACL + kind as usize * 2 + usize::from(!allowed), 1);
    }

    /// A delivery dropped (the caller emits the event).
    #[inline]
    pub(crate) fn dropped(&mut self, reason: DropReason) {
        self.add(slot::DROPPED + drop_index(reason), 1);
    }

    /// Publish-to-deliver latency of one delivery.
    #[inline]
    pub(crate) fn latency(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.add(slot::LATENCY + bucket(ns), 1);
        self.add(slot::LATENCY + BOUNDS_NS.len() + 1, ns);
    }
}

impl Metrics {
    /// Counters for a broker with these listeners (names in configuration order), reporting
    /// drops on `events`.
    #[must_use]
    pub(crate) fn new(listeners: Vec<String>, events: Arc<EventBus>) -> Self {
        let len = slot::CONNECTS + listeners.len() * ConnectResult::ALL.len();
        let stride = len.div_ceil(PAD) * PAD + PAD;
        let cells = (0..PAD + SHARDS * stride)
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            cells,
            stride,
            listeners,
            connections: AtomicU64::new(0),
            clients_connected: AtomicU64::new(0),
            clients_maximum: AtomicU64::new(0),
            store_available: AtomicU64::new(0),
            events,
        }
    }

    /// Adds one to a plain atomic counter or gauge.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a plain atomic counter or gauge.
    #[must_use]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds `n` to counter `i` in this thread's shard.
    #[inline]
    fn add(&self, i: usize, n: u64) {
        let at = PAD + shard_id() * self.stride + i;
        if let Some(c) = self.cells.get(at) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The sum of counter `i` over the shards.
    fn sum(&self, i: usize) -> u64 {
        (0..SHARDS)
            .map(|s| self.cells[PAD + s * self.stride + i].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    /// Adds a connection task's counters to this thread's shard and clears them.
    #[inline]
    pub(crate) fn flush(&self, local: &mut Local) {
        let mut dirty = local.dirty;
        if dirty == 0 {
            return;
        }
        let base = PAD + shard_id() * self.stride;
        let shard = &self.cells[base..base + slot::FIXED];
        while dirty != 0 {
            let i = dirty.trailing_zeros() as usize;
            dirty &= dirty - 1;
            shard[i].fetch_add(local.v[i], Ordering::Relaxed);
            local.v[i] = 0;
        }
        local.dirty = 0;
    }

    /// A PUBLISH received from a client, or published by the broker itself (wills).
    pub(crate) fn publish_received(&self, qos: QoS, payload: usize) {
        self.add(slot::MSG_RECEIVED + qos as usize, 1);
        self.add(slot::PUB_BYTES_RECEIVED, payload as u64);
    }

    /// Counts a dropped delivery and reports it on the event stream.
    pub(crate) fn dropped(
        &self,
        reason: DropReason,
        client_id: Option<&ClientId>,
        topic: &Arc<str>,
    ) {
        self.add(slot::DROPPED + drop_index(reason), 1);
        self.events.emit(|| Event::MessageDropped {
            client_id: client_id.cloned(),
            topic: topic.clone(),
            reason,
        });
    }

    /// A CONNECT packet was read (the bytes before it are not counted).
    pub(crate) fn connect_packet_received(&self) {
        self.add(slot::PACKETS_RECEIVED + 1, 1);
    }

    /// A connection ended.
    pub(crate) fn disconnected(&self, reason: DisconnectReason) {
        self.add(slot::DISCONNECTS + disconnect_index(reason), 1);
    }

    /// A CONNECT on listener number `listener` was answered.
    pub(crate) fn connect(&self, listener: usize, result: ConnectResult) {
        if listener < self.listeners.len() {
            self.add(
                slot::CONNECTS + listener * ConnectResult::ALL.len() + connect_index(result),
                1,
            );
        }
        if !matches!(result, ConnectResult::Success | ConnectResult::Closed) {
            // The refusing CONNACK (a successful one is counted with the connection's packets).
            self.add(slot::PACKETS_SENT + 2, 1);
        }
        if result == ConnectResult::Success {
            let now = self.clients_connected.fetch_add(1, Ordering::Relaxed) + 1;
            self.clients_maximum.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// A client connected since [`Self::connect`] with success closed.
    pub(crate) fn client_closed(&self) {
        let _ = self
            .clients_connected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// An authentication and its outcome.
    pub(crate) fn auth(&self, success: bool) {
        self.add(slot::AUTH + usize::from(!success), 1);
    }

    /// An ACL check outside a connection's own counters.
    pub(crate) fn acl(&self, kind: AclKind, allowed: bool) {
        self.add(slot::ACL + kind as usize * 2 + usize::from(!allowed), 1);
    }

    /// An offline session expired.
    pub(crate) fn session_expired(&self) {
        self.add(slot::CLIENTS_EXPIRED, 1);
    }

    /// A socket was accepted.
    pub(crate) fn socket_accepted(&self) {
        self.add(slot::SOCKETS_ACCEPTED, 1);
    }

    /// A connection was refused at accept (`max_connections`, accept error).
    pub(crate) fn connection_refused(&self) {
        self.add(slot::CONNECTIONS_REFUSED, 1);
    }

    /// A connection ended on a malformed packet or protocol violation.
    pub(crate) fn protocol_error(&self) {
        self.add(slot::PROTOCOL_ERRORS, 1);
    }

    /// One store commit took `d`.
    pub(crate) fn store_commit(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.add(slot::COMMIT + bucket(ns), 1);
        self.add(slot::COMMIT + BOUNDS_NS.len() + 1, ns);
    }

    fn histogram(&self, base: usize) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(HISTOGRAM_BOUNDS.len());
        let mut cumulative = 0u64;
        for (i, le) in HISTOGRAM_BOUNDS.iter().enumerate() {
            cumulative += self.sum(base + i);
            buckets.push((*le, cumulative));
        }
        let count = cumulative + self.sum(base + BOUNDS_NS.len());
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum(base + BOUNDS_NS.len() + 1) as f64 / 1e9,
        }
    }

    /// Every counter now (summed over the shards).
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        let arr = |base: usize| -> [u64; 3] { std::array::from_fn(|i| self.sum(base + i)) };
        let received = arr(slot::MSG_RECEIVED);
        let sent = arr(slot::MSG_SENT);
        let packets_received: [u64; 16] =
            std::array::from_fn(|i| self.sum(slot::PACKETS_RECEIVED + i));
        let packets_sent: [u64; 16] = std::array::from_fn(|i| self.sum(slot::PACKETS_SENT + i));
        let dropped: [u64; 5] = std::array::from_fn(|i| self.sum(slot::DROPPED + i));
        let acl: [u64; 6] = std::array::from_fn(|i| self.sum(slot::ACL + i));
        let connects = self
            .listeners
            .iter()
            .enumerate()
            .map(|(l, name)| ListenerConnects {
                listener: name.clone(),
                results: std::array::from_fn(|r| {
                    self.sum(slot::CONNECTS + l * ConnectResult::ALL.len() + r)
                }),
            })
            .collect();
        let no_subscribers = dropped[drop_index(DropReason::NoSubscribers)];
        MetricsSnapshot {
            connections: Metrics::get(&self.connections),
            connections_refused: self.sum(slot::CONNECTIONS_REFUSED),
            sockets_accepted: self.sum(slot::SOCKETS_ACCEPTED),
            clients_connected: Metrics::get(&self.clients_connected),
            clients_maximum: Metrics::get(&self.clients_maximum),
            clients_expired: self.sum(slot::CLIENTS_EXPIRED),
            messages_received: received.iter().sum(),
            messages_received_by_qos: received,
            messages_sent: sent.iter().sum(),
            messages_sent_by_qos: sent,
            publish_bytes_received: self.sum(slot::PUB_BYTES_RECEIVED),
            publish_bytes_sent: self.sum(slot::PUB_BYTES_SENT),
            bytes_received: self.sum(slot::BYTES_RECEIVED),
            bytes_sent: self.sum(slot::BYTES_SENT),
            packets_received_total: packets_received.iter().sum(),
            packets_sent_total: packets_sent.iter().sum(),
            packets_received,
            packets_sent,
            messages_dropped: dropped.iter().sum::<u64>() - no_subscribers,
            messages_expired: dropped[drop_index(DropReason::Expired)],
            dropped,
            connects,
            disconnects: std::array::from_fn(|i| self.sum(slot::DISCONNECTS + i)),
            auth_success: self.sum(slot::AUTH),
            auth_failure: self.sum(slot::AUTH + 1),
            acl_publish_allowed: acl[0],
            acl_publish_denied: acl[1],
            acl_subscribe_allowed: acl[2],
            acl_subscribe_denied: acl[3],
            acl_receive_allowed: acl[4],
            acl_receive_denied: acl[5],
            protocol_errors: self.sum(slot::PROTOCOL_ERRORS),
            store_available: Metrics::get(&self.store_available),
            latency: self.histogram(slot::LATENCY),
            store_commit: self.histogram(slot::COMMIT),
        }
    }
}

/// One histogram at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations <= it), cumulative, bounds [`HISTOGRAM_BOUNDS`].
    pub buckets: Vec<(f64, u64)>,
    /// Observations (the +Inf bucket).
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

/// The CONNECTs one listener answered, by result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConnects {
    /// The listener's `name` (else its `bind`).
    pub listener: String,
    /// Counts by [`ConnectResult::ALL`] order.
    pub results: [u64; 12],
}

/// Every counter of [`Metrics`] at one moment ([`crate::api::BrokerHandle::metrics`]).
/// Counters count since the broker started; gauges are marked.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Gauge: network connections open (accepted, not closed; CONNECT not needed).
    pub connections: u64,
    /// Connections refused at accept (`max_connections`, accept errors).
    pub connections_refused: u64,
    /// Sockets accepted (`$SYS/broker/load/sockets`).
    pub sockets_accepted: u64,
    /// Gauge: clients connected (CONNACK success sent, connection open).
    pub clients_connected: u64,
    /// The most clients connected at once.
    pub clients_maximum: u64,
    /// Offline sessions that expired.
    pub clients_expired: u64,
    /// PUBLISH messages received (from clients, plus wills published), all QoS.
    pub messages_received: u64,
    /// The same by QoS (index = QoS).
    pub messages_received_by_qos: [u64; 3],
    /// PUBLISH messages sent to clients, all QoS (re-sends not counted).
    pub messages_sent: u64,
    /// The same by QoS (index = QoS).
    pub messages_sent_by_qos: [u64; 3],
    /// Payload bytes of the PUBLISH messages received.
    pub publish_bytes_received: u64,
    /// Payload bytes of the PUBLISH messages sent.
    pub publish_bytes_sent: u64,
    /// Bytes read from client sockets after CONNECT (MQTT bytes: TLS/WebSocket framing not
    /// counted).
    pub bytes_received: u64,
    /// Bytes written to client sockets after CONNECT (MQTT bytes).
    pub bytes_sent: u64,
    /// MQTT packets received after CONNECT, all types (`$SYS/broker/messages/received`).
    pub packets_received_total: u64,
    /// MQTT packets sent (CONNACK included), all types (`$SYS/broker/messages/sent`).
    pub packets_sent_total: u64,
    /// Packets received by type (index = MQTT packet type, names in [`PACKET_TYPES`]).
    pub packets_received: [u64; 16],
    /// Packets sent by type.
    pub packets_sent: [u64; 16],
    /// Deliveries to a subscriber that were dropped, for every reason but
    /// `no_subscribers` (`$SYS/broker/publish/messages/dropped`).
    pub messages_dropped: u64,
    /// Deliveries dropped because the message expired (part of `messages_dropped`).
    pub messages_expired: u64,
    /// Drops by reason, in [`DropReason::ALL`] order (`no_subscribers` counts messages nobody
    /// subscribed to; the others count deliveries).
    pub dropped: [u64; 5],
    /// CONNECTs answered, by listener and result.
    pub connects: Vec<ListenerConnects>,
    /// Connections of connected clients that ended, by [`DisconnectReason::ALL`] order.
    pub disconnects: [u64; 8],
    /// Authentications that succeeded.
    pub auth_success: u64,
    /// Authentications that failed.
    pub auth_failure: u64,
    /// Publish ACL checks allowed.
    pub acl_publish_allowed: u64,
    /// Publish ACL checks denied.
    pub acl_publish_denied: u64,
    /// Subscribe ACL checks allowed.
    pub acl_subscribe_allowed: u64,
    /// Subscribe ACL checks denied.
    pub acl_subscribe_denied: u64,
    /// Receive ACL checks at delivery allowed.
    pub acl_receive_allowed: u64,
    /// Receive ACL checks at delivery denied.
    pub acl_receive_denied: u64,
    /// Connections closed because of a malformed packet or protocol error.
    pub protocol_errors: u64,
    /// Gauge: 1 while the store can write, 0 while it cannot (or there is no store).
    pub store_available: u64,
    /// Publish-to-deliver latency: from the read that brought a PUBLISH to the write of each
    /// copy sent (live deliveries; not re-sends, retained-flagged copies or wills).
    pub latency: HistogramSnapshot,
    /// Store commit time (one write transaction, fsync included).
    pub store_commit: HistogramSnapshot,
}

impl MetricsSnapshot {
    /// Drops for one reason.
    #[must_use]
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[drop_index(reason)]
    }

    /// Disconnects for one reason.
    #[must_use]
    pub fn disconnects_for(&self, reason: DisconnectReason) -> u64 {
        self.disconnects[disconnect_index(reason)]
    }

    /// CONNECTs with one result, over all listeners.
    #[must_use]
    pub fn connects_for(&self, result: ConnectResult) -> u64 {
        self.connects
            .iter()
            .map(|l| l.results[connect_index(result)])
            .sum()
    }
}

/// The `connections` gauge's share of one connection: counted from accept, through the
/// transport handshake, to close (dropping it uncounts the connection).
#[derive(Debug)]
pub(crate) struct CountedConnection(Arc<Metrics>);

impl CountedConnection {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Metrics::incr(&metrics.connections);
        metrics.socket_accepted();
        Self(metrics)
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_across_threads() {
        let m = Arc::new(Metrics::new(vec!["a".into()], Arc::default()));
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut local = Local::default();
                    for _ in 0..1000 {
                        local.publish_received(QoS::AtLeastOnce, 10);
                        m.publish_received(QoS::AtMostOnce, 1);
                    }
                    m.flush(&mut local);
                    m.connect(0, ConnectResult::BadCredentials);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = m.snapshot();
        assert_eq!(s.messages_received_by_qos, [20_000, 20_000, 0]);
        assert_eq!(s.publish_bytes_received, 20 * 1000 * 11);
        assert_eq!(s.connects_for(ConnectResult::BadCredentials), 20);
        assert_eq!(s.connects[0].listener, "a");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        let mut local = Local::default();
        local.latency(Duration::from_micros(40));
        local.latency(Duration::from_millis(3));
        local.latency(Duration::from_secs(60));
        m.flush(&mut local);
        m.store_commit(Duration::from_millis(1));
        let s = m.snapshot();
        assert_eq!(s.latency.count, 3);
        assert_eq!(s.latency.buckets[0], (0.000_05, 1));
        assert_eq!(s.latency.buckets[6], (0.005, 2));
        assert_eq!(s.latency.buckets.last().map(|b| b.1), Some(2));
        assert!((s.latency.sum_seconds - 60.003_04).abs() < 1e-6);
        assert_eq!(s.store_commit.count, 1);
        assert_eq!(s.store_commit.buckets[4].1, 1);
        assert_eq!(s.store_commit.buckets[3].1, 0);
    }
}
