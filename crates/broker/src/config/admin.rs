//! `[admin]` (the admin HTTP API, dashboard and `hermod ctl` socket) and `[metrics]` (a
//! Prometheus listener of its own): keys and defaults. The broker only carries them; the
//! `hermod-admin` crate serves them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[admin]`: the admin HTTP API under `/api/v5`, the web dashboard at `/`, Prometheus at
/// `/metrics`, and the local socket `hermod ctl` talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Serve the admin listener at all.
    pub enabled: bool,
    /// Address of the admin listener. Loopback by default: opening it to the network is a
    /// decision to make in the config file (with TLS, `certfile`/`keyfile`).
    pub bind: String,
    /// PEM certificate chain: serve the admin listener over TLS (with `keyfile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// PEM private key for `certfile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// How long a login token stays valid, e.g. "1h".
    pub token_expiry: String,
    /// Serve `hermod ctl` on the Unix socket `<store path>/hermod.sock` (mode 0600: who can
    /// open it is an administrator, as with Docker's socket).
    pub socket: bool,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "127.0.0.1:18083".into(),
            certfile: None,
            keyfile: None,
            token_expiry: "1h".into(),
            socket: true,
        }
    }
}

/// `[metrics]`: Prometheus metrics on a listener of their own (they are always on the admin
/// listener's `/metrics` too). Off unless `bind` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address of the metrics listener, e.g. "0.0.0.0:9234"; serves `GET /metrics` only,
    /// without credentials (as Prometheus scrapes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}
