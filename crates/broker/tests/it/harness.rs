//! Test harness: a broker on an OS-chosen port, and a raw MQTT client on top of hermod-proto's
//! codec, precise enough to send anything (including bytes no real client would send) and to
//! observe exactly what the broker answers.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hermod_broker::metrics::Metrics;
use hermod_broker::{Broker, Config};
pub use hermod_proto::{
    Connect, ConnectAck, Disconnect, DisconnectProperties, LastWill, Packet, PacketId,
    ProtocolVersion, Publish, PublishAck, PublishProperties, QoS, ReasonCode, RetainHandling,
    Subscribe, SubscribeAck, SubscribeProperties, SubscriptionOptions, Unsubscribe, UnsubscribeAck,
    WillProperties,
};
use hermod_proto::{decode_packet, encode_packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const V31: ProtocolVersion = ProtocolVersion::V31;
pub const V311: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const Q0: QoS = QoS::AtMostOnce;
pub const Q1: QoS = QoS::AtLeastOnce;
pub const Q2: QoS = QoS::ExactlyOnce;

/// Longest wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(3);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(400);

/// Generates `mod $name { v311, v5 }` tests calling `async fn $name(ProtocolVersion)`, like
/// mosquitto's `do_test(proto_ver=4/5)`.
macro_rules! both_versions {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn v311() {
                super::$name($crate::harness::V311).await;
            }
            #[tokio::test]
            async fn v5() {
                super::$name($crate::harness::V5).await;
            }
        }
    )*};
}

thread_local! {
    /// Panics raised by broker/codec code on this thread (a `#[tokio::test]` runs the broker's
    /// tasks on the test's own thread).
    static BROKER_PANICS: Cell<u32> = const { Cell::new(0) };
}

fn install_panic_counter() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info
                .location()
                .map(|l| l.file().to_owned())
                .unwrap_or_default();
            if file.contains("broker/src") || file.contains("proto/src") {
                BROKER_PANICS.with(|c| c.set(c.get() + 1));
            }
            prev(info);
        }));
    });
}

/// Panics (in broker or codec code) seen on this test's thread so far.
pub fn broker_panics() -> u32 {
    BROKER_PANICS.with(Cell::get)
}

/// A running broker; stopped on `stop()` (or, less tidily, on drop).
pub struct TestBroker {
    pub addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(f: impl FnOnce(&mut Config)) -> Self {
        install_panic_counter();
        let mut cfg = Config::for_tests();
        f(&mut cfg);
        let broker = Broker::bind(cfg).await.expect("broker binds");
        let addr = broker.local_addr();
        let metrics = broker.metrics();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(broker.run(async move {
            stop_rx.await.ok();
        }));
        Self {
            addr,
            metrics,
            stop_tx: Some(stop_tx),
            task: Some(task),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn metric(&self, f: impl Fn(&Metrics) -> &AtomicU64) -> u64 {
        Metrics::get(f(&self.metrics))
    }

    /// Waits (bounded) until `f(metrics)` holds.
    pub async fn wait_metric(&self, what: &str, f: impl Fn(&Metrics) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !f(&self.metrics) {
            assert!(
                Instant::now() < deadline,
                "metric condition never held: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn client(&self, v: ProtocolVersion, id: &str) -> Client {
        Client::connect(self.addr, v, id).await
    }

    pub async fn connect_with(&self, c: Connect) -> (Client, ConnectAck) {
        Client::connect_with(self.addr, c).await
    }

    pub async fn tcp(&self, v: ProtocolVersion) -> Client {
        Client::tcp(self.addr, v).await
    }

    /// Stops the broker, checks that it shut down in time and that nothing in it panicked.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(15), task).await;
            assert!(r.is_ok(), "broker did not stop within 15 s");
            assert!(r.expect("in time").is_ok(), "broker run task panicked");
        }
        assert_eq!(
            broker_panics(),
            0,
            "broker or codec code panicked during this test"
        );
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
    }
}

/// A CONNECT with clean start, keep alive 60 and no will.
pub fn connect_packet(v: ProtocolVersion, id: &str) -> Connect {
    Connect {
        protocol: v,
        client_id: id.into(),
        clean_start: true,
        keep_alive: 60,
        ..Connect::default()
    }
}

/// A persistent-session CONNECT: clean start 0 and, for v5, session expiry 300 s.
pub fn persistent(v: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect_packet(v, id);
    c.clean_start = false;
    if v.is_v5() {
        c.properties.session_expiry_interval = Some(300);
    }
    c
}

pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("non-zero packet id")
}

pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// A PUBLISH; packet id 1 when QoS > 0 (override as needed).
pub fn publish(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(1)),
        payload: Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    }
}

