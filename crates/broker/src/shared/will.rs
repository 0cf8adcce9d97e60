//! Wills: the message a connection leaves behind, published (after its delay) as its publisher,
//! if the publish ACL in force then still allows it.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info};

use super::Shared;
use crate::auth::{Action, ClientIdentity};
use crate::message::{ClientId, Message};
use crate::session::Owner;
use crate::session::registry::ConnectionId;

/// A will to publish once its connection is gone: the message, and who it is published as
/// (checked against the publish ACL in force when it is published, which a reload may have
/// changed since CONNECT).
#[derive(Debug)]
pub(crate) struct Will {
    pub(crate) message: Message,
    /// The identity of the connection that left it.
    pub(crate) publisher: Arc<ClientIdentity>,
    /// The owner of its session (a client of another identity cannot cancel it).
    pub(crate) owner: Owner,
    /// The address of the connection that left it (for the HTTP authorizer's `peerhost`), if
    /// known (not for a will restored from the store).
    pub(crate) peer: Option<std::net::IpAddr>,
}

impl Will {
    /// A will restored from the store: published as the session's stored owner.
    pub(super) fn restored(message: Message, client_id: &ClientId, owner: &Owner) -> Self {
        Self {
            message,
            publisher: Arc::new(identity_of(owner, client_id)),
            owner: owner.clone(),
            peer: None,
        }
    }
}

/// The identity a session restored from the store reads (and publishes its will) as: its
/// owner's username. JWT rules are not stored; they come back with the client's next token.
pub(crate) fn identity_of(owner: &Owner, client_id: &ClientId) -> ClientIdentity {
    ClientIdentity {
        username: match owner {
            Owner::User(u) => Some(u.clone()),
            Owner::Anonymous | Owner::Unknown => None,
        },
        client_id: Arc::from(&**client_id),
        jwt_acl: None,
        // A rule's or bridge's session, restored from the store: it reads as the broker
        // does until its internal connection comes back (no ACL file applies to it).
        internal: crate::api::is_internal_session(owner, client_id),
    }
}

