//! MQTT 3.1, 3.1.1 and 5.0 wire format for Hermod: packets, properties, reason codes, and strict
//! validation. No I/O, no logging: bytes in, packets out.
//!
//! # Layout
//! - [`types`]: `ProtocolVersion`, `QoS`, `PacketId`, `ReasonCode`.
//! - [`packet`]: one packet model for every version (v5 as the superset).
//! - [`decode`] / [`encode`]: the codec. `decode_packet` returns `Ok(None)` until a whole packet
//!   is buffered, and checks the maximum packet size from the fixed header before buffering.
//! - [`topic`]: topic name and filter validation and matching.
//! - internal: `wire` (bounds-checked reader, counting/writing sink, varints, strings),
//!   `properties` (v5 property ids and sets), `reason` (reason-code tables, v3 mappings) and
//!   `codec` (one module per packet family, reading and writing side by side).
//! - [`encode_remaining_length`] / [`decode_remaining_length`]: the remaining-length varint on its
//!   own, for code that writes or scans packets by hand (the bench, raw test clients).
//! - [`error`]: `DecodeError` (with the v5 reason code to answer it with), `EncodeError`.

mod codec;
pub mod decode;
pub mod encode;
pub mod error;
pub mod packet;
mod properties;
mod reason;
pub mod topic;
pub mod types;
mod wire;

pub use decode::decode_packet;
pub use encode::{encode_packet, encode_publish, encoded_len, encoded_publish_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use types::{PacketId, ProtocolVersion, QoS, ReasonCode, RetainHandling};
pub use wire::{decode_remaining_length, encode_remaining_length, remaining_length_len};

/// Largest remaining length the 4-byte variable byte integer can express (268,435,455).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
