//! MQTT over WebSocket (MQTT 5.0 / 3.1.1 section 6): the server upgrade (path and subprotocol
//! checks) and an adapter from WebSocket binary messages to a byte stream.
//!
//! Subprotocol choice: "mqtt" if offered, else "mqttv3.1" (older Paho clients) if offered. A
//! client offering only other subprotocols is refused with 400. A client offering none is
//! accepted and the response carries no `Sec-WebSocket-Protocol` (RFC 6455 4.2.2 forbids
//! answering with one that was not offered): [MQTT-6.0.0-3] ("the Client MUST include mqtt")
//! is a client requirement and refusing such clients protects nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::TransportError;

/// Subprotocols we speak, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Chunk size of tungstenite's read buffer and threshold of its write buffer: small, since a
/// broker holds many mostly idle connections (the defaults are 128 KiB each).
const BUFFER_SIZE: usize = 8 * 1024;

/// The subprotocol to answer with: Ok(None) if the client offered none, Err if it offered only
/// ones we do not speak.
fn choose_subprotocol(request: &Request) -> Result<Option<&'static str>, String> {
    let mut offered = Vec::new();
    for value in request.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let value = value
            .to_str()
            .map_err(|_| "Sec-WebSocket-Protocol is not ASCII".to_owned())?;
        offered.extend(value.split(',').map(str::trim).filter(|p| !p.is_empty()));
    }
    if offered.is_empty() {
        return Ok(None);
    }
    SUBPROTOCOLS
        .into_iter()
        .find(|ours| offered.contains(ours))
        .map(Some)
        .ok_or_else(|| format!("no supported WebSocket subprotocol in {offered:?} (want \"mqtt\")"))
}

fn refuse(status: StatusCode, body: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    response
}

/// Runs the server side of the WebSocket upgrade on `stream`: the request path must be `path`
/// (else 404, query string ignored), the subprotocol is chosen as described in the module doc.
/// Messages and frames larger than `max_message_size` are refused (the connection fails).
pub(super) async fn accept<S>(
    stream: S,
    path: &str,
    max_message_size: usize,
) -> Result<WsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .read_buffer_size(BUFFER_SIZE)
        .write_buffer_size(BUFFER_SIZE)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size));
    // The callback's error type is tungstenite's `ErrorResponse` (an HTTP response): not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        if request.uri().path() != path {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("no MQTT WebSocket endpoint at {}", request.uri().path()),
            ));
        }
        match choose_subprotocol(request) {
            Ok(Some(protocol)) => {
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(protocol),
                );
                Ok(response)
            }
            Ok(None) => Ok(response),
            Err(reason) => Err(refuse(StatusCode::BAD_REQUEST, reason)),
        }
    };
    let inner = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config))
        .await
        .map_err(|e| TransportError::WebSocket(e.to_string()))?;
    Ok(WsStream::new(inner))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// Close frame received or the connection ended: reads return EOF.
    Eof,
    /// A text frame arrived [MQTT-6.0.0-1]: reads keep failing.
    Failed,
}

/// A WebSocket connection as a byte stream. Reads yield the payload bytes of binary messages
/// in order, regardless of message boundaries [MQTT-6.0.0-2]; a text message is an error
/// [MQTT-6.0.0-1]; pings are answered by tungstenite; a close message is EOF. Each `poll_write`
/// becomes one binary message, sent on `poll_flush` (or once 8 KiB are buffered); `poll_shutdown`
/// sends a close frame.
///
/// Either side of a WebSocket: `hermod bench` wraps its client connections in it too.
pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// The unread rest of the current binary message (a cheap slice of tungstenite's buffer).
    read_buf: Bytes,
    read_state: ReadState,
}

impl<S> WsStream<S> {
    /// The byte stream of an established WebSocket (after the server's upgrade, or a client's
    /// `tokio_tungstenite::client_async`).
    pub fn new(inner: WebSocketStream<S>) -> Self {
        Self {
            inner,
            read_buf: Bytes::new(),
            read_state: ReadState::Open,
        }
    }
}

