//! `[auth_failures]`: the section's keys and defaults, and the throttle settings built from them.

use serde::{Deserialize, Serialize};

use super::{Config, parse_duration};
use crate::auth::ThrottleSettings;

/// `[auth_failures]`: after `max` failed authentications from one address within `window`, the
/// address is refused for `block` (CONNACK 0x8A, 3.1.1: 5), before any password is hashed, a
/// right one included. Successful logins are not counted. `max = 0` turns this off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFailuresSection {
    /// Failed authentications from one address (within `window`) that block it; 0 = off.
    pub max: u32,
    /// The counting window, from the first failure, e.g. "1m".
    pub window: String,
    /// How long a blocked address is refused, e.g. "5m".
    pub block: String,
    /// Most addresses tracked at once (memory bound; the least recently seen are forgotten).
    pub max_addresses: usize,
    /// Loopback addresses are never blocked: local processes (health checks, scripts) and a
    /// proxy on the same host without the PROXY protocol would otherwise lock everyone out.
    pub exempt_loopback: bool,
}

impl Default for AuthFailuresSection {
    fn default() -> Self {
        Self {
            max: 10,
            window: "1m".into(),
            block: "5m".into(),
            max_addresses: 10_000,
            exempt_loopback: true,
        }
    }
}

impl Config {
    /// `[auth_failures]` for the throttle (validated by [`Config::validate`]).
    #[must_use]
    pub fn throttle_settings(&self) -> ThrottleSettings {
        let af = &self.auth_failures;
        match (parse_duration(&af.window), parse_duration(&af.block)) {
            (Ok(window), Ok(block)) => ThrottleSettings {
                max_failures: af.max,
                window,
                block,
                max_addresses: af.max_addresses,
                exempt_loopback: af.exempt_loopback,
            },
            _ => ThrottleSettings::OFF,
        }
    }
}
