//! The scale-out hook: what the broker asks of a backbone that joins it to other nodes
//! (`hermod-cluster`, over NATS JetStream), and nothing more. With no backbone attached the
//! broker is a single node and pays one `OnceLock` load per publish and per subscription change.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hermod_proto::SubscriptionOptions;

use crate::message::Message;
use crate::store::Commit;

/// A persistent session that lived on another node, handed to this one by
/// [`Backbone::claim`]: what the broker rebuilds it from.
#[derive(Debug, Clone, Default)]
pub struct MovedSession {
    /// The username of the identity that created it (`None`: anonymous). A client of another
    /// identity is refused, as for a local session.
    pub owner: Option<Arc<str>>,
    /// The session expiry interval it had (`None`: never expires).
    pub expiry: Option<Duration>,
    /// Its subscriptions: full filter (`$share/...` included), options, v5 identifier.
    pub subscriptions: Vec<(String, SubscriptionOptions, Option<u32>)>,
    /// The backbone's position for [`Backbone::replay`]: opaque to the broker.
    pub position: u64,
}

/// What a node knows of one of its sessions, for the backbone's record of it
/// ([`super::BrokerHandle::session_state`]).
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    /// The username of its owner (`None`: anonymous or unknown).
    pub owner: Option<Arc<str>>,
    /// Its expiry interval (`None`: never); `Some(0)` for a session that ends with its
    /// connection.
    pub expiry: Option<Duration>,
    /// Its subscriptions.
    pub subscriptions: Vec<(String, SubscriptionOptions, Option<u32>)>,
    /// Whether a connection holds it.
    pub online: bool,
    /// Nothing queued and nothing in flight: every message routed to it so far was
    /// acknowledged (or dropped).
    pub drained: bool,
}

/// The answer of [`Backbone::claim`]: `Ok(None)` when the session is this node's (or there is
/// none elsewhere); `Err` when the cluster cannot say (the CONNECT is refused as "server
/// unavailable" rather than given a second copy of a session).
pub type Claim = Pin<Box<dyn Future<Output = Result<Option<MovedSession>, String>> + Send>>;

/// The messages a moved session missed, oldest first (see [`Backbone::replay`]).
pub type Replay = Pin<Box<dyn Future<Output = Result<Vec<Message>, String>> + Send>>;

/// A backbone that carries this node's messages to the other nodes and learns which topics this
/// node wants. Attached once, with [`super::BrokerHandle::attach_backbone`].
///
/// Both methods are called on the publish and subscribe paths (`forward` with no lock held,
/// `subscribed`/`unsubscribed` under the subscription tree's write lock, so they see changes in
/// order): they must not block or call back into the broker; hand the work to a task.
pub trait Backbone: Send + Sync + std::fmt::Debug {
    /// A message published on this node (a client's, a will, a service's) for the other nodes.
    /// Not called for messages that came from another node ([`super::BrokerHandle::publish_remote`]).
    ///
    /// For QoS 1/2 it returns the commit that the publisher's PUBACK/PUBREC waits for, completed
    /// once the backbone holds the message durably (a failed commit is reported to the
    /// publisher as a failed store write: v5 0x80, v3.1.1 disconnect). `None`: nothing to wait
    /// for (QoS 0, or a topic the backbone does not carry).
    fn forward(&self, message: &Arc<Message>) -> Option<Commit>;

    /// Whether [`Backbone::forward`] carries messages of `topic` to the other nodes. For those,
    /// this node's shared groups are served by the backbone (one member cluster-wide, handed
    /// back through [`super::BrokerHandle::publish_shared`]), not by local routing.
    fn carries(&self, topic: &str) -> bool;

    /// A subscription was added on this node (`filter` may be `$share/{group}/{filter}`).
    /// Called once per new (client, filter), not for replaced options; the broker's own
    /// internal sessions (`$hermod/...`: rules, bridges, shadows) are not reported, as they
    /// serve this node's publishers only.
    fn subscribed(&self, filter: &str);

    /// Whether a network client's SUBSCRIBE to `filter` is refused for a bound of the
    /// backbone's (v5 0x97 quota exceeded; 3.1.1 0x80): asked before the subscription is
    /// added. The cluster bounds the shared groups a node serves (each is a consumer in NATS).
    fn refuses(&self, filter: &str) -> bool {
        let _ = filter;
        false
    }

    /// An operator deleted the retained message of `topic` on this node (without delivering
    /// anything): the other nodes delete theirs too.
    fn retained_deleted(&self, topic: &str) {
        let _ = topic;
    }

    /// A subscription reported by [`Backbone::subscribed`] was removed.
    fn unsubscribed(&self, filter: &str);

    /// A network client with this client id has just been admitted on this node (before its
    /// CONNACK): the other nodes must disconnect their connection with the same client id
    /// [MQTT-3.1.4-2] (see [`super::BrokerHandle::take_over`]).
    fn connected(&self, client_id: &str);

    /// The will of a network client connected here (`Some`, at CONNACK), or no longer
    /// (`None`, when its connection ends, whatever becomes of the will: this node then
    /// publishes, delays or discards it itself). The backbone keeps it where the other nodes
    /// can publish it if this node dies with the connection open.
    fn will(&self, client_id: &str, will: Option<&Message>);

    /// The connection of a client with a will ended and the will waits for its Will Delay
    /// Interval (`delay`) on this node: the backbone keeps it so that another node publishes
    /// it when it is due if this node dies meanwhile. [`Backbone::will`] with `None` follows
    /// once this node has published or cancelled it (a new connection for the session
    /// [MQTT-3.1.3-9]).
    fn will_delayed(&self, client_id: &str, will: &Message, delay: Duration) {
        let _ = (will, delay);
        self.will(client_id, None);
    }

    /// A persistent session of a network client changed in a way the backbone records: a
    /// subscription added or removed, or its connection ended (it is offline now). Called
    /// without locks; the backbone reads the session back with
    /// [`super::BrokerHandle::session_state`].
    fn session_changed(&self, client_id: &str) {
        let _ = client_id;
    }

    /// A network client connects (after authentication, before this node looks at its own
    /// session for it): the backbone finds where the client id's session lives and, when it
    /// is on another node, has that node give it up (disconnecting its connection there, v5
    /// 0x8E) and returns it. With `clean_start` the other node discards it and `Ok(None)`
    /// comes back. `persistent`: the session outlives this connection (the backbone records
    /// that it lives here). `username`: the client's verified identity (`None`: anonymous);
    /// a session of another identity is returned as it is, without being taken from its
    /// node, and the broker refuses the client.
    fn claim(
        &self,
        client_id: &str,
        username: Option<&str>,
        clean_start: bool,
        persistent: bool,
    ) -> Claim {
        let _ = (client_id, username, clean_start, persistent);
        Box::pin(async { Ok(None) })
    }

    /// Once a moved session's subscriptions are in place on this node (so that anything newer
    /// reaches it live): the messages of its filters it may have missed since
    /// `moved.position`, oldest first, at most `limit`. Duplicates of messages it already
    /// had are possible (at least once across a move); none it had not acknowledged is missed.
    fn replay(&self, client_id: &str, moved: &MovedSession, limit: usize) -> Replay {
        let _ = (client_id, moved, limit);
        Box::pin(async { Ok(Vec::new()) })
    }
}
