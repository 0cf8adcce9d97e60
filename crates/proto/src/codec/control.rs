//! DISCONNECT (3.14) and AUTH (3.15), whose v5 bodies may be omitted entirely when the reason is
//! 0x00 and there are no properties. (PINGREQ/PINGRESP have no body at all.)

use crate::error::{DecodeError, EncodeError};
use crate::packet::{Auth, Disconnect};
use crate::properties::{self, Properties};
use crate::reason;
use crate::types::ProtocolVersion;
use crate::wire::{Reader, Sink};

/// v3 DISCONNECT is empty (the caller's trailing-bytes check enforces it). v5: remaining length 0
/// means 0x00; "if the Remaining Length is less than 2, a value of 0 is used" for the property
/// length (3.14.2.2.1), so a lone reason byte is accepted.
pub(crate) fn decode_disconnect(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect::default();
    if !version.is_v5() || r.is_empty() {
        return Ok(d);
    }
    d.reason = reason::check(
        r.u8()?,
        reason::DISCONNECT,
        "[3.14.2.1] not a DISCONNECT reason code",
    )?;
    if !r.is_empty() {
        d.properties = properties::decode(r)?;
    }
    Ok(d)
}

pub(crate) fn write_disconnect<S: Sink>(
    d: &Disconnect,
    version: ProtocolVersion,
    s: &mut S,
) -> Result<(), EncodeError> {
    if !version.is_v5() {
        return Ok(());
    }
    let no_props = d.properties.is_empty();
    if d.reason.0 == 0 && no_props {
        return Ok(());
    }
    s.put_u8(d.reason.0);
    if no_props {
        Ok(())
    } else {
        properties::encode(s, &d.properties)
    }
}

/// AUTH exists only in v5 (the fixed-header check refuses type 15 otherwise). Unlike DISCONNECT,
/// the spec has no "length less than 2" rule for AUTH, so a reason byte without a property length
/// is malformed.
pub(crate) fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    if r.is_empty() {
        return Ok(Auth::default());
    }
    let reason = reason::check(r.u8()?, reason::AUTH, "[3.15.2.1] not an AUTH reason code")?;
    Ok(Auth {
        reason,
        properties: properties::decode(r)?,
    })
}

pub(crate) fn write_auth<S: Sink>(a: &Auth, s: &mut S) -> Result<(), EncodeError> {
    if a.reason.0 == 0 && a.properties.is_empty() {
        return Ok(());
    }
    s.put_u8(a.reason.0);
    properties::encode(s, &a.properties)
}