impl<S> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("buffered", &self.read_buf.len())
            .field("state", &self.read_state)
            .finish()
    }
}

fn text_frame_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "WebSocket text frame received; MQTT must be sent in binary frames [MQTT-6.0.0-1]",
    )
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::from(io::ErrorKind::BrokenPipe)
        }
        WsError::Capacity(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.read_buf.is_empty() {
                let n = this.read_buf.len().min(buf.remaining());
                buf.put_slice(&this.read_buf[..n]);
                this.read_buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.read_state {
                ReadState::Open => {}
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Failed => return Poll::Ready(Err(text_frame_error())),
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.read_buf = data,
                // Pings are answered by tungstenite itself; pongs and raw frames carry nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    this.read_state = ReadState::Failed;
                    return Poll::Ready(Err(text_frame_error()));
                }
                // tungstenite queues the close reply; it goes out on the next write / flush / shutdown.
                Some(Ok(Message::Close(_)))
                | None
                | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    this.read_state = ReadState::Eof;
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut inner = Pin::new(&mut self.get_mut().inner);
        ready!(inner.as_mut().poll_ready(cx)).map_err(to_io)?;
        inner
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_flush(cx)
            .map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_close(cx)
            .map_err(to_io)
    }
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::super::test_pki::{Pki, client_config};
    use super::super::{
        Acceptor, MqttStream, PeerInfo, Transport, TransportError, TransportSettings,
    };
    use super::*;

    type Accepted = Result<(Box<dyn MqttStream>, PeerInfo), TransportError>;

    async fn server(
        settings: &TransportSettings,
    ) -> (SocketAddr, tokio::task::JoinHandle<Accepted>) {
        let acceptor = Arc::new(Acceptor::new(settings).expect("acceptor"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await?;
            acceptor.accept(tcp, peer).await
        });
        (addr, task)
    }

    fn ws_settings() -> TransportSettings {
        TransportSettings {
            transport: Transport::Ws,
            ..Default::default()
        }
    }

    fn request(addr: SocketAddr, path: &str, protocols: Option<&str>) -> Request {
        let mut req = format!("ws://{addr}{path}")
            .into_client_request()
            .expect("request");
        if let Some(p) = protocols {
            req.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(p).expect("header"),
            );
        }
        req
    }

    type Client = WebSocketStream<TcpStream>;

    /// Connects a WebSocket client; returns it, the subprotocol the server chose, and the
    /// server's stream.
    async fn connect(
        settings: &TransportSettings,
        path: &str,
        protocols: Option<&str>,
    ) -> (Client, Option<String>, Box<dyn MqttStream>) {
        let (addr, server) = server(settings).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (client, response) =
            tokio_tungstenite::client_async(request(addr, path, protocols), tcp)
                .await
                .expect("ws handshake");
        let chosen = response
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let (stream, info) = server.await.expect("join").expect("server accept");
        assert!(!info.tls);
        (client, chosen, stream)
    }

    async fn refused_status(
        settings: &TransportSettings,
        path: &str,
        protocols: Option<&str>,
    ) -> (StatusCode, String) {
        let (addr, server) = server(settings).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let err = tokio_tungstenite::client_async(request(addr, path, protocols), tcp)
            .await
            .expect_err("must be refused");
        let server_err = server.await.expect("join").expect_err("server must refuse");
        assert!(
            matches!(server_err, TransportError::WebSocket(_)),
            "{server_err}"
        );
        match err {
            WsError::Http(response) => (response.status(), server_err.to_string()),
            other => panic!("expected an HTTP error response, got {other}"),
        }
    }

    async fn read_n(stream: &mut Box<dyn MqttStream>, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("read timed out")
            .expect("read");
        buf
    }

    #[tokio::test]
    async fn subprotocol_mqtt_is_echoed_and_bytes_flow_both_ways() {
        let (mut client, chosen, mut stream) = connect(&ws_settings(), "/mqtt", Some("mqtt")).await;
        assert_eq!(chosen.as_deref(), Some("mqtt"));
        client
            .send(Message::binary(vec![0x10, 0x02]))
            .await
            .expect("send");
        assert_eq!(read_n(&mut stream, 2).await, [0x10, 0x02]);
        stream
            .write_all(&[0x20, 0x02, 0x00, 0x00])
            .await
            .expect("write");
        stream.flush().await.expect("flush");
        let msg = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("timeout");
        assert_eq!(
            msg.expect("message").expect("ok"),
            Message::binary(vec![0x20, 0x02, 0x00, 0x00])
        );
    }

    #[tokio::test]
    async fn subprotocol_negotiation() {
        let (_, chosen, _) = connect(&ws_settings(), "/mqtt", Some("foo, mqttv3.1, mqtt")).await;
        assert_eq!(
            chosen.as_deref(),
            Some("mqtt"),
            "mqtt preferred wherever it is in the list"
        );
        let (_, chosen, _) = connect(&ws_settings(), "/mqtt", Some("mqttv3.1")).await;
        assert_eq!(chosen.as_deref(), Some("mqttv3.1"));
        let (_, chosen, _) = connect(&ws_settings(), "/mqtt?x=1", None).await;
        assert_eq!(
            chosen, None,
            "no subprotocol offered: accepted, none answered"
        );
        let (status, err) = refused_status(&ws_settings(), "/mqtt", Some("chat, superchat")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err.contains("400"), "{err}");
    }

    #[tokio::test]
    async fn wrong_path_is_404() {
        let (status, _) = refused_status(&ws_settings(), "/", Some("mqtt")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let custom = TransportSettings {
            path: "/broker/ws".into(),
            ..ws_settings()
        };
        let (status, _) = refused_status(&custom, "/mqtt", Some("mqtt")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, chosen, _) = connect(&custom, "/broker/ws", Some("mqtt")).await;
        assert_eq!(chosen.as_deref(), Some("mqtt"));
    }

    #[tokio::test]
    async fn packets_are_not_aligned_on_frames() {
        let (mut client, _, mut stream) = connect(&ws_settings(), "/mqtt", Some("mqtt")).await;
        // One packet split over two binary messages.
        client
            .send(Message::binary(vec![0x30, 0x05, b't']))
            .await
            .expect("send 1");
        client
            .send(Message::binary(vec![b'/', b'a', b'b', b'c']))
            .await
            .expect("send 2");
        assert_eq!(
            read_n(&mut stream, 7).await,
            [0x30, 0x05, b't', b'/', b'a', b'b', b'c']
        );
        // Two packets in one message, read as two separate reads.
        client
            .send(Message::binary(vec![0xC0, 0x00, 0xE0, 0x00]))
            .await
            .expect("send 3");
        assert_eq!(read_n(&mut stream, 2).await, [0xC0, 0x00]);
        assert_eq!(read_n(&mut stream, 2).await, [0xE0, 0x00]);
        // A ping in between is answered and does not show up in the byte stream.
        client
            .send(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .expect("ping");
        client
            .send(Message::binary(vec![0xC0, 0x00]))
            .await
            .expect("send 4");
        assert_eq!(read_n(&mut stream, 2).await, [0xC0, 0x00]);
        stream.write_all(&[0xD0, 0x00]).await.expect("write");
        stream.flush().await.expect("flush");
        let pong = client.next().await.expect("message").expect("ok");
        assert_eq!(pong, Message::Pong(Bytes::from_static(b"hi")));
        assert_eq!(
            client.next().await.expect("message").expect("ok"),
            Message::binary(vec![0xD0, 0x00])
        );
    }

    #[tokio::test]
    async fn each_write_is_one_binary_message() {
        let (mut client, _, mut stream) = connect(&ws_settings(), "/mqtt", Some("mqtt")).await;
        stream.write_all(&[0xD0, 0x00]).await.expect("write 1");
        stream
            .write_all(&[0x30, 0x01, b'x'])
            .await
            .expect("write 2");
        stream.flush().await.expect("flush");
        assert_eq!(
            client.next().await.expect("m1").expect("ok"),
            Message::binary(vec![0xD0, 0x00])
        );
        assert_eq!(
            client.next().await.expect("m2").expect("ok"),
            Message::binary(vec![0x30, 0x01, b'x'])
        );
    }

    #[tokio::test]
    async fn text_frame_fails_the_stream() {
        let (mut client, _, mut stream) = connect(&ws_settings(), "/mqtt", Some("mqtt")).await;
        client
            .send(Message::text("CONNECT"))
            .await
            .expect("send text");
        let mut buf = [0u8; 4];
        let err = stream
            .read(&mut buf)
            .await
            .expect_err("text frame must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("MQTT-6.0.0-1"), "{err}");
        assert!(stream.read(&mut buf).await.is_err(), "stays failed");
        drop(stream);
        // The server side dropping the stream closes the connection.
        let end = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("timeout");
        assert!(!matches!(end, Some(Ok(Message::Binary(_)))), "{end:?}");
    }

    #[tokio::test]
    async fn close_is_eof_and_shutdown_sends_close() {
        let (mut client, _, mut stream) = connect(&ws_settings(), "/mqtt", Some("mqtt")).await;
        client
            .send(Message::binary(vec![0xE0]))
            .await
            .expect("send");
        client.close(None).await.expect("client close");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("timeout")
            .expect("eof, not error");
        assert_eq!(rest, [0xE0], "data before the close is delivered, then EOF");

        let (mut client, _, mut stream) = connect(&ws_settings(), "/mqtt", Some("mqtt")).await;
        stream.shutdown().await.expect("shutdown");
        let msg = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("timeout");
        assert!(matches!(msg, Some(Ok(Message::Close(_)))), "{msg:?}");
    }

    #[tokio::test]
    async fn oversized_message_is_refused() {
        let settings = TransportSettings {
            ws_max_message_size: 1024,
            ..ws_settings()
        };
        let (mut client, _, mut stream) = connect(&settings, "/mqtt", Some("mqtt")).await;
        client
            .send(Message::binary(vec![0u8; 512]))
            .await
            .expect("send ok");
        assert_eq!(read_n(&mut stream, 512).await.len(), 512);
        client
            .send(Message::binary(vec![0u8; 2048]))
            .await
            .expect("send big");
        let mut buf = [0u8; 16];
        assert!(
            stream.read(&mut buf).await.is_err(),
            "message over the bound must fail the stream"
        );
    }

    #[tokio::test]
    async fn wss_works_with_alpn_http11() {
        let pki = Pki::new();
        let (addr, server) = server(&pki.tls_settings(true)).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let config = client_config(&pki.ca_pem, None, &[b"h2", b"http/1.1"]);
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("tls");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut req = format!("wss://localhost:{}/mqtt", addr.port())
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mqtt"),
        );
        let (mut client, response) = tokio_tungstenite::client_async(req, tls)
            .await
            .expect("ws handshake");
        assert_eq!(
            response
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .map(|v| v.as_bytes()),
            Some(&b"mqtt"[..])
        );
        let (mut stream, info) = server.await.expect("join").expect("server accept");
        assert!(info.tls);
        client
            .send(Message::binary(vec![0x10, 0x00]))
            .await
            .expect("send");
        assert_eq!(read_n(&mut stream, 2).await, [0x10, 0x00]);
        stream.write_all(&[0x20, 0x00]).await.expect("write");
        stream.flush().await.expect("flush");
        assert_eq!(
            client.next().await.expect("msg").expect("ok"),
            Message::binary(vec![0x20, 0x00])
        );
    }

    #[tokio::test]
    async fn plain_tcp_to_a_ws_listener_fails_the_handshake() {
        let (addr, server) = server(&ws_settings()).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(&[
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
        ])
        .await
        .expect("write");
        tcp.shutdown().await.expect("shutdown");
        let err = server
            .await
            .expect("join")
            .expect_err("MQTT CONNECT is not an HTTP upgrade");
        assert!(matches!(err, TransportError::WebSocket(_)), "{err}");
    }
}
