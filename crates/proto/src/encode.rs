//! Encoding: packets to bytes.

use bytes::BytesMut;

use crate::error::EncodeError;
use crate::packet::Packet;
use crate::types::ProtocolVersion;

/// Appends the wire form of `packet` for `version` to `buf`.
///
/// # Errors
/// See [`EncodeError`].
pub fn encode_packet(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let _ = (packet, version, buf);
    unimplemented!("helper implements")
}

/// The total size in bytes (fixed header included) `packet` encodes to for `version`, so a caller
/// can check it against the peer's maximum packet size before encoding.
#[must_use]
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let _ = (packet, version);
    unimplemented!("helper implements")
}
