//! Listener transports: plain TCP, TLS, WebSocket, WebSocket over TLS, each optionally behind a
//! PROXY protocol (v1/v2) header.
//!
//! The accept loop never runs a handshake itself: it spawns one task per accepted `TcpStream`
//! and, inside that task, calls [`Acceptor::accept`], which runs (in this order, all bounded by
//! [`TransportSettings::handshake_timeout`]):
//!
//! 1. the PROXY protocol header, when `proxy_protocol = true` (exactly the header bytes are read,
//!    nothing of the MQTT stream);
//! 2. the TLS handshake (`tls`, `wss`);
//! 3. the WebSocket upgrade (`ws`, `wss`).
//!
//! The result is a boxed [`MqttStream`] (a plain byte stream whatever the transport) and a
//! [`PeerInfo`] (real client address, TLS client-certificate identity).
//!
//! TLS material is loaded and checked by [`Acceptor::new`]; [`Acceptor::reload`] rebuilds it and
//! swaps it in only if everything loads, so a bad certificate on reload keeps the old one.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

mod client_verifier;
mod proxy;
mod tls;
mod ws;

#[cfg(test)]
mod test_pki;

/// Default for [`TransportSettings::path`].
pub const DEFAULT_WS_PATH: &str = "/mqtt";
/// Entry point of the coverage-guided fuzz target `proxy` (fuzz/, feature `fuzzing`; not API):
/// reads a PROXY v1/v2 header from the front of `input` as a listener with `proxy_protocol`
/// does. Returns the address or the refusal, and how many bytes were consumed.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_proxy_header(input: &[u8]) -> (Result<SocketAddr, String>, usize) {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let mut rest = input;
    let result = {
        let mut read = std::pin::pin!(proxy::read_header(&mut rest, peer));
        match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.map_err(|e| e.to_string()),
            // A slice is always ready: the header is complete or the input has ended.
            Poll::Pending => Err("reading from a slice waited".to_owned()),
        }
    };
    (result, input.len() - rest.len())
}

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

/// What is wrong with a certificate, key or CRL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// The file does not exist.
    Missing,
    /// It exists but could not be read.
    Unreadable(String),
    /// No PEM section in it, or malformed PEM.
    NotPem(String),
    /// No `CERTIFICATE` section (certfile).
    NoCertificate,
    /// No `PRIVATE KEY` / `RSA PRIVATE KEY` / `EC PRIVATE KEY` section (keyfile).
    NoPrivateKey,
    /// The private key is encrypted: not supported (Mosquitto would prompt for a passphrase).
    EncryptedKey,
    /// The key could not be used (unsupported algorithm, malformed).
    BadKey(String),
    /// The key is not the one of the certificate's public key.
    KeyMismatch,
    /// A certificate does not parse.
    BadCertificate(String),
    /// No `CERTIFICATE` section (cafile).
    NoCaCertificates,
    /// No `X509 CRL` section (crlfile).
    NoCrl,
    /// A CRL does not parse.
    BadCrl(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Missing => f.write_str("file not found"),
            FileProblem::Unreadable(e) => write!(f, "cannot read: {e}"),
            FileProblem::NotPem(e) => write!(f, "not PEM: {e}"),
            FileProblem::NoCertificate => {
                f.write_str("no certificate (-----BEGIN CERTIFICATE-----) in file")
            }
            FileProblem::NoPrivateKey => {
                f.write_str("no private key (-----BEGIN PRIVATE KEY----- / RSA / EC) in file")
            }
            FileProblem::EncryptedKey => {
                f.write_str("private key is encrypted; passphrase-protected keys are not supported")
            }
            FileProblem::BadKey(e) => write!(f, "unusable private key: {e}"),
            FileProblem::KeyMismatch => {
                f.write_str("private key does not match the certificate (certfile)")
            }
            FileProblem::BadCertificate(e) => write!(f, "invalid certificate: {e}"),
            FileProblem::NoCaCertificates => {
                f.write_str("no CA certificate (-----BEGIN CERTIFICATE-----) in file")
            }
            FileProblem::NoCrl => f.write_str("no CRL (-----BEGIN X509 CRL-----) in file"),
            FileProblem::BadCrl(e) => write!(f, "CRL cannot be parsed: {e}"),
        }
    }
}

