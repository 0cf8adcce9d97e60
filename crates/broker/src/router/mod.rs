//! The router: subscriptions (the topic tree, shared groups) and the retained messages, both in
//! memory. Pure matching, no I/O and no store: [`Router::route`] says which sessions a message
//! goes to, with what delivery each; `crate::deliver` reserves their places, stores and pushes.

pub mod retained;
pub mod topic_tree;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use hermod_proto::{QoS, SubscriptionOptions};

use crate::api::{Backbone, INTERNAL_CLIENT_PREFIX};
use crate::auth::{Action, Auth};
use crate::message::{ClientId, Delivery, Message};
use crate::metrics::Metrics;
use crate::session::mailbox::SessionHandle;
use retained::RetainedStore;
use topic_tree::{Matched, Subscriber, SubscriptionTree};

/// One subscription as listed: (filter without `$share/{group}/`, group, client id, options,
/// subscription id).
pub type SubscriptionRow = (
    String,
    Option<String>,
    ClientId,
    SubscriptionOptions,
    Option<u32>,
);

/// Shared routing state. Locks are std locks held for short, synchronous sections only (never
/// across an `.await`); the publish path takes the tree's read lock, so publishers run in parallel.
#[derive(Debug, Default)]
pub struct Router {
    tree: RwLock<SubscriptionTree>,
    retained: RwLock<RetainedStore>,
    /// The scale-out backbone, once attached: told of every subscription added or removed
    /// (under the tree's write lock, so in order) and of every local publish.
    backbone: OnceLock<Arc<dyn Backbone>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// Where a message comes from, which decides whom [`Router::route`] gives it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// Published on this node (a client, a will, the broker): every matching subscription
    /// and shared group here; but with `shared_elsewhere` (a cluster carries the message to
    /// every node) shared groups are left out: the cluster picks one member cluster-wide and
    /// hands it back with [`Source::Shared`].
    Local {
        /// Shared groups are served through the cluster.
        shared_elsewhere: bool,
    },
    /// From another node: direct subscriptions only, and not the broker's own sessions.
    Remote,
    /// For one shared group, `(group, filter)`, chosen cluster-wide: one of its members here.
    Shared(&'a str, &'a str),
}

/// What routing one message produced: the deliveries to make, before any is reserved or stored.
#[derive(Debug, Default)]
pub struct Routed {
    /// One delivery per receiving session (`seq` not yet set): direct subscribers first, then
    /// one per matching shared group.
    pub deliveries: Vec<(Arc<SessionHandle>, Delivery)>,
    /// The message set or cleared a retained message (already applied in memory).
    pub retained_change: bool,
}

