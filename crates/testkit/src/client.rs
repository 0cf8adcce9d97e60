//! The raw MQTT client: one connection over any transport, the codec, and a stash for packets
//! read while waiting for another one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hermod_proto::{
    Connect, ConnectAck, Disconnect, Packet, PacketId, ProtocolVersion, Publish, PublishAck, QoS,
    ReasonCode, Subscribe, SubscribeAck, SubscribeProperties, SubscriptionOptions, Unsubscribe,
    UnsubscribeAck, decode_packet,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::WAIT;
use crate::packets::{connect_packet, encode, opts, pid, publish};

/// A byte stream the client can run over (TCP, or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach a listener.
#[derive(Clone)]
pub enum Via {
    Tcp,
    Tls(Arc<ClientConfig>),
    /// WebSocket on this path.
    Ws(&'static str),
    Wss(Arc<ClientConfig>, &'static str),
}

enum Conn {
    Stream(Box<dyn Io>),
    Ws(Box<WebSocketStream<Box<dyn Io>>>),
}

async fn tls_handshake(tcp: TcpStream, config: &Arc<ClientConfig>) -> Result<Box<dyn Io>, String> {
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = ServerName::try_from("localhost").expect("name");
    match tokio::time::timeout(WAIT, connector.connect(name, tcp)).await {
        Err(_) => Err("TLS handshake timed out".to_owned()),
        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
        Ok(Ok(s)) => Ok(Box::new(s) as Box<dyn Io>),
    }
}

/// Opens the transport; Err describes a refused TLS or WebSocket handshake.
async fn open(addr: SocketAddr, via: &Via) -> Result<Conn, String> {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .map_err(|_| "TCP connect timed out".to_owned())?
        .map_err(|e| format!("TCP connect: {e}"))?;
    tcp.set_nodelay(true).ok();
    let ws = |stream: Box<dyn Io>, scheme: &'static str, path: &'static str| async move {
        let mut request = format!("{scheme}://localhost:{}{path}", addr.port())
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream)).await {
            Err(_) => Err("WebSocket handshake timed out".to_owned()),
            Ok(Err(e)) => Err(format!("WebSocket handshake: {e}")),
            Ok(Ok((s, response))) => {
                let proto = response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .map(|v| v.to_str().unwrap_or("?").to_owned());
                assert_eq!(
                    proto.as_deref(),
                    Some("mqtt"),
                    "server answers the offered subprotocol [MQTT-6.0.0-4]"
                );
                Ok(Conn::Ws(Box::new(s)))
            }
        }
    };
    match via {
        Via::Tcp => Ok(Conn::Stream(Box::new(tcp))),
        Via::Tls(config) => Ok(Conn::Stream(tls_handshake(tcp, config).await?)),
        Via::Ws(path) => ws(Box::new(tcp), "ws", path).await,
        Via::Wss(config, path) => {
            let s = tls_handshake(tcp, config).await?;
            ws(s, "wss", path).await
        }
    }
}

/// What one read produced.
// Tests match on it by value; boxing the packet would only make them noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    Closed,
    Timeout,
}

/// A raw MQTT client over any transport.
pub struct Client {
    pub version: ProtocolVersion,
    conn: Conn,
    rbuf: BytesMut,
    pending: VecDeque<Packet>,
    next_pid: u16,
    closed: bool,
}

impl Client {
    /// The transport is up, nothing MQTT sent yet; Err describes a refused handshake.
    pub async fn open(
        addr: SocketAddr,
        via: &Via,
        version: ProtocolVersion,
    ) -> Result<Client, String> {
        let conn = open(addr, via).await?;
        Ok(Client {
            version,
            conn,
            rbuf: BytesMut::with_capacity(4096),
            pending: VecDeque::new(),
            next_pid: 100,
            closed: false,
        })
    }

