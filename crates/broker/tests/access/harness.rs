//! Harness for the transport and access-control tests: certificates made with rcgen at run time
//! (nothing secret is committed), a broker started from a TOML file in a temporary folder (so
//! `Config::load` resolves relative paths against it, as `hermod serve -c` does), and a raw MQTT
//! client over TCP, TLS, WebSocket or WebSocket over TLS on top of hermod-proto's codec.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hermod_broker::broker::Reloader;
use hermod_broker::{Broker, Config};
pub use hermod_proto::{
    Connect, ConnectAck, Disconnect, Packet, PacketId, ProtocolVersion, Publish, PublishAck,
    PublishProperties, QoS, ReasonCode, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use hermod_proto::{decode_packet, encode_packet};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    date_time_ymd,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

pub const V311: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const Q0: QoS = QoS::AtMostOnce;
pub const Q1: QoS = QoS::AtLeastOnce;

/// Longest wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(3);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Certificates

/// One certificate and its key, PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A test PKI: a CA, a server certificate for localhost / 127.0.0.1 and client certificates
/// (good, other CA, expired, revoked), and a CRL revoking the revoked one.
pub struct Pki {
    pub ca_pem: String,
    pub server: Leaf,
    /// CN "device-42", signed by the CA.
    pub client: Leaf,
    /// CN "device-43", signed by the CA (a second identity for ACL tests).
    pub client2: Leaf,
    /// CN "intruder", signed by another CA.
    pub foreign: Leaf,
    /// CN "old-device", valid 2000-2001.
    pub expired: Leaf,
    /// CN "stolen-device", serial 13, listed in the CRL.
    pub revoked: Leaf,
    pub crl_pem: String,
}

fn make_ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

fn make_leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &[&str],
    serial: u64,
    server: bool,
    expired: bool,
) -> Leaf {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.serial_number = Some(SerialNumber::from(serial));
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    if expired {
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("sign");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

impl Pki {
    pub fn new() -> Pki {
        let (ca_pem, issuer) = make_ca("Hermod Access Test CA");
        let (_, other) = make_ca("Some Other CA");
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(13u64),
                revocation_time: date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("crl");
        Pki {
            server: make_leaf(
                &issuer,
                "localhost",
                &["localhost", "127.0.0.1"],
                1,
                true,
                false,
            ),
            client: make_leaf(&issuer, "device-42", &[], 10, false, false),
            client2: make_leaf(&issuer, "device-43", &[], 15, false, false),
            foreign: make_leaf(&other, "intruder", &[], 11, false, false),
            expired: make_leaf(&issuer, "old-device", &[], 12, false, true),
            revoked: make_leaf(&issuer, "stolen-device", &[], 13, false, false),
            crl_pem: crl.pem().expect("crl pem"),
            ca_pem,
        }
    }

    /// Writes certs/{ca.pem, ca.crl, server.pem, server.key, <client>.pem/.key} under `dir`.
    pub fn write_to(&self, dir: &Path) {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).expect("mkdir certs");
        let w = |name: &str, text: &str| {
            std::fs::write(certs.join(name), text).expect("write cert file")
        };
        w("ca.pem", &self.ca_pem);
        w("ca.crl", &self.crl_pem);
        w("server.pem", &self.server.cert_pem);
        w("server.key", &self.server.key_pem);
        for (name, leaf) in [
            ("client", &self.client),
            ("client2", &self.client2),
            ("foreign", &self.foreign),
            ("expired", &self.expired),
            ("revoked", &self.revoked),
        ] {
            w(&format!("{name}.pem"), &leaf.cert_pem);
            w(&format!("{name}.key"), &leaf.key_pem);
        }
    }
}

/// A rustls client configuration trusting `ca_pem`, presenting `cert` if given.
pub fn tls_client_config(ca_pem: &str, cert: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("ca pem")).expect("add root");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_root_certificates(roots);
    let config = match cert {
        Some(leaf) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                    .map(|c| c.expect("cert pem"))
                    .collect();
            builder
                .with_client_auth_cert(
                    chain,
                    PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key pem"),
                )
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------------
// Broker from a config file

/// A folder with a config file and whatever files it names; the broker runs on it.
pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub addrs: Vec<SocketAddr>,
    pub reloader: Reloader,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hermod-access-")
        .tempdir()
        .expect("tempdir")
}

/// Writes `text` to `dir/name` (creating parent folders).
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

impl TestBroker {
    /// Writes `config` as `dir/hermod.toml`, loads it with `Config::load` and starts the broker.
    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> TestBroker {
        let config_path = write(dir.path(), "hermod.toml", config);
        let cfg =
            Config::load(&config_path).unwrap_or_else(|e| panic!("config loads: {e}\n{config}"));
        let broker = Broker::bind_with_path(cfg, Some(config_path.clone()))
            .await
            .unwrap_or_else(|e| panic!("broker binds: {e}\n{config}"));
        let addrs = broker.local_addrs();
        let reloader = broker.reloader();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(broker.run(async move {
            stop_rx.await.ok();
        }));
        TestBroker {
            dir,
            config_path,
            addrs,
            reloader,
            stop_tx: Some(stop_tx),
            task: Some(task),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        write(self.dir.path(), name, text)
    }

    pub fn addr(&self, listener: usize) -> SocketAddr {
        self.addrs[listener]
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(15), task).await;
            assert!(r.is_ok(), "broker did not stop within 15 s");
            assert!(r.expect("in time").is_ok(), "broker run task panicked");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach a listener.
#[derive(Clone)]
pub enum Via {
    Tcp,
    Tls(Arc<ClientConfig>),
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

/// A CONNECT with clean start, keep alive 60, and optional credentials.
pub fn connect_packet(
    v: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    pass: Option<&[u8]>,
) -> Connect {
    Connect {
        protocol: v,
        client_id: id.into(),
        clean_start: true,
        keep_alive: 60,
        username: user.map(str::to_owned),
        password: pass.map(Bytes::copy_from_slice),
        ..Connect::default()
    }
}

pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("non-zero packet id")
}

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

pub fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_packet(p, v, &mut b).expect("encodable");
    b.to_vec()
}

impl Client {
    /// The transport is up, nothing MQTT sent yet.
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

    /// The CONNACK reason for `c` (panics if there is none).
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

    pub async fn read(&mut self, timeout: Duration) -> Recv {
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
            match &mut self.conn {
                Conn::Stream(s) => {
                    self.rbuf.reserve(4096);
                    match tokio::time::timeout_at(deadline, s.read_buf(&mut self.rbuf)).await {
                        Err(_) => return Recv::Timeout,
                        Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                        Ok(Ok(_)) => {}
                    }
                }
                Conn::Ws(ws) => match tokio::time::timeout_at(deadline, ws.next()).await {
                    Err(_) => return Recv::Timeout,
                    Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                        self.closed = true
                    }
                    Ok(Some(Ok(Message::Binary(b)))) => self.rbuf.extend_from_slice(&b),
                    Ok(Some(Ok(Message::Text(t)))) => {
                        panic!("broker sent a text frame [MQTT-6.0.0-1]: {t}")
                    }
                    Ok(Some(Ok(_))) => {}
                },
            }
        }
    }

    pub async fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        match self.read(timeout).await {
            Recv::Packet(p) => Some(p),
            _ => None,
        }
    }

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

    /// Asserts that no packet arrives within `d` (a close is not a packet).
    pub async fn expect_nothing(&mut self, d: Duration) {
        if let Recv::Packet(p) = self.read(d).await {
            panic!("expected nothing, got {p:?}");
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

    /// Reads until a packet matching `f` arrives; others are kept for later reads.
    pub async fn wait_for(&mut self, what: &str, f: impl Fn(&Packet) -> bool) -> Packet {
        if let Some(i) = self.pending.iter().position(&f) {
            return self.pending.remove(i).expect("index");
        }
        let mut skipped = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
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

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> ReasonCode {
        let id = self.next_packet_id();
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: vec![(filter.into(), options)],
            properties: SubscribeProperties::default(),
        }))
        .await;
        match self
            .wait_for("SUBACK", |p| matches!(p, Packet::SubscribeAck(_)))
            .await
        {
            Packet::SubscribeAck(a) => {
                assert_eq!(a.packet_id, id, "SUBACK packet id");
                assert_eq!(a.reasons.len(), 1, "one reason per filter");
                a.reasons[0]
            }
            _ => unreachable!(),
        }
    }

    /// Publishes and waits for PUBACK (QoS 1; returns its reason) or a PINGRESP (QoS 0, so the
    /// broker has routed the message when this returns; returns SUCCESS).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> ReasonCode {
        let mut p = publish(topic, payload, qos, retain);
        if qos != Q0 {
            p.packet_id = Some(self.next_packet_id());
        }
        let id = p.packet_id;
        self.send(&Packet::Publish(p)).await;
        if qos == Q0 {
            self.ping().await;
            return ReasonCode::SUCCESS;
        }
        match self
            .wait_for(
                "PUBACK",
                |p| matches!(p, Packet::PublishAck(a) if Some(a.packet_id) == id),
            )
            .await
        {
            Packet::PublishAck(a) => a.reason,
            _ => unreachable!(),
        }
    }

    pub async fn ping(&mut self) {
        self.send(&Packet::PingRequest).await;
        self.wait_for("PINGRESP", |p| matches!(p, Packet::PingResponse))
            .await;
    }

    /// Every PUBLISH arriving until `quiet` passes with none (QoS 1 ones acked).
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Publish> {
        let mut v = Vec::new();
        while let Some(p) = self.recv(quiet).await {
            match p {
                Packet::Publish(p) => {
                    if let Some(id) = p.packet_id {
                        self.send(&Packet::PublishAck(PublishAck::new(id))).await;
                    }
                    v.push(p);
                }
                other => panic!("expected only PUBLISH, got {other:?}"),
            }
        }
        v
    }

    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default())).await;
        let _ = self.is_closed_within(WAIT).await;
    }
}

