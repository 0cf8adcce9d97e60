//! The per-session mailbox: where the router drops deliveries for one session.
//!
//! Why a mutex-guarded queue and not a channel: the queue must outlive connections (it is the
//! offline queue of a persistent session), must be bounded with a drop counter, must let the
//! connection pull only as many deliveries as its inflight window has room for, and must give
//! back un-sent shared-subscription deliveries when the session ends. Each session has its own
//! lock, held for a push or a pop only, so the publish path has no global exclusive lock.
//!
//! # Backpressure
//! A publisher's connection task can route thousands of messages from one read before a
//! subscriber's task gets to run. So that a subscriber that keeps up is not made to drop
//! messages by mere scheduling, a push into an online mailbox that is more than half full
//! reports `Busy`: the publisher then stops reading until the mailbox drains below a quarter
//! (or a short timeout passes; a publisher waits for all its busy subscribers at once, with one
//! deadline). A subscriber that does not drain within that timeout is marked stalled for
//! [`STALL_HOLD`] and no longer holds publishers back: its messages are dropped at the limit and
//! counted, so one slow subscriber cannot stall a fan-out, nor grow memory, and a subscriber
//! that stalls again and again costs publishers one short wait per hold, not one per burst.
//!
//! # Durable sessions
//! With a store, a persistent session's QoS 1/2 deliveries are written to its on-disk queue
//! (each gets a sequence number, `seq`) before any acknowledgement goes to the publisher. The
//! mailbox then keeps only a bounded window of them in memory: while the session is offline, or
//! its in-memory window is full, deliveries live on disk only ("spilled"), and the connection
//! pages them back in order when the window drains (`needs_load` / `loaded`). The limits
//! (`max_queued_messages`, `max_queued_bytes`) count memory and disk together: the mailbox keeps
//! the size of every disk-only entry (4 bytes each) so that a byte bound holds for a queue that
//! lives mostly on disk, as a rule's or a bridge's buffer does while its sink is away.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hermod_proto::QoS;
use tokio::sync::Notify;

use crate::api::DropReason;
use crate::auth::ClientIdentity;
use crate::message::{ClientId, Delivery};
use crate::metrics::Metrics;

/// Shared handle to one session's mailbox. The subscription tree holds these.
#[derive(Debug)]
pub struct SessionHandle {
    /// The session's client id.
    pub client_id: ClientId,
    inner: Mutex<Inner>,
    /// Wakes the connection task when a delivery arrives.
    notify: Notify,
    /// Wakes publishers waiting for this mailbox to drain.
    space: Notify,
    /// Deliveries dropped because the queue was full (or QoS 0 while offline).
    pub dropped: AtomicU64,
    /// Who reads this mailbox: the identity of the session's current (or last) connection. The
    /// router checks its receive ACL before queueing anything, so that messages the session may
    /// not read are neither queued, nor stored, nor counted against its limits.
    reader: ArcSwap<ClientIdentity>,
}

/// How long a subscriber that did not drain in time stays marked stalled.
pub const STALL_HOLD: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Inner {
    queue: VecDeque<Delivery>,
    limit: usize,
    online: bool,
    queue_qos0_offline: bool,
    /// Set when the session has ended: nothing more is accepted.
    closed: bool,
    /// A publisher waited for this mailbox to drain and it did not: stop reporting `Busy`
    /// until then ([`STALL_HOLD`] later). `None` on the hot path: no clock read.
    stalled_until: Option<Instant>,
    /// QoS 1/2 deliveries are stored (persistent session, store enabled).
    durable: bool,
    /// Next sequence number of the durable queue.
    next_seq: u64,
    /// Every reserved sequence number `>= load_from` is on disk only, not in memory; so
    /// `next_seq - load_from` entries wait on disk (and count against the limit).
    load_from: u64,
    /// A page is being loaded from disk.
    loading: bool,
    /// Bytes of the in-memory queue ([`crate::message::Message::size`]: topic, properties and
    /// payload), and the limit of memory and disk together (`max_queued_bytes`; 0 = none).
    bytes: usize,
    max_bytes: usize,
    /// Sizes of the disk-only entries, one per sequence number in `load_from..next_seq` (0 for
    /// a number with no entry, e.g. one acknowledged before a restart), and their sum.
    disk_sizes: VecDeque<u32>,
    disk_bytes: usize,
    /// When full: drop the oldest queued message to make room (`queue_overflow = "drop_oldest"`)
    /// instead of the new one.
    drop_oldest: bool,
}