    /// A TCP connection, nothing sent yet (panics if it cannot be opened).
    pub async fn tcp(addr: SocketAddr, version: ProtocolVersion) -> Self {
        Self::open(addr, &Via::Tcp, version)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends CONNECT; Ok(CONNACK) or Err(what happened instead: refused handshake, close...).
    pub async fn try_connect(
        addr: SocketAddr,
        via: &Via,
        c: Connect,
    ) -> Result<(Client, ConnectAck), String> {
        let mut client = Client::open(addr, via, c.protocol).await?;
        client.send(&Packet::Connect(Box::new(c))).await;
        match client.read(WAIT).await {
            Recv::Packet(Packet::ConnectAck(a)) => Ok((client, a)),
            other => Err(format!("no CONNACK: {other:?}")),
        }
    }

    /// Connects and asserts CONNACK success.
    pub async fn connect(addr: SocketAddr, via: &Via, c: Connect) -> Client {
        let id = c.client_id.clone();
        match Client::try_connect(addr, via, c).await {
            Ok((client, ack)) => {
                assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}: {ack:?}");
                client
            }
            Err(e) => panic!("{id}: {e}"),
        }
    }

    /// Over TCP, connects with clean start as `id` and asserts CONNACK success.
    pub async fn connect_id(addr: SocketAddr, v: ProtocolVersion, id: &str) -> Self {
        Self::connect(addr, &Via::Tcp, connect_packet(v, id)).await
    }