/// Sends `c` over plain TCP from the local address `src` (any 127.x.y.z works on Linux
/// loopback, so tests can play several clients' addresses) and returns the CONNACK reason as
/// sent (a 3.1.1 return code maps to the v5 code with the same meaning), or why there is none.
pub async fn connack_from(
    src: std::net::IpAddr,
    addr: SocketAddr,
    c: Connect,
    limit: Duration,
) -> Result<ReasonCode, String> {
    let version = c.protocol;
    let exchange = async {
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("bind {src}: {e}"))?;
        let mut stream = sock
            .connect(addr)
            .await
            .map_err(|e| format!("connect from {src}: {e}"))?;
        stream
            .write_all(&encode(&Packet::Connect(Box::new(c)), version))
            .await
            .map_err(|e| format!("send CONNECT: {e}"))?;
        let mut buf = BytesMut::with_capacity(64);
        loop {
            match decode_packet(&mut buf, version, usize::MAX) {
                Ok(Some(Packet::ConnectAck(a))) => return Ok(a.reason),
                Ok(Some(other)) => return Err(format!("expected CONNACK, got {other:?}")),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable answer: {e}")),
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("closed without CONNACK".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no CONNACK within {limit:?}")))
}

/// (topic, payload) pairs, for assertions.
pub fn got(v: &[Publish]) -> Vec<(String, String)> {
    v.iter()
        .map(|p| {
            (
                p.topic.clone(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// External programs

/// The path of `name` on PATH, or None (the caller prints a skip message).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A child process whose stdout/stderr go to files; killed on drop.
pub struct Bg {
    pub child: std::process::Child,
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Bg {
    pub fn spawn(cmd: &mut std::process::Command, dir: &Path, tag: &str) -> Bg {
        let out = dir.join(format!("{tag}.out"));
        let err = dir.join(format!("{tag}.err"));
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out file"))
            .stderr(std::fs::File::create(&err).expect("err file"))
            .spawn()
            .expect("spawn");
        Bg { child, out, err }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (bounded) for the exit code; None on timeout (the child is then killed).
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until stdout+stderr contain `needle`.
    pub async fn wait_output(&self, needle: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.stdout().contains(needle) || self.stderr().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to its end, bounded by `limit`: (exit code, None on timeout; stdout; stderr).
pub async fn run(
    cmd: &mut std::process::Command,
    dir: &Path,
    tag: &str,
    limit: Duration,
) -> (Option<i32>, String, String) {
    let mut bg = Bg::spawn(cmd, dir, tag);
    let code = bg.wait(limit).await;
    (code, bg.stdout(), bg.stderr())
}

/// Skips the calling test (returns None) with a message when `name` is not installed.
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let p = which(name);
    if p.is_none() {
        eprintln!("SKIP: {name} not found (apt-get install -y {package})");
    }
    p
}

// ---------------------------------------------------------------------------------------------
// The issue's configuration example

/// The configuration example of the issue, verbatim but for the bind addresses.
pub const EXAMPLE: &str = r#"allow_anonymous = false
password_file = "passwd"
acl_file = "acl"
[[listener]]
bind = "0.0.0.0:1883"
[[listener]]
bind = "0.0.0.0:8883"
transport = "tls"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
cafile = "certs/ca.pem"
require_certificate = true
crlfile = "certs/ca.crl"
use_identity_as_username = true
[[listener]]
bind = "0.0.0.0:8083"
transport = "ws"          # tcp | tls | ws | wss
path = "/mqtt"
"#;

/// Listener indexes of [`EXAMPLE`] (and of [`EXTRA_LISTENERS`] appended to it).
pub const TCP: usize = 0;
pub const MTLS: usize = 1;
pub const WS: usize = 2;
pub const TLS: usize = 3;
pub const WSS: usize = 4;

/// A server-certificate-only TLS listener and a WSS listener, appended to the example.
pub const EXTRA_LISTENERS: &str = r#"
[[listener]]
bind = "127.0.0.1:0"
transport = "tls"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
[[listener]]
bind = "127.0.0.1:0"
transport = "wss"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
path = "/mqtt"
"#;

/// [`EXAMPLE`] on loopback ports chosen by the OS, plus `extra` appended.
pub fn example_config(extra: &str) -> String {
    let mut text = EXAMPLE
        .replace("0.0.0.0:1883", "127.0.0.1:0")
        .replace("0.0.0.0:8883", "127.0.0.1:0")
        .replace("0.0.0.0:8083", "127.0.0.1:0");
    assert_eq!(
        text.matches("127.0.0.1:0").count(),
        3,
        "the example's three listeners"
    );
    text.push_str(extra);
    text
}

/// A password file line in mosquitto_passwd's `$7$` format.
pub fn passwd_line(user: &str, password: &str) -> String {
    let hash = hermod_broker::auth::hash_mosquitto_pbkdf2(password.as_bytes()).expect("hash");
    format!("{user}:{hash}\n")
}

/// Users of the password file written by [`example_broker`]: (user, password).
pub const USERS: &[(&str, &str)] = &[
    ("root", "root-pw"),
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    ("zed", "zed-pw"),
];

pub fn password_of(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no user {user}"))
}

/// A folder with the PKI, a password file with [`USERS`], `acl` as the ACL file, and the example
/// config plus [`EXTRA_LISTENERS`]; the broker started on it.
pub async fn example_broker(pki: &Pki, acl: &str) -> TestBroker {
    let dir = tempdir();
    pki.write_to(dir.path());
    let passwd: String = USERS.iter().map(|(u, p)| passwd_line(u, p)).collect();
    write(dir.path(), "passwd", &passwd);
    write(dir.path(), "acl", acl);
    TestBroker::start_in(dir, &example_config(EXTRA_LISTENERS)).await
}

/// A v5 CONNECT for a user of [`USERS`].
pub fn login(v: ProtocolVersion, id: &str, user: &str) -> Connect {
    connect_packet(v, id, Some(user), Some(password_of(user).as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// A small HTTP auth service

/// An HTTP service for `[auth.http]`: one response per connection (then close), the answer
/// chosen by `decide(request JSON)`: `Some((status, body))`, or `None` to never answer. Every
/// request body is recorded.
pub struct AuthServer {
    pub url: String,
    pub requests: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    task: JoinHandle<()>,
}

impl AuthServer {
    pub async fn start(
        decide: impl Fn(&serde_json::Value) -> Option<(u16, String)> + Send + Sync + 'static,
    ) -> AuthServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind auth server");
        let url = format!("http://{}/mqtt/auth", listener.local_addr().expect("addr"));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        let decide = Arc::new(decide);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                let decide = decide.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let body = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            assert!(head.starts_with("post /mqtt/auth "), "request line: {head}");
                            break buf[end + 4..end + 4 + len].to_vec();
                        }
                    };
                    let json: serde_json::Value =
                        serde_json::from_slice(&body).expect("request body is JSON");
                    log.lock().expect("log").push(json.clone());
                    let Some((status, body)) = decide(&json) else {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        AuthServer {
            url,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests.lock().expect("log").clone()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
