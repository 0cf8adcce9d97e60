//! Which reason codes each packet may carry (v5 chapter 3 tables), and the v3 return-code mappings.
//!
//! A v5 reason code outside its packet's table is answered as a protocol error: the value is
//! well-formed on the wire, it is just not a code the packet defines.

use crate::error::DecodeError;
use crate::types::ReasonCode;

/// CONNACK, table 3.2.2.2.
pub(crate) const CONNACK: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// PUBACK (3.4.2.1) and PUBREC (3.5.2.1) share one table.
pub(crate) const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// PUBREL (3.6.2.1) and PUBCOMP (3.7.2.1) share one table.
pub(crate) const PUBREL: &[u8] = &[0x00, 0x92];
/// SUBACK, table 3.9.3.
pub(crate) const SUBACK: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// v3 SUBACK return codes (3.1.1 section 3.9.3).
pub(crate) const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
/// UNSUBACK, table 3.11.3.
pub(crate) const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// DISCONNECT, table 3.14.2.1.
pub(crate) const DISCONNECT: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// AUTH, table 3.15.2.1.
pub(crate) const AUTH: &[u8] = &[0x00, 0x18, 0x19];

/// Accepts `code` if `allowed` lists it, else a protocol error with `msg`.
pub(crate) fn check(
    code: u8,
    allowed: &[u8],
    msg: &'static str,
) -> Result<ReasonCode, DecodeError> {
    if allowed.contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::Protocol(msg))
    }
}

/// v3 CONNACK return code to the v5 reason code with the same meaning (documented on `ConnectAck`).
pub(crate) fn connack_from_v3(code: u8) -> Option<ReasonCode> {
    Some(match code {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        _ => return None,
    })
}

/// v5 reason code to v3 CONNACK return code. Codes with no v3 counterpart become 3 "Server
/// unavailable", the generic refusal a v3 client understands.
pub(crate) fn connack_to_v3(reason: ReasonCode) -> u8 {
    match reason {
        ReasonCode::SUCCESS => 0,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => 4,
        ReasonCode::NOT_AUTHORIZED => 5,
        _ => 3,
    }
}

/// v5 SUBACK code to v3: granted QoS passes through, every failure is 0x80.
pub(crate) fn suback_to_v3(reason: ReasonCode) -> u8 {
    if reason.0 <= 2 { reason.0 } else { 0x80 }
}
