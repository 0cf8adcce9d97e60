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
//! (or a short timeout passes). A subscriber that does not drain within that timeout is marked
//! stalled and no longer holds publishers back: its messages are dropped at the limit and counted,
//! so one slow subscriber cannot stall a fan-out, nor grow memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hermod_proto::QoS;
use tokio::sync::Notify;

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
}

#[derive(Debug)]
struct Inner {
    queue: VecDeque<Delivery>,
    limit: usize,
    online: bool,
    queue_qos0_offline: bool,
    /// Set when the session has ended: nothing more is accepted.
    closed: bool,
    /// A publisher waited for this mailbox to drain and it did not: stop reporting `Busy`
    /// until it drains again.
    stalled: bool,
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
            client_id,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                limit,
                online: true,
                queue_qos0_offline,
                closed: false,
                stalled: false,
            }),
            notify: Notify::new(),
            space: Notify::new(),
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent (push/pop only), so
        // a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a delivery. Returns `Dropped` when the queue is full: the newest message is dropped,
    /// as Mosquitto does, and counted.
    pub fn push(&self, delivery: Delivery, metrics: &Metrics) -> PushOutcome {
        let mut inner = self.lock();
        let drop = inner.closed
            || inner.queue.len() >= inner.limit
            || (!inner.online && delivery.qos == QoS::AtMostOnce && !inner.queue_qos0_offline);
        if drop {
            drop_guard(inner);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Metrics::incr(&metrics.messages_dropped);
            return PushOutcome::Dropped;
        }
        inner.queue.push_back(delivery);
        let online = inner.online;
        let busy = online && !inner.stalled && inner.queue.len() > inner.limit / 2;
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

    /// Waits until the mailbox has drained below a quarter of its limit, the session goes
    /// offline, or `timeout` passes (then marks it stalled). True when there is room.
    pub async fn wait_for_space(&self, timeout: std::time::Duration) -> bool {
        let notified = self.space.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let inner = self.lock();
            if !inner.online
                || inner.stalled
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
            inner.stalled = true;
            return false;
        }
        true
    }

    /// After a pop: wake waiting publishers once below a quarter full.
    fn after_pop(&self, mut inner: MutexGuard<'_, Inner>) {
        if inner.queue.len() <= inner.limit / 4 {
            inner.stalled = false;
            drop_guard(inner);
            self.space.notify_waiters();
        }
    }

    /// Takes up to `max` deliveries from the front.
    pub fn pop_up_to(&self, max: usize, out: &mut Vec<Delivery>) {
        let mut inner = self.lock();
        let n = max.min(inner.queue.len());
        out.extend(inner.queue.drain(..n));
        self.after_pop(inner);
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

    /// True when nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the session online (a connection is attached) or offline.
    pub fn set_online(&self, online: bool) {
        self.lock().online = online;
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
        drop_guard(inner);
        self.space.notify_waiters();
        rest
    }

    /// Removes queued deliveries routed through shared subscriptions (when the session goes
    /// offline they are handed to another member of the group).
    pub fn take_shared(&self) -> Vec<Delivery> {
        let mut inner = self.lock();
        let (shared, rest): (Vec<_>, Vec<_>) =
            inner.queue.drain(..).partition(|d| d.shared.is_some());
        inner.queue = rest.into();
        shared
    }

    /// Resolves when a delivery may be waiting. Cancel-safe.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Whether the session is online.
    #[must_use]
    pub fn is_online(&self) -> bool {
        self.lock().online
    }
}

fn drop_guard<T>(_g: T) {}
