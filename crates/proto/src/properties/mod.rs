//! v5 properties (2.2.2): identifiers, the generic reader and writer, and per-value rules.
//!
//! The set of properties a packet allows (table 2.4) is not listed separately: it is exactly the
//! set of ids the packet's properties struct stores (see [`sets`]). A property the struct refuses
//! is therefore "not allowed in this packet", and one source of truth cannot disagree with another.

mod sets;

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::packet::UserProperty;
use crate::wire::{Reader, Sink, measure, put_binary, put_string, put_varint};

pub(crate) use sets::UserOnly;

/// Property identifiers (table 2.4).
#[allow(missing_docs)]
pub(crate) mod id {
    pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub(crate) const CONTENT_TYPE: u8 = 0x03;
    pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
    pub(crate) const CORRELATION_DATA: u8 = 0x09;
    pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
    pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
    pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
    pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
    pub(crate) const REASON_STRING: u8 = 0x1F;
    pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
    pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub(crate) const TOPIC_ALIAS: u8 = 0x23;
    pub(crate) const MAXIMUM_QOS: u8 = 0x24;
    pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
    pub(crate) const USER_PROPERTY: u8 = 0x26;
    pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// A decoded property value, typed by the data type table 2.4 gives its id.
#[derive(Debug)]
pub(crate) enum Value {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VarInt(u32),
    Utf8(String),
    Binary(Bytes),
    Pair(String, String),
}

/// The data type of a known property id; `None` for ids the spec does not define.
fn read_value(id: u8, r: &mut Reader) -> Result<Option<Value>, DecodeError> {
    use id::*;
    Ok(Some(match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => Value::Byte(r.u8()?),
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
            Value::TwoByte(r.u16()?)
        }
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => Value::FourByte(r.u32()?),
        // A varint is at most 268,435,455, so it always fits in u32.
        SUBSCRIPTION_IDENTIFIER => Value::VarInt(u32::try_from(r.varint()?).unwrap_or(u32::MAX)),
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Value::Utf8(r.string()?),
        CORRELATION_DATA | AUTHENTICATION_DATA => Value::Binary(r.binary()?),
        USER_PROPERTY => {
            let k = r.string()?;
            Value::Pair(k, r.string()?)
        }
        _ => return Ok(None),
    }))
}

/// Value rules that hold wherever the property appears (chapter 3 per-property text). All are
/// protocol errors in the spec's words ("It is a Protocol Error to ...").
fn check_value(id: u8, v: &Value) -> Result<(), DecodeError> {
    use id::*;
    let bad = match (id, v) {
        (
            PAYLOAD_FORMAT_INDICATOR
            | REQUEST_PROBLEM_INFORMATION
            | REQUEST_RESPONSE_INFORMATION
            | MAXIMUM_QOS
            | RETAIN_AVAILABLE
            | WILDCARD_SUBSCRIPTION_AVAILABLE
            | SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | SHARED_SUBSCRIPTION_AVAILABLE,
            Value::Byte(b),
        ) if *b > 1 => "[2.2.2.2] property value must be 0 or 1",
        (RECEIVE_MAXIMUM, Value::TwoByte(0)) => "[3.1.2.11.3] Receive Maximum of 0",
        (MAXIMUM_PACKET_SIZE, Value::FourByte(0)) => "[3.1.2.11.4] Maximum Packet Size of 0",
        (SUBSCRIPTION_IDENTIFIER, Value::VarInt(0)) => "[3.8.2.1.2] Subscription Identifier of 0",
        _ => return Ok(()),
    };
    Err(DecodeError::Protocol(bad))
}

/// A packet's (or the will's) property set.
pub(crate) trait Properties: Default + PartialEq {
    /// Whether the Subscription Identifier may repeat (only in PUBLISH [MQTT-3.3.4-3]).
    const MULTI_SUBSCRIPTION_ID: bool = false;

    /// Stores one decoded property; `false` when `id` is not allowed in this packet.
    fn set(&mut self, id: u8, value: Value) -> bool;

    /// Writes every present property as (id, value) pairs, without the property length.
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;

    /// True when nothing would be written, so v5 acks may omit the property length.
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Reads a property length and the properties it covers.
///
/// # Errors
/// Truncation, unknown ids and ids not valid for the packet type are malformed (2.2.2.2: "A
/// Control Packet which contains an Identifier which is not valid for its packet type ... is a
/// Malformed Packet"); a repeated non-repeatable property and an out-of-range value are protocol errors.
pub(crate) fn decode<P: Properties>(r: &mut Reader) -> Result<P, DecodeError> {
    let len = r.varint()?;
    let mut r = Reader::new(r.take(len)?);
    let mut props = P::default();
    // Ids are at most 0x2A, so a u64 bitmask records which were seen.
    let mut seen = 0u64;
    while !r.is_empty() {
        let raw = r.varint()?;
        let unknown = DecodeError::Malformed("[2.2.2.2] unknown property identifier");
        let id = u8::try_from(raw).map_err(|_| unknown.clone())?;
        let value = read_value(id, &mut r)?.ok_or(unknown)?;
        check_value(id, &value)?;
        let repeatable = id == id::USER_PROPERTY
            || (id == id::SUBSCRIPTION_IDENTIFIER && P::MULTI_SUBSCRIPTION_ID);
        let bit = 1u64 << (id & 63);
        if !repeatable && seen & bit != 0 {
            return Err(DecodeError::Protocol(
                "[MQTT-2.2.2-2] property included more than once",
            ));
        }
        seen |= bit;
        if !props.set(id, value) {
            return Err(DecodeError::Malformed(
                "[2.2.2.2] property not valid for this packet type",
            ));
        }
    }
    Ok(props)
}

/// Writes the property length followed by the properties.
pub(crate) fn encode<S: Sink, P: Properties>(s: &mut S, props: &P) -> Result<(), EncodeError> {
    let len = measure(|c| props.write(c))?;
    put_varint(s, len)?;
    props.write(s)
}

pub(crate) fn put_byte<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u8(v);
    }
}

pub(crate) fn put_two<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u16(v);
    }
}

pub(crate) fn put_four<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u32(v);
    }
}

pub(crate) fn put_var<S: Sink>(s: &mut S, id: u8, v: Option<u32>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.put_u8(id);
        put_varint(s, usize::try_from(v).map_err(|_| EncodeError::TooLarge)?)?;
    }
    Ok(())
}

pub(crate) fn put_str<S: Sink>(s: &mut S, id: u8, v: Option<&str>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.put_u8(id);
        put_string(s, v)?;
    }
    Ok(())
}

pub(crate) fn put_bin<S: Sink>(s: &mut S, id: u8, v: Option<&[u8]>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.put_u8(id);
        put_binary(s, v)?;
    }
    Ok(())
}

pub(crate) fn put_users<S: Sink>(s: &mut S, users: &[UserProperty]) -> Result<(), EncodeError> {
    for (k, v) in users {
        s.put_u8(id::USER_PROPERTY);
        put_string(s, k)?;
        put_string(s, v)?;
    }
    Ok(())
}
