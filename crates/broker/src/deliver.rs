//! The delivery stage: turns what the router matched into places in mailboxes, store operations
//! and pushes, in that order. It owns the publish path's I/O: the router only matches.
//!
//! For one message (or one shared-subscription hand-over):
//! 1. match: [`Router::route`] (pure, in memory);
//! 2. reserve: each receiver's mailbox gives the delivery a place (and, when it is to be
//!    stored, a sequence number), or refuses it;
//! 3. store: the retained change, the entries evicted to make room, the message and one queue
//!    entry per stored delivery go to the store in one submission;
//! 4. push: only then do the deliveries become visible to the subscribers.

use std::sync::Arc;
use std::time::Instant;

use crate::api::DropReason;
use crate::auth::Auth;
use crate::message::{Delivery, Message, Settled};
use crate::persist::{Persistence, message_record, queue_entry, unix_ms_now};
use crate::router::{Routed, Router, Source};
use crate::session::mailbox::{PushOutcome, Reserved, SessionHandle};
use crate::store::{Commit, Op, StoreError};

/// What routing one message produced for its publisher.
#[derive(Debug, Default)]
pub(crate) struct PublishSink {
    /// Mailboxes that are filling up: the publisher should wait for them to drain.
    pub(crate) busy: Vec<Arc<SessionHandle>>,
    /// The store commit of this message's durable copies; the publisher's ack waits for it.
    pub(crate) commit: Option<Commit>,
    /// Number of sessions the message was queued for.
    pub(crate) delivered: usize,
    /// The cluster backbone's copy of a QoS 1/2 message; the publisher's ack waits for it too.
    pub(crate) forwarded: Option<Commit>,
    /// Copies to be stored were dropped because the store is over `[store] max_disk_bytes`:
    /// a v5 publisher is told 0x97 (quota exceeded).
    pub(crate) quota_exceeded: bool,
}

/// Publishes a message: routes it (see [`Router::route`]), reserves a place for each delivery,
/// and, with a store, writes the QoS 1/2 deliveries to persistent sessions (one `PutMessage`,
/// one `Enqueue` each, plus the retained update and the `Dequeue`s of evicted entries) in one
/// submission made before any of them becomes visible to a subscriber; `sink.commit` resolves
/// once it is durable, and the publisher's PUBACK/PUBREC waits for it.
///
/// Copies to be stored are refused (dropped and counted) while the store cannot take them:
/// over `max_disk_bytes` (`sink.quota_exceeded`), or unavailable after a disk error (then
/// `sink.commit` is a failed commit, so the publisher's ack reports the error).
/// Adds to `sink.busy` the mailboxes that are filling up (see `session::mailbox`).
///
/// With a cluster backbone attached, a message published on this node ([`Source::Local`]) is
/// also handed to it first (`sink.forwarded`: the publisher's ack waits for that too), and its
/// shared groups are left to the cluster, which picks one member cluster-wide; a message from
/// another node ([`Source::Remote`]) or for one shared group ([`Source::Shared`]) is delivered
/// here only.
pub(crate) fn publish(
    router: &Router,
    store: Option<&Persistence>,
    message: Arc<Message>,
    retain_enabled: bool,
    auth: Option<&Auth>,
    mut source: Source<'_>,
    sink: &mut PublishSink,
) {
    // 0. The other nodes (before the local subscribers see it, so that a local subscriber
    //    that answers cannot overtake it on the backbone).
    if let Source::Local { shared_elsewhere } = &mut source
        && let Some(b) = router.backbone()
    {
        *shared_elsewhere = b.carries(&message.topic);
        sink.forwarded = b.forward(&message);
    }
    // 1. Match.
    let Routed {
        deliveries,
        retained_change,
    } = router.route(&message, retain_enabled, auth, source);
    place(router, store, &message, deliveries, retained_change, sink);
}