impl Inner {
    /// Marked stalled and the hold has not passed (clears the mark once it has).
    fn is_stalled(&mut self) -> bool {
        match self.stalled_until {
            None => false,
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                self.stalled_until = None;
                false
            }
        }
    }
}

/// Where a reserved delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Over the limit (or the session ended, or QoS 0 while offline): drop and count.
    Dropped,
    /// A delivery to be stored, refused because the store cannot take it (over its disk budget,
    /// or unavailable after a disk error): dropped and counted like `Dropped`, but the
    /// publisher is told why.
    NoStore,
    /// Into the in-memory queue, not stored.
    Memory,
    /// Stored under this sequence number and kept in memory: push it after submitting the store op.
    MemoryDurable(u64),
    /// Stored under this sequence number, on disk only (the connection pages it in later).
    DiskOnly(u64),
}

/// Most stored deliveries an online session keeps in memory: the rest wait on disk and are paged
/// in as this window drains. Independent of `max_queued_messages`, which bounds the whole queue
/// (memory and disk), so a large disk queue does not mean a large memory one.
const MEMORY_WINDOW: usize = 512;

impl Inner {
    fn memory_window(&self) -> usize {
        (self.limit / 2).clamp(1, MEMORY_WINDOW)
    }

    fn disk_only(&self) -> usize {
        usize::try_from(self.next_seq.saturating_sub(self.load_from)).unwrap_or(usize::MAX)
    }

    /// Moves `load_from` forward to `to` (entries paged in, evicted or skipped), forgetting
    /// their sizes.
    fn advance_load_from(&mut self, to: u64) {
        while self.load_from < to {
            if let Some(size) = self.disk_sizes.pop_front() {
                self.disk_bytes = self.disk_bytes.saturating_sub(size as usize);
            }
            self.load_from += 1;
        }
    }

    /// Reserves the next sequence number for an entry that stays on disk only.
    fn reserve_disk(&mut self, size: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        self.disk_sizes.push_back(size);
        self.disk_bytes += size as usize;
        seq
    }

    /// Queued entries, in memory and on disk.
    fn total_len(&self) -> usize {
        self.queue.len() + self.disk_only()
    }
}

/// What happened to a pushed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Queued, but the mailbox is filling up: the publisher should wait for it to drain.
    Busy,
    /// Dropped (queue full, QoS 0 for an offline session, or the session ended).
    Dropped,
}

