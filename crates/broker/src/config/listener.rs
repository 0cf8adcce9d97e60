//! One `[[listener]]` table: its keys, and the transport settings they resolve to.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::is_default;
use crate::transport::{Transport, TransportSettings};

/// One `[[listener]]` table. The transport keys are those of [`TransportSettings`], copied here
/// because serde's `flatten` does not combine with `deny_unknown_fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to bind, e.g. "0.0.0.0:1883" or "[::]:1883".
    pub bind: String,
    /// A name for logs and metrics; defaults to the bind address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tcp` (default), `tls`, `ws`, `wss`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub transport: Transport,
    /// PEM certificate chain (tls, wss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// PEM private key of `certfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// PEM CA certificates for client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    /// Clients must present a certificate signed by `cafile`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub require_certificate: bool,
    /// PEM certificate revocation list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crlfile: Option<PathBuf>,
    /// The client certificate's CN becomes the username (as Mosquitto).
    #[serde(default, skip_serializing_if = "is_default")]
    pub use_identity_as_username: bool,
    /// WebSocket path (ws, wss); default "/mqtt".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Expect a PROXY protocol v1/v2 header (behind HAProxy or a cloud load balancer).
    #[serde(default, skip_serializing_if = "is_default")]
    pub proxy_protocol: bool,
    /// Seconds for PROXY header + TLS + WebSocket handshakes; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<u64>,
    /// Most simultaneous connections on this listener (Mosquitto's listener `max_connections`);
    /// the global `max_connections` applies as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

impl ListenerConfig {
    /// A plain TCP listener.
    #[must_use]
    pub fn tcp(bind: &str) -> Self {
        Self {
            bind: bind.into(),
            name: None,
            transport: Transport::Tcp,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            crlfile: None,
            use_identity_as_username: false,
            path: None,
            proxy_protocol: false,
            handshake_timeout: None,
            max_connections: None,
        }
    }

    /// The transport settings, with relative paths resolved against `base`.
    #[must_use]
    pub fn transport_settings(
        &self,
        base: Option<&Path>,
        max_packet_size: u32,
    ) -> TransportSettings {
        let resolve = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| base.map_or_else(|| p.clone(), |b| b.join(p)))
        };
        let defaults = TransportSettings::default();
        TransportSettings {
            transport: self.transport,
            certfile: resolve(&self.certfile),
            keyfile: resolve(&self.keyfile),
            cafile: resolve(&self.cafile),
            require_certificate: self.require_certificate,
            crlfile: resolve(&self.crlfile),
            use_identity_as_username: self.use_identity_as_username,
            path: self.path.clone().unwrap_or(defaults.path),
            proxy_protocol: self.proxy_protocol,
            handshake_timeout: self
                .handshake_timeout
                .map_or(defaults.handshake_timeout, Duration::from_secs),
            ws_max_message_size: crate::transport::ws_max_message_size_for(max_packet_size),
        }
    }
}
