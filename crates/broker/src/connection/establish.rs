//! CONNECT to CONNACK: the handshake checks, bans, authentication, the will ACL and the store,
//! session ownership and takeover, and the CONNACK itself. Each step either goes on or stops
//! with a [`Refusal`], which `establish` alone answers (CONNACK) and logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hermod_proto::{
    Connect, ConnectAck, ConnectAckProperties, Packet, ProtocolVersion, ReasonCode,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::{INTERNAL_CLIENT_PREFIX, INTERNAL_USERNAME, MovedSession};
use crate::auth::{Action, AuthDecision, ClientIdentity, ConnectInfo, DenyReason};
use crate::message::ClientId;
use crate::metrics::ConnectResult;
use crate::session::registry::{Attached, ConnectionId};
use crate::session::{Owner, Session};
use crate::shared::Shared;
use crate::transport::PeerInfo;

use super::handshake::{Accepted, HandshakeError, check_connect, read_connect};
use super::negotiated::Negotiated;
use super::refusal::Refusal;
use super::{Connection, TAKEOVER_WAIT, durable, io};

/// How long a CONNECT waits for the cluster to hand over a session that lived on another node
/// (and again for the messages it missed) before it is refused as "server unavailable".
const CLAIM_WAIT: Duration = Duration::from_secs(10);

