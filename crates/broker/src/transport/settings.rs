//! A listener's transport keys ([`TransportSettings`], [`Transport`]), their defaults and
//! [`TransportSettings::validate`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TransportError;
#[cfg(doc)]
use super::{Acceptor, PeerInfo};

/// Default for [`TransportSettings::path`].
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// Default for [`TransportSettings::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport of one listener (`transport = "tcp" | "tls" | "ws" | "wss"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain MQTT over TCP.
    #[default]
    Tcp,
    /// MQTT over TLS 1.2/1.3.
    Tls,
    /// MQTT over WebSocket (binary frames), plain HTTP upgrade.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Transport {
    /// `tls` and `wss`.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// `ws` and `wss`.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport keys of one `[[listener]]` table (Mosquitto's names). Plain data: the broker
/// copies these fields into its listener table (serde `flatten` does not mix with
/// `deny_unknown_fields`) and resolves relative paths against the config file's folder before
/// calling [`Acceptor::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// `tcp` (default), `tls`, `ws`, `wss`.
    pub transport: Transport,
    /// PEM server certificate chain (leaf first). Required for `tls`/`wss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `certfile`. Required for `tls`/`wss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// PEM CA certificate(s) that client certificates must chain to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    /// Clients must present a certificate signed by `cafile` (default false). When false but
    /// `cafile` is set, a certificate is requested but optional; one that is presented must
    /// still verify.
    pub require_certificate: bool,
    /// PEM certificate revocation list(s) checked against client certificates (needs `cafile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crlfile: Option<PathBuf>,
    /// Use the client certificate's identity ([`PeerInfo::cert_identity`]) as the MQTT username
    /// (needs `require_certificate = true`). Applied by the broker, not here.
    pub use_identity_as_username: bool,
    /// WebSocket request path (`ws`/`wss`), default "/mqtt". Other paths get HTTP 404.
    pub path: String,
    /// Expect a PROXY protocol v1 or v2 header before anything else; connections without a
    /// valid header are refused. Default false.
    pub proxy_protocol: bool,
    /// Bound on PROXY header + TLS handshake + WebSocket upgrade, in seconds in the config file
    /// (`handshake_timeout = 10`, fractions allowed). Default 10 s.
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// Largest WebSocket message / frame accepted (bytes). Not a config key: the broker sets it
    /// from its `max_packet_size` with [`ws_max_message_size_for`].
    #[serde(skip)]
    pub ws_max_message_size: usize,
}

/// The WebSocket message bound for a broker `max_packet_size`: the packet plus 64 KiB of slack
/// (a message may carry the tail of one packet and the head of the next).
pub fn ws_max_message_size_for(max_packet_size: u32) -> usize {
    (max_packet_size as usize).saturating_add(64 * 1024)
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            transport: Transport::Tcp,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            crlfile: None,
            use_identity_as_username: false,
            path: DEFAULT_WS_PATH.to_owned(),
            proxy_protocol: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ws_max_message_size: ws_max_message_size_for(1024 * 1024),
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_u64(d.as_secs())
        } else {
            s.serialize_f64(d.as_secs_f64())
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!(
                "handshake_timeout: {secs} is not a number of seconds >= 0"
            ))
        })
    }
}

impl TransportSettings {
    /// Checks the combination of keys (not the files: [`Acceptor::new`] loads those). Rules, as
    /// in Mosquitto: TLS needs `certfile` and `keyfile`; `require_certificate` and `crlfile` need
    /// `cafile`; `use_identity_as_username` needs `require_certificate`. TLS keys on a `tcp`/`ws`
    /// listener are refused rather than ignored (Mosquitto would silently turn TLS on).
    pub fn validate(&self) -> Result<(), TransportError> {
        let t = self.transport;
        if t.is_tls() {
            if self.certfile.is_none() {
                return Err(invalid(
                    "certfile",
                    format!("required for transport = \"{t}\""),
                ));
            }
            if self.keyfile.is_none() {
                return Err(invalid(
                    "keyfile",
                    format!("required for transport = \"{t}\""),
                ));
            }
        } else {
            let tls_keys = [
                ("certfile", self.certfile.is_some()),
                ("keyfile", self.keyfile.is_some()),
                ("cafile", self.cafile.is_some()),
                ("crlfile", self.crlfile.is_some()),
                ("require_certificate", self.require_certificate),
                ("use_identity_as_username", self.use_identity_as_username),
            ];
            if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key,
                    format!("only applies to transport = \"tls\" or \"wss\", not \"{t}\""),
                ));
            }
        }
        if self.require_certificate && self.cafile.is_none() {
            return Err(invalid(
                "require_certificate",
                "needs cafile (the CA that signs client certificates)".into(),
            ));
        }
        if self.crlfile.is_some() && self.cafile.is_none() {
            return Err(invalid(
                "crlfile",
                "needs cafile (client certificates are only checked against a CA)".into(),
            ));
        }
        if self.use_identity_as_username && !self.require_certificate {
            return Err(invalid(
                "use_identity_as_username",
                "needs require_certificate = true".into(),
            ));
        }
        if t.is_websocket() && !self.path.starts_with('/') {
            return Err(invalid(
                "path",
                format!("{:?} must start with '/'", self.path),
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Err(invalid(
                "handshake_timeout",
                "must be more than 0 seconds".into(),
            ));
        }
        if self.ws_max_message_size == 0 {
            return Err(invalid(
                "max_packet_size",
                "WebSocket message bound must be > 0".into(),
            ));
        }
        Ok(())
    }
}

