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
//!
//! Files: this one (the shards, [`Metrics`] and its counting methods), `labels` (what counters
//! are counted by: reasons, results, packet types, histogram buckets), `local` ([`Local`]),
//! `snapshot` ([`MetricsSnapshot`]), `tests`.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hermod_proto::QoS;

use crate::api::{DropReason, Event, EventBus};
use crate::message::ClientId;

mod labels;
mod local;
mod snapshot;

pub use labels::*;
pub(crate) use local::Local;
pub use snapshot::*;

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
        let mut dirty = std::mem::take(&mut local.dirty);
        let Some(v) = local.v.take() else {
            return;
        };
        let base = PAD + shard_id() * self.stride;
        let shard = &self.cells[base..base + slot::FIXED];
        while dirty != 0 {
            let i = dirty.trailing_zeros() as usize;
            dirty &= dirty - 1;
            shard[i].fetch_add(v[i], Ordering::Relaxed);
        }
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
mod tests;
