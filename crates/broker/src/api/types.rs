//! The plain data the facade answers with: clients, connections, subscriptions, retained
//! messages, stats, and why a command failed. Snapshots, never references into the broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hermod_proto::{ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

use crate::message::ClientId;

/// A client id known to the broker: a connected client or an offline persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: ClientId,
    /// Connected now (false: an offline persistent session).
    pub online: bool,
    /// The identity the session belongs to: `Some(username)`, or `None` for anonymous (or a
    /// session restored from a store written before owners were recorded).
    pub username: Option<Arc<str>>,
    /// Connected clients only (`None` offline, or while its CONNECT is being handled).
    pub connection: Option<ConnectionInfo>,
    /// Subscriptions the session holds.
    pub subscriptions: usize,
    /// Messages waiting in its queue (in memory; for an offline durable session, the part
    /// paged in).
    pub queued: usize,
    /// Outbound QoS 1/2 messages sent and not yet acknowledged (0 offline).
    pub inflight: usize,
    /// Stored messages waiting on disk only, beyond `queued` (a durable session's spilled
    /// part: offline, or more than its in-memory window).
    pub stored: usize,
    /// Messages dropped for this session since the broker started (queue full, expired...).
    pub dropped: u64,
    /// How long the session outlives its connection (`None`: until deleted).
    pub expiry_interval: Option<Duration>,
}

/// How a connected client connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub protocol: ProtocolVersion,
    pub connected_at: SystemTime,
    pub keep_alive: u16,
    pub clean_start: bool,
    /// Over TLS (`tls` or `wss` listener).
    pub tls: bool,
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub client_id: ClientId,
    /// The filter as subscribed (`$share/{group}/{filter}` for a shared one).
    pub filter: String,
    /// The filter without its `$share/{group}/` prefix.
    pub topic: String,
    /// The shared subscription group, if any.
    pub share_group: Option<String>,
    pub options: SubscriptionOptions,
    /// v5 subscription identifier.
    pub id: Option<u32>,
}

impl SubscriptionInfo {
    pub(super) fn new(
        client_id: ClientId,
        filter: String,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> Self {
        let (topic, share_group) = match hermod_proto::topic::parse_shared(&filter) {
            Ok(Some((group, inner))) => (inner.to_owned(), Some(group.to_owned())),
            _ => (filter.clone(), None),
        };
        Self {
            client_id,
            filter,
            topic,
            share_group,
            options,
            id,
        }
    }
}

/// Why a command on behalf of a client failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The client is not connected (commands act on connected clients only, as EMQX's).
    #[error("client not connected")]
    NotConnected,
    /// The topic filter is not valid (or not allowed: no local on a shared subscription).
    #[error("invalid topic filter: {0}")]
    InvalidFilter(String),
    /// The connection has too many requests waiting, or closed while asked.
    #[error("client busy or gone; try again")]
    Busy,
    /// The broker refused the subscription with this SUBACK reason code (v5 value), e.g.
    /// 0x87 not authorized (the subscribe ACL applies), 0x97 quota exceeded.
    #[error("refused with reason code {:#04x}", .0.0)]
    Refused(ReasonCode),
}

/// A retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedInfo {
    pub topic: Arc<str>,
    pub qos: QoS,
    pub payload: Bytes,
}

/// Counters and gauges at one moment (every counter of the broker, by label, is in
/// [`crate::metrics::MetricsSnapshot`], from [`super::BrokerHandle::metrics`]). Counters count since the broker
/// started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Gauge: open network connections (accepted, not closed).
    pub connections: u64,
    /// Gauge: sessions, online and offline.
    pub sessions: usize,
    /// Gauge: subscriptions (shared ones included).
    pub subscriptions: usize,
    /// Gauge: retained messages.
    pub retained: usize,
    /// PUBLISH messages received (all QoS; wills included).
    pub messages_received: u64,
    /// PUBLISH messages sent (all QoS).
    pub messages_sent: u64,
    /// Deliveries dropped (queue full, expired, too large, not authorised).
    pub messages_dropped: u64,
    /// Deliveries dropped because the message expired (part of `messages_dropped`).
    pub messages_expired: u64,
    /// Connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Connections refused at accept (`max_connections`).
    pub connections_refused: u64,
    /// Gauge: the store can write (false without a store).
    pub store_available: bool,
    /// Gauge: connected clients (CONNACK sent, connection open).
    pub clients_connected: u64,
    /// Gauge: sessions without a connection (persistent sessions offline).
    pub clients_disconnected: usize,
    /// The most clients connected at once.
    pub clients_maximum: u64,
    /// Offline sessions that expired.
    pub clients_expired: u64,
    /// Gauge: shared subscriptions (members of `$share` groups; part of `subscriptions`).
    pub shared_subscriptions: usize,
    /// Gauge: distinct topic filters subscribed to.
    pub topics: usize,
    /// Gauge: outbound QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Gauge: messages queued for sessions (in memory; a durable session's paged-in part).
    pub queued: usize,
    /// Gauge: bytes of queued messages in the durable store (0 without a store).
    pub store_bytes: u64,
    /// Messages published that matched no subscription.
    pub messages_no_subscribers: u64,
    /// MQTT bytes read from clients.
    pub bytes_received: u64,
    /// MQTT bytes written to clients.
    pub bytes_sent: u64,
    /// Payload bytes of the PUBLISH messages received.
    pub publish_bytes_received: u64,
    /// Payload bytes of the PUBLISH messages sent.
    pub publish_bytes_sent: u64,
    /// MQTT packets received (all types).
    pub packets_received: u64,
    /// MQTT packets sent (all types).
    pub packets_sent: u64,
    /// Authentications that failed.
    pub auth_failures: u64,
}
