//! CONNECT to CONNACK: the handshake checks, authentication, bans, the will ACL, session
//! ownership and takeover, and the CONNACK itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hermod_proto::{ConnectAck, ConnectAckProperties, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::{Action, AuthDecision, ClientIdentity, ConnectInfo, DenyReason};
use crate::message::ClientId;
use crate::metrics::Metrics;
use crate::session::Owner;
use crate::session::registry::Attached;
use crate::shared::Shared;
use crate::transport::PeerInfo;

use super::handshake::{HandshakeError, check_connect, read_connect};
use super::io::refuse;
use super::{Connection, TAKEOVER_WAIT, durable};

/// From the first byte to CONNACK: reads and checks CONNECT, authenticates, applies bans,
/// the will ACL and session ownership, takes over or creates the session, and writes CONNACK
/// (plus the re-sends of a resumed session). `None` when the connection was refused or closed.
pub(super) async fn establish<S>(
    mut stream: S,
    info: PeerInfo,
    shared: Arc<Shared>,
) -> Option<Connection<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let peer = info.addr;
    let max_in = shared.config.max_packet_size as usize;
    let mut rbuf = BytesMut::with_capacity(256);
    let timeout = Duration::from_secs(shared.config.connect_timeout);
    let connect = tokio::select! {
        r = read_connect(&mut stream, &mut rbuf, max_in, timeout) => r,
        () = shared.shutdown.cancelled() => return None,
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
            return None;
        }
    };
    let version = connect.protocol;
    let accepted = match check_connect(&connect, &shared.config) {
        Ok(a) => a,
        Err(reason) => {
            refuse(&mut stream, version, reason).await;
            info!(%peer, client_id = %connect.client_id, %reason, "connection refused");
            return None;
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
        return None;
    }
    if let Some(left) = shared.throttle.blocked_for(peer.ip(), Instant::now()) {
        refuse(&mut stream, version, banned_reason).await;
        info!(%peer, client_id = %accepted.client_id, username = ?connect.username, secs_left = left.as_secs(), "refused: address blocked after failed logins");
        return None;
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
                return None;
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
                return None;
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
        return None;
    }

    // Store fault: a persistent session cannot be served while the store cannot write.
    if durable::refuse_without_store(&mut stream, &shared, &connect, peer).await {
        return None;
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
            return None;
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
                    return None;
                }
                Err(_) => {
                    // The holder did not hand the session over in time: it keeps it (and stores
                    // it offline when it closes); this client is told to come back.
                    shared.registry.abandon(&client_id, conn_id);
                    refuse(&mut stream, version, ReasonCode::SERVER_UNAVAILABLE).await;
                    warn!(%client_id, %peer, "session hand-off timed out; connection refused (server unavailable)");
                    return None;
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
    Some(conn)
}