/// Delivers a message that a session moved from another node missed (see
/// `api::Backbone::replay`) to that session alone: matched against its own subscriptions
/// (shared ones apart: those groups got it cluster-wide), with its reader's ACL, and placed as
/// a publish places it. Returns whether it was queued.
pub(crate) fn replay_into(
    router: &Router,
    store: Option<&Persistence>,
    handle: &Arc<SessionHandle>,
    subscriptions: &std::collections::HashMap<String, crate::session::SubscriptionEntry>,
    message: Arc<Message>,
    auth: Option<&Auth>,
) -> bool {
    if auth.is_some_and(|a| {
        !a.authorize(
            &handle.reader(),
            crate::auth::Action::Receive(&message.topic),
        )
    }) {
        return false;
    }
    let mut delivery: Option<Delivery> = None;
    for (filter, entry) in subscriptions {
        if filter.starts_with("$share/") || !hermod_proto::topic::matches(filter, &message.topic) {
            continue;
        }
        if entry.options.no_local && message.publisher.as_deref() == Some(&*handle.client_id) {
            continue; // [MQTT-3.8.3-3] no local
        }
        let qos = message.qos.min(entry.options.qos);
        let retain = entry.options.retain_as_published && message.retain;
        match &mut delivery {
            Some(d) => {
                d.qos = d.qos.max(qos);
                d.retain |= retain;
                d.subscription_ids.extend(entry.id);
            }
            None => {
                delivery = Some(Delivery {
                    message: message.clone(),
                    qos,
                    retain,
                    subscription_ids: entry.id.into_iter().collect(),
                    shared: None,
                    seq: None,
                });
            }
        }
    }
    let Some(d) = delivery else {
        return false;
    };
    let mut sink = PublishSink::default();
    place(
        router,
        store,
        &message,
        vec![(handle.clone(), d)],
        false,
        &mut sink,
    );
    sink.delivered > 0
}

/// Steps 2 to 4 of [`publish`] for the deliveries matched: reserve, store, push.
fn place(
    router: &Router,
    store: Option<&Persistence>,
    message: &Arc<Message>,
    deliveries: Vec<(Arc<SessionHandle>, Delivery)>,
    retained_change: bool,
    sink: &mut PublishSink,
) {
    // 2. Reserve every delivery's place (and durable sequence number)...
    let reserving = store.map(Persistence::reserving);
    let mut placed = Vec::with_capacity(deliveries.len());
    let mut evicted: Vec<(Arc<SessionHandle>, u64)> = Vec::new();
    let unavailable = store.is_some_and(|p| !p.healthy());
    let over_budget = store.is_some_and(Persistence::over_budget);
    let disk_full = unavailable || over_budget;
    let mut refused = false;
    let size = message.size();
    // A client's message nobody receives (a retained one is kept, not dropped; the broker's
    // own, such as `$SYS`, are not counted).
    if deliveries.is_empty()
        && message.publisher.is_some()
        && !retained_change
        && router.backbone().is_none()
    {
        router
            .metrics
            .dropped(DropReason::NoSubscribers, None, &message.topic);
    }
    for (handle, mut d) in deliveries {
        let (r, gone) = handle.reserve(
            d.qos,
            &message.topic,
            size,
            store.is_some(),
            disk_full,
            &router.metrics,
        );
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
    // 3. ...then store them, in one submission...
    let durable = placed.iter().filter(|(_, d, _)| d.seq.is_some()).count();
    if let Some(p) = store.filter(|_| retained_change || durable > 0 || !evicted.is_empty()) {
        let mut ops = Vec::new();
        let (now, now_ms) = (Instant::now(), unix_ms_now());
        if retained_change {
            if message.payload.is_empty() {
                ops.push(Op::DeleteRetained(message.topic.to_string()));
            } else {
                ops.push(Op::PutRetained(
                    message.topic.to_string(),
                    message_record(message, now, now_ms),
                ));
            }
        }
        for (h, seq) in &evicted {
            ops.push(Op::Dequeue(h.client_id.to_string(), *seq));
        }
        if durable > 0 {
            let id = p.next_message_id();
            let record = message_record(message, now, now_ms);
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
                        queue_entry(d, id),
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
                sink.commit = Some(Commit::failed(StoreError::Unavailable {
                    file: p.store.file().to_path_buf(),
                }));
            }
        } else {
            sink.quota_exceeded = true;
        }
    }
    drop(reserving);
    // 4. ...and only then let the subscribers see them.
    for (handle, d, r) in placed {
        if matches!(r, Reserved::DiskOnly(_)) {
            continue;
        }
        if handle.push_reserved(d) == PushOutcome::Busy {
            sink.busy.push(handle);
        }
    }
}

