//! [`MetricsSnapshot`]: every counter at one moment, and its parts.

use crate::api::DropReason;

use super::*;

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