impl Router {
    /// A router with its counters.
    #[must_use]
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    /// Adds or replaces a subscription; true when new. `filter` may be `$share/{group}/{filter}`
    /// (already validated).
    pub fn subscribe(
        &self,
        filter: &str,
        handle: Arc<SessionHandle>,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> bool {
        let (share, inner) = split_share(filter);
        let mut tree = self
            .tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let client_id = handle.client_id.clone();
        let new = tree.insert(
            inner,
            share,
            Subscriber {
                handle,
                options,
                id,
            },
        );
        if new {
            self.tell_backbone(&client_id, filter, true);
        }
        new
    }

    /// Attaches the scale-out backbone (once; false if one already was) and reports to it every
    /// subscription that exists now, under the tree's write lock, so that it misses none and
    /// sees later changes after these.
    pub fn attach_backbone(&self, backbone: Arc<dyn Backbone>) -> bool {
        let tree = self
            .tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.backbone.set(backbone.clone()).is_err() {
            return false;
        }
        tree.for_each(|filter, group, s| {
            if !s.handle.client_id.starts_with(INTERNAL_CLIENT_PREFIX) {
                match group {
                    Some(g) => backbone.subscribed(&format!("$share/{g}/{filter}")),
                    None => backbone.subscribed(filter),
                }
            }
        });
        true
    }

    /// The attached backbone, if any.
    #[must_use]
    pub fn backbone(&self) -> Option<&Arc<dyn Backbone>> {
        self.backbone.get()
    }

    /// Called under the tree's write lock: the broker's own sessions are not reported.
    fn tell_backbone(&self, client_id: &str, filter: &str, added: bool) {
        if let Some(b) = self.backbone.get()
            && !client_id.starts_with(INTERNAL_CLIENT_PREFIX)
        {
            if added {
                b.subscribed(filter);
            } else {
                b.unsubscribed(filter);
            }
        }
    }

    /// Removes a subscription; true if it existed.
    pub fn unsubscribe(&self, filter: &str, client_id: &str) -> bool {
        let (share, inner) = split_share(filter);
        let mut tree = self
            .tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone = tree.remove(inner, share, client_id);
        if gone {
            self.tell_backbone(client_id, filter, false);
        }
        gone
    }

    /// Removes a subscription of one incarnation of a session (its mailbox `handle`): a later
    /// session with the same client id keeps its own. True if it existed.
    pub fn unsubscribe_session(&self, filter: &str, handle: &SessionHandle) -> bool {
        let (share, inner) = split_share(filter);
        let mut tree = self
            .tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone = tree.remove_owned(inner, share, &handle.client_id, Some(handle));
        if gone {
            self.tell_backbone(&handle.client_id, filter, false);
        }
        gone
    }

    /// Number of subscriptions.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// (shared subscriptions, distinct filters subscribed to).
    #[must_use]
    pub fn subscription_details(&self) -> (usize, usize) {
        let tree = self
            .tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (tree.shared_len(), tree.filter_count())
    }

    /// Every subscription: (filter without `$share/{group}/`, group, client id, options, id).
    /// Walks the whole tree under the read lock (publishers go on; a SUBSCRIBE waits).
    #[must_use]
    pub fn subscriptions(&self) -> Vec<SubscriptionRow> {
        let tree = self
            .tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::with_capacity(tree.len());
        tree.for_each(|filter, group, s| {
            out.push((
                filter.to_owned(),
                group.map(str::to_owned),
                s.handle.client_id.clone(),
                s.options,
                s.id,
            ));
        });
        out
    }

    /// Number of retained messages.
    #[must_use]
    pub fn retained_count(&self) -> usize {
        self.retained
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Calls `f` with each retained message matching `filter` that has not expired, under the
    /// retained store's read lock (`f` must not take it again).
    pub fn for_each_retained(&self, filter: &str, now: Instant, f: &mut dyn FnMut(&Arc<Message>)) {
        let store = self
            .retained
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.for_each_matching(filter, &mut |m| {
            if !m.is_expired(now) {
                f(m);
            }
        });
    }

    /// Calls `f` with the topic of every retained message (`$` topics included), under the
    /// retained store's read lock.
    pub fn for_each_retained_topic(&self, f: &mut dyn FnMut(&Arc<str>)) {
        let store = self
            .retained
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.for_each(&mut |m| f(&m.topic));
    }

    /// Retained messages matching `filter` that have not expired.
    #[must_use]
    pub fn retained_matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let store = self
            .retained
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v = store.matching(filter);
        v.retain(|m| !m.is_expired(now));
        v
    }

    /// Routes a message: updates the (in-memory) retained store when the retain flag is set,
    /// then lists one delivery per matching session (at the highest QoS of its matching
    /// subscriptions, with all their subscription identifiers [MQTT-3.3.4-3/4/5]) and one per
    /// matching shared group. Nothing is reserved, stored or pushed here: see `crate::deliver`.
    ///
    /// With `auth`, a session whose reader may not receive the message is left out (a shared
    /// group picks a member that may); the connection checks again when it sends, with the
    /// rules then in force.
    ///
    /// A message from another node (`remote`) does not reach the broker's own sessions
    /// (`$hermod/...`): each node's rules, bridges and shadows serve that node's publishers, so
    /// that a cluster runs each rule once per message, not once per node.
    pub fn route(
        &self,
        message: &Arc<Message>,
        retain_enabled: bool,
        auth: Option<&Auth>,
        source: Source<'_>,
    ) -> Routed {
        let remote = source == Source::Remote;
        let may_receive = |h: &SessionHandle| {
            !(remote && h.client_id.starts_with(INTERNAL_CLIENT_PREFIX))
                && auth.is_none_or(|a| a.authorize(&h.reader(), Action::Receive(&message.topic)))
        };
        let retained_change = message.retain && retain_enabled;
        if retained_change {
            self.retained
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .apply(message);
        }
        let mut deliveries: Vec<(Arc<SessionHandle>, Delivery)> = Vec::new();
        let mut shared: Vec<(Arc<SessionHandle>, Delivery)> = Vec::new();
        if let Source::Shared(group, filter) = source {
            let tree = self
                .tree
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(g) = tree.shared_group(group, filter) {
                shared.extend(pick_shared(g, message, &may_receive));
            }
            return Routed {
                deliveries: shared,
                retained_change,
            };
        }
        let skip_shared = matches!(
            source,
            Source::Remote
                | Source::Local {
                    shared_elsewhere: true
                }
        );
        {
            let tree = self
                .tree
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tree.matches(&message.topic, |m| match m {
                Matched::Shared(_) if skip_shared => {}
                Matched::Direct(s) => {
                    if s.options.no_local
                        && message.publisher.as_deref() == Some(&*s.handle.client_id)
                    {
                        return; // [MQTT-3.8.3-3] no local
                    }
                    let qos = message.qos.min(s.options.qos);
                    let retain = s.options.retain_as_published && message.retain;
                    if let Some((_, d)) = deliveries
                        .iter_mut()
                        .find(|(h, _)| Arc::ptr_eq(h, &s.handle))
                    {
                        d.qos = d.qos.max(qos);
                        d.retain |= retain;
                        d.subscription_ids.extend(s.id);
                    } else {
                        deliveries.push((
                            s.handle.clone(),
                            Delivery {
                                message: message.clone(),
                                qos,
                                retain,
                                subscription_ids: s.id.into_iter().collect(),
                                shared: None,
                                seq: None,
                            },
                        ));
                    }
                }
                Matched::Shared(g) => {
                    shared.extend(pick_shared(g, message, &may_receive));
                }
            });
        }
        if auth.is_some() || remote {
            deliveries.retain(|(h, _)| may_receive(h));
        }
        deliveries.append(&mut shared);
        Routed {
            deliveries,
            retained_change,
        }
    }

    /// Removes the retained message of `topic` (an operator's delete); true if there was one.
    pub fn remove_retained(&self, topic: &str) -> bool {
        self.retained
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove_topic(topic)
    }

    /// Restores a retained message read back from the store at start-up.
    pub fn restore_retained(&self, message: Arc<Message>) {
        self.retained
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(&message);
    }

    /// Picks the member of shared group `key` that takes over a delivery of `topic` that
    /// `leaving` could not complete: (member, its granted QoS, its subscription id). None when
    /// the group has no other member (that may receive it, with `auth`).
    #[must_use]
    pub fn shared_successor(
        &self,
        key: &(Box<str>, Box<str>),
        leaving: &str,
        topic: &str,
        auth: Option<&Auth>,
    ) -> Option<(Arc<SessionHandle>, QoS, Option<u32>)> {
        let may_receive = |m: &Subscriber| {
            auth.is_none_or(|a| a.authorize(&m.handle.reader(), Action::Receive(topic)))
        };
        let tree = self
            .tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tree.shared_group(&key.0, &key.1)
            .and_then(|g| g.pick_other(leaving, may_receive))
            .map(|m| (m.handle.clone(), m.options.qos, m.id))
    }
}

/// One member of shared group `g` that `may_receive` the message (online first, in turn), with
/// its delivery: the group's one copy.
fn pick_shared(
    g: &topic_tree::SharedGroup,
    message: &Arc<Message>,
    may_receive: &impl Fn(&SessionHandle) -> bool,
) -> Option<(Arc<SessionHandle>, Delivery)> {
    let member = g.pick(|m| may_receive(&m.handle))?;
    Some((
        member.handle.clone(),
        Delivery {
            message: message.clone(),
            qos: message.qos.min(member.options.qos),
            retain: false,
            subscription_ids: member.id.into_iter().collect(),
            shared: Some(g.key.clone()),
            seq: None,
        },
    ))
}

fn split_share(filter: &str) -> (Option<&str>, &str) {
    match hermod_proto::topic::parse_shared(filter) {
        Ok(Some((group, inner))) => (Some(group), inner),
        _ => (None, filter),
    }
}