/// Encodes a packet for `v` (for building raw byte sequences).
pub fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_packet(p, v, &mut b).expect("encodable");
    b.to_vec()
}

/// What one read produced.
#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    Closed,
    Timeout,
}

/// A raw MQTT client: one TCP connection, the codec, and a stash for packets read while waiting
/// for another one.
pub struct Client {
    pub version: ProtocolVersion,
    stream: TcpStream,
    rbuf: BytesMut,
    pending: VecDeque<Packet>,
    next_pid: u16,
    closed: bool,
}

impl Client {
    /// A TCP connection, nothing sent yet.
    pub async fn tcp(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("tcp connect");
        stream.set_nodelay(true).ok();
        Self {
            version,
            stream,
            rbuf: BytesMut::with_capacity(4096),
            pending: VecDeque::new(),
            next_pid: 100,
            closed: false,
        }
    }

    /// Connects with clean start and asserts CONNACK success.
    pub async fn connect(addr: SocketAddr, v: ProtocolVersion, id: &str) -> Self {
        let (c, ack) = Self::connect_with(addr, connect_packet(v, id)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}: {ack:?}");
        c
    }

    /// Sends `c` and returns the CONNACK (whatever its reason code).
    pub async fn connect_with(addr: SocketAddr, c: Connect) -> (Self, ConnectAck) {
        let mut client = Self::tcp(addr, c.protocol).await;
        client.send(&Packet::Connect(Box::new(c))).await;
        match client.read(WAIT).await {
            Recv::Packet(Packet::ConnectAck(a)) => (client, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, p: &Packet) {
        let mut b = BytesMut::new();
        encode_packet(p, self.version, &mut b).expect("encodable packet");
        self.send_raw(&b).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed; a failed write shows up on the next read.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Closes the TCP connection without DISCONNECT (the socket is dropped).
    pub fn drop_connection(self) {
        drop(self);
    }

    async fn read(&mut self, timeout: Duration) -> Recv {
        if let Some(p) = self.pending.pop_front() {
            return Recv::Packet(p);
        }
        let deadline = tokio::time::Instant::now() + timeout;
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
            self.rbuf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Recv::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Raw bytes received within `timeout` (up to close or timeout), for answers the codec
    /// refuses to decode. Nothing may be pending.
    pub async fn recv_raw(&mut self, timeout: Duration) -> Vec<u8> {
        assert!(self.pending.is_empty());
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.closed {
            self.rbuf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(_)) => {}
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
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
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
        let mut skipped = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        // Look at already stashed packets first.
        if let Some(i) = self.pending.iter().position(&f) {
            return self.pending.remove(i).expect("index");
        }
        let stash = std::mem::take(&mut self.pending);
        let found = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
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

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<ReasonCode> {
        self.subscribe_with(
            vec![(filter.into(), opts(qos))],
            SubscribeProperties::default(),
        )
        .await
        .reasons
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
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        self.publish_packet(publish(topic, payload, qos, retain))
            .await;
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

pub fn payloads(v: &[Publish]) -> Vec<String> {
    v.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
