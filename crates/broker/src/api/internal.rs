//! Internal connections: how the broker's own services (rules, bridges, later shadows) become
//! MQTT clients of the broker without a socket.
//!
//! [`BrokerHandle::connect_internal`] returns one end of an in-process pipe whose other end is
//! served by the same connection task as a network client, so a service gets everything a
//! client gets and nothing is written twice: a persistent session whose QoS 1/2 messages stay
//! in the store until the service acknowledges them (a rule acknowledges once its sinks have
//! written; a bridge once the remote broker has), a bounded mailbox, re-sends after a restart,
//! and the same events and metrics. The service speaks MQTT 5 over the pipe (with
//! `hermod_client::Connection::over`); the encoding costs about what a delivery to one more
//! subscriber costs, and keeps one code path for every reader of a session.
//!
//! What differs from a network client: no authentication, and no ACL (the service acts for
//! the broker); client ids must start with [`INTERNAL_CLIENT_PREFIX`], which network clients
//! are refused; no keep alive; and the session's queue limit and overflow policy come from
//! [`InternalOptions`] instead of the global `max_queued_messages` / `queue_overflow`.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::DuplexStream;

use super::BrokerHandle;
use crate::message::ClientId;
use crate::session::Owner;
use crate::transport::PeerInfo;

/// Client ids of internal connections start with this (`$hermod/rule/collector`); a network
/// client asking for one is refused with "client identifier not valid".
pub const INTERNAL_CLIENT_PREFIX: &str = "$hermod/";

/// The username internal sessions belong to (their [`Owner`]).
pub const INTERNAL_USERNAME: &str = "$hermod";

/// Bytes the pipe holds in each direction before a writer waits.
const PIPE_BYTES: usize = 256 * 1024;

/// The session limits of an internal connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalOptions {
    /// Messages its session may hold (in memory and on disk together), as
    /// `max_queued_messages` for clients.
    pub max_queued_messages: usize,
    /// Bytes its session may hold (memory and disk together; 0 = no byte limit), as
    /// `max_queued_bytes` for clients.
    pub max_queued_bytes: usize,
    /// When full: drop the oldest queued message (true) or the new one (false, as
    /// `queue_overflow = "drop_new"`).
    pub drop_oldest: bool,
}

impl Default for InternalOptions {
    fn default() -> Self {
        Self {
            max_queued_messages: 1_000_000,
            max_queued_bytes: 0,
            drop_oldest: false,
        }
    }
}

impl BrokerHandle {
    /// Opens an internal connection and returns the service's end of it: send CONNECT (MQTT 5,
    /// a client id starting with [`INTERNAL_CLIENT_PREFIX`]) and go on as any client. The
    /// connection ends when the stream is dropped or the broker shuts down. Call from within
    /// the broker's tokio runtime.
    #[must_use]
    pub fn connect_internal(&self, options: InternalOptions) -> DuplexStream {
        let (broker_end, service_end) = tokio::io::duplex(PIPE_BYTES);
        let info = PeerInfo {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: false,
            cert_identity: None,
            cert_cn: None,
            use_identity_as_username: false,
            internal: Some(options),
        };
        let shared = self.shared.clone();
        // Not a listener's connection: no listener label in the metrics.
        tokio::spawn(crate::connection::run(broker_end, info, usize::MAX, shared));
        service_end
    }
}

/// Whether a session belongs to an internal connection (restored from the store, say).
pub(crate) fn is_internal_session(owner: &Owner, client_id: &ClientId) -> bool {
    matches!(owner, Owner::User(u) if &**u == INTERNAL_USERNAME)
        && client_id.starts_with(INTERNAL_CLIENT_PREFIX)
}

/// User properties added to each PUBLISH an internal connection receives, after the
/// message's own: who published it, which a rule's `clientid`, `username` and `peerhost`
/// fields need and MQTT does not carry. Absent when not known (a will, the broker's own
/// message; a message read back from the store keeps them, but those stored by builds before
/// the store kept publishers).
pub const ORIGIN_CLIENT_ID: &str = "$hermod.clientid";
/// See [`ORIGIN_CLIENT_ID`].
pub const ORIGIN_USERNAME: &str = "$hermod.username";
/// See [`ORIGIN_CLIENT_ID`]: the IP address, without the port.
pub const ORIGIN_PEERHOST: &str = "$hermod.peerhost";
/// See [`ORIGIN_CLIENT_ID`]: the delivery's sequence number in the service's stored queue
/// (decimal), the same on every re-send, so a service can write each message once. Absent
/// for deliveries that are not stored (QoS 0, no store).
pub const ORIGIN_SEQ: &str = "$hermod.seq";

pub(crate) fn add_origin_properties(
    p: &mut hermod_proto::PublishProperties,
    m: &crate::message::Message,
    seq: Option<u64>,
) {
    if let Some(s) = seq {
        p.user_properties
            .push((ORIGIN_SEQ.to_owned(), s.to_string()));
    }
    if let Some(c) = &m.publisher {
        p.user_properties
            .push((ORIGIN_CLIENT_ID.to_owned(), c.to_string()));
    }
    if let Some(o) = &m.origin {
        if let Some(u) = &o.username {
            p.user_properties
                .push((ORIGIN_USERNAME.to_owned(), u.to_string()));
        }
        p.user_properties
            .push((ORIGIN_PEERHOST.to_owned(), o.peer.ip().to_string()));
    }
}

impl BrokerHandle {
    /// Whether a network client with this client id and username may publish to `topic`, by
    /// the rules in force now (ACL file, things' topics, `$SYS`; the HTTP authorizer's cached
    /// answer, else the rules without it). For a service that publishes on a client's behalf,
    /// e.g. to the Response Topic of a request: the service acts past the ACL, so it asks
    /// first, or a client could have it write where the client may not. A client's JWT claims
    /// are not known here, so what only its token grants is refused.
    #[must_use]
    pub fn may_publish(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let who = crate::auth::ClientIdentity {
            username: username.map(std::sync::Arc::from),
            client_id: std::sync::Arc::from(client_id),
            jwt_acl: None,
            internal: false,
        };
        self.shared
            .auth
            .load()
            .authorize(&who, crate::auth::Action::Publish(topic))
    }
}
