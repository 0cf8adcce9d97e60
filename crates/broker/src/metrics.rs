//! Broker-wide counters: atomics, read by logs, tests and (later) `$SYS`, admin and Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters. Relaxed ordering: these are statistics, not synchronisation.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections currently open (after accept, before close).
    pub connections: AtomicU64,
    /// Connections refused at accept because `max_connections` was reached.
    pub connections_refused: AtomicU64,
    /// PUBLISH packets received from clients.
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent to clients.
    pub messages_sent: AtomicU64,
    /// Deliveries dropped because a session's queue was full.
    pub messages_dropped: AtomicU64,
    /// Deliveries dropped because their message expired before it could be sent.
    pub messages_expired: AtomicU64,
    /// Connections closed because of a malformed packet or protocol error.
    pub protocol_errors: AtomicU64,
    /// Gauge: 1 while the durable store can write, 0 while a disk error keeps it unavailable (or
    /// when there is no store).
    pub store_available: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    #[must_use]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The `connections` gauge's share of one connection: counted from accept, through the
/// transport handshake, to close (dropping it uncounts the connection).
#[derive(Debug)]
pub(crate) struct CountedConnection(std::sync::Arc<Metrics>);

impl CountedConnection {
    pub(crate) fn new(metrics: std::sync::Arc<Metrics>) -> Self {
        Metrics::incr(&metrics.connections);
        Self(metrics)
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}
