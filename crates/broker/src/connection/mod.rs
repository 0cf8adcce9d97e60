//! One task per network connection: all I/O for one client.
//!
//! The loop reads packets (cancel-safe: partial bytes stay in `rbuf`), hands each to its handler,
//! pulls deliveries from the session's mailbox while the inflight window has room, and writes
//! everything produced in one pass with a single write (coalescing under load).

mod close;
mod durable;
mod handshake;
mod outbound;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hermod_proto::{
    ConnectAck, ConnectAckProperties, Disconnect, LastWill, Packet, ProtocolVersion, Publish,
    PublishAck, PublishProperties, QoS, ReasonCode, Subscribe, SubscribeAck, Unsubscribe,
    UnsubscribeAck, decode_packet, encode_packet,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::{Action, AuthDecision, ClientIdentity, ConnectInfo, DenyReason};
use crate::broker::Shared;
use crate::message::{ClientId, Delivery, Message};
use crate::metrics::Metrics;
use crate::router::PublishSink;
use crate::session::registry::{Attached, ConnectionId};
use crate::session::{Owner, Session, SubscriptionEntry};
use crate::store::Op;
use crate::transport::PeerInfo;
use handshake::{HandshakeError, check_connect, read_connect};

/// Flush once this much is buffered, so one slow socket cannot grow the write buffer without limit.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// How long a publisher waits for its busy subscribers' mailboxes to drain (all at once) before
/// marking the ones that did not stalled and going on (their messages are then dropped at the
/// limit and counted, for `session::mailbox::STALL_HOLD`). A subscriber task that merely had not
/// been scheduled drains within a few milliseconds.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(100);
/// How long a new connection waits for a displaced one to hand its session over.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// Why a connection ends. Decides the DISCONNECT sent (v5) and whether the will is published.
#[derive(Debug)]
enum End {
    /// DISCONNECT 0x00 from the client: the will is discarded [MQTT-3.1.2-10].
    Normal,
    /// DISCONNECT 0x04 from the client: publish the will.
    NormalWithWill,
    /// The peer closed or the socket failed without DISCONNECT.
    Lost(Option<std::io::Error>),
    /// A malformed packet or protocol violation: DISCONNECT with this reason (v5), then close.
    Violation(ReasonCode, String),
    /// No packet within 1.5 × keep alive [MQTT-3.1.2-24].
    KeepAliveTimeout,
    /// Another connection with the same client id took over.
    TakenOver,
    /// The broker is shutting down.
    Shutdown,
}

/// Counts a connection while it lives (from accept, through the transport handshake, to close).
pub(crate) struct Counted(Arc<Metrics>);

impl Counted {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Metrics::incr(&metrics.connections);
        Self(metrics)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs one connection to its end. Never panics on input; errors end this connection only.
pub(crate) async fn run<S>(mut stream: S, info: PeerInfo, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let peer = info.addr;
    let max_in = shared.config.max_packet_size as usize;
    let mut rbuf = BytesMut::with_capacity(256);
    let timeout = Duration::from_secs(shared.config.connect_timeout);
    let connect = tokio::select! {
        r = read_connect(&mut stream, &mut rbuf, max_in, timeout) => r,
        () = shared.shutdown.cancelled() => return,
    };
    let connect = match connect {
        Ok(c) => c,
        Err(e) => {
            match e {
                HandshakeError::Decode(hermod_proto::DecodeError::UnsupportedProtocolVersion(
                    level,
                )) => {
                    // [MQTT-3.1.2-2] CONNACK 0x01 (unacceptable protocol version), then close. Sent in
                    // the 3.1.1 format, as Mosquitto does: the client's level is one we do not speak.
                    refuse(
                        &mut stream,
                        ProtocolVersion::V311,
                        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                    )
                    .await;
                    info!(%peer, level, "refused: unsupported protocol level");
                }
                HandshakeError::Decode(e) => {
                    Metrics::incr(&shared.metrics.protocol_errors);
                    info!(%peer, error = %e, "bad CONNECT; connection closed");
                }
                HandshakeError::NotConnect => {
                    Metrics::incr(&shared.metrics.protocol_errors);
                    info!(%peer, "[MQTT-3.1.0-1] first packet was not CONNECT; connection closed");
                }
                HandshakeError::Timeout => {
                    debug!(%peer, "no CONNECT within connect_timeout; closed")
                }
                HandshakeError::Io(e) => debug!(%peer, error = ?e, "closed before CONNECT"),
            }
            let _ = stream.shutdown().await;
            return;
        }
    };
    let version = connect.protocol;
    let accepted = match check_connect(&connect, &shared.config) {
        Ok(a) => a,
        Err(reason) => {
            refuse(&mut stream, version, reason).await;
            info!(%peer, client_id = %connect.client_id, %reason, "connection refused");
            return;
        }
    };

    // Bans (`[[banned]]`) and addresses blocked after repeated failed logins (`[auth_failures]`)
    // are refused before any credential is checked: v5 0x8A "Banned", 3.1.1 return code 5.
    let banned_reason = if version.is_v5() {
        ReasonCode::BANNED
    } else {
        ReasonCode::NOT_AUTHORIZED
    };
    if let Some(ban) = shared.banned.check(
        &accepted.client_id,
        connect.username.as_deref(),
        peer.ip(),
        std::time::SystemTime::now(),
    ) {
        refuse(&mut stream, version, banned_reason).await;
        info!(%peer, client_id = %accepted.client_id, username = ?connect.username, %ban, "refused: banned");
        return;
    }
    if let Some(left) = shared.throttle.blocked_for(peer.ip(), Instant::now()) {
        refuse(&mut stream, version, banned_reason).await;
        info!(%peer, client_id = %accepted.client_id, username = ?connect.username, secs_left = left.as_secs(), "refused: address blocked after failed logins");
        return;
    }

    // Authentication. With `use_identity_as_username` the verified client certificate is the
    // credential: its identity becomes the username and no password source is asked, as in
    // Mosquitto (handle_connect.c skips the password check for certificate identities).
    let identity = if info.use_identity_as_username {
        match &info.cert_identity {
            Some(id) => ClientIdentity {
                username: Some(id.as_str().into()),
                client_id: accepted.client_id.as_str().into(),
                jwt_acl: None,
            },
            None => {
                refuse(&mut stream, version, ReasonCode::NOT_AUTHORIZED).await;
                info!(%peer, "refused: no client certificate identity for use_identity_as_username");
                return;
            }
        }
    } else {
        let auth = shared.auth.load_full();
        let request = ConnectInfo {
            client_id: accepted.client_id.clone(),
            username: connect.username.clone(),
            password: connect.password.clone(),
            peer,
            cert_identity: info.cert_identity.clone(),
        };
        match auth.authenticate(&request).await {
            AuthDecision::Allow(identity) => identity,
            AuthDecision::Deny(why) => {
                // v5: 0x86 for bad credentials, 0x87 for a refused anonymous client; 3.1.1:
                // return code 5 "not authorised" for both, as Mosquitto answers. Hashing queue
                // full: 0x89 "Server busy" (3.1.1: 3). Blocked while queued: as above, 0x8A / 5.
                if why == DenyReason::BadCredentials
                    && shared.throttle.record_failure(peer.ip(), Instant::now())
                {
                    warn!(%peer, "address blocked after repeated failed logins ([auth_failures])");
                }
                let reason = match (why, version.is_v5()) {
                    (DenyReason::BadCredentials | DenyReason::SourceError, true) => {
                        ReasonCode::BAD_USER_NAME_OR_PASSWORD
                    }
                    (DenyReason::Busy, _) => ReasonCode::SERVER_BUSY,
                    (DenyReason::Blocked, _) => banned_reason,
                    _ => ReasonCode::NOT_AUTHORIZED,
                };
                refuse(&mut stream, version, reason).await;
                info!(%peer, client_id = %accepted.client_id, username = ?request.username, %reason, "connection refused by authentication");
                return;
            }
        }
    };

    // A will is a publish: its publisher must be allowed to publish on its topic, now (v5 0x87,
    // v3.1.1 return code 5, as Mosquitto answers) and again when it is published.
    if let Some(will) = &connect.will
        && !shared
            .auth
            .load()
            .authorize(&identity, Action::Publish(&will.topic))
    {
        refuse(&mut stream, version, ReasonCode::NOT_AUTHORIZED).await;
        info!(%peer, client_id = %accepted.client_id, username = ?identity.username, topic = %will.topic, "connection refused: will topic denied by the ACL");
        return;
    }

    // Store fault: a persistent session cannot be served while the store cannot write.
    if durable::refuse_without_store(&mut stream, &shared, &connect, peer).await {
        return;
    }

    let conn_id = shared.next_connection_id();
    let client_id: ClientId = accepted.client_id.clone().into();
    let kick = CancellationToken::new();
    let owner = Owner::of(identity.username.as_ref());
    let previous = match shared
        .registry
        .attach(&client_id, conn_id, kick.clone(), &owner)
    {
        Attached::Refused(holder) => {
            // Sessions belong to an identity: nothing of another user's session is sent,
            // consumed, taken over or ended.
            refuse(&mut stream, version, ReasonCode::NOT_AUTHORIZED).await;
            warn!(%peer, %client_id, identity = %owner, session_owner = %holder, "connection refused: the client id's session belongs to another identity");
            return;
        }
        Attached::New => None,
        Attached::Resumed(s) => Some(s),
        Attached::TakingOver(rx) => {
            info!(%client_id, "session taken over by a new connection");
            match tokio::time::timeout(TAKEOVER_WAIT, rx).await {
                Ok(Ok(session)) => Some(session),
                Ok(Err(_)) => {
                    // A newer connection with the same client id arrived while this one waited:
                    // the session goes to it; this one never started and touches nothing.
                    info!(%client_id, %peer, "superseded by a newer connection before the hand-off; closed");
                    let _ = stream.shutdown().await;
                    return;
                }
                Err(_) => {
                    // The holder did not hand the session over in time: it keeps it (and stores
                    // it offline when it closes); this client is told to come back.
                    shared.registry.abandon(&client_id, conn_id);
                    refuse(&mut stream, version, ReasonCode::SERVER_UNAVAILABLE).await;
                    warn!(%client_id, %peer, "session hand-off timed out; connection refused (server unavailable)");
                    return;
                }
            }
        }
    };
    let cfg = &shared.config;
    // Session expiry: v3 clean session = 0, persistent = never (or persistent_client_expiration);
    // v5 from the property (0 by default; 0xFFFFFFFF = never).
    let requested_expiry = if version.is_v5() {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    };
    let expiry = match requested_expiry {
        0 => Some(Duration::ZERO),
        u32::MAX => cfg.persistent_client_expiration(),
        s => Some(Duration::from_secs(u64::from(s))),
    };
    let (mut session, session_present) = match previous {
        Some(old) if !connect.clean_start => (old, true),
        Some(old) => {
            // Clean start: the old session (and its stored record) is this client's to end.
            shared.end_session_with(old, true);
            (shared.new_session(client_id.clone()), false)
        }
        None => (shared.new_session(client_id.clone()), false),
    };
    session.expiry = expiry;
    session.owner = owner;
    session.handle.set_reader(identity.clone());
    // A stored session resumed with session expiry 0 stays durable for this connection (its
    // queue is on disk) and is deleted from the store when it ends.
    let durable = shared.router.persistence.is_some()
        && (session.is_persistent() || (session_present && session.handle.is_durable()));
    session.handle.set_durable(durable);
    session.handle.set_online(true);

    let mut props = ConnectAckProperties::default();
    if version.is_v5() {
        props.receive_maximum = Some(cfg.max_inflight_messages);
        props.maximum_packet_size = Some(cfg.max_packet_size);
        if cfg.max_topic_alias > 0 {
            props.topic_alias_maximum = Some(cfg.max_topic_alias);
        }
        if !cfg.retain_available {
            props.retain_available = Some(0);
        }
        props.server_keep_alive = accepted.server_keep_alive;
        if accepted.assigned {
            props.assigned_client_identifier = Some(accepted.client_id.clone());
        }
    }
    let ack = ConnectAck {
        session_present,
        reason: ReasonCode::SUCCESS,
        properties: props,
    };

    let receive_max = if version.is_v5() {
        usize::from(
            connect
                .properties
                .receive_maximum
                .unwrap_or(u16::MAX)
                .min(cfg.max_inflight_messages),
        )
    } else {
        usize::from(cfg.max_inflight_messages)
    };
    let mut conn = Connection {
        stream,
        rbuf,
        wbuf: BytesMut::new(),
        version,
        shared: shared.clone(),
        conn_id,
        client_id: client_id.clone(),
        peer,
        session,
        will: connect.will.clone(),
        keep_alive: (accepted.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(accepted.keep_alive) * 1500)),
        receive_max: receive_max.max(1),
        client_max_packet: connect
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize),
        topic_aliases: HashMap::new(),
        connect_expiry_zero: requested_expiry == 0,
        kick,
        batch: Vec::new(),
        identity,
        read_size: 256,
        last_read: 0,
        busy: Vec::new(),
        durable,
        pending_commits: Vec::new(),
        deferred: Vec::new(),
    };
    conn.persist_session(true);
    info!(%client_id, %peer, ?version, clean_start = connect.clean_start, session_present, "client connected");
    conn.write(&Packet::ConnectAck(ack));
    conn.resend_inflight();
    let end = conn.serve().await;
    conn.finish(end).await;
}

struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    version: ProtocolVersion,
    shared: Arc<Shared>,
    conn_id: ConnectionId,
    client_id: ClientId,
    peer: SocketAddr,
    session: Session,
    will: Option<LastWill>,
    /// 1.5 × the keep alive in force; `None` when keep alive is 0.
    keep_alive: Option<Duration>,
    /// Outbound QoS 1/2 in flight allowed: min(client Receive Maximum, max_inflight_messages).
    receive_max: usize,
    /// The client's Maximum Packet Size: larger PUBLISH packets are not sent to it [MQTT-3.1.2-25].
    client_max_packet: usize,
    /// Inbound topic aliases (v5), per connection [MQTT-3.3.2-7].
    topic_aliases: HashMap<u16, Arc<str>>,
    /// CONNECT had Session Expiry 0, so DISCONNECT may not set it [MQTT-3.14.2-2].
    connect_expiry_zero: bool,
    /// Cancelled when another connection takes the client id over.
    kick: CancellationToken,
    /// Reused buffer for deliveries taken from the mailbox.
    batch: Vec<Delivery>,
    /// Who the client authenticated as, for ACL checks.
    identity: ClientIdentity,
    /// Bytes to make room for before the next read (adapts to the traffic; see `prepare_read`).
    read_size: usize,
    /// Bytes the last read returned.
    last_read: usize,
    /// Subscriber mailboxes that filled up while routing this client's messages: reading from
    /// this client pauses until they drain (bounded; see `session::mailbox`).
    busy: Vec<Arc<crate::session::mailbox::SessionHandle>>,
    /// The session is persistent and a store is open: its QoS 1/2 deliveries, inbound QoS 2
    /// ids and record are written.
    durable: bool,
    /// Store commits the next acknowledgements wait for.
    pending_commits: Vec<crate::store::Commit>,
    /// Acknowledgements waiting for `pending_commits`, each with the number of commits it waits
    /// for (those since the previous one are its own).
    deferred: Vec<(Packet, usize)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    async fn serve(&mut self) -> End {
        let shutdown = self.shared.shutdown.clone();
        let kick = self.kick.clone();
        let handle = self.session.handle.clone();
        let mut deadline = self.keep_alive.map(|k| tokio::time::Instant::now() + k);
        // Packets that arrived with CONNECT, in the same read, are already buffered.
        if let Err(end) = self.handle_input() {
            return end;
        }
        loop {
            if !self.pending_commits.is_empty()
                && let Err(end) = self.settle().await
            {
                return end;
            }
            self.maybe_load();
            let more = self.pump(Instant::now());
            if let Err(end) = self.flush().await {
                return end;
            }
            if !self.busy.is_empty() {
                // Backpressure: wait for busy subscribers to drain, then go on with the packets
                // already buffered before reading more.
                if let Err(end) = self.wait_for_subscribers().await {
                    return end;
                }
                if let Err(end) = self.handle_input() {
                    return end;
                }
                continue;
            }
            let room = self.session.inflight_out.len() < self.receive_max;
            self.prepare_read();
            let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return End::Shutdown,
                () = kick.cancelled() => return End::TakenOver,
                r = self.stream.read_buf(&mut self.rbuf) => match r {
                    Ok(0) => return End::Lost(None),
                    Ok(n) => {
                        self.note_read(n);
                        deadline = self.keep_alive.map(|k| tokio::time::Instant::now() + k);
                        if let Err(end) = self.handle_input() {
                            return end;
                        }
                        // Take whatever else is already readable before writing, so that the
                        // answers to many packets go out in one write.
                        if let Err(end) = self.drain_readable() {
                            return end;
                        }
                    }
                    Err(e) => return End::Lost(Some(e)),
                },
                () = std::future::ready(()), if more => {}
                () = handle.notified(), if room => {}
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => return End::KeepAliveTimeout,
            }
        }
    }

    /// Makes room for the next read. Idle connections are most of a broker's connections, so an
    /// empty read buffer that grew for a burst is given back, and reads start small (256 bytes)
    /// and grow with the traffic (the spare room doubles while reads fill it, up to 64 KiB).
    fn prepare_read(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 8 * 1024 && self.last_read < 1024 {
            self.rbuf = BytesMut::new();
            self.read_size = 256;
        }
        self.rbuf.reserve(self.read_size);
    }

    /// Records how much a read returned, to size the next one.
    fn note_read(&mut self, n: usize) {
        self.last_read = n;
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(64 * 1024);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(256);
        }
    }

    /// Reads and handles what the socket has ready without waiting (a few times at most).
    fn drain_readable(&mut self) -> Result<(), End> {
        for _ in 0..8 {
            if !self.busy.is_empty() || !self.pending_commits.is_empty() {
                return Ok(());
            }
            self.prepare_read();
            let (stream, rbuf) = (&mut self.stream, &mut self.rbuf);
            let mut read = std::pin::pin!(stream.read_buf(rbuf));
            let waker = std::task::Waker::noop();
            match read
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
            {
                Poll::Ready(Ok(0)) => return Err(End::Lost(None)),
                Poll::Ready(Ok(n)) => {
                    self.note_read(n);
                    self.handle_input()?;
                }
                Poll::Ready(Err(e)) => return Err(End::Lost(Some(e))),
                Poll::Pending => return Ok(()),
            }
        }
        Ok(())
    }

    async fn wait_for_subscribers(&mut self) -> Result<(), End> {
        let shutdown = self.shared.shutdown.clone();
        let kick = self.kick.clone();
        let own = self.session.handle.clone();
        let mut busy = std::mem::take(&mut self.busy);
        // Our own mailbox drains only when we write: never wait for it. Each other one once.
        busy.retain(|h| !Arc::ptr_eq(h, &own));
        busy.sort_by_key(|h| Arc::as_ptr(h) as usize);
        busy.dedup_by(|a, b| Arc::ptr_eq(a, b));
        // All at once, with one deadline: eight slow subscribers cost one wait, not eight.
        let all = futures_util::future::join_all(
            busy.iter().map(|h| h.wait_for_space(BACKPRESSURE_WAIT)),
        );
        tokio::select! {
            _ = all => {}
            () = shutdown.cancelled() => return Err(End::Shutdown),
            () = kick.cancelled() => return Err(End::TakenOver),
        }
        Ok(())
    }

    /// Decodes and handles the whole packets in the read buffer; stops early when a subscriber
    /// mailbox is busy (backpressure), leaving the rest buffered.
    fn handle_input(&mut self) -> Result<(), End> {
        let max = self.shared.config.max_packet_size as usize;
        loop {
            if !self.busy.is_empty() {
                return Ok(());
            }
            match decode_packet(&mut self.rbuf, self.version, max) {
                Ok(Some(packet)) => self.handle_packet(packet)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(End::Violation(e.reason_code(), e.to_string())),
            }
        }
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PublishAck(a) => {
                let done = self.session.on_publish_ack(a.packet_id);
                self.dequeue(done.and_then(|o| o.delivery.seq));
                Ok(())
            }
            Packet::PublishReceived(a) => {
                let (known, dropped) = self
                    .session
                    .on_publish_received(a.packet_id, a.reason.is_error());
                self.dequeue(dropped.and_then(|o| o.delivery.seq));
                if !a.reason.is_error() || !known {
                    let mut rel = PublishAck::new(a.packet_id);
                    if !known && self.version.is_v5() {
                        rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                    }
                    self.write(&Packet::PublishRelease(rel));
                }
                Ok(())
            }
            Packet::PublishRelease(a) => {
                let known = self.session.inflight_in.remove(&a.packet_id.get());
                if known && self.durable {
                    self.store_detached(vec![Op::DeleteInflightIn(
                        self.client_id.to_string(),
                        a.packet_id.get(),
                    )]);
                }
                let mut comp = PublishAck::new(a.packet_id);
                if !known && self.version.is_v5() {
                    comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                self.write(&Packet::PublishComplete(comp));
                Ok(())
            }
            Packet::PublishComplete(a) => {
                let done = self.session.on_publish_complete(a.packet_id);
                self.dequeue(done.and_then(|o| o.delivery.seq));
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingRequest => {
                self.write(&Packet::PingResponse);
                Ok(())
            }
            Packet::Disconnect(d) => self.on_disconnect(&d),
            Packet::Connect(_) => Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.1.0-2] second CONNECT",
            )),
            // No authentication method was accepted at CONNECT (one is refused there with
            // CONNACK 0x8C), so any AUTH is a protocol error [MQTT-4.12.0-1]; 0x8C is not a
            // DISCONNECT reason code (3.14.2.1).
            Packet::Auth(_) => Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-1] AUTH without an authentication method in CONNECT",
            )),
            Packet::ConnectAck(_)
            | Packet::SubscribeAck(_)
            | Packet::UnsubscribeAck(_)
            | Packet::PingResponse => Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "server-to-client packet sent by a client",
            )),
        }
    }

    fn on_publish(&mut self, p: Publish) -> Result<(), End> {
        Metrics::incr(&self.shared.metrics.messages_received);
        let cfg = &self.shared.config;
        let v5 = self.version.is_v5();
        let topic: Arc<str> = match p.properties.topic_alias {
            Some(alias) if v5 => {
                if alias == 0 || alias > cfg.max_topic_alias {
                    return Err(violation(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "[MQTT-3.3.2-8/9] topic alias 0 or above Topic Alias Maximum",
                    ));
                }
                if p.topic.is_empty() {
                    match self.topic_aliases.get(&alias) {
                        Some(t) => t.clone(),
                        None => {
                            return Err(violation(
                                ReasonCode::PROTOCOL_ERROR,
                                "topic alias not yet mapped to a topic",
                            ));
                        }
                    }
                } else {
                    let t: Arc<str> = p.topic.as_str().into();
                    self.topic_aliases.insert(alias, t.clone());
                    t
                }
            }
            _ => p.topic.as_str().into(),
        };
        if topic.split('/').count() > cfg.max_topic_levels {
            return Err(violation(
                ReasonCode::TOPIC_NAME_INVALID,
                "topic has more levels than max_topic_levels",
            ));
        }
        if v5 && !p.properties.subscription_identifiers.is_empty() {
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.3.4-6] subscription identifier in a PUBLISH from a client",
            ));
        }
        if p.retain && !cfg.retain_available {
            return Err(violation(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "[MQTT-3.2.2-14] retain not available",
            ));
        }
        if p.qos == QoS::ExactlyOnce
            && let Some(pid) = p.packet_id
        {
            if self.session.inflight_in.contains(&pid.get()) {
                // A re-sent QoS 2 PUBLISH: already routed once; only acknowledge [MQTT-4.3.3-10].
                self.write(&Packet::PublishReceived(PublishAck::new(pid)));
                return Ok(());
            }
            if v5 && self.session.inflight_in.len() >= usize::from(cfg.max_inflight_messages) {
                return Err(violation(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "[MQTT-3.3.4-7] more QoS 2 in flight than Receive Maximum",
                ));
            }
        }
        if !self
            .shared
            .auth
            .load()
            .authorize(&self.identity, Action::Publish(&topic))
        {
            // Denied: dropped; QoS 1/2 acknowledged with 0x87 on v5 (as the spec allows) and
            // normally on 3.1.1, which has no way to say no (Mosquitto does the same).
            debug!(client_id = %self.client_id, %topic, "publish denied by ACL");
            let reason = if v5 {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            };
            match (p.qos, p.packet_id) {
                (QoS::AtLeastOnce, Some(pid)) => {
                    self.ack(Packet::PublishAck(PublishAck {
                        reason,
                        ..PublishAck::new(pid)
                    }));
                }
                (QoS::ExactlyOnce, Some(pid)) => {
                    if !reason.is_error() {
                        self.session.inflight_in.insert(pid.get());
                    }
                    self.ack(Packet::PublishReceived(PublishAck {
                        reason,
                        ..PublishAck::new(pid)
                    }));
                }
                _ => {}
            }
            return Ok(());
        }
        let mut properties = p.properties;
        properties.topic_alias = None;
        // The clock is read only when the message expires (it is a syscall per message otherwise).
        let expires_at = properties
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let message = Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: if v5 {
                properties
            } else {
                PublishProperties::default()
            },
            publisher: Some(self.client_id.clone()),
            expires_at,
        };
        let mut sink = PublishSink::default();
        let auth = self.shared.auth.load();
        self.shared.router.publish(
            Arc::new(message),
            cfg.retain_available,
            auth.filters_receive().then_some(&**auth),
            &mut sink,
        );
        self.busy.append(&mut sink.busy);
        if let Some(commit) = sink.commit
            && p.qos != QoS::AtMostOnce
        {
            // The ack waits for the durable copies [issue: nothing acknowledged is lost].
            self.pending_commits.push(commit);
        }
        let delivered = sink.delivered;
        // v5: 0x97 when copies to be stored were refused for `max_disk_bytes`; 3.1.1 cannot say no.
        let reason = match (v5, sink.quota_exceeded, delivered) {
            (false, _, _) => ReasonCode::SUCCESS,
            (true, true, _) => ReasonCode::QUOTA_EXCEEDED,
            (true, false, 0) => ReasonCode::NO_MATCHING_SUBSCRIBERS,
            (true, false, _) => ReasonCode::SUCCESS,
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(pid)) => {
                let mut ack = PublishAck::new(pid);
                ack.reason = reason;
                self.ack(Packet::PublishAck(ack));
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                // An error PUBREC ends the QoS 2 flow: the id is not kept.
                if !reason.is_error() {
                    self.session.inflight_in.insert(pid.get());
                    if self.durable {
                        self.store_awaited(vec![Op::PutInflightIn(
                            self.client_id.to_string(),
                            pid.get(),
                        )]);
                    }
                }
                let mut rec = PublishAck::new(pid);
                rec.reason = reason;
                self.ack(Packet::PublishReceived(rec));
            }
            _ => {}
        }
        Ok(())
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), End> {
        let v5 = self.version.is_v5();
        // A filter repeated in one packet is handled once, at its last position (the last one
        // replaces the others anyway [MQTT-3.8.4-3]); every position still gets its reason code
        // [MQTT-3.8.4-6], the one of that last occurrence.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(s.filters.len());
        for (i, (filter, _)) in s.filters.iter().enumerate() {
            last.insert(filter.as_str(), i);
        }
        let mut reasons = Vec::with_capacity(s.filters.len());
        for (i, (filter, options)) in s.filters.iter().enumerate() {
            if last.get(filter.as_str()) != Some(&i) {
                reasons.push(ReasonCode::SUCCESS); // filled in below
                continue;
            }
            reasons.push(self.subscribe_one(
                filter,
                *options,
                s.properties.subscription_identifier,
            )?);
        }
        for (i, (filter, _)) in s.filters.iter().enumerate() {
            if let Some(&l) = last.get(filter.as_str())
                && l != i
            {
                reasons[i] = reasons[l];
            }
        }
        if !v5 {
            // 3.1.1 has one failure code, 0x80 [MQTT-3.9.3-2].
            for r in &mut reasons {
                if r.is_error() {
                    *r = ReasonCode::UNSPECIFIED_ERROR;
                }
            }
        }
        self.write(&Packet::SubscribeAck(SubscribeAck {
            packet_id: s.packet_id,
            reasons,
            properties: Default::default(),
        }));
        Ok(())
    }

    /// Handles one filter of a SUBSCRIBE; returns its reason code (v5 value). Retained messages
    /// are streamed into the session's mailbox, which bounds them: past its limit they are
    /// dropped and counted like any overflow, never collected in memory first.
    fn subscribe_one(
        &mut self,
        filter: &str,
        options: hermod_proto::SubscriptionOptions,
        id: Option<u32>,
    ) -> Result<ReasonCode, End> {
        let cfg = &self.shared.config;
        let v5 = self.version.is_v5();
        let shared_parts = hermod_proto::topic::parse_shared(filter);
        let valid = hermod_proto::topic::validate_topic_filter(filter).is_ok()
            && shared_parts.is_ok()
            && filter.split('/').count() <= cfg.max_topic_levels;
        if !valid {
            if v5 {
                return Ok(ReasonCode::TOPIC_FILTER_INVALID);
            }
            // 3.1.1: a malformed filter is a protocol violation; Mosquitto closes the connection.
            return Err(violation(
                ReasonCode::TOPIC_FILTER_INVALID,
                "[MQTT-4.7.1-1..3] invalid topic filter",
            ));
        }
        let share = shared_parts.ok().flatten();
        let auth = self.shared.auth.load();
        if !auth.authorize(&self.identity, Action::Subscribe(filter)) {
            return Ok(ReasonCode::NOT_AUTHORIZED);
        }
        if share.is_some() && options.no_local && v5 {
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.8.3-4] no local on a shared subscription",
            ));
        }
        // max_subscriptions bounds what one client can make the broker hold (a replaced
        // subscription does not count twice).
        if cfg.max_subscriptions > 0
            && self.session.subscriptions.len() >= cfg.max_subscriptions
            && !self.session.subscriptions.contains_key(filter)
        {
            debug!(client_id = %self.client_id, filter, "max_subscriptions reached: refused");
            return Ok(ReasonCode::QUOTA_EXCEEDED);
        }
        let is_new = self
            .shared
            .router
            .subscribe(filter, self.session.handle.clone(), options, id);
        let entry = SubscriptionEntry { options, id };
        if self.durable {
            // One small row per subscription, not the whole session record.
            self.store_detached(vec![Op::PutSubscription(
                self.client_id.to_string(),
                crate::persist::subscription_record(filter, &entry),
            )]);
        }
        self.session.subscriptions.insert(filter.to_owned(), entry);
        // Retained messages on subscribe (3.3.1.3 / 3.8.3.1 Retain Handling); not for shared
        // subscriptions (5.0 §4.8.2: none are sent to a session subscribing to a shared one).
        let send_retained = match options.retain_handling {
            hermod_proto::RetainHandling::SendAtSubscribe => true,
            hermod_proto::RetainHandling::SendIfNew => is_new,
            hermod_proto::RetainHandling::DoNotSend => false,
        };
        if share.is_none() && send_retained && cfg.retain_available {
            let (handle, metrics) = (&self.session.handle, &self.shared.metrics);
            let mut full = false;
            self.shared
                .router
                .for_each_retained(filter, Instant::now(), &mut |m| {
                    if full {
                        Metrics::incr(&metrics.messages_dropped);
                        return;
                    }
                    if !auth.authorize(&self.identity, Action::Receive(&m.topic)) {
                        return;
                    }
                    let d = Delivery {
                        qos: m.qos.min(options.qos),
                        retain: true, // [MQTT-3.3.1-8]
                        subscription_ids: id.into_iter().collect(),
                        shared: None,
                        seq: None,
                        message: m.clone(),
                    };
                    // Dropped (and counted by the mailbox) at the limit: the rest is counted
                    // without being looked at again.
                    full = handle.push(d, metrics) == crate::session::mailbox::PushOutcome::Dropped;
                });
        }
        Ok(ReasonCode(options.qos as u8))
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let reasons = u
            .filters
            .iter()
            .map(|f| {
                let in_session = self.session.subscriptions.remove(f).is_some();
                let in_tree = self.shared.router.unsubscribe(f, &self.client_id);
                if in_session && self.durable {
                    self.store_detached(vec![Op::DeleteSubscription(
                        self.client_id.to_string(),
                        f.clone(),
                    )]);
                }
                if in_session || in_tree {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.write(&Packet::UnsubscribeAck(UnsubscribeAck {
            packet_id: u.packet_id,
            reasons,
            properties: Default::default(),
        }));
    }

    fn on_disconnect(&mut self, d: &Disconnect) -> Result<(), End> {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.connect_expiry_zero && expiry != 0 {
                return Err(violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.14.2-2] session expiry set on DISCONNECT after 0 on CONNECT",
                ));
            }
            self.session.expiry = match expiry {
                0 => Some(Duration::ZERO),
                u32::MAX => self.shared.config.persistent_client_expiration(),
                s => Some(Duration::from_secs(u64::from(s))),
            };
        }
        if d.reason == ReasonCode::DISCONNECT_WITH_WILL {
            Err(End::NormalWithWill)
        } else {
            Err(End::Normal)
        }
    }

    fn write(&mut self, packet: &Packet) {
        if let Err(e) = encode_packet(packet, self.version, &mut self.wbuf) {
            warn!(client_id = %self.client_id, error = %e, "packet could not be encoded; skipped");
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let (stream, wbuf) = (&mut self.stream, &self.wbuf);
        // flush: TLS and WebSocket streams buffer until flushed (a WebSocket message is sent on flush).
        let mut write = std::pin::pin!(async move {
            stream.write_all(wbuf).await?;
            stream.flush().await
        });
        // Fast path: the socket usually takes it all at once; only a slow reader needs the
        // select (so that shutdown and takeover still get through while the write waits).
        let r = match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => tokio::select! {
                r = &mut write => r,
                () = self.shared.shutdown.cancelled() => return Err(End::Shutdown),
                () = self.kick.cancelled() => return Err(End::TakenOver),
            },
        };
        self.wbuf.clear();
        if self.wbuf.capacity() > 4 * WRITE_HIGH_WATER {
            self.wbuf = BytesMut::new();
        }
        r.map_err(|e| End::Lost(Some(e)))
    }
}

/// Sends a refusing CONNACK and closes.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    version: ProtocolVersion,
    reason: ReasonCode,
) {
    let mut w = BytesMut::new();
    let ack = ConnectAck {
        reason,
        ..ConnectAck::default()
    };
    let _ = encode_packet(&Packet::ConnectAck(ack), version, &mut w);
    let _ = stream.write_all(&w).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    close::linger(stream).await;
}

fn violation(code: ReasonCode, why: &str) -> End {
    End::Violation(code, why.to_owned())
}
