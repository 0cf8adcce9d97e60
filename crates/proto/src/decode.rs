//! Decoding: bytes to packets.
//!
//! The fixed header is parsed in place in the caller's `BytesMut`; nothing is consumed until the
//! whole packet is present. The packet is then split off and frozen, so the body parsers work on
//! a `Bytes` and the PUBLISH payload is a zero-copy slice of the receive buffer.

use bytes::{Buf, BytesMut};

use crate::codec::{connect, control, publish, subscribe};
use crate::error::DecodeError;
use crate::packet::Packet;
use crate::reason;
use crate::types::ProtocolVersion;
use crate::wire::{Reader, parse_varint};

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
/// Errors are reported as soon as they are detectable: a bad packet type or flags, or an
/// oversized length, fail once the fixed header is complete, without waiting for the body.
/// After an error the connection is expected to be closed: a fixed-header error consumes nothing,
/// an error in the body has consumed that packet's bytes.
///
/// # Errors
/// Any violation of the wire format of `version`; see [`DecodeError`].
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((remaining, len_bytes)) = parse_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let (kind, flags) = (first >> 4, first & 0x0F);
    check_fixed_header(kind, flags, version)?;
    let header_len = 1 + len_bytes;
    let total = header_len + remaining;
    if total > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut bytes = buf.split_to(total).freeze();
    bytes.advance(header_len);
    let mut r = Reader::new(bytes);
    let packet = decode_body(&mut r, kind, flags, version)?;
    r.finish()?;
    Ok(Some(packet))
}

/// Packet type and fixed-header flag rules (2.1.2, 2.1.3, 3.3.1).
fn check_fixed_header(kind: u8, flags: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let err = match kind {
        0 => "[2.1.2] packet type 0 is reserved",
        15 if !version.is_v5() => "[2.1.2] packet type 15 (AUTH) is reserved before MQTT 5",
        3 => {
            if flags & 0x06 == 0x06 {
                "[MQTT-3.3.1-4] PUBLISH with QoS 3"
            } else if flags & 0x08 != 0 && flags & 0x06 == 0 {
                "[MQTT-3.3.1-2] DUP set on a QoS 0 PUBLISH"
            } else {
                return Ok(());
            }
        }
        6 | 8 | 10 if flags != 0b0010 => "[MQTT-2.2.2-1] reserved fixed-header flags must be 0010",
        6 | 8 | 10 => return Ok(()),
        _ if flags != 0 => "[MQTT-2.2.2-1] reserved fixed-header flags must be 0000",
        _ => return Ok(()),
    };
    Err(DecodeError::Malformed(err))
}

fn decode_body(
    r: &mut Reader,
    kind: u8,
    flags: u8,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    Ok(match kind {
        1 => Packet::Connect(Box::new(connect::decode(r)?)),
        2 => Packet::ConnectAck(connect::decode_ack(r, version)?),
        3 => Packet::Publish(publish::decode(r, flags, version)?),
        4 => Packet::PublishAck(publish::decode_ack(
            r,
            version,
            reason::PUBACK,
            "[3.4.2.1] not a PUBACK reason code",
        )?),
        5 => Packet::PublishReceived(publish::decode_ack(
            r,
            version,
            reason::PUBACK,
            "[3.5.2.1] not a PUBREC reason code",
        )?),
        6 => Packet::PublishRelease(publish::decode_ack(
            r,
            version,
            reason::PUBREL,
            "[3.6.2.1] not a PUBREL reason code",
        )?),
        7 => Packet::PublishComplete(publish::decode_ack(
            r,
            version,
            reason::PUBREL,
            "[3.7.2.1] not a PUBCOMP reason code",
        )?),
        8 => Packet::Subscribe(subscribe::decode(r, version)?),
        9 => Packet::SubscribeAck(subscribe::decode_ack(r, version)?),
        10 => Packet::Unsubscribe(subscribe::decode_unsubscribe(r, version)?),
        11 => Packet::UnsubscribeAck(subscribe::decode_unsuback(r, version)?),
        12 => Packet::PingRequest,
        13 => Packet::PingResponse,
        14 => Packet::Disconnect(control::decode_disconnect(r, version)?),
        15 => Packet::Auth(control::decode_auth(r)?),
        // Type 0 was refused by the fixed-header check; a nibble cannot exceed 15.
        _ => return Err(DecodeError::Malformed("[2.1.2] packet type 0 is reserved")),
    })
}