impl SessionHandle {
    /// A new, online, empty mailbox holding at most `limit` deliveries.
    #[must_use]
    pub fn new(client_id: ClientId, limit: usize, queue_qos0_offline: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                limit,
                online: true,
                queue_qos0_offline,
                closed: false,
                stalled_until: None,
                durable: false,
                next_seq: 1,
                load_from: 1,
                loading: false,
                bytes: 0,
                max_bytes: 0,
                disk_sizes: VecDeque::new(),
                disk_bytes: 0,
                drop_oldest: false,
            }),
            notify: Notify::new(),
            space: Notify::new(),
            dropped: AtomicU64::new(0),
            reader: ArcSwap::from_pointee(ClientIdentity {
                username: None,
                client_id: client_id.clone(),
                jwt_acl: None,
                internal: false,
            }),
            client_id,
        })
    }

    /// The identity whose receive ACL applies to this mailbox.
    pub fn reader(&self) -> arc_swap::Guard<Arc<ClientIdentity>> {
        self.reader.load()
    }

    /// Sets the identity whose receive ACL applies (at CONNECT, and when restored from the store).
    pub fn set_reader(&self, identity: impl Into<Arc<ClientIdentity>>) {
        self.reader.store(identity.into());
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent (push/pop only), so
        // a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a delivery that is not to be stored (retained messages on subscribe, wills,
    /// re-routed shared deliveries). Returns `Dropped` when the queue is full: the newest message
    /// is dropped, as Mosquitto does, and counted.
    pub fn push(&self, delivery: Delivery, metrics: &Metrics) -> PushOutcome {
        let size = delivery.message.size();
        let topic = &delivery.message.topic;
        match self
            .reserve(delivery.qos, topic, size, false, false, metrics)
            .0
        {
            Reserved::Dropped | Reserved::NoStore => PushOutcome::Dropped,
            _ => self.push_reserved(delivery),
        }
    }

    /// Sets how many messages the queue may hold (memory and disk together).
    pub fn set_queue_limit(&self, limit: usize) {
        self.lock().limit = limit.max(1);
    }

    /// Sets the byte limit of the queue, memory and disk together (0 = none), and the overflow
    /// policy.
    pub fn set_limits(&self, max_bytes: usize, drop_oldest: bool) {
        let mut inner = self.lock();
        inner.max_bytes = max_bytes;
        inner.drop_oldest = drop_oldest;
    }

    /// First half of routing a delivery: counts it against the limit and decides where it goes.
    /// With `store_ok` and a durable session, QoS 1/2 deliveries get a sequence number: the
    /// caller submits the store op, then `push_reserved`s the `MemoryDurable` ones (in that
    /// order, so the entry is in the store's queue before anyone can acknowledge it).
    ///
    /// `size` is the message's [`crate::message::Message::size`] (for `max_queued_bytes`); `disk_full` says the store cannot
    /// take more (over its disk budget, or unavailable): stored deliveries are then dropped and
    /// counted, as `Reserved::NoStore`. The second value is the
    /// sequence number of a stored delivery evicted by `drop_oldest`, which the caller dequeues.
    pub fn reserve(
        &self,
        qos: QoS,
        topic: &Arc<str>,
        size: usize,
        store_ok: bool,
        disk_full: bool,
        metrics: &Metrics,
    ) -> (Reserved, Option<u64>) {
        let mut inner = self.lock();
        let durable = store_ok && inner.durable && qos != QoS::AtMostOnce;
        let no_store = durable && disk_full && !inner.closed;
        let refused = inner.closed
            || no_store
            || (!inner.online && qos == QoS::AtMostOnce && !inner.queue_qos0_offline);
        // One message larger than the byte limit is still taken into an empty queue (as
        // Mosquitto does), so that such a message is not refused forever.
        let full = |i: &Inner| {
            i.total_len() >= i.limit
                || (i.max_bytes > 0
                    && i.bytes + i.disk_bytes + size > i.max_bytes
                    && i.total_len() > 0)
        };
        let mut evicted = None;
        if !refused && full(&inner) && inner.drop_oldest {
            // Make room by dropping the oldest queued messages (memory first: they are older).
            while full(&inner) {
                // The topic of an entry evicted from disk is not known here: the new one's is
                // reported.
                let mut old_topic = None;
                if let Some(old) = inner.queue.pop_front() {
                    inner.bytes = inner.bytes.saturating_sub(old.message.size());
                    if old.seq.is_some() {
                        evicted = old.seq;
                    }
                    old_topic = Some(old.message.topic.clone());
                } else if inner.disk_only() > 0 {
                    evicted = Some(inner.load_from);
                    let next = inner.load_from + 1;
                    inner.advance_load_from(next);
                } else {
                    break;
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics.dropped(
                    DropReason::QueueFull,
                    Some(&self.client_id),
                    old_topic.as_ref().unwrap_or(topic),
                );
            }
        }
        if refused || full(&inner) {
            drop_guard(inner);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics.dropped(DropReason::QueueFull, Some(&self.client_id), topic);
            let r = if no_store {
                Reserved::NoStore
            } else {
                Reserved::Dropped
            };
            return (r, evicted);
        }
        if !durable {
            return (Reserved::Memory, evicted);
        }
        // Decided before this delivery's own sequence number is counted: it goes to memory
        // only while nothing older waits on disk (order), no page is being loaded and the
        // window has room. (Counting it first made every delivery "disk only", so even an
        // online subscriber that kept up got each message by a read back from the store.)
        let spill = !inner.online
            || inner.disk_only() > 0
            || inner.loading
            || inner.queue.len() >= inner.memory_window();
        if spill {
            let seq = inner.reserve_disk(size);
            let online = inner.online;
            drop_guard(inner);
            if online {
                self.notify.notify_one();
            }
            (Reserved::DiskOnly(seq), evicted)
        } else {
            // Nothing waits on disk (`disk_only() == 0`): memory and disk positions move together.
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.load_from = inner.next_seq;
            (Reserved::MemoryDurable(seq), evicted)
        }
    }

    /// Second half of routing: puts a reserved delivery into the in-memory queue. Returns
    /// `Busy` when the queue is more than half full (see the module docs).
    pub fn push_reserved(&self, delivery: Delivery) -> PushOutcome {
        let mut inner = self.lock();
        inner.bytes += delivery.message.size();
        inner.queue.push_back(delivery);
        let online = inner.online;
        let busy = online && inner.queue.len() > inner.limit / 2 && !inner.is_stalled();
        drop_guard(inner);
        if online {
            self.notify.notify_one();
        }
        if busy {
            PushOutcome::Busy
        } else {
            PushOutcome::Queued
        }
    }

    /// Makes the mailbox durable (or not): `next_seq`, `load_from` and `disk_only` describe the
    /// on-disk queue (from the store at start-up; `(1, 1, 0)` for a new session).
    pub fn set_durable(&self, durable: bool) {
        self.lock().durable = durable;
    }

    /// Restores the on-disk queue after a restart: its position and the stored size of each
    /// entry (`(seq, bytes)`, in any order), so that the byte limit counts them.
    pub fn restore_queue(&self, next_seq: u64, first_seq: u64, sizes: &[(u64, u32)]) {
        let mut inner = self.lock();
        inner.durable = true;
        inner.next_seq = next_seq.max(1);
        inner.load_from = first_seq.max(1).min(inner.next_seq);
        let n = inner.disk_only();
        let mut disk = VecDeque::from(vec![0u32; n]);
        for &(seq, size) in sizes {
            if let Some(i) = seq
                .checked_sub(inner.load_from)
                .and_then(|i| usize::try_from(i).ok())
                && let Some(slot) = disk.get_mut(i)
            {
                *slot = size;
            }
        }
        inner.disk_bytes = disk.iter().map(|&s| s as usize).sum();
        inner.disk_sizes = disk;
    }

    /// Whether QoS 1/2 deliveries to this session are stored.
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.lock().durable
    }

    /// When the in-memory window has room and entries wait on disk, claims the next page to
    /// load: returns the first sequence number to load and how many. The caller loads them and
    /// calls `loaded`.
    pub fn needs_load(&self, page: usize) -> Option<(u64, usize)> {
        let mut inner = self.lock();
        if inner.loading
            || inner.disk_only() == 0
            || !inner.online
            || inner.queue.len() >= inner.memory_window() / 2
        {
            return None;
        }
        inner.loading = true;
        Some((inner.load_from, page.min(inner.memory_window()).max(1)))
    }

    /// The next sequence number to be reserved (the loader reads up to it).
    #[must_use]
    pub fn reserved_upto(&self) -> u64 {
        self.lock().next_seq
    }

    /// Puts a page loaded from disk (entries with `seq >= from`, in order) into memory.
    /// `complete_upto`: the store held no entry in `[last loaded + 1, complete_upto)` when it was
    /// read after every reservation below `complete_upto` had been committed (missing ones were
    /// deleted, e.g. expired): skip past them.
    pub fn loaded(&self, page: Vec<Delivery>, complete_upto: Option<u64>) {
        let mut inner = self.lock();
        inner.loading = false;
        for d in page {
            let Some(seq) = d.seq else { continue };
            if seq < inner.load_from {
                continue;
            }
            inner.advance_load_from(seq + 1);
            inner.bytes += d.message.size();
            inner.queue.push_back(d);
        }
        if let Some(upto) = complete_upto {
            let to = upto.min(inner.next_seq);
            inner.advance_load_from(to);
        }
        drop_guard(inner);
        self.notify.notify_one();
    }

    /// A load failed or found nothing yet (entries reserved but not committed): try later.
    pub fn load_failed(&self) {
        self.lock().loading = false;
    }

    /// Waits until the mailbox has drained below a quarter of its limit, the session goes
    /// offline, or `timeout` passes (then marks it stalled). True when there is room.
    pub async fn wait_for_space(&self, timeout: std::time::Duration) -> bool {
        let notified = self.space.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut inner = self.lock();
            if !inner.online
                || inner.is_stalled()
                || inner.closed
                || inner.queue.len() <= inner.limit / 4
            {
                return true;
            }
        }
        if tokio::time::timeout(timeout, notified).await.is_ok() {
            return true;
        }
        let mut inner = self.lock();
        if inner.queue.len() > inner.limit / 4 {
            inner.stalled_until = Some(Instant::now() + STALL_HOLD);
            return false;
        }
        true
    }

    /// After a pop: wake waiting publishers once below a quarter full.
    fn after_pop(&self, inner: MutexGuard<'_, Inner>) {
        if inner.queue.len() <= inner.limit / 4 {
            drop_guard(inner);
            self.space.notify_waiters();
        }
    }

    /// Takes the next QoS 0 deliveries at the front (which need no inflight slot), and at most
    /// `max_qos` deliveries of QoS 1/2; stops at the first QoS>0 delivery beyond that, so order is kept.
    pub fn pop_ready(&self, max_qos: usize, max_total: usize, out: &mut Vec<Delivery>) {
        let mut inner = self.lock();
        let mut qos_taken = 0;
        while out.len() < max_total {
            match inner.queue.front() {
                Some(d) if d.qos == QoS::AtMostOnce => {}
                Some(_) if qos_taken < max_qos => qos_taken += 1,
                _ => break,
            }
            if let Some(d) = inner.queue.pop_front() {
                inner.bytes = inner.bytes.saturating_sub(d.message.size());
                out.push(d);
            }
        }
        self.after_pop(inner);
    }

    /// Number of queued deliveries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Stored deliveries on disk only, not paged in yet (0 for a session that is not durable).
    #[must_use]
    pub fn disk_len(&self) -> usize {
        self.lock().disk_only()
    }

    /// True when nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the session online (a connection is attached) or offline.
    pub fn set_online(&self, online: bool) {
        let mut inner = self.lock();
        inner.online = online;
        if !online && inner.durable {
            // Stored deliveries leave memory: they are on disk, and will be paged back in order.
            let first = inner.queue.iter().filter_map(|d| d.seq).min();
            if let Some(first) = first.filter(|&f| f < inner.load_from) {
                // Their sizes go back in front of the disk-only ones, one slot per sequence
                // number (0 for numbers already acknowledged).
                let span = usize::try_from(inner.load_from - first).unwrap_or(0);
                let mut front = vec![0u32; span];
                for d in &inner.queue {
                    if let Some(seq) = d.seq
                        && let Some(slot) = usize::try_from(seq - first)
                            .ok()
                            .and_then(|i| front.get_mut(i))
                    {
                        *slot = u32::try_from(d.message.size()).unwrap_or(u32::MAX);
                    }
                }
                for &size in front.iter().rev() {
                    inner.disk_sizes.push_front(size);
                    inner.disk_bytes += size as usize;
                }
                inner.queue.retain(|d| d.seq.is_none());
                inner.bytes = inner.queue.iter().map(|d| d.message.size()).sum();
                inner.load_from = first;
            }
        }
        drop_guard(inner);
        if online {
            self.notify.notify_one();
        } else {
            self.space.notify_waiters();
        }
    }

    /// Ends the mailbox for good and returns what was queued (so shared deliveries can be re-routed).
    pub fn close(&self) -> Vec<Delivery> {
        let mut inner = self.lock();
        inner.closed = true;
        let rest = inner.queue.drain(..).collect();
        inner.bytes = 0;
        drop_guard(inner);
        self.space.notify_waiters();
        rest
    }

    /// Removes queued deliveries routed through shared subscriptions (when the session goes
    /// offline they are handed to another member of the group).
    pub fn take_shared(&self) -> Vec<Delivery> {
        let mut inner = self.lock();
        // Stored ones stay: they belong to this session's durable queue.
        let (shared, rest): (Vec<_>, Vec<_>) = inner
            .queue
            .drain(..)
            .partition(|d| d.shared.is_some() && d.seq.is_none());
        inner.queue = rest.into();
        inner.bytes = inner.queue.iter().map(|d| d.message.size()).sum();
        shared
    }

    /// Resolves when a delivery may be waiting. Cancel-safe.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        // The future itself rather than an `async fn` around it: it waits in every idle
        // connection's task.
        self.notify.notified()
    }

    /// Whether the session is online.
    #[must_use]
    pub fn is_online(&self) -> bool {
        self.lock().online
    }
}

