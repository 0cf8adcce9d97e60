//! The router: subscription matching and fan-out. No I/O and no session state: it finds the
//! sessions a message goes to and pushes one `Delivery` into each one's mailbox.

pub mod retained;
pub mod topic_tree;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// What routing one message produced for its publisher.
#[derive(Debug, Default)]
pub struct PublishSink {
    /// Mailboxes that are filling up: the publisher should wait for them to drain.
    pub busy: Vec<Arc<SessionHandle>>,
    /// The store commit of this message's durable copies; the publisher's ack waits for it.
    pub commit: Option<Commit>,
    /// Number of sessions the message was queued for.
    pub delivered: usize,
    /// Copies to be stored were dropped because the store is over `[store] max_disk_bytes`:
    /// a v5 publisher is told 0x97 (quota exceeded).
    pub quota_exceeded: bool,
}

use hermod_proto::{QoS, SubscriptionOptions};

use crate::auth::{Action, Auth};
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::persist::Persistence;
use crate::session::mailbox::{PushOutcome, Reserved, SessionHandle};
use crate::store::{Commit, Op};
use retained::RetainedStore;
use topic_tree::{Matched, Subscriber, SubscriptionTree};

/// Shared routing state. Locks are std locks held for short, synchronous sections only (never
/// across an `.await`); the publish path takes the tree's read lock, so publishers run in parallel.
#[derive(Debug, Default)]
pub struct Router {
    tree: RwLock<SubscriptionTree>,
    retained: RwLock<RetainedStore>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The store, when persistence is on.
    pub persistence: Option<Arc<Persistence>>,
}

/// A shared-group member picked for a message: (member, granted QoS, subscription id, group key).
type SharedTarget = (
    Arc<SessionHandle>,
    QoS,
    Option<u32>,
    Arc<(Box<str>, Box<str>)>,
);

struct Target {
    handle: Arc<SessionHandle>,
    qos: QoS,
    retain_as_published: bool,
    ids: Vec<u32>,
}

