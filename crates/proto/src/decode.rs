//! Decoding: bytes to packets.

use bytes::BytesMut;

use crate::error::DecodeError;
use crate::packet::Packet;
use crate::types::ProtocolVersion;

/// Decodes one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing consumed), and
/// `Ok(Some(packet))` after removing exactly that packet's bytes from `buf`.
///
/// `version` is the version negotiated by CONNECT; a CONNECT packet is decoded whatever `version`
/// says (its own protocol name and level decide). `max_packet_size` is the largest total packet
/// size (fixed header included) accepted: a larger one is refused from the fixed header alone with
/// [`DecodeError::PacketTooLarge`], before its body is buffered.
///
/// # Errors
/// Any violation of the wire format of `version`; see [`DecodeError`].
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    unimplemented!("helper implements")
}