fn drop_guard<T>(_g: T) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    /// A durable session that is online and keeps up gets its deliveries from memory (they
    /// are stored too); only what arrives while something older waits on disk, the session is
    /// offline or the window is full goes to disk only.
    #[test]
    fn an_online_durable_session_that_keeps_up_is_served_from_memory() {
        let m = Metrics::default();
        let h = SessionHandle::new("c".into(), 100, false);
        h.set_durable(true);
        h.set_online(true);
        let t: Arc<str> = "t".into();
        let r = |h: &SessionHandle| h.reserve(QoS::AtLeastOnce, &t, 10, true, false, &m).0;
        assert_eq!(r(&h), Reserved::MemoryDurable(1));
        assert_eq!(r(&h), Reserved::MemoryDurable(2));
        h.set_online(false);
        assert_eq!(r(&h), Reserved::DiskOnly(3));
        h.set_online(true);
        // Something older is on disk: the next one waits behind it, in order.
        assert_eq!(r(&h), Reserved::DiskOnly(4));
    }

    fn delivery(seq: u64, payload: usize) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: "t".into(),
                payload: bytes::Bytes::from(vec![0u8; payload]),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: hermod_proto::PublishProperties::default(),
                publisher: None,
                expires_at: None,
                received_at: None,
                origin: None,
                settle: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
            shared: None,
            seq: Some(seq),
        }
    }

    /// The byte limit counts memory and disk together, through every move between them: a
    /// delivery spilled to disk, the in-memory ones sent back to disk when the session goes
    /// offline (with a hole for one acknowledged), a page loaded back, an eviction.
    #[test]
    fn byte_limit_counts_memory_and_disk_through_every_move() {
        let m = Metrics::default();
        let h = SessionHandle::new("c".into(), 100, false);
        h.set_durable(true);
        h.set_limits(300, false);
        let t: Arc<str> = "t".into();
        // Message::size of a 83-byte payload on topic "t": 100 bytes.
        let size = delivery(0, 83).message.size();
        assert_eq!(size, 100);
        let r = |h: &SessionHandle| h.reserve(QoS::AtLeastOnce, &t, size, true, false, &m).0;
        assert_eq!(r(&h), Reserved::MemoryDurable(1));
        h.push_reserved(delivery(1, 83));
        assert_eq!(r(&h), Reserved::MemoryDurable(2));
        h.push_reserved(delivery(2, 83));
        // 1 is sent and acknowledged: popped from memory.
        let mut out = Vec::new();
        h.pop_ready(1, 1, &mut out);
        assert_eq!(out[0].seq, Some(1));
        h.set_online(false);
        assert_eq!(h.disk_len(), 1, "2 back on disk (1 was acknowledged)");
        assert_eq!(r(&h), Reserved::DiskOnly(3));
        assert_eq!(r(&h), Reserved::DiskOnly(4));
        assert_eq!(r(&h), Reserved::Dropped, "300 bytes: 2, 3 and 4");
        h.set_online(true);
        let (from, n) = h.needs_load(10).expect("a page to load");
        assert_eq!((from, n), (2, 10));
        h.loaded(vec![delivery(2, 83), delivery(3, 83)], None);
        assert_eq!((h.len(), h.disk_len()), (2, 1));
        assert_eq!(
            r(&h),
            Reserved::Dropped,
            "still 300 bytes, 200 of them in memory"
        );
        out.clear();
        h.pop_ready(2, 2, &mut out);
        assert_eq!(
            r(&h),
            Reserved::DiskOnly(5),
            "4 waits on disk, so 5 goes there too"
        );
        // drop_oldest: evicting 4 from disk frees its 100 bytes.
        h.set_limits(200, true);
        let (r6, evicted) = h.reserve(QoS::AtLeastOnce, &t, size, true, false, &m);
        assert_eq!((r6, evicted), (Reserved::DiskOnly(6), Some(4)));
        assert_eq!(h.disk_len(), 2, "5 and 6");
    }
}
