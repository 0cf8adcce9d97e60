//! The bench's connections over TCP, TLS, WebSocket or WebSocket over TLS.
//!
//! The engine is readiness-driven (`try_read` / `try_write` until `WouldBlock`, then wait for
//! readiness): [`Transport::Tcp`] passes those straight to the socket, so plain TCP costs one
//! `match` more than before. The other transports are byte streams (tokio-rustls; the broker's
//! [`WsStream`], one binary message per write) polled once without a waker for `try_*`; waiting
//! polls them for real: a flush when bytes are buffered in the TLS or WebSocket layer, a read
//! into a small read-ahead buffer (handed out by the next `try_read`) otherwise.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hermod_broker::transport::WsStream;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::wire;

/// Bytes read ahead while waiting for a layered transport to become readable.
const READ_AHEAD: usize = 8 * 1024;
/// tungstenite's read chunk and write threshold (its defaults are 128 KiB each).
const WS_BUFFER: usize = 64 * 1024;

/// A byte stream under the engine: TLS, WebSocket, or both.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How every connection of a run is opened.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Option<TlsConnector>,
    /// WebSocket on this path.
    ws_path: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where to connect: the address, and the host name for TLS (SNI, certificate check) and the
/// WebSocket `Host` header.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
}

impl Connector {
    pub(crate) fn new(tls: Option<rustls::ClientConfig>, ws_path: Option<String>) -> Self {
        Self {
            tls: tls.map(|c| TlsConnector::from(Arc::new(c))),
            ws_path,
        }
    }

    /// `tcp`, `tls`, `ws` or `wss`.
    pub(crate) fn name(&self) -> &'static str {
        match (self.tls.is_some(), self.ws_path.is_some()) {
            (false, false) => "tcp",
            (true, false) => "tls",
            (false, true) => "ws",
            (true, true) => "wss",
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TCP connect (from `bind` when given), then the TLS and WebSocket handshakes, all within `timeout`.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        bind: Option<IpAddr>,
        timeout: Duration,
    ) -> anyhow::Result<Transport> {
        let addr = target.addr;
        let tcp = tokio::time::timeout(timeout, wire::open(addr, bind))
            .await
            .map_err(|_| anyhow!("TCP connect to {addr} timed out"))?
            .with_context(|| match bind {
                Some(b) => format!("connecting to {addr} from {b}"),
                None => format!("connecting to {addr}"),
            })?;
        if self.tls.is_none() && self.ws_path.is_none() {
            return Ok(Transport::Tcp(tcp));
        }
        let fut = async {
            let mut io: Box<dyn Io> = match &self.tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let name = ServerName::try_from(target.host.clone())
                        .map_err(|_| anyhow!("{:?} is not a valid TLS server name", target.host))?;
                    Box::new(tls.connect(name, tcp).await.map_err(|e| {
                        anyhow!("TLS handshake with {} ({addr}) failed: {e}", target.host)
                    })?)
                }
            };
            if let Some(path) = &self.ws_path {
                io = Box::new(ws_upgrade(io, self.is_tls(), target, path).await?);
            }
            anyhow::Ok(io)
        };
        let io = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow!("{} handshake with {addr} timed out", self.name()))??;
        Ok(Transport::Layered(Box::new(Layered {
            io,
            ahead: Vec::new(),
            ahead_pos: 0,
            ahead_len: 0,
            eof: false,
            unflushed: false,
        })))
    }
}

/// The client side of the WebSocket upgrade, offering the "mqtt" subprotocol.
async fn ws_upgrade(
    io: Box<dyn Io>,
    tls: bool,
    target: &Target,
    path: &str,
) -> anyhow::Result<WsStream<Box<dyn Io>>> {
    let scheme = if tls { "wss" } else { "ws" };
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let url = format!("{scheme}://{host}:{}{path}", target.addr.port());
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("WebSocket URL {url}"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_BUFFER)
        .write_buffer_size(WS_BUFFER);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
        .await
        .map_err(|e| anyhow!("WebSocket upgrade at {url} failed: {e}"))?;
    Ok(WsStream::new(ws))
}

/// One connection's byte stream.
pub(crate) enum Transport {
    Tcp(TcpStream),
    /// TLS, WebSocket or both.
    Layered(Box<Layered>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(s) => s.fmt(f),
            Self::Layered(_) => f.write_str("Layered"),
        }
    }
}

/// A layered stream and what the engine's readiness model needs on top of it.
pub(crate) struct Layered {
    io: Box<dyn Io>,
    /// Bytes read while waiting for readability: `ahead[ahead_pos..ahead_len]`.
    ahead: Vec<u8>,
    ahead_pos: usize,
    ahead_len: usize,
    /// The stream ended while reading ahead.
    eof: bool,
    /// Bytes written may still sit in the TLS or WebSocket layer (or a write would block).
    unflushed: bool,
}

