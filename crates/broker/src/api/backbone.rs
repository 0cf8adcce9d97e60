//! The scale-out hook: what the broker asks of a backbone that joins it to other nodes
//! (`hermod-cluster`, over NATS JetStream), and nothing more. With no backbone attached the
//! broker is a single node and pays one `OnceLock` load per publish and per subscription change.

use std::sync::Arc;

use crate::message::Message;
use crate::store::Commit;

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
}