fn invalid(key: &'static str, reason: String) -> TransportError {
    TransportError::Invalid { key, reason }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tls_settings() -> TransportSettings {
        TransportSettings {
            transport: Transport::Tls,
            certfile: Some("s.pem".into()),
            keyfile: Some("s.key".into()),
            ..Default::default()
        }
    }

    fn key_of(err: TransportError) -> &'static str {
        match err {
            TransportError::Invalid { key, .. } => key,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn defaults() {
        let s = TransportSettings::default();
        assert_eq!(s.transport, Transport::Tcp);
        assert_eq!(s.path, "/mqtt");
        assert_eq!(s.handshake_timeout, Duration::from_secs(10));
        assert!(!s.proxy_protocol && !s.require_certificate && !s.use_identity_as_username);
        s.validate().expect("defaults are valid");
    }

    #[test]
    fn parses_mosquitto_keys_from_toml() {
        let s: TransportSettings = toml::from_str(
            "transport = \"wss\"\ncertfile = \"certs/server.pem\"\nkeyfile = \"certs/server.key\"\n\
             cafile = \"certs/ca.pem\"\nrequire_certificate = true\ncrlfile = \"certs/ca.crl\"\n\
             use_identity_as_username = true\npath = \"/ws\"\nproxy_protocol = true\nhandshake_timeout = 2.5\n",
        )
        .expect("parse");
        assert_eq!(s.transport, Transport::Wss);
        assert_eq!(s.certfile.as_deref(), Some(Path::new("certs/server.pem")));
        assert_eq!(s.crlfile.as_deref(), Some(Path::new("certs/ca.crl")));
        assert!(s.require_certificate && s.use_identity_as_username && s.proxy_protocol);
        assert_eq!(s.path, "/ws");
        assert_eq!(s.handshake_timeout, Duration::from_millis(2500));
        s.validate().expect("valid");
        let back: TransportSettings =
            toml::from_str(&toml::to_string(&s).expect("ser")).expect("roundtrip");
        assert_eq!(back, s);
        assert!(toml::from_str::<TransportSettings>("transport = \"quic\"").is_err());
        assert!(
            toml::from_str::<TransportSettings>("cerfile = \"x\"").is_err(),
            "typo refused"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let mut s = tls_settings();
        s.validate().expect("minimal tls");
        s.certfile = None;
        assert_eq!(key_of(s.validate().expect_err("no certfile")), "certfile");
        let mut s = tls_settings();
        s.keyfile = None;
        assert_eq!(key_of(s.validate().expect_err("no keyfile")), "keyfile");
        let mut s = tls_settings();
        s.require_certificate = true;
        assert_eq!(
            key_of(s.validate().expect_err("no cafile")),
            "require_certificate"
        );
        let mut s = tls_settings();
        s.crlfile = Some("c.crl".into());
        assert_eq!(key_of(s.validate().expect_err("crl without ca")), "crlfile");
        let mut s = tls_settings();
        s.cafile = Some("ca.pem".into());
        s.use_identity_as_username = true;
        assert_eq!(
            key_of(s.validate().expect_err("identity without require")),
            "use_identity_as_username"
        );
        s.require_certificate = true;
        s.validate().expect("complete mTLS");
        let s = TransportSettings {
            certfile: Some("s.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            key_of(s.validate().expect_err("certfile on tcp")),
            "certfile"
        );
        let s = TransportSettings {
            transport: Transport::Ws,
            path: "mqtt".into(),
            ..Default::default()
        };
        assert_eq!(key_of(s.validate().expect_err("relative path")), "path");
        let s = TransportSettings {
            handshake_timeout: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(
            key_of(s.validate().expect_err("zero timeout")),
            "handshake_timeout"
        );
    }
}