impl Router {
    /// A router with its counters.
    #[must_use]
    pub fn new(metrics: Arc<Metrics>, persistence: Option<Arc<Persistence>>) -> Self {
        if let Some(p) = &persistence {
            let m = metrics.clone();
            p.store.on_health_change(move |ok| {
                m.store_available.store(u64::from(ok), Ordering::Relaxed);
            });
        }
        Self {
            metrics,
            persistence,
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
        tree.insert(
            inner,
            share,
            Subscriber {
                handle,
                options,
                id,
            },
        )
    }

    /// Removes a subscription; true if it existed.
    pub fn unsubscribe(&self, filter: &str, client_id: &str) -> bool {
        let (share, inner) = split_share(filter);
        let mut tree = self
            .tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tree.remove(inner, share, client_id)
    }

    /// Removes a subscription of one incarnation of a session (its mailbox `handle`): a later
    /// session with the same client id keeps its own. True if it existed.
    pub fn unsubscribe_session(&self, filter: &str, handle: &SessionHandle) -> bool {
        let (share, inner) = split_share(filter);
        let mut tree = self
            .tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tree.remove_owned(inner, share, &handle.client_id, Some(handle))
    }

    /// Number of subscriptions.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
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

    /// Routes a message: updates the retained store when the retain flag is set, then delivers
    /// one copy per matching session (at the highest QoS of its matching subscriptions, with all
    /// their subscription identifiers [MQTT-3.3.4-3/4/5]) and one per matching shared group.
    /// With a store, QoS 1/2 deliveries to persistent sessions are written (one `PutMessage`,
    /// one `Enqueue` each, plus the retained update) in one submission made before any of them
    /// becomes visible to a subscriber; `sink.commit` resolves once it is durable, and the
    /// publisher's PUBACK/PUBREC waits for it.
    ///
    /// Copies to be stored are refused (dropped and counted) while the store cannot take them:
    /// over `max_disk_bytes` (`sink.quota_exceeded`), or unavailable after a disk error (then
    /// `sink.commit` is a failed commit, so the publisher's ack reports the error).
    /// Adds to `sink.busy` the mailboxes that are filling up (see `session::mailbox`).
    ///
    /// With `auth`, a session whose reader may not receive the message is skipped before
    /// anything is queued or stored for it (a shared group picks a member that may); the
    /// connection checks again when it sends, with the rules then in force.
    pub fn publish(
        &self,
        message: Arc<Message>,
        retain_enabled: bool,
        auth: Option<&Auth>,
        sink: &mut PublishSink,
    ) {
        let may_receive = |h: &SessionHandle| {
            auth.is_none_or(|a| a.authorize(&h.reader(), Action::Receive(&message.topic)))
        };
        let retained_change = message.retain && retain_enabled;
        if retained_change {
            self.retained
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .apply(&message);
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut shared: Vec<SharedTarget> = Vec::new();
        {
            let tree = self
                .tree
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tree.matches(&message.topic, |m| match m {
                Matched::Direct(s) => {
                    if s.options.no_local
                        && message.publisher.as_deref() == Some(&*s.handle.client_id)
                    {
                        return; // [MQTT-3.8.3-3] no local
                    }
                    let qos = message.qos.min(s.options.qos);
                    if let Some(t) = targets
                        .iter_mut()
                        .find(|t| Arc::ptr_eq(&t.handle, &s.handle))
                    {
                        t.qos = t.qos.max(qos);
                        t.retain_as_published |= s.options.retain_as_published;
                        t.ids.extend(s.id);
                    } else {
                        targets.push(Target {
                            handle: s.handle.clone(),
                            qos,
                            retain_as_published: s.options.retain_as_published,
                            ids: s.id.into_iter().collect(),
                        });
                    }
                }
                Matched::Shared(g) => {
                    if let Some(member) = g.pick(|m| may_receive(&m.handle)) {
                        shared.push((
                            member.handle.clone(),
                            message.qos.min(member.options.qos),
                            member.id,
                            g.key.clone(),
                        ));
                    }
                }
            });
        }
        let store = self.persistence.as_deref();
        if auth.is_some() {
            targets.retain(|t| may_receive(&t.handle));
        }
        let deliveries = targets
            .into_iter()
            .map(|t| {
                let d = Delivery {
                    message: message.clone(),
                    qos: t.qos,
                    retain: t.retain_as_published && message.retain,
                    subscription_ids: t.ids,
                    shared: None,
                    seq: None,
                };
                (t.handle, d)
            })
            .chain(shared.into_iter().map(|(handle, qos, id, key)| {
                let d = Delivery {
                    message: message.clone(),
                    qos,
                    retain: false,
                    subscription_ids: id.into_iter().collect(),
                    shared: Some(key),
                    seq: None,
                };
                (handle, d)
            }));
        // Reserve every delivery's place (and durable sequence number) first...
        let mut placed = Vec::new();
        let mut evicted: Vec<(Arc<SessionHandle>, u64)> = Vec::new();
        let unavailable = store.is_some_and(|p| !p.healthy());
        let over_budget = store.is_some_and(Persistence::over_budget);
        let disk_full = unavailable || over_budget;
        let mut refused = false;
        let size = message.size();
        for (handle, mut d) in deliveries {
            let (r, gone) = handle.reserve(d.qos, size, store.is_some(), disk_full, &self.metrics);
            if let Some(seq) = gone {
                evicted.push((handle.clone(), seq));
            }
            match r {
                Reserved::Dropped => continue,
                Reserved::NoStore => {
                    refused = true;
                    continue;
                }
                Reserved::Memory => {}
                Reserved::MemoryDurable(seq) | Reserved::DiskOnly(seq) => d.seq = Some(seq),
            }
            placed.push((handle, d, r));
        }
        sink.delivered += placed.len();
        // ...then store them, in one submission...
        let durable = placed.iter().filter(|(_, d, _)| d.seq.is_some()).count();
        if let Some(p) = store.filter(|_| retained_change || durable > 0 || !evicted.is_empty()) {
            let mut ops = Vec::new();
            let (now, now_ms) = (Instant::now(), crate::persist::unix_ms_now());
            if retained_change {
                if message.payload.is_empty() {
                    ops.push(Op::DeleteRetained(message.topic.to_string()));
                } else {
                    ops.push(Op::PutRetained(
                        message.topic.to_string(),
                        crate::persist::message_record(&message, now, now_ms),
                    ));
                }
            }
            for (h, seq) in &evicted {
                ops.push(Op::Dequeue(h.client_id.to_string(), *seq));
            }
            if durable > 0 {
                let id = p.next_message_id();
                let record = crate::persist::message_record(&message, now, now_ms);
                ops.push(Op::PutMessage(
                    id,
                    record,
                    u32::try_from(durable).unwrap_or(u32::MAX),
                ));
                for (h, d, _) in &placed {
                    if let Some(seq) = d.seq {
                        ops.push(Op::Enqueue(
                            h.client_id.to_string(),
                            seq,
                            crate::persist::queue_entry(d, id),
                        ));
                    }
                }
            }
            if !ops.is_empty() {
                sink.commit = Some(p.store.submit(ops));
            }
        }
        if refused {
            if unavailable {
                // The publisher's ack reports the failure (ops submitted above are still
                // written: dropping their `Commit` does not cancel them).
                if let Some(p) = store {
                    sink.commit = Some(Commit::failed(crate::store::StoreError::Unavailable {
                        file: p.store.file().to_path_buf(),
                    }));
                }
            } else {
                sink.quota_exceeded = true;
            }
        }
        // ...and only then let the subscribers see them.
        for (handle, d, r) in placed {
            if matches!(r, Reserved::DiskOnly(_)) {
                continue;
            }
            if handle.push_reserved(d) == PushOutcome::Busy {
                sink.busy.push(handle);
            }
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

    /// Hands a shared-subscription delivery that `leaving` could not complete to another member
    /// of its group, so a member that leaves does not strand its messages. Dropped when the
    /// group has no other member. The leaver's stored entry (`delivery.seq`) is removed here,
    /// after the receiver's own entry is written.
    pub fn reroute_shared(&self, leaving: &str, mut delivery: Delivery, auth: Option<&Auth>) {
        let Some(key) = delivery.shared.clone() else {
            return;
        };
        let topic = &delivery.message.topic;
        let may_receive = |m: &Subscriber| {
            auth.is_none_or(|a| a.authorize(&m.handle.reader(), Action::Receive(topic)))
        };
        let target = {
            let tree = self
                .tree
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tree.shared_group(&key.0, &key.1)
                .and_then(|g| g.pick_other(leaving, may_receive))
                .map(|m| (m.handle.clone(), m.options.qos, m.id))
        };
        // `seq` numbered the leaver's queue entry: it is removed in the same store submission
        // that gives the receiver its own entry (after it: a crash in between can only leave the
        // message with both, never with neither).
        let release = delivery
            .seq
            .take()
            .map(|seq| Op::Dequeue(leaving.to_owned(), seq));
        let store = self.persistence.as_deref();
        let Some((handle, sub_qos, id)) = target else {
            Metrics::incr(&self.metrics.messages_dropped);
            if let (Some(p), Some(op)) = (store, release) {
                p.submit_detached(vec![op]);
            }
            return;
        };
        delivery.qos = delivery.message.qos.min(sub_qos);
        delivery.subscription_ids = id.into_iter().collect();
        // The receiver gets a place of its own and, when stored, a stored copy it owns.
        let disk_full = store.is_some_and(|p| !p.healthy() || p.over_budget());
        let size = delivery.message.size();
        let (r, gone) = handle.reserve(
            delivery.qos,
            size,
            store.is_some(),
            disk_full,
            &self.metrics,
        );
        let mut ops = Vec::new();
        if let Some(seq) = gone {
            ops.push(Op::Dequeue(handle.client_id.to_string(), seq));
        }
        match r {
            Reserved::Dropped | Reserved::NoStore => {}
            Reserved::Memory => {}
            Reserved::MemoryDurable(seq) | Reserved::DiskOnly(seq) => {
                delivery.seq = Some(seq);
                if let Some(p) = store {
                    let (now, now_ms) = (Instant::now(), crate::persist::unix_ms_now());
                    let mid = p.next_message_id();
                    ops.push(Op::PutMessage(
                        mid,
                        crate::persist::message_record(&delivery.message, now, now_ms),
                        1,
                    ));
                    ops.push(Op::Enqueue(
                        handle.client_id.to_string(),
                        seq,
                        crate::persist::queue_entry(&delivery, mid),
                    ));
                }
            }
        }
        ops.extend(release);
        if let Some(p) = store.filter(|_| !ops.is_empty()) {
            // Not waited for: the publisher was acknowledged long ago.
            p.submit_detached(ops);
        }
        if matches!(r, Reserved::Memory | Reserved::MemoryDurable(_)) {
            handle.push_reserved(delivery);
        }
    }
}

fn split_share(filter: &str) -> (Option<&str>, &str) {
    match hermod_proto::topic::parse_shared(filter) {
        Ok(Some((group, inner))) => (Some(group), inner),
        _ => (None, filter),
    }
}
