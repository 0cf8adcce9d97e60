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
//!
//! # Layout
//! - this file: [`Acceptor`] (handshakes of one listener, reload), [`PeerInfo`], [`MqttStream`];
//! - `settings` — [`Transport`], [`TransportSettings`] (a listener's keys) and their validation;
//! - `error` — [`TransportError`] and [`FileProblem`];
//! - `refusal_log` — [`RefusalLog`], the rate limit of refused-handshake warnings;
//! - `proxy` — the PROXY protocol v1/v2 header;
//! - `tls` — certificate / key / CA / CRL files, rustls server configurations, the TLS
//!   handshake and the client certificate's identity; `client_verifier` — client certificate
//!   verification (X.509 v1 certificates included);
//! - `ws` — the WebSocket upgrade, and binary messages as a byte stream ([`WsStream`], which
//!   `hermod bench` uses on the client side too).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

mod client_verifier;
mod error;
mod proxy;
mod refusal_log;
mod settings;
mod tls;
mod ws;

#[cfg(test)]
mod test_pki;

pub use error::{FileProblem, TransportError};
pub use refusal_log::RefusalLog;
pub use settings::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_WS_PATH, Transport, TransportSettings,
    ws_max_message_size_for,
};
pub use ws::WsStream;

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
    /// An internal connection (`api::BrokerHandle::connect_internal`), with its session's limits.
    pub internal: Option<crate::api::InternalOptions>,
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
            internal: None,
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
