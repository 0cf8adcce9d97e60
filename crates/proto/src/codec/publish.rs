//! PUBLISH (3.3) and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7).

use crate::error::{DecodeError, EncodeError};
use crate::packet::{Publish, PublishAck, PublishProperties, PublishRef};
use crate::properties::{self, Properties};
use crate::reason;
use crate::topic::validate_topic_name;
use crate::types::{ProtocolVersion, QoS};
use crate::wire::{Reader, Sink, put_string};

const DUP: u8 = 0x08;
const RETAIN: u8 = 0x01;

/// Decodes a PUBLISH body. `flags` (the low nibble of the fixed header) was already checked for
/// QoS 3 and DUP-on-QoS-0 by the fixed-header validation.
pub(crate) fn decode(
    r: &mut Reader,
    flags: u8,
    version: ProtocolVersion,
) -> Result<Publish, DecodeError> {
    let qos =
        QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("[MQTT-3.3.1-4] QoS 3"))?;
    let topic = r.string()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(r.packet_id()?)
    };
    let properties: PublishProperties = if version.is_v5() {
        properties::decode(r)?
    } else {
        Default::default()
    };
    if topic.is_empty() {
        // v5 lets a topic alias stand in for the name (3.3.2.3.4); the alias value itself is the
        // broker's to check, since only it knows its Topic Alias Maximum.
        if !version.is_v5() {
            return Err(DecodeError::TopicNameInvalid(
                "[MQTT-4.7.3-1] empty topic name",
            ));
        }
        if properties.topic_alias.is_none() {
            return Err(DecodeError::Protocol(
                "[3.3.2.3.4] empty topic name without a Topic Alias",
            ));
        }
    } else {
        validate_topic_name(&topic).map_err(DecodeError::from)?;
    }
    Ok(Publish {
        dup: flags & DUP != 0,
        qos,
        retain: flags & RETAIN != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

/// The PUBLISH fixed-header byte. DUP is written only with QoS > 0: on QoS 0 it must be 0
/// [MQTT-3.3.1-2], so a stray `dup: true` is dropped rather than producing a malformed packet.
pub(crate) fn first_byte(p: &PublishRef<'_>) -> u8 {
    let mut b = 0x30 | ((p.qos as u8) << 1);
    if p.dup && p.qos != QoS::AtMostOnce {
        b |= DUP;
    }
    if p.retain {
        b |= RETAIN;
    }
    b
}

/// Writes a PUBLISH body.
///
/// # Errors
/// [`EncodeError::MissingPacketId`] for QoS > 0 without a packet id (a QoS 0 packet id is ignored).
pub(crate) fn write<S: Sink>(
    p: &PublishRef<'_>,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    put_string(s, p.topic)?;
    if p.qos != QoS::AtMostOnce {
        s.put_u16(p.packet_id.ok_or(EncodeError::MissingPacketId)?.get());
    }
    if version.is_v5() {
        properties::encode(s, p.properties)?;
    }
    s.put_slice(p.payload);
    Ok(())
}

/// Decodes a PUBACK/PUBREC/PUBREL/PUBCOMP body; `allowed` is that packet's reason-code table.
///
/// v3 is the packet id alone (the caller's trailing-bytes check enforces remaining length 2).
/// v5 omits the reason when it is 0x00 (remaining length 2) and the property length when there
/// are no properties (remaining length 3) (3.4.2.1).
pub(crate) fn decode_ack(
    r: &mut Reader,
    version: ProtocolVersion,
    allowed: &[u8],
    msg: &'static str,
) -> Result<PublishAck, DecodeError> {
    let mut ack = PublishAck::new(r.packet_id()?);
    if !version.is_v5() || r.is_empty() {
        return Ok(ack);
    }
    ack.reason = reason::check(r.u8()?, allowed, msg)?;
    if !r.is_empty() {
        ack.properties = properties::decode(r)?;
    }
    Ok(ack)
}

/// Writes an ack body in its shortest v5 form (or the v3 form).
pub(crate) fn write_ack<S: Sink>(
    a: &PublishAck,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.put_u16(a.packet_id.get());
    if !version.is_v5() {
        return Ok(());
    }
    let no_props = a.properties.is_empty();
    if a.reason.0 == 0 && no_props {
        return Ok(());
    }
    s.put_u8(a.reason.0);
    if no_props {
        Ok(())
    } else {
        properties::encode(s, &a.properties)
    }
}
