//! SUBSCRIBE (3.8), SUBACK (3.9), UNSUBSCRIBE (3.10), UNSUBACK (3.11).
//!
//! Topic filters are only checked as UTF-8 strings here: wildcard placement and `$share` syntax
//! are validated by the broker, so that v5 can refuse a single filter with SUBACK 0x8F instead
//! of dropping the connection.

use crate::error::{DecodeError, EncodeError};
use crate::packet::{Subscribe, SubscribeAck, SubscriptionOptions, Unsubscribe, UnsubscribeAck};
use crate::properties::{self, UserOnly};
use crate::reason;
use crate::types::{ProtocolVersion, QoS, ReasonCode, RetainHandling};
use crate::wire::{Reader, Sink, put_string};

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

/// Parses a subscription options byte (3.8.3.1); v3 has only the QoS bits.
fn options(b: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    if version.is_v5() {
        if b & 0xC0 != 0 {
            return Err(DecodeError::Malformed(
                "[MQTT-3.8.3-5] reserved subscription option bits set",
            ));
        }
    } else if b & 0xFC != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.8.3-4] reserved subscription option bits set",
        ));
    }
    let qos =
        QoS::from_u8(b & 0x03).ok_or(DecodeError::Malformed("[3.8.3.1] subscription QoS 3"))?;
    let retain_handling = match (b >> RETAIN_HANDLING_SHIFT) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Protocol("[3.8.3.1] retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: b & NO_LOCAL != 0,
        retain_as_published: b & RETAIN_AS_PUBLISHED != 0,
        retain_handling,
    })
}

fn options_byte(o: SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let mut b = o.qos as u8;
    if version.is_v5() {
        if o.no_local {
            b |= NO_LOCAL;
        }
        if o.retain_as_published {
            b |= RETAIN_AS_PUBLISHED;
        }
        b |= (o.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
    }
    b
}

pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = if version.is_v5() {
        properties::decode(r)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        filters.push((filter, options(r.u8()?, version)?));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol(
            "[MQTT-3.8.3-3] SUBSCRIBE without a topic filter",
        ));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(crate) fn write<S: Sink>(
    p: &Subscribe,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.put_u16(p.packet_id.get());
    if version.is_v5() {
        properties::encode(s, &p.properties)?;
    }
    for (filter, opts) in &p.filters {
        put_string(s, filter)?;
        s.put_u8(options_byte(*opts, version));
    }
    Ok(())
}

/// Reads the reason codes that fill the rest of a SUBACK/UNSUBACK.
fn reasons(
    r: &mut Reader,
    allowed: &[u8],
    err: DecodeError,
) -> Result<Vec<ReasonCode>, DecodeError> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let code = r.u8()?;
        if !allowed.contains(&code) {
            return Err(err);
        }
        out.push(ReasonCode(code));
    }
    Ok(out)
}

pub(crate) fn decode_ack(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<SubscribeAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let (properties, reasons) = if version.is_v5() {
        let properties = properties::decode(r)?;
        (
            properties,
            reasons(
                r,
                reason::SUBACK,
                DecodeError::Protocol("[3.9.3] not a SUBACK reason code"),
            )?,
        )
    } else {
        let err = DecodeError::Malformed("[MQTT-3.9.3-2] SUBACK return code not 0x00-0x02 or 0x80");
        (Default::default(), reasons(r, reason::SUBACK_V3, err)?)
    };
    Ok(SubscribeAck {
        packet_id,
        reasons,
        properties,
    })
}

pub(crate) fn write_ack<S: Sink>(
    a: &SubscribeAck,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.put_u16(a.packet_id.get());
    if version.is_v5() {
        properties::encode(s, &a.properties)?;
        for r in &a.reasons {
            s.put_u8(r.0);
        }
    } else {
        for r in &a.reasons {
            s.put_u8(reason::suback_to_v3(*r));
        }
    }
    Ok(())
}

pub(crate) fn decode_unsubscribe(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let UserOnly(user_properties) = if version.is_v5() {
        properties::decode(r)?
    } else {
        UserOnly::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol(
            "[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter",
        ));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        user_properties,
    })
}

pub(crate) fn write_unsubscribe<S: Sink>(
    p: &Unsubscribe,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.put_u16(p.packet_id.get());
    if version.is_v5() {
        // Borrowing the Vec into the wrapper would need a second type; user properties are
        // written directly with the same framing `properties::encode` uses.
        let len = crate::wire::measure(|c| properties::put_users(c, &p.user_properties))?;
        crate::wire::put_varint(s, len)?;
        properties::put_users(s, &p.user_properties)?;
    }
    for f in &p.filters {
        put_string(s, f)?;
    }
    Ok(())
}

/// v3 UNSUBACK is the packet id alone; v5 adds properties and one reason per filter.
pub(crate) fn decode_unsuback(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<UnsubscribeAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let (properties, reasons) = if version.is_v5() {
        let properties = properties::decode(r)?;
        (
            properties,
            reasons(
                r,
                reason::UNSUBACK,
                DecodeError::Protocol("[3.11.3] not an UNSUBACK reason code"),
            )?,
        )
    } else {
        (Default::default(), Vec::new())
    };
    Ok(UnsubscribeAck {
        packet_id,
        reasons,
        properties,
    })
}

pub(crate) fn write_unsuback<S: Sink>(
    a: &UnsubscribeAck,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    s.put_u16(a.packet_id.get());
    if version.is_v5() {
        properties::encode(s, &a.properties)?;
        for r in &a.reasons {
            s.put_u8(r.0);
        }
    }
    Ok(())
}