/// Why establishing stopped before CONNACK.
enum Stop {
    /// Answered with a refusing CONNACK.
    Refused(Refusal),
    /// Closed without an answer (already logged).
    Closed,
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// A connection between its first byte and CONNACK, with what is known of the client so far
/// (for the refusal's CONNACK and log line).
struct Establishing<S> {
    stream: S,
    rbuf: BytesMut,
    info: PeerInfo,
    shared: Arc<Shared>,
    /// The client's version, once CONNECT is decoded (the CONNACK's format).
    version: ProtocolVersion,
    client_id: String,
    username: Option<String>,
    /// A CONNECT (or what claimed to be one) was read: the connection counts as a connect.
    connect_read: bool,
}

/// All the steps passed: what the connection starts with.
struct Admitted {
    connect: Box<Connect>,
    accepted: Accepted,
    neg: Negotiated,
    identity: Arc<ClientIdentity>,
    conn_id: ConnectionId,
    kick: CancellationToken,
    session: Session,
    session_present: bool,
    durable: bool,
}

/// From the first byte to CONNACK (plus the re-sends of a resumed session). `None` when the
/// connection was refused or closed.
pub(super) async fn establish<S>(
    stream: S,
    info: PeerInfo,
    listener: usize,
    shared: Arc<Shared>,
) -> Option<Connection<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut e = Establishing {
        stream,
        rbuf: BytesMut::with_capacity(256),
        info,
        shared,
        version: ProtocolVersion::V311,
        client_id: String::new(),
        username: None,
        connect_read: false,
    };
    match e.steps().await {
        Ok(admitted) => {
            e.shared.metrics.connect(listener, ConnectResult::Success);
            Some(e.connack(admitted))
        }
        Err(Stop::Refused(r)) => {
            e.shared.metrics.connect(listener, r.result());
            io::refuse(
                &mut e.stream,
                r.wire_version(e.version),
                r.connack_code(e.version),
            )
            .await;
            r.log(e.info.addr, &e.client_id, e.username.as_deref());
            None
        }
        Err(Stop::Closed) => {
            if e.connect_read {
                e.shared.metrics.connect(listener, ConnectResult::Closed);
            }
            let _ = e.stream.shutdown().await;
            None
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Establishing<S> {
    async fn steps(&mut self) -> Result<Admitted, Stop> {
        let connect = self.read().await?;
        let mut accepted = check_connect(&connect, &self.shared.config)?;
        self.client_id.clone_from(&accepted.client_id);
        // The `$hermod/` client ids are the broker's own services', and only theirs.
        let internal_id = accepted.client_id.starts_with(INTERNAL_CLIENT_PREFIX);
        if internal_id != self.info.internal.is_some() {
            return Err(Refusal::ClientIdNotValid.into());
        }
        if self.info.internal.is_some() {
            // A service in the same process cannot go silent: no keep alive.
            accepted.keep_alive = 0;
            accepted.server_keep_alive = None;
        } else {
            self.check_bans()?;
        }
        let mut identity = self.authenticate(&connect).await?;
        // One allocation of the client id for the registry's key, the session, its mailbox,
        // the identity and the connection (an idle connection held five).
        let client_id: ClientId = self.client_id.as_str().into();
        identity.client_id = client_id.clone();
        let identity = Arc::new(identity);
        // The will ACL, asking the HTTP authorizer if it has one (holding an `Arc`, not a guard,
        // nor `self`, while waiting for it).
        let will_allowed = match &connect.will {
            Some(will) => {
                let (auth, ip) = (self.shared.auth.load_full(), self.info.addr.ip());
                auth.authorize_async(&identity, Some(ip), Action::Publish(&will.topic))
                    .await
            }
            None => true,
        };
        self.admit(&connect, will_allowed)?;
        let mut neg = Negotiated::new(&connect, &accepted, &self.shared.config);
        if self.info.internal.is_some() {
            // A service's own Receive Maximum, not `max_inflight_messages` (a limit for network
            // clients): it is how many writes a rule can batch.
            neg.receive_max = usize::from(connect.properties.receive_maximum.unwrap_or(u16::MAX));
        }
        let persistent = neg.expiry(&self.shared.config) != Some(Duration::ZERO);
        let moved = self.claim(&connect, &identity, persistent).await?;
        let (conn_id, kick, previous) = self.attach(&client_id, &identity).await?;
        let (session, session_present, durable) = self.take_session(
            &connect,
            &neg,
            &identity,
            &client_id,
            previous,
            moved.as_ref(),
        );
        if let Some(m) = &moved {
            if durable && let Some(p) = &self.shared.persistence {
                // The store takes queue entries only for a session it knows: its record goes
                // first (the writer keeps submission order).
                let record = crate::persist::session_record(&session, neg.version.level(), true);
                p.submit_detached(vec![crate::store::Op::PutSession(
                    self.client_id.clone(),
                    record,
                )]);
            }
            self.replay(&session, m).await;
        }
        Ok(Admitted {
            connect,
            accepted,
            neg,
            identity,
            conn_id,
            kick,
            session,
            session_present,
            durable,
        })
    }

    /// Reads CONNECT within the connect timeout. A level Hermod does not speak is refused; any
    /// other failure closes without an answer.
    async fn read(&mut self) -> Result<Box<Connect>, Stop> {
        let (peer, shared) = (self.info.addr, &self.shared);
        let max_in = shared.config.max_packet_size as usize;
        let timeout = Duration::from_secs(shared.config.connect_timeout);
        let read = read_connect(&mut self.stream, &mut self.rbuf, max_in, timeout);
        let err = tokio::select! {
            r = read => match r {
                Ok(c) => {
                    self.connect_read = true;
                    shared.metrics.connect_packet_received();
                    self.version = c.protocol;
                    self.client_id.clone_from(&c.client_id);
                    self.username.clone_from(&c.username);
                    return Ok(c);
                }
                Err(e) => e,
            },
            () = shared.shutdown.cancelled() => return Err(Stop::Closed),
        };
        match err {
            HandshakeError::Decode(hermod_proto::DecodeError::UnsupportedProtocolVersion(
                level,
            )) => return Err(Refusal::UnsupportedProtocol { level }.into()),
            HandshakeError::Decode(e) => {
                self.connect_read = true;
                shared.metrics.protocol_error();
                info!(%peer, error = %e, "bad CONNECT; connection closed");
            }
            HandshakeError::NotConnect => {
                self.connect_read = true;
                shared.metrics.protocol_error();
                info!(%peer, "[MQTT-3.1.0-1] first packet was not CONNECT; connection closed");
            }
            HandshakeError::Timeout => debug!(%peer, "no CONNECT within connect_timeout; closed"),
            HandshakeError::Io(e) => debug!(%peer, error = ?e, "closed before CONNECT"),
        }
        Err(Stop::Closed)
    }

    /// Bans (`[[banned]]`) and addresses blocked after repeated failed logins
    /// (`[auth_failures]`), before any credential is checked.
    fn check_bans(&self) -> Result<(), Refusal> {
        let ip = self.info.addr.ip();
        let now = std::time::SystemTime::now();
        let shared = &self.shared;
        if let Some(ban) = shared
            .banned
            .check(&self.client_id, self.username.as_deref(), ip, now)
        {
            return Err(Refusal::Banned {
                ban: ban.to_string(),
            });
        }
        if let Some(left) = shared.throttle.blocked_for(ip, Instant::now()) {
            return Err(Refusal::AddressBlocked {
                secs_left: left.as_secs(),
            });
        }
        Ok(())
    }

    /// Authentication. With `use_identity_as_username` the verified client certificate is the
    /// credential: its identity becomes the username and no password source is asked, as in
    /// Mosquitto (handle_connect.c skips the password check for certificate identities).
    async fn authenticate(&mut self, connect: &Connect) -> Result<ClientIdentity, Refusal> {
        let (info, shared) = (&self.info, &self.shared);
        if info.internal.is_some() {
            return Ok(ClientIdentity {
                username: Some(INTERNAL_USERNAME.into()),
                client_id: self.client_id.as_str().into(),
                jwt_acl: None,
                internal: true,
            });
        }
        if info.use_identity_as_username {
            let Some(id) = info.cert_identity.as_ref() else {
                shared.metrics.auth(false);
                return Err(Refusal::NoCertificateIdentity);
            };
            shared.metrics.auth(true);
            return Ok(ClientIdentity {
                username: Some(id.as_str().into()),
                client_id: self.client_id.as_str().into(),
                jwt_acl: None,
                internal: false,
            });
        }
        let request = ConnectInfo {
            client_id: self.client_id.clone(),
            username: connect.username.clone(),
            password: connect.password.clone(),
            peer: info.addr,
            cert_identity: info.cert_identity.clone(),
        };
        let why = match shared.auth.load_full().authenticate(&request).await {
            AuthDecision::Allow(identity) => {
                shared.metrics.auth(true);
                return Ok(identity);
            }
            AuthDecision::Deny(why) => why,
        };
        shared.metrics.auth(false);
        if why == DenyReason::BadCredentials
            && shared
                .throttle
                .record_failure(info.addr.ip(), Instant::now())
        {
            let peer = info.addr;
            warn!(%peer, "address blocked after repeated failed logins ([auth_failures])");
        }
        Err(match why {
            DenyReason::BadCredentials => Refusal::BadCredentials {
                source_error: false,
            },
            DenyReason::SourceError => Refusal::BadCredentials { source_error: true },
            DenyReason::Busy => Refusal::ServerBusy,
            DenyReason::Blocked => Refusal::BlockedWhileQueued,
            DenyReason::NotAuthorized => Refusal::NotAuthorized,
        })
    }

    /// The will ACL and the store: what an authenticated client may still be refused for.
    fn admit(&self, connect: &Connect, will_allowed: bool) -> Result<(), Refusal> {
        // A will is a publish: its publisher must be allowed to publish on its topic, now and
        // again when it is published (`will_allowed`, checked by the caller).
        if let Some(will) = &connect.will
            && !will_allowed
        {
            return Err(Refusal::WillTopicDenied {
                topic: will.topic.clone(),
            });
        }
        // Store fault: a persistent session cannot be served while the store cannot write.
        if durable::store_down_for(&self.shared, connect) {
            return Err(Refusal::StoreUnavailable);
        }
        Ok(())
    }

    /// In a cluster: the session of this client id that lived on another node, handed over
    /// (see [`crate::api::Backbone::claim`]); refused when the cluster cannot say where it is,
    /// or when it belongs to another identity.
    async fn claim(
        &mut self,
        connect: &Connect,
        identity: &ClientIdentity,
        persistent: bool,
    ) -> Result<Option<MovedSession>, Refusal> {
        let Some(b) = self.shared.router.backbone() else {
            return Ok(None);
        };
        if self.info.internal.is_some() {
            return Ok(None);
        }
        let claim = b.claim(
            &self.client_id,
            identity.username.as_deref(),
            connect.clean_start,
            persistent,
        );
        let moved = match tokio::time::timeout(CLAIM_WAIT, claim).await {
            Ok(Ok(moved)) => moved,
            Ok(Err(detail)) => return Err(Refusal::ClusterUnavailable { detail }),
            Err(_) => {
                return Err(Refusal::ClusterUnavailable {
                    detail: format!("no answer within {} s", CLAIM_WAIT.as_secs()),
                });
            }
        };
        if let Some(m) = &moved {
            let (holder, who) = (
                Owner::of(m.owner.as_ref()),
                Owner::of(identity.username.as_ref()),
            );
            if holder != who {
                // As for a local session: nothing of another user's session is handed over.
                return Err(Refusal::OtherIdentitySession {
                    identity: who.to_string(),
                    owner: holder.to_string(),
                });
            }
        }
        Ok(moved)
    }

    /// Queues the messages a session moved from another node missed (at most the session's
    /// queue limit), before CONNACK, so that they come before anything newer.
    async fn replay(&mut self, session: &Session, moved: &MovedSession) {
        let Some(b) = self.shared.router.backbone() else {
            return;
        };
        let client_id = &self.client_id;
        let limit = self.shared.config.max_queued_messages;
        let messages = match tokio::time::timeout(CLAIM_WAIT, b.replay(client_id, moved, limit))
            .await
        {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::error!(%client_id, error = %e, "moved session: cannot replay the messages it missed");
                return;
            }
            Err(_) => {
                tracing::error!(%client_id, "moved session: replay of the messages it missed timed out");
                return;
            }
        };
        let auth = self.shared.auth.load();
        let gate = auth.filters_receive().then_some(&**auth);
        let mut queued = 0usize;
        for m in messages {
            queued += usize::from(crate::deliver::replay_into(
                &self.shared.router,
                self.shared.persistence.as_deref(),
                &session.handle,
                &session.subscriptions,
                Arc::new(m),
                gate,
            ));
        }
        info!(%client_id, queued, "moved session: messages replayed from the cluster");
    }

    /// Claims the client id for this connection: the previous session, if any, once its holder
    /// handed it over.
    async fn attach(
        &mut self,
        client_id: &ClientId,
        identity: &ClientIdentity,
    ) -> Result<(ConnectionId, CancellationToken, Option<Session>), Stop> {
        let (shared, peer) = (&self.shared, self.info.addr);
        let conn_id = shared.next_connection_id();
        // A child of the shutdown token: the connection waits on this one alone (see `kicked`).
        let kick = shared.shutdown.child_token();
        let owner = Owner::of(identity.username.as_ref());
        let previous = match shared
            .registry
            .attach(client_id, conn_id, kick.clone(), &owner)
        {
            // Sessions belong to an identity: nothing of another user's session is sent,
            // consumed, taken over or ended.
            Attached::Refused(holder) => {
                return Err(Refusal::OtherIdentitySession {
                    identity: owner.to_string(),
                    owner: holder.to_string(),
                }
                .into());
            }
            Attached::New => None,
            Attached::Resumed(s) => Some(s),
            Attached::TakingOver(rx) => {
                info!(%client_id, "session taken over by a new connection");
                match tokio::time::timeout(TAKEOVER_WAIT, rx).await {
                    Ok(Ok(session)) => Some(session),
                    Ok(Err(_)) => {
                        // A newer connection with the same client id arrived while this one
                        // waited: the session goes to it; this one never started and touches
                        // nothing.
                        info!(%client_id, %peer, "superseded by a newer connection before the hand-off; closed");
                        return Err(Stop::Closed);
                    }
                    Err(_) => {
                        // The holder did not hand the session over in time: it keeps it (and
                        // stores it offline when it closes); this client is told to come back.
                        shared.registry.abandon(client_id, conn_id);
                        return Err(Refusal::TakeoverTimedOut.into());
                    }
                }
            }
        };
        // In a cluster, the other nodes disconnect this client id [MQTT-3.1.4-2].
        if self.info.internal.is_none()
            && let Some(b) = shared.router.backbone()
        {
            b.connected(client_id);
        }
        Ok((conn_id, kick, previous))
    }

    /// The session this connection serves: the previous one resumed, or a new one (clean
    /// start ends the previous one). Returns it with "session present" and whether it is durable.
    fn take_session(
        &self,
        connect: &Connect,
        neg: &Negotiated,
        identity: &Arc<ClientIdentity>,
        client_id: &ClientId,
        previous: Option<Session>,
        moved: Option<&MovedSession>,
    ) -> (Session, bool, bool) {
        let shared = &self.shared;
        let client_id = client_id.clone();
        let (mut session, session_present) = match previous {
            // The cluster says the session lives elsewhere now: a copy left here is stale.
            Some(old) if moved.is_some() => {
                shared.end_session_with(old, true);
                (self.moved_session(&client_id, moved), true)
            }
            None if moved.is_some() && !connect.clean_start => {
                (self.moved_session(&client_id, moved), true)
            }
            Some(old) if !connect.clean_start => (old, true),
            Some(old) => {
                // Clean start: the old session (and its stored record) is this client's to end.
                shared.end_session_with(old, true);
                (shared.new_session(client_id), false)
            }
            None => (shared.new_session(client_id), false),
        };
        session.expiry = neg.expiry(&shared.config);
        session.owner = Owner::of(identity.username.as_ref());
        session.handle.set_reader(identity.clone());
        if let Some(o) = &self.info.internal {
            session.handle.set_queue_limit(o.max_queued_messages);
            session.handle.set_limits(o.max_queued_bytes, o.drop_oldest);
        }
        // A stored session resumed with session expiry 0 stays durable for this connection (its
        // queue is on disk) and is deleted from the store when it ends.
        let durable = shared.persistence.is_some()
            && (session.is_persistent() || (session_present && session.handle.is_durable()));
        session.handle.set_durable(durable);
        session.handle.set_online(true);
        (session, session_present, durable)
    }

    /// A session rebuilt from what another node of the cluster handed over: its subscriptions
    /// in place (no retained messages are sent: the session is resumed, not subscribing).
    fn moved_session(&self, client_id: &ClientId, moved: Option<&MovedSession>) -> Session {
        let shared = &self.shared;
        let mut session = shared.new_session(client_id.clone());
        for (filter, options, id) in moved
            .map(|m| m.subscriptions.as_slice())
            .unwrap_or_default()
        {
            shared
                .router
                .subscribe(filter, session.handle.clone(), *options, *id);
            session.subscriptions.insert(
                filter.clone(),
                crate::session::SubscriptionEntry {
                    options: *options,
                    id: *id,
                },
            );
        }
        session
    }

    /// The connection, with CONNACK and the re-sends of a resumed session written.
    fn connack(self, a: Admitted) -> Connection<S> {
        let cfg = &self.shared.config;
        // v3 has no properties: the encoder drops them.
        let mut props = ConnectAckProperties {
            receive_maximum: Some(cfg.max_inflight_messages),
            maximum_packet_size: Some(cfg.max_packet_size),
            server_keep_alive: a.accepted.server_keep_alive,
            ..ConnectAckProperties::default()
        };
        if a.neg.topic_alias_max > 0 {
            props.topic_alias_maximum = Some(a.neg.topic_alias_max);
        }
        if !cfg.retain_available {
            props.retain_available = Some(0);
        }
        if a.accepted.assigned {
            props.assigned_client_identifier = Some(a.accepted.client_id.clone());
        }
        let ack = ConnectAck {
            session_present: a.session_present,
            reason: ReasonCode::SUCCESS,
            properties: props,
        };
        let client_id = a.session.client_id.clone();
        let peer: SocketAddr = self.info.addr;
        let live = Arc::new(crate::session::live::Live {
            peer,
            protocol: a.neg.version,
            username: a.identity.username.clone(),
            connected_at: std::time::SystemTime::now(),
            keep_alive: a.connect.keep_alive,
            clean_start: a.connect.clean_start,
            expiry_interval: a.session.expiry.map(|d| d.as_secs()),
            tls: self.info.tls,
            handle: a.session.handle.clone(),
            inflight: std::sync::atomic::AtomicUsize::new(0),
            subscriptions: std::sync::atomic::AtomicUsize::new(a.session.subscriptions.len()),
            commands: crate::session::live::Commands::default(),
        });
        self.shared
            .registry
            .set_live(&client_id, a.conn_id, live.clone());
        // In a cluster, the other nodes publish the will if this node dies meanwhile; a
        // resumed session's delayed will, cancelled by this connection [MQTT-3.1.3-9], goes.
        if self.info.internal.is_none()
            && let Some(b) = self.shared.router.backbone()
        {
            match &a.connect.will {
                Some(w) => {
                    let message = crate::persist::will_message(
                        &crate::persist::will_record(w),
                        &client_id,
                        std::time::Instant::now(),
                    );
                    b.will(&client_id, Some(&message));
                }
                None if a.session_present => b.will(&client_id, None),
                None => {}
            }
        }
        let origin = Arc::new(crate::message::Origin {
            username: a.identity.username.clone(),
            peer,
        });
        let mut conn = Connection {
            stream: self.stream,
            rbuf: self.rbuf,
            wbuf: BytesMut::new(),
            neg: a.neg,
            shared: self.shared,
            conn_id: a.conn_id,
            client_id: client_id.clone(),
            session: a.session,
            will: a.connect.will.clone().map(Box::new),
            topic_aliases: None,
            out_aliases: None,
            kick: a.kick,
            batch: Vec::new(),
            identity: a.identity,
            read_size: 256,
            last_read: 0,
            busy: Vec::new(),
            parked: None,
            durable: a.durable,
            pending_commits: Vec::new(),
            deferred: Vec::new(),
            live,
            stats: crate::metrics::Local::default(),
            origin,
            internal: self.info.internal.is_some(),
            read_at: Instant::now(),
        };
        conn.persist_session(true);
        let (version, clean_start) = (conn.neg.version, a.connect.clean_start);
        info!(%client_id, %peer, ?version, clean_start, session_present = a.session_present, "client connected");
        conn.shared
            .events
            .emit(|| crate::api::Event::ClientConnected {
                client_id: client_id.clone(),
                username: conn.identity.username.clone(),
                peer,
                protocol: version,
                clean_start,
                session_present: a.session_present,
            });
        conn.write(&Packet::ConnectAck(ack));
        conn.resend_inflight();
        conn
    }
}