impl Shared {
    /// Publishes a will now, or after `delay` unless a new connection for the client id arrives
    /// first [MQTT-3.1.3-9]. `clear` is the session's record without the will, written back once
    /// the will is published (the pending will was stored with the offline session).
    pub(crate) fn schedule_will(
        self: &Arc<Self>,
        client_id: &ClientId,
        conn: ConnectionId,
        will: Will,
        delay: Duration,
        clear: Option<crate::store::SessionRecord>,
    ) {
        if delay.is_zero() {
            debug!(%client_id, topic = %will.message.topic, "publishing will");
            self.publish_will(will);
            return;
        }
        let owner = will.owner.clone();
        let shared = Arc::clone(self);
        let id = client_id.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shared.shutdown.cancelled() => return,
            }
            if shared.registry.take_pending_will(&id, conn) {
                debug!(client_id = %id, "will delay passed; publishing will");
                shared.publish_will(will);
                if let Some(b) = shared.router.backbone() {
                    b.will(&id, None);
                }
                if let (Some(rec), Some(p)) = (clear, &shared.persistence)
                    && shared.registry.status(&id) == Some(false)
                {
                    p.submit_detached(vec![crate::store::Op::PutSession(id.to_string(), rec)]);
                }
            }
        });
        self.registry
            .add_pending_will(client_id.clone(), conn, task.abort_handle(), owner);
    }

    /// Publishes a will, if its publisher may still publish on its topic under the rules in
    /// force now (checked at CONNECT too; a reload may have changed them since). When the HTTP
    /// authorizer (`[auth.http] acl_url`) has no cached answer, it is asked from a task of its
    /// own (within its timeout) and the will published then, if allowed.
    pub(crate) fn publish_will(self: &Arc<Self>, will: Will) {
        let auth = self.auth.load_full();
        let topic = will.message.topic.clone();
        let allowed = auth.authorize_now(&will.publisher, Action::Publish(&topic));
        let allowed = match (allowed, tokio::runtime::Handle::try_current()) {
            (Some(allowed), _) => allowed,
            (None, Ok(runtime)) => {
                let shared = Arc::clone(self);
                runtime.spawn(async move {
                    let ask =
                        auth.authorize_async(&will.publisher, will.peer, Action::Publish(&topic));
                    let allowed = tokio::select! {
                        allowed = ask => allowed,
                        () = shared.shutdown.cancelled() => return,
                    };
                    shared.publish_will_if(will, allowed);
                });
                return;
            }
            // No runtime to wait on (not expected): the rules without the HTTP authorizer.
            (None, Err(_)) => auth.authorize(&will.publisher, Action::Publish(&topic)),
        };
        self.publish_will_if(will, allowed);
    }

    fn publish_will_if(&self, will: Will, allowed: bool) {
        if !allowed {
            let topic = &will.message.topic;
            info!(client_id = %will.publisher.client_id, %topic, "will not published: denied by the ACL now in force");
            return;
        }
        self.publish_unacknowledged(will.message);
    }

    /// Routes a message that has no connection waiting for its acknowledgement (a will, or the
    /// API's `publish`, which has no ACL and no publisher): busy mailboxes and the store commit
    /// are not waited for.
    pub(crate) fn publish_unacknowledged(&self, message: Message) {
        let _ = self.publish_from(
            message,
            crate::router::Source::Local {
                shared_elsewhere: false,
            },
        );
    }

    /// Routes a message that another node of the cluster received (through the backbone): to
    /// this node's subscribers only, never forwarded again, and without applying its retain
    /// flag (the backbone keeps the cluster's retained messages and applies them itself, in
    /// one order on every node).
    /// Returns the mailboxes that are filling up, for the caller to wait on (as a local
    /// publisher waits).
    pub(crate) fn publish_remote(
        &self,
        message: Message,
    ) -> Vec<Arc<crate::session::mailbox::SessionHandle>> {
        self.publish_from(message, crate::router::Source::Remote).1
    }

    /// Delivers a message to one member of the shared group `(group, filter)` here, chosen for
    /// it by the cluster; false when the group has no member here that may receive it.
    pub(crate) fn publish_shared(
        &self,
        group: &str,
        filter: &str,
        message: Message,
    ) -> (bool, Vec<Arc<crate::session::mailbox::SessionHandle>>) {
        let (n, busy) = self.publish_from(message, crate::router::Source::Shared(group, filter));
        (n > 0, busy)
    }

    /// Routes and delivers; the number of sessions the message was queued for, and the
    /// mailboxes that are filling up.
    fn publish_from(
        &self,
        message: Message,
        source: crate::router::Source<'_>,
    ) -> (usize, Vec<Arc<crate::session::mailbox::SessionHandle>>) {
        let remote = source
            != crate::router::Source::Local {
                shared_elsewhere: false,
            };
        if message.publisher.is_some() {
            // A will counts as received; the broker's own messages ($SYS, the API) do not.
            self.metrics
                .publish_received(message.qos, message.payload.len());
        }
        let auth = self.auth.load();
        let mut sink = crate::deliver::PublishSink::default();
        let message = Arc::new(message);
        crate::deliver::publish(
            &self.router,
            self.persistence.as_deref(),
            message.clone(),
            self.config.retain_available && !remote,
            auth.filters_receive().then_some(&**auth),
            source,
            &mut sink,
        );
        self.events.emit(|| crate::api::Event::MessagePublished {
            topic: message.topic.clone(),
            qos: message.qos,
            retain: message.retain,
            size: message.size(),
            publisher: message.publisher.clone(),
            delivered: sink.delivered,
        });
        if let Some(settle) = &message.settle {
            if sink.delivered == 0 {
                settle.settle(crate::message::Settled::Returned);
            } else if let Some(commit) = sink.commit.take() {
                // Its giver hears of it no sooner than its stored copies are durable: a
                // delivery queued on disk only (the member offline) drops its memory copy now.
                let held = message.clone();
                tokio::spawn(async move {
                    let _ = commit.await;
                    drop(held);
                });
            }
        }
        (sink.delivered, sink.busy)
    }
}