/// Hands a shared-subscription delivery that `leaving` could not complete to another member
/// of its group (see [`Router::shared_successor`]), so a member that leaves does not strand its
/// messages. Dropped when the group has no other member. The receiver gets a fresh place (and
/// sequence number) and, when stored, a stored copy of its own; the leaver's stored entry
/// (`delivery.seq`) is released in the same submission, after the receiver's entry.
pub(crate) fn reroute_shared(
    router: &Router,
    store: Option<&Persistence>,
    leaving: &str,
    mut delivery: Delivery,
    auth: Option<&Auth>,
) {
    let Some(key) = delivery.shared.clone() else {
        return;
    };
    // 1. Match.
    let target = router.shared_successor(&key, leaving, &delivery.message.topic, auth);
    // `seq` numbered the leaver's queue entry: it is removed in the same store submission
    // that gives the receiver its own entry (after it: a crash in between can only leave the
    // message with both, never with neither).
    let release = delivery
        .seq
        .take()
        .map(|seq| Op::Dequeue(leaving.to_owned(), seq));
    let Some((handle, sub_qos, id)) = target else {
        if let Some(settle) = &delivery.message.settle {
            // The cluster gave it to this node's members; another node's may take it.
            settle.settle(Settled::Returned);
        } else {
            router
                .metrics
                .dropped(DropReason::NoSubscribers, None, &delivery.message.topic);
        }
        if let (Some(p), Some(op)) = (store, release) {
            p.submit_detached(vec![op]);
        }
        return;
    };
    delivery.qos = delivery.message.qos.min(sub_qos);
    delivery.subscription_ids = id.into_iter().collect();
    // 2. Reserve: the receiver gets a place of its own and, when stored, a stored copy it owns.
    let reserving = store.map(Persistence::reserving);
    let disk_full = store.is_some_and(|p| !p.healthy() || p.over_budget());
    let size = delivery.message.size();
    let (r, gone) = handle.reserve(
        delivery.qos,
        &delivery.message.topic,
        size,
        store.is_some(),
        disk_full,
        &router.metrics,
    );
    // 3. Store.
    let mut ops = Vec::new();
    if let Some(seq) = gone {
        ops.push(Op::Dequeue(handle.client_id.to_string(), seq));
    }
    match r {
        Reserved::Dropped | Reserved::NoStore | Reserved::Memory => {}
        Reserved::MemoryDurable(seq) | Reserved::DiskOnly(seq) => {
            delivery.seq = Some(seq);
            if let Some(p) = store {
                let (now, now_ms) = (Instant::now(), unix_ms_now());
                let mid = p.next_message_id();
                ops.push(Op::PutMessage(
                    mid,
                    message_record(&delivery.message, now, now_ms),
                    1,
                ));
                ops.push(Op::Enqueue(
                    handle.client_id.to_string(),
                    seq,
                    queue_entry(&delivery, mid),
                ));
            }
        }
    }
    ops.extend(release);
    if let Some(p) = store.filter(|_| !ops.is_empty()) {
        // Not waited for: the publisher was acknowledged long ago.
        p.submit_detached(ops);
    }
    drop(reserving);
    // 4. Push.
    if matches!(r, Reserved::Memory | Reserved::MemoryDurable(_)) {
        handle.push_reserved(delivery);
    }
}
