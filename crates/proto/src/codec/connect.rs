//! CONNECT (3.1) and CONNACK (3.2).

use crate::error::{DecodeError, EncodeError};
use crate::packet::{Connect, ConnectAck, LastWill};
use crate::properties;
use crate::reason;
use crate::topic::validate_topic_name;
use crate::types::{ProtocolVersion, QoS};
use crate::wire::{Reader, Sink, put_binary, put_string};

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_SHIFT: u8 = 3;
const WILL: u8 = 0x04;
const CLEAN_START: u8 = 0x02;
const RESERVED: u8 = 0x01;

/// Decodes a CONNECT body. The version comes from the packet itself, never from the caller.
pub(crate) fn decode(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let flags = r.u8()?;
    if flags & RESERVED != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-3] reserved connect flag set",
        ));
    }
    let will_qos = (flags >> WILL_QOS_SHIFT) & 0x03;
    let has_will = flags & WILL != 0;
    if !has_will && will_qos != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-13] will QoS set without the will flag",
        ));
    }
    if !has_will && flags & WILL_RETAIN != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-15] will retain set without the will flag",
        ));
    }
    let will_qos =
        QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("[MQTT-3.1.2-14] will QoS 3"))?;
    // v5 lets a password go without a user name (3.1.2.9); v3.x does not.
    if !protocol.is_v5() && flags & PASSWORD != 0 && flags & USERNAME == 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-22] password flag without user name flag",
        ));
    }
    let keep_alive = r.u16()?;
    let properties = if protocol.is_v5() {
        properties::decode(r)?
    } else {
        Default::default()
    };
    let client_id = r.string()?;
    let will = if has_will {
        let properties = if protocol.is_v5() {
            properties::decode(r)?
        } else {
            Default::default()
        };
        let topic = r.string()?;
        validate_topic_name(&topic).map_err(DecodeError::from)?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: flags & WILL_RETAIN != 0,
            properties,
        })
    } else {
        None
    };
    let username = if flags & USERNAME != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let password = if flags & PASSWORD != 0 {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// Writes a CONNECT body in the version `c.protocol` names (name, level and properties agree).
pub(crate) fn write<S: Sink>(c: &Connect, s: &mut S) -> Result<(), EncodeError> {
    let name: &[u8] = if c.protocol == ProtocolVersion::V31 {
        b"MQIsdp"
    } else {
        b"MQTT"
    };
    put_binary(s, name)?;
    s.put_u8(c.protocol.level());
    let mut flags = 0;
    if c.clean_start {
        flags |= CLEAN_START;
    }
    if let Some(w) = &c.will {
        flags |= WILL | ((w.qos as u8) << WILL_QOS_SHIFT);
        if w.retain {
            flags |= WILL_RETAIN;
        }
    }
    if c.username.is_some() {
        flags |= USERNAME;
    }
    if c.password.is_some() {
        flags |= PASSWORD;
    }
    s.put_u8(flags);
    s.put_u16(c.keep_alive);
    let v5 = c.protocol.is_v5();
    if v5 {
        properties::encode(s, &c.properties)?;
    }
    put_string(s, &c.client_id)?;
    if let Some(w) = &c.will {
        if v5 {
            properties::encode(s, &w.properties)?;
        }
        put_string(s, &w.topic)?;
        put_binary(s, &w.payload)?;
    }
    if let Some(u) = &c.username {
        put_string(s, u)?;
    }
    if let Some(p) = &c.password {
        put_binary(s, p)?;
    }
    Ok(())
}

/// Decodes a CONNACK body.
pub(crate) fn decode_ack(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<ConnectAck, DecodeError> {
    let flags = r.u8()?;
    let code = r.u8()?;
    match version {
        ProtocolVersion::V31 | ProtocolVersion::V311 => {
            // 3.1 has a reserved byte where 3.1.1 has the session-present flag.
            let allowed = if version == ProtocolVersion::V31 {
                0x00
            } else {
                0x01
            };
            if flags & !allowed != 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-3.2.2-1] reserved CONNACK flags set",
                ));
            }
            let reason = reason::connack_from_v3(code).ok_or(DecodeError::Malformed(
                "[3.2.2.3] CONNACK return code above 5",
            ))?;
            Ok(ConnectAck {
                session_present: flags & 0x01 != 0,
                reason,
                properties: Default::default(),
            })
        }
        ProtocolVersion::V5 => {
            if flags & 0xFE != 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-3.2.2-1] reserved CONNACK flags set",
                ));
            }
            let reason =
                reason::check(code, reason::CONNACK, "[3.2.2.2] not a CONNACK reason code")?;
            let properties = properties::decode(r)?;
            Ok(ConnectAck {
                session_present: flags & 0x01 != 0,
                reason,
                properties,
            })
        }
    }
}

/// Writes a CONNACK body; v3 drops the properties and maps the reason to a return code.
pub(crate) fn write_ack<S: Sink>(
    a: &ConnectAck,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    // 3.1 has no session-present flag: the byte is reserved and must be 0.
    let session = a.session_present && version != ProtocolVersion::V31;
    s.put_u8(u8::from(session));
    if version.is_v5() {
        s.put_u8(a.reason.0);
        properties::encode(s, &a.properties)
    } else {
        s.put_u8(reason::connack_to_v3(a.reason));
        Ok(())
    }
}