/// Errors of configuration ([`TransportSettings::validate`], [`Acceptor::new`],
/// [`Acceptor::reload`]) and of one connection's handshake ([`Acceptor::accept`]).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A bad key combination in the listener table.
    #[error("{key}: {reason}")]
    Invalid {
        /// The config key at fault.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A certificate / key / CA / CRL file is unusable.
    #[error("{key} {}: {problem}", path.display())]
    File {
        /// `certfile`, `keyfile`, `cafile` or `crlfile`.
        key: &'static str,
        /// The path as given (resolved by the caller).
        path: PathBuf,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// rustls refused the assembled configuration (files individually fine).
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// The handshake (PROXY + TLS + WebSocket) did not finish in time.
    #[error("handshake not completed within {0:?}")]
    Timeout(Duration),
    /// Missing or invalid PROXY protocol header.
    #[error("PROXY protocol: {0}")]
    Proxy(String),
    /// TLS handshake failed (bad client certificate, no common version, not TLS at all...).
    #[error("TLS handshake: {0}")]
    TlsHandshake(io::Error),
    /// WebSocket upgrade refused or failed.
    #[error("WebSocket handshake: {0}")]
    WebSocket(String),
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

impl TransportError {
    fn file(key: &'static str, path: &Path, problem: FileProblem) -> Self {
        TransportError::File {
            key,
            path: path.to_owned(),
            problem,
        }
    }

    /// Whether this is a TLS handshake that one side refused: rustls refused the client (its
    /// certificate, no common protocol version or cipher suite, not TLS at all...) or the client
    /// refused the server (an alert, e.g. it does not trust the server's certificate). Worth a
    /// warning: the client is misconfigured or the listener is. A connection closed or reset
    /// before the handshake ended (port scanners, TCP health checks) is not a refusal, nor is a
    /// timeout, a PROXY header or a WebSocket upgrade problem.
    pub fn is_tls_refusal(&self) -> bool {
        match self {
            TransportError::TlsHandshake(e) => {
                e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
            }
            _ => false,
        }
    }
}

/// Rate limit for the warnings about refused handshakes of one listener: at most one line per
/// [`RefusalLog::INTERVAL`], carrying how many refusals were not logged since the last line.
#[derive(Debug, Default)]
pub struct RefusalLog {
    state: std::sync::Mutex<RefusalLogState>,
}

#[derive(Debug, Default)]
struct RefusalLogState {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// The shortest time between two logged lines.
    pub const INTERVAL: Duration = Duration::from_secs(1);

    /// Records a refusal at `now`. `Some(n)` when it is to be logged, `n` being the refusals
    /// suppressed since the last logged one; `None` when it is suppressed (and counted).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < Self::INTERVAL)
        {
            state.suppressed = state.suppressed.saturating_add(1);
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

/// A connection's byte stream, whatever the transport.
pub trait MqttStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> MqttStream for T {}

impl fmt::Debug for dyn MqttStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MqttStream")
    }
}

/// What the transport learnt about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The real client address: from the PROXY header when `proxy_protocol = true` (and it
    /// carries one), else the socket's peer address.
    pub addr: SocketAddr,
    /// The connection is TLS (`tls` or `wss`).
    pub tls: bool,
    /// The verified client certificate's identity, for `use_identity_as_username`: its subject
    /// CN (as Mosquitto), else its first DNS or e-mail SAN. None without a client certificate.
    pub cert_identity: Option<String>,
    /// The client certificate's subject CN, if any.
    pub cert_cn: Option<String>,
    /// The listener's `use_identity_as_username` at handshake time (follows reloads): when true
    /// the broker uses `cert_identity` as the username and refuses the client if it is None.
    pub use_identity_as_username: bool,
}

/// Everything derived from one [`TransportSettings`]; swapped as a whole on reload.
struct State {
    settings: TransportSettings,
    tls: Option<tls::TlsConfigs>,
}

impl State {
    fn build(settings: &TransportSettings) -> Result<Self, TransportError> {
        settings.validate()?;
        let tls = if settings.transport.is_tls() {
            Some(tls::TlsConfigs::load(settings)?)
        } else {
            None
        };
        Ok(State {
            settings: settings.clone(),
            tls,
        })
    }

    async fn handshake(
        &self,
        mut tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Box<dyn MqttStream>, PeerInfo), TransportError> {
        let addr = if self.settings.proxy_protocol {
            proxy::read_header(&mut tcp, peer).await?
        } else {
            peer
        };
        let mut info = PeerInfo {
            addr,
            tls: false,
            cert_identity: None,
            cert_cn: None,
            use_identity_as_username: self.settings.use_identity_as_username,
        };
        let path = self.settings.path.as_str();
        let max = self.settings.ws_max_message_size;
        match (&self.tls, self.settings.transport) {
            (None, Transport::Tcp) => Ok((Box::new(tcp), info)),
            (None, Transport::Ws) => Ok((Box::new(ws::accept(tcp, path, max).await?), info)),
            (Some(tls), t @ (Transport::Tls | Transport::Wss)) => {
                let (stream, identity) = tls.accept(tcp, t.is_websocket()).await?;
                info.tls = true;
                info.cert_cn = identity.cn;
                info.cert_identity = identity.identity;
                if t.is_websocket() {
                    Ok((Box::new(ws::accept(stream, path, max).await?), info))
                } else {
                    Ok((Box::new(stream), info))
                }
            }
            (_, t) => Err(TransportError::Invalid {
                key: "transport",
                reason: format!("\"{t}\" without TLS state"),
            }),
        }
    }
}

/// Accepts connections of one listener. Cheap to share (`Arc<Acceptor>`); `accept` and `reload`
/// take `&self`.
pub struct Acceptor {
    state: ArcSwap<State>,
    refusals: RefusalLog,
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load();
        f.debug_struct("Acceptor")
            .field("settings", &state.settings)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Validates `settings` and loads every file they name (certificate chain, key, CA, CRL),
    /// checking that the key matches the certificate. Errors name the key, the file and the
    /// problem.
    pub fn new(settings: &TransportSettings) -> Result<Acceptor, TransportError> {
        Ok(Acceptor {
            state: ArcSwap::from_pointee(State::build(settings)?),
            refusals: RefusalLog::default(),
        })
    }

    /// Rebuilds everything from `settings` (re-reading certificate, key, CA and CRL files) and
    /// swaps it in only if all of it loads; on error the previous configuration stays in use.
    /// Connections already established are not affected; new ones use the new configuration.
    pub fn reload(&self, settings: &TransportSettings) -> Result<(), TransportError> {
        let state = State::build(settings)?;
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// The rate limit of this listener's warnings about refused handshakes.
    pub fn refusal_log(&self) -> &RefusalLog {
        &self.refusals
    }

    /// The settings currently in use.
    pub fn settings(&self) -> TransportSettings {
        self.state.load().settings.clone()
    }

    /// Runs the PROXY header / TLS / WebSocket handshakes on an accepted connection, bounded by
    /// `handshake_timeout`. Call it inside the connection's own task, never in the accept loop.
    /// `peer` is the socket's peer address (the PROXY header may replace it in [`PeerInfo`]).
    pub async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Box<dyn MqttStream>, PeerInfo), TransportError> {
        let state = self.state.load_full();
        let limit = state.settings.handshake_timeout;
        match tokio::time::timeout(limit, state.handshake(tcp, peer)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(limit)),
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn refusal_log_allows_one_line_a_second_and_counts_the_rest() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Some(0), "the first refusal is logged");
        assert_eq!(log.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(log.admit(t0 + Duration::from_millis(999)), None);
        assert_eq!(
            log.admit(t0 + Duration::from_secs(1)),
            Some(2),
            "a second later: logged with the 2 suppressed ones"
        );
        assert_eq!(log.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.admit(t0 + Duration::from_secs(5)), Some(1));
        assert_eq!(log.admit(t0 + Duration::from_secs(9)), Some(0));
    }

    #[test]
    fn only_tls_level_errors_are_refusals() {
        let refused = TransportError::TlsHandshake(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(refused.is_tls_refusal());
        let alert = TransportError::TlsHandshake(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        ));
        assert!(alert.is_tls_refusal(), "the client refused the server");
        for quiet in [
            TransportError::TlsHandshake(io::ErrorKind::UnexpectedEof.into()),
            TransportError::TlsHandshake(io::ErrorKind::ConnectionReset.into()),
            TransportError::Timeout(Duration::from_secs(10)),
            TransportError::Proxy("x".into()),
            TransportError::WebSocket("x".into()),
            TransportError::Io(io::ErrorKind::BrokenPipe.into()),
        ] {
            assert!(!quiet.is_tls_refusal(), "{quiet}");
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
