//! What counters are counted by: disconnect reasons, connect results, ACL kinds, packet types,
//! and the histogram buckets.

use hermod_proto::Packet;

use crate::api::DropReason;

/// Upper bounds (seconds) of the histogram buckets: 50 µs to 10 s.
pub const HISTOGRAM_BOUNDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
pub(super) const BOUNDS_NS: [u64; 17] = [
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
pub(super) const HIST_SLOTS: usize = BOUNDS_NS.len() + 2;

pub(super) fn bucket(ns: u64) -> usize {
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

/// The MQTT packet type number of PUBLISH, for a PUBLISH encoded without a [`Packet`].
pub(crate) const PUBLISH_TYPE: usize = 3;

/// The MQTT packet type number of `p`.
#[must_use]
pub(crate) fn packet_type(p: &Packet) -> usize {
    match p {
        Packet::Connect(_) => 1,
        Packet::ConnectAck(_) => 2,
        Packet::Publish(_) => PUBLISH_TYPE,
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

pub(super) fn drop_index(r: DropReason) -> usize {
    DropReason::ALL.iter().position(|&x| x == r).unwrap_or(0)
}

pub(super) fn disconnect_index(r: DisconnectReason) -> usize {
    DisconnectReason::ALL
        .iter()
        .position(|&x| x == r)
        .unwrap_or(0)
}

pub(super) fn connect_index(r: ConnectResult) -> usize {
    ConnectResult::ALL.iter().position(|&x| x == r).unwrap_or(0)
}
