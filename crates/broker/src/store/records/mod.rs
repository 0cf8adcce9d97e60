//! The records the store keeps, and their binary encoding.
//!
//! Every value is a small hand-written, length-prefixed binary record that starts with a record
//! version byte (all `1` today). Integers are big-endian; strings and byte blocks are a `u32`
//! length followed by the bytes; `Option<T>` is a `0`/`1` tag followed by `T` when present;
//! `bool` is one byte, `0` or `1`. Decoding never panics: truncated input, trailing bytes, an
//! unknown record version or tag, invalid UTF-8, or an absurd length are [`DecodeError`]s, which
//! the store reports as [`StoreError::Corrupt`](super::StoreError::Corrupt).
//!
//! Why not serde_json: payloads and v5 property blocks are binary (JSON would write them as
//! arrays of numbers, about 4x the size), and a record is decoded on every queue page-in.

mod codec;
mod message;
mod session;

use crate::session::Owner;
use bytes::Bytes;
use std::fmt;

/// A persistent session: what the broker needs to resume it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session Expiry Interval in seconds; `None` = never expires.
    pub expiry: Option<u32>,
    /// Wall-clock time (`SystemTime`, ms since the Unix epoch) the client disconnected;
    /// `None` while it is online.
    pub disconnected_at_unix_ms: Option<u64>,
    /// Protocol level of the last CONNECT (3, 4 or 5).
    pub protocol_level: u8,
    /// The session's subscriptions.
    pub subscriptions: Vec<SubscriptionRecord>,
    /// The will message, while one is pending.
    pub will: Option<WillRecord>,
    /// Who the session belongs to. Records written before owners were stored end after the
    /// will and decode as [`Owner::Unknown`] (claimed by the next client that connects).
    pub owner: Owner,
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// Topic filter as subscribed (including any `$share/group/` prefix).
    pub filter: String,
    /// Maximum QoS granted.
    pub qos: u8,
    /// v5 No Local.
    pub no_local: bool,
    /// v5 Retain As Published.
    pub retain_as_published: bool,
    /// v5 Retain Handling (0, 1 or 2).
    pub retain_handling: u8,
    /// v5 Subscription Identifier.
    pub subscription_id: Option<u32>,
}

/// A session's will message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillRecord {
    /// Will topic.
    pub topic: String,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: u8,
    /// Will retain flag.
    pub retain: bool,
    /// The encoded v5 will property block (opaque to the store).
    pub properties: Bytes,
    /// v5 Will Delay Interval in seconds.
    pub delay_secs: u32,
}

/// An application message kept for offline delivery, or as a retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS as published.
    pub qos: u8,
    /// Retain flag as published.
    pub retain: bool,
    /// The encoded v5 property block (opaque to the store).
    pub properties: Bytes,
    /// Wall-clock receive time, ms since the Unix epoch.
    pub received_at_unix_ms: u64,
    /// Wall-clock expiry time (v5 Message Expiry Interval), ms since the Unix epoch.
    pub expiry_at_unix_ms: Option<u64>,
    /// Who published it, so that a message read back from the store still says (a rule's
    /// `clientid`, `username` and `peerhost` columns). `None` for the broker's own messages,
    /// wills published after their session ended, and records of version 1.
    pub publisher: Option<PublisherRecord>,
}

/// The publisher of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherRecord {
    /// Its client id.
    pub client_id: String,
    /// The username it authenticated with.
    pub username: Option<String>,
    /// Its address (`ip:port`), when known.
    pub peer: Option<String>,
}

/// Delivery state of a queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Not yet sent.
    Queued,
    /// PUBLISH sent with this packet id; awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent {
        /// Packet identifier used.
        packet_id: u16,
    },
    /// QoS 2: PUBREC received and PUBREL sent; awaiting PUBCOMP.
    Released {
        /// Packet identifier used.
        packet_id: u16,
    },
}

/// One message queued for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The message (key of the `messages` table).
    pub message_id: u64,
    /// Granted QoS.
    pub qos: u8,
    /// RETAIN flag to send.
    pub retain: bool,
    /// v5 Subscription Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Shared-subscription delivery: `(group, filter)`, so the broker can hand it to another
    /// member if this session goes away.
    pub shared: Option<(String, String)>,
    /// Delivery state.
    pub state: QueueState,
}

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