/// A context whose waker does nothing: `try_*` polls once and reports `WouldBlock`; the real
/// waker is registered by [`Transport::ready`] before the task sleeps.
fn noop_cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

impl Layered {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        if self.ahead_pos < self.ahead_len {
            n = (self.ahead_len - self.ahead_pos).min(buf.len());
            buf[..n].copy_from_slice(&self.ahead[self.ahead_pos..self.ahead_pos + n]);
            self.ahead_pos += n;
            if n == buf.len() || self.ahead_pos < self.ahead_len {
                return Ok(n);
            }
        }
        if self.eof {
            return Ok(n);
        }
        let mut rb = ReadBuf::new(&mut buf[n..]);
        match Pin::new(&mut self.io).poll_read(&mut noop_cx(), &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                self.eof = n > 0;
                Ok(n)
            }
            Poll::Ready(Ok(())) => Ok(n + rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending if n > 0 => Ok(n),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.unflushed = true;
        match Pin::new(&mut self.io).poll_write(&mut noop_cx(), buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn try_flush(&mut self) -> io::Result<()> {
        if self.unflushed
            && let Poll::Ready(r) = Pin::new(&mut self.io).poll_flush(&mut noop_cx())
        {
            r?;
            self.unflushed = false;
        }
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        if interest.is_writable() {
            if !self.unflushed {
                return Poll::Ready(Ok(()));
            }
            if let Poll::Ready(r) = Pin::new(&mut self.io).poll_flush(cx) {
                self.unflushed = false;
                return Poll::Ready(r);
            }
        }
        if !interest.is_readable() {
            return Poll::Pending;
        }
        if self.ahead_pos < self.ahead_len || self.eof {
            return Poll::Ready(Ok(()));
        }
        if self.ahead.is_empty() {
            self.ahead = vec![0; READ_AHEAD];
        }
        let mut rb = ReadBuf::new(&mut self.ahead);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                (self.ahead_pos, self.ahead_len, self.eof) = (0, n, n == 0);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Transport {
    /// Reads what is there without waiting: `WouldBlock` when nothing is, `Ok(0)` at the end.
    pub(crate) fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.try_read(buf),
            Self::Layered(l) => l.try_read(buf),
        }
    }

    /// Writes what can be written without waiting; `WouldBlock` when nothing can.
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.try_write(buf),
            Self::Layered(l) => l.try_write(buf),
        }
    }

    /// Pushes bytes buffered in the TLS or WebSocket layer to the socket, as far as it takes them.
    pub(crate) fn try_flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(_) => Ok(()),
            Self::Layered(l) => l.try_flush(),
        }
    }

    /// Bytes are buffered above the socket: wait for writability (a flush) too.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Self::Tcp(_) => false,
            Self::Layered(l) => l.unflushed,
        }
    }

    /// Waits until a `try_read` or `try_write` (as `interest` says) can make progress.
    pub(crate) async fn ready(&mut self, interest: Interest) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.ready(interest).await.map(|_| ()),
            Self::Layered(l) => std::future::poll_fn(|cx| l.poll_ready(cx, interest)).await,
        }
    }
}

// The handshakes (CONNECT, SUBSCRIBE) use the stream as an ordinary `AsyncRead + AsyncWrite`.
impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Layered(l) => {
                if l.ahead_pos < l.ahead_len {
                    let n = (l.ahead_len - l.ahead_pos).min(buf.remaining());
                    buf.put_slice(&l.ahead[l.ahead_pos..l.ahead_pos + n]);
                    l.ahead_pos += n;
                    return Poll::Ready(Ok(()));
                }
                if l.eof {
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut l.io).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Layered(l) => {
                l.unflushed = true;
                Pin::new(&mut l.io).poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Layered(l) => {
                let r = std::task::ready!(Pin::new(&mut l.io).poll_flush(cx));
                l.unflushed = false;
                Poll::Ready(r)
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Layered(l) => Pin::new(&mut l.io).poll_shutdown(cx),
        }
    }
}

/// Checks a `--ws-path` value.
pub(crate) fn check_ws_path(path: &str) -> anyhow::Result<()> {
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("--ws-path {path:?}: expected an absolute path such as /mqtt");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_paths() {
        assert!(check_ws_path("/mqtt").is_ok());
        assert!(check_ws_path("/a/b?x=1").is_ok());
        assert!(check_ws_path("mqtt").is_err());
        assert!(check_ws_path("/a b").is_err());
        assert!(check_ws_path("").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(Connector::new(None, None).name(), "tcp");
        assert_eq!(Connector::new(None, Some("/mqtt".into())).name(), "ws");
    }
}