    /// Over TCP, sends `c` and returns the CONNACK (whatever its reason code).
    pub async fn connect_with(addr: SocketAddr, c: Connect) -> (Self, ConnectAck) {
        let mut client = Self::tcp(addr, c.protocol).await;
        client.send(&Packet::Connect(Box::new(c))).await;
        match client.read(WAIT).await {
            Recv::Packet(Packet::ConnectAck(a)) => (client, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The CONNACK reason for `c`; a refusing CONNACK must be followed by a close (panics if
    /// there is no CONNACK).
    pub async fn connack(addr: SocketAddr, via: &Via, c: Connect) -> ReasonCode {
        let id = c.client_id.clone();
        match Client::try_connect(addr, via, c).await {
            Ok((mut client, ack)) => {
                if ack.reason != ReasonCode::SUCCESS {
                    assert!(
                        client.is_closed_within(WAIT).await,
                        "{id}: the broker closes after a refusing CONNACK [MQTT-3.2.2-5]"
                    );
                }
                ack.reason
            }
            Err(e) => panic!("{id}: {e}"),
        }
    }

    pub async fn send(&mut self, p: &Packet) {
        let b = encode(p, self.version);
        self.send_raw(&b).await;
    }

    /// Sends bytes; over WebSocket, as one binary message.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed; a failed write shows up on the next read.
        match &mut self.conn {
            Conn::Stream(s) => {
                let _ = s.write_all(bytes).await;
                let _ = s.flush().await;
            }
            Conn::Ws(ws) => {
                let _ = ws
                    .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                    .await;
            }
        }
    }

    /// Closes the connection without DISCONNECT (the socket is dropped).
    pub fn drop_connection(self) {
        drop(self);
    }

    /// Reads more bytes into the buffer; false on timeout (a close sets `closed`).
    async fn fill(&mut self, deadline: Instant) -> bool {
        match &mut self.conn {
            Conn::Stream(s) => {
                self.rbuf.reserve(4096);
                match tokio::time::timeout_at(deadline, s.read_buf(&mut self.rbuf)).await {
                    Err(_) => return false,
                    Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                    Ok(Ok(_)) => {}
                }
            }
            Conn::Ws(ws) => match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => self.closed = true,
                Ok(Some(Ok(Message::Binary(b)))) => self.rbuf.extend_from_slice(&b),
                Ok(Some(Ok(Message::Text(t)))) => {
                    panic!("broker sent a text frame [MQTT-6.0.0-1]: {t}")
                }
                Ok(Some(Ok(_))) => {}
            },
        }
        true
    }

    /// The next packet (stashed ones first), a close, or a timeout.
    pub async fn read(&mut self, timeout: Duration) -> Recv {
        if let Some(p) = self.pending.pop_front() {
            return Recv::Packet(p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match decode_packet(&mut self.rbuf, self.version, usize::MAX) {
                Ok(Some(p)) => return Recv::Packet(p),
                Ok(None) => {}
                Err(e) => panic!(
                    "broker sent bytes the codec cannot decode ({:?}): {e}",
                    self.version
                ),
            }
            if self.closed {
                return Recv::Closed;
            }
            if !self.fill(deadline).await {
                return Recv::Timeout;
            }
        }
    }

    /// Raw bytes received within `timeout` (up to close or timeout), for answers the codec
    /// refuses to decode. Nothing may be pending.
    pub async fn recv_raw(&mut self, timeout: Duration) -> Vec<u8> {
        assert!(self.pending.is_empty());
        let deadline = Instant::now() + timeout;
        while !self.closed {
            if !self.fill(deadline).await {
                break;
            }
        }
        self.rbuf.split().to_vec()
    }

    /// The next packet within `timeout`, or `None` on timeout or close.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        match self.read(timeout).await {
            Recv::Packet(p) => Some(p),
            _ => None,
        }
    }

    /// The next packet; panics on timeout or close.
    pub async fn expect(&mut self) -> Packet {
        match self.read(WAIT).await {
            Recv::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    pub async fn expect_publish(&mut self) -> Publish {
        match self.expect().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Receives a PUBLISH and completes its QoS flow.
    pub async fn expect_publish_acked(&mut self) -> Publish {
        let p = self.expect_publish().await;
        self.ack(&p).await;
        p
    }

    /// Asserts that no packet arrives within `d` (a close is not a packet).
    pub async fn expect_nothing(&mut self, d: Duration) {
        if let Recv::Packet(p) = self.read(d).await {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Asserts that the broker closes the connection within `timeout` without sending anything.
    pub async fn expect_closed(&mut self, timeout: Duration) {
        match self.read(timeout).await {
            Recv::Closed => {}
            other => panic!("expected the broker to close the connection, got {other:?}"),
        }
    }

    /// Whether the connection is (or gets, within `d`) closed, ignoring packets.
    pub async fn is_closed_within(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Recv::Closed => return true,
                Recv::Timeout => return false,
                Recv::Packet(_) => {}
            }
        }
    }

    /// v5: DISCONNECT with `reason`, then close. v3: close without any packet.
    pub async fn expect_disconnect(&mut self, reason: ReasonCode) {
        if self.version.is_v5() {
            match self.read(WAIT).await {
                Recv::Packet(Packet::Disconnect(d)) => {
                    assert_eq!(d.reason, reason, "DISCONNECT reason: {d:?}");
                }
                other => panic!("expected DISCONNECT {reason}, got {other:?}"),
            }
        }
        self.expect_closed(WAIT).await;
    }

    /// Reads until a packet matching `f` arrives; others are kept for later reads.
    pub async fn wait_for(&mut self, what: &str, f: impl Fn(&Packet) -> bool) -> Packet {
        // Look at already stashed packets first.
        if let Some(i) = self.pending.iter().position(&f) {
            return self.pending.remove(i).expect("index");
        }
        let mut skipped = Vec::new();
        let deadline = Instant::now() + WAIT;
        let stash = std::mem::take(&mut self.pending);
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Recv::Packet(p) if f(&p) => break p,
                Recv::Packet(p) => skipped.push(p),
                other => panic!("waiting for {what}: got {other:?} (skipped {skipped:?})"),
            }
        };
        self.pending = stash;
        self.pending.extend(skipped);
        found
    }

    pub fn next_packet_id(&mut self) -> PacketId {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        pid(self.next_pid)
    }

    /// Subscribes to one filter; the SUBACK's reason codes.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<ReasonCode> {
        self.subscribe_with(
            vec![(filter.into(), opts(qos))],
            SubscribeProperties::default(),
        )
        .await
        .reasons
    }

    /// Subscribes to one filter; the SUBACK's one reason code.
    pub async fn subscribe_one(&mut self, filter: &str, qos: QoS) -> ReasonCode {
        let reasons = self.subscribe(filter, qos).await;
        assert_eq!(reasons.len(), 1, "one reason per filter");
        reasons[0]
    }

    pub async fn subscribe_with(
        &mut self,
        filters: Vec<(String, SubscriptionOptions)>,
        properties: SubscribeProperties,
    ) -> SubscribeAck {
        let id = self.next_packet_id();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters,
            properties,
        }))
        .await;
        match self
            .wait_for("SUBACK", |p| matches!(p, Packet::SubscribeAck(_)))
            .await
        {
            Packet::SubscribeAck(a) => {
                assert_eq!(a.packet_id, id, "SUBACK packet id [MQTT-3.8.4-2]");
                a
            }
            _ => unreachable!(),
        }
    }

    pub async fn unsubscribe(&mut self, filters: &[&str]) -> UnsubscribeAck {
        let id = self.next_packet_id();
        let u = Unsubscribe {
            packet_id: id,
            filters: filters.iter().map(|s| s.to_string()).collect(),
            user_properties: vec![],
        };
        self.send(&Packet::Unsubscribe(u)).await;
        match self
            .wait_for("UNSUBACK", |p| matches!(p, Packet::UnsubscribeAck(_)))
            .await
        {
            Packet::UnsubscribeAck(a) => {
                assert_eq!(a.packet_id, id, "UNSUBACK packet id [MQTT-3.10.4-4]");
                a
            }
            _ => unreachable!(),
        }
    }

    /// Publishes and completes the QoS flow (PUBACK, or PUBREC/PUBREL/PUBCOMP). QoS 0 is followed
    /// by a PINGREQ round trip, so the broker has routed the message when this returns.
    /// Returns the PUBACK/PUBREC reason code (SUCCESS for QoS 0).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> ReasonCode {
        self.publish_packet(publish(topic, payload, qos, retain))
            .await
    }

    /// Publishes `p` (its packet id replaced by a fresh one for QoS > 0) and completes the flow.
    /// Returns the PUBACK/PUBREC reason code (SUCCESS for QoS 0).
    pub async fn publish_packet(&mut self, mut p: Publish) -> ReasonCode {
        if p.qos != QoS::AtMostOnce {
            p.packet_id = Some(self.next_packet_id());
        }
        let id = p.packet_id;
        let qos = p.qos;
        self.send(&Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => {
                self.ping().await;
                ReasonCode::SUCCESS
            }
            QoS::AtLeastOnce => match self
                .wait_for(
                    "PUBACK",
                    |p| matches!(p, Packet::PublishAck(a) if Some(a.packet_id) == id),
                )
                .await
            {
                Packet::PublishAck(a) => a.reason,
                _ => unreachable!(),
            },
            QoS::ExactlyOnce => {
                let id = id.expect("id");
                let rec = match self
                    .wait_for(
                        "PUBREC",
                        |p| matches!(p, Packet::PublishReceived(a) if a.packet_id == id),
                    )
                    .await
                {
                    Packet::PublishReceived(a) => a.reason,
                    _ => unreachable!(),
                };
                self.send(&Packet::PublishRelease(PublishAck::new(id)))
                    .await;
                match self
                    .wait_for(
                        "PUBCOMP",
                        |p| matches!(p, Packet::PublishComplete(a) if a.packet_id == id),
                    )
                    .await
                {
                    Packet::PublishComplete(a) => {
                        assert_eq!(a.reason, ReasonCode::SUCCESS, "PUBCOMP reason")
                    }
                    _ => unreachable!(),
                }
                rec
            }
        }
    }

    /// Acknowledges a received PUBLISH (PUBACK, or PUBREC + wait PUBREL + PUBCOMP).
    pub async fn ack(&mut self, p: &Publish) {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let id = p.packet_id.expect("QoS 1 PUBLISH has a packet id");
                self.send(&Packet::PublishAck(PublishAck::new(id))).await;
            }
            QoS::ExactlyOnce => {
                let id = p.packet_id.expect("QoS 2 PUBLISH has a packet id");
                self.send(&Packet::PublishReceived(PublishAck::new(id)))
                    .await;
                self.wait_for(
                    "PUBREL",
                    |q| matches!(q, Packet::PublishRelease(a) if a.packet_id == id),
                )
                .await;
                self.send(&Packet::PublishComplete(PublishAck::new(id)))
                    .await;
            }
        }
    }

    pub async fn ping(&mut self) {
        self.send(&Packet::PingRequest).await;
        self.wait_for("PINGRESP", |p| matches!(p, Packet::PingResponse))
            .await;
    }

    /// Normal DISCONNECT, then waits for the broker to close.
    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default())).await;
        assert!(
            self.is_closed_within(WAIT).await,
            "broker closes after DISCONNECT [MQTT-3.14.4-1]"
        );
    }

    /// Collects `n` PUBLISH packets (acking each), panicking if they do not arrive in time.
    pub async fn collect(&mut self, n: usize) -> Vec<Publish> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.expect_publish_acked().await);
        }
        v
    }

    /// Every PUBLISH arriving until `quiet` passes with none (acked).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Publish> {
        let mut v = Vec::new();
        while let Some(p) = self.recv(quiet).await {
            match p {
                Packet::Publish(p) => {
                    self.ack(&p).await;
                    v.push(p);
                }
                other => panic!("expected only PUBLISH, got {other:?}"),
            }
        }
        v
    }
}
