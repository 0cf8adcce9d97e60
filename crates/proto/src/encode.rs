//! Encoding: packets to bytes.
//!
//! Each body is produced by one generic writer run twice: once into a byte counter, to learn the
//! remaining length (and reserve the buffer once), once into the buffer. Any error surfaces in the
//! counting pass, so `buf` is never left holding half a packet.

use bytes::BytesMut;

use crate::MAX_REMAINING_LENGTH;
use crate::codec::{connect, control, publish, subscribe};
use crate::error::EncodeError;
use crate::packet::{Packet, PublishRef};
use crate::types::ProtocolVersion;
use crate::wire::{Sink, measure, put_varint, varint_len};

/// Appends the wire form of `packet` for `version` to `buf`.
///
/// CONNECT is written in the version its `protocol` field names, not `version`.
///
/// # Errors
/// See [`EncodeError`]. On error nothing is appended.
pub fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let first = first_byte(packet, version)?;
    let body = body_len(packet, version)?;
    buf.reserve(1 + varint_len(body) + body);
    buf.put_u8(first);
    put_varint(buf, body)?;
    write_body(packet, version, buf)
}

/// The total size in bytes (fixed header included) `packet` encodes to for `version`, so a caller
/// can check it against the peer's maximum packet size before encoding.
///
/// When `encode_packet` would fail (AUTH in v3, an oversized field, ...), returns `usize::MAX`,
/// which no maximum packet size admits.
#[must_use]
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match first_byte(packet, version).and_then(|_| body_len(packet, version)) {
        Ok(body) => 1 + varint_len(body) + body,
        Err(_) => usize::MAX,
    }
}

/// Encodes a PUBLISH from borrowed parts into `buf`: the same bytes as [`encode_packet`] with
/// the equivalent [`Publish`](crate::Publish), without building one.
///
/// # Errors
/// As [`encode_packet`]: [`EncodeError::MissingPacketId`] for QoS > 0 without a packet id,
/// [`EncodeError::TooLarge`] past the largest remaining length, or a topic or property over
/// its limit.
pub fn encode_publish(
    p: &PublishRef<'_>,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let body = publish_body_len(p, version)?;
    buf.reserve(1 + varint_len(body) + body);
    buf.put_u8(publish::first_byte(p));
    put_varint(buf, body)?;
    publish::write(p, version, buf)
}

/// The size [`encode_publish`] would write, or `usize::MAX` when it would fail.
#[must_use]
pub fn encoded_publish_len(p: &PublishRef<'_>, version: ProtocolVersion) -> usize {
    match publish_body_len(p, version) {
        Ok(body) => 1 + varint_len(body) + body,
        Err(_) => usize::MAX,
    }
}

fn publish_body_len(p: &PublishRef<'_>, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let body = measure(|c| publish::write(p, version, c))?;
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLarge);
    }
    Ok(body)
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let body = measure(|c| write_body(packet, version, c))?;
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLarge);
    }
    Ok(body)
}

/// Packet type and flags; the fixed flags 0b0010 of PUBREL, SUBSCRIBE and UNSUBSCRIBE [MQTT-2.2.2-1].
fn first_byte(packet: &Packet, version: ProtocolVersion) -> Result<u8, EncodeError> {
    Ok(match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnectAck(_) => 0x20,
        Packet::Publish(p) => publish::first_byte(&p.view()),
        Packet::PublishAck(_) => 0x40,
        Packet::PublishReceived(_) => 0x50,
        Packet::PublishRelease(_) => 0x62,
        Packet::PublishComplete(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubscribeAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubscribeAck(_) => 0xB0,
        Packet::PingRequest => 0xC0,
        Packet::PingResponse => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) if version.is_v5() => 0xF0,
        Packet::Auth(_) => return Err(EncodeError::NotInVersion),
    })
}

fn write_body<S: Sink>(
    packet: &Packet,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => connect::write(c, s),
        Packet::ConnectAck(a) => connect::write_ack(a, version, s),
        Packet::Publish(p) => publish::write(&p.view(), version, s),
        Packet::PublishAck(a)
        | Packet::PublishReceived(a)
        | Packet::PublishRelease(a)
        | Packet::PublishComplete(a) => publish::write_ack(a, version, s),
        Packet::Subscribe(p) => subscribe::write(p, version, s),
        Packet::SubscribeAck(a) => subscribe::write_ack(a, version, s),
        Packet::Unsubscribe(p) => subscribe::write_unsubscribe(p, version, s),
        Packet::UnsubscribeAck(a) => subscribe::write_unsuback(a, version, s),
        Packet::PingRequest | Packet::PingResponse => Ok(()),
        Packet::Disconnect(d) => control::write_disconnect(d, version, s),
        Packet::Auth(a) => control::write_auth(a, s),
    }
}
