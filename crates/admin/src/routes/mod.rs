//! The handlers, one file per resource. Conversions from the broker's types to the contract's
//! JSON live next to the handler that answers them; the few shared helpers are here.

pub(crate) mod banned;
pub(crate) mod clients;
pub(crate) mod cluster;
pub(crate) mod login;
pub(crate) mod publish;
pub(crate) mod reload;
pub(crate) mod retained;
pub(crate) mod rules;
pub(crate) mod stats;
pub(crate) mod subscriptions;
pub(crate) mod things;
pub(crate) mod users;

use std::time::SystemTime;

use hermod_broker::banned::{format_rfc3339, unix_secs};
use hermod_proto::QoS;
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// `t` as RFC 3339 (UTC, seconds).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    format_rfc3339(unix_secs(t))
}

pub(crate) fn qos_number(q: QoS) -> u8 {
    q as u8
}

/// A QoS number from a request.
pub(crate) fn qos_from(n: u8) -> Result<QoS, ApiError> {
    QoS::from_u8(n).ok_or_else(|| ApiError::bad_request("`qos` must be 0, 1 or 2"))
}

/// A 0/1 flag that also accepts `true`/`false` (EMQX sends numbers; people type booleans).
pub(crate) fn flag01<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        B(bool),
        N(u8),
    }
    match F::deserialize(d)? {
        F::B(b) => Ok(b),
        F::N(0) => Ok(false),
        F::N(1) => Ok(true),
        F::N(_) => Err(serde::de::Error::custom("expected 0, 1, true or false")),
    }
}
