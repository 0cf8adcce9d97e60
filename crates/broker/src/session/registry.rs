//! The session registry: which client ids have a session, and whether a connection holds it.
//!
//! # Takeover
//! `attach(client_id)` atomically (under the registry lock)
//! 1. replaces an `Online` slot with the new connection and tells the old connection, through its
//!    cancellation token, to send DISCONNECT 0x8E (v5) and close;
//! 2. registers a one-shot hand-off so that, when the old connection detaches, its `Session`
//!    goes to the new connection instead of into the registry;
//! 3. the new connection waits for that hand-off (bounded), then resumes the session, or drops
//!    it when clean start was asked for.
//!
//! The hand-off always comes from the connection that *holds* the session and always goes to
//! the *newest* connection: when a third connection arrives while a second one still waits, the
//! hand-off is re-addressed to the third (the second's receiver fails: it was superseded before
//! it started and closes without touching anything). If the waiting connection gives up (its
//! wait timed out), [`Registry::abandon`] gives the slot back to the holder, whose `detach` then
//! keeps the session offline as usual; a hand-off that finds its receiver gone does the same.
//! So no session is ever ended because connections raced for its client id.
//!
//! A displaced connection finds the slot owned by another connection id when it detaches, so it
//! can never clobber the new session.
//!
//! # Ownership
//! Every slot knows its session's [`Owner`]. `attach` refuses a connection whose identity the
//! owner does not admit *before* touching anything: the session, its connection and its
//! pending will are left exactly as they were.
//!
//! Pending wills (v5 will delay) and offline expiry timers are also kept here, under the same
//! lock, so "a new connection arrived" and "the timer fired" cannot both win.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::live::Live;
use super::{Owner, Session, SubscriptionEntry};
use crate::message::ClientId;

/// A connection's identity, unique for the broker's lifetime.
pub type ConnectionId = u64;

#[derive(Debug)]
enum Slot {
    Online {
        conn: ConnectionId,
        owner: Owner,
        kick: CancellationToken,
        /// Set while waiting for a displaced connection to hand its session over: the holder,
        /// its (cancelled) token, and where the session goes. Boxed, as the offline session
        /// below: a slot is mostly an idle connection's, and the table's every bucket is as
        /// large as its largest variant.
        handoff: Option<Box<Handoff>>,
        /// What the admin side sees of the connection, once its CONNACK is sent.
        live: Option<Arc<Live>>,
    },
    Offline {
        session: Box<Session>,
        /// Connection that left it; identifies the expiry timer that may remove it.
        generation: ConnectionId,
    },
}

#[derive(Debug)]
struct Handoff {
    /// The connection that holds the session.
    from: ConnectionId,
    /// Its cancellation token (already cancelled), kept so that `abandon` can restore its slot.
    from_kick: CancellationToken,
    /// The owner of the holder's slot.
    from_owner: Owner,
    /// The holder's admin view.
    from_live: Option<Arc<Live>>,
    to: oneshot::Sender<Session>,
}

/// Gives back most of a map's room once it is three-quarters empty: a wave of connections
/// that has ended should not keep its table (amortized O(1): the map must have lost three
/// quarters of its entries since it last grew or shrank).
fn shrink_when_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 1024 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<ClientId, Slot>,
    /// Wills waiting for their delay, by client id, with the connection that left them and
    /// the owner of its (possibly ended) session.
    pending_wills: HashMap<ClientId, (ConnectionId, tokio::task::AbortHandle, Owner)>,
    /// Connections cancelled because the client id connected to another node of the cluster:
    /// they end as taken over (v5 DISCONNECT 0x8E), not as kicked by an operator.
    remote_takeovers: std::collections::HashSet<ConnectionId>,
}

/// What `attach` found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // moved once per CONNECT; boxing buys nothing
pub enum Attached {
    /// No session existed.
    New,
    /// An offline session, now owned by the caller.
    Resumed(Session),
    /// A connection held it; the caller awaits the hand-off.
    TakingOver(oneshot::Receiver<Session>),
    /// The session (or its pending will) belongs to this other identity: nothing was changed.
    Refused(Owner),
}

/// What became of a session handed back by `detach`.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // moved once per connection close
pub enum Detached {
    /// Kept offline; the caller arms its expiry timer when it has one.
    Offline(Option<Duration>),
    /// Given to the connection that took over.
    HandedOver,
    /// The session ended: the caller cleans it up.
    Ended(Session),
}

/// A snapshot of one registry slot, for the admin side.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub client_id: ClientId,
    pub owner: Owner,
    /// Connected: what the connection published of itself (`None` while its CONNECT is still
    /// being handled). `None` too for an offline session.
    pub live: Option<Arc<Live>>,
    pub online: bool,
    /// Offline sessions: subscriptions held and the expiry interval.
    pub offline_subscriptions: usize,
    pub offline_expiry: Option<Duration>,
    /// Offline sessions: the mailbox (queue length).
    pub offline_queue: usize,
    /// Offline sessions: the mailbox itself (for what is on disk, and the drop count).
    pub offline_handle: Option<Arc<crate::session::mailbox::SessionHandle>>,
}

impl SessionView {
    fn of(id: &ClientId, slot: &Slot) -> Self {
        match slot {
            Slot::Online { owner, live, .. } => Self {
                client_id: id.clone(),
                owner: owner.clone(),
                live: live.clone(),
                online: true,
                offline_subscriptions: 0,
                offline_expiry: None,
                offline_queue: 0,
                offline_handle: None,
            },
            Slot::Offline { session, .. } => Self {
                client_id: id.clone(),
                owner: session.owner.clone(),
                live: None,
                online: false,
                offline_subscriptions: session.subscriptions.len(),
                offline_expiry: session.expiry,
                offline_queue: session.handle.len(),
                offline_handle: Some(session.handle.clone()),
            },
        }
    }
}

/// Registry of sessions.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `client_id` for connection `conn` of identity `owner`, whose cancellation token
    /// is `kick`. Cancels a pending will for the client id: a new connection arrived before its
    /// delay passed [MQTT-3.1.3-9]. Refused, changing nothing, when the existing session or
    /// pending will belongs to another identity.
    pub fn attach(
        &self,
        client_id: &ClientId,
        conn: ConnectionId,
        kick: CancellationToken,
        owner: &Owner,
    ) -> Attached {
        let mut inner = self.lock();
        let current = match inner.slots.get(client_id) {
            Some(Slot::Online { owner, .. }) => Some(owner),
            Some(Slot::Offline { session, .. }) => Some(&session.owner),
            None => inner.pending_wills.get(client_id).map(|(_, _, o)| o),
        };
        if let Some(current) = current
            && !current.admits(owner)
        {
            return Attached::Refused(current.clone());
        }
        if let Some((_, will, _)) = inner.pending_wills.remove(client_id) {
            will.abort();
        }
        let owner = owner.clone();
        let previous = inner.slots.remove(client_id);
        let (slot, result) = match previous {
            None => (
                Slot::Online {
                    conn,
                    owner,
                    kick,
                    handoff: None,
                    live: None,
                },
                Attached::New,
            ),
            Some(Slot::Offline { session, .. }) => (
                Slot::Online {
                    conn,
                    owner,
                    kick,
                    handoff: None,
                    live: None,
                },
                Attached::Resumed(*session),
            ),
            Some(Slot::Online {
                conn: old,
                owner: old_owner,
                kick: old_kick,
                handoff,
                live: old_live,
            }) => {
                old_kick.cancel();
                // A connection still waiting for the session is superseded (dropping its sender
                // tells it); the session comes from whoever holds it, to the newest connection.
                let (from, from_kick, from_owner, from_live) = match handoff.map(|h| *h) {
                    Some(h) => (h.from, h.from_kick, h.from_owner, h.from_live),
                    None => (old, old_kick, old_owner, old_live),
                };
                let (tx, rx) = oneshot::channel();
                (
                    Slot::Online {
                        conn,
                        owner,
                        kick,
                        handoff: Some(Box::new(Handoff {
                            from,
                            from_kick,
                            from_owner,
                            from_live,
                            to: tx,
                        })),
                        live: None,
                    },
                    Attached::TakingOver(rx),
                )
            }
        };
        inner.slots.insert(client_id.clone(), slot);
        result
    }

    /// Gives the session back when connection `conn` closes. A persistent session becomes
    /// offline (expiring after `session.expiry`); a non-persistent one is returned to the caller
    /// to be cleaned up. If another connection took over, the session is handed to it.
    pub fn detach(&self, client_id: &ClientId, conn: ConnectionId, session: Session) -> Detached {
        let mut inner = self.lock();
        match inner.slots.get_mut(client_id) {
            Some(Slot::Online {
                conn: owner,
                handoff,
                ..
            }) if *owner != conn => {
                // Displaced: hand over if the new owner waits for us, otherwise the session ends.
                if handoff.as_ref().is_some_and(|h| h.from == conn)
                    && let Some(h) = handoff.take()
                {
                    return match h.to.send(session) {
                        Ok(()) => Detached::HandedOver,
                        // The waiting connection gave up: the session stays, as if it had
                        // never come.
                        Err(session) => Self::leave(&mut inner, client_id, conn, session),
                    };
                }
                Detached::Ended(session)
            }
            Some(Slot::Online { .. }) => Self::leave(&mut inner, client_id, conn, session),
            _ => Detached::Ended(session),
        }
    }

    /// The holder of a slot leaves: a persistent session goes offline, another one ends.
    fn leave(
        inner: &mut Inner,
        client_id: &ClientId,
        conn: ConnectionId,
        session: Session,
    ) -> Detached {
        if session.is_persistent() {
            let expiry = session.expiry;
            inner.slots.insert(
                client_id.clone(),
                Slot::Offline {
                    session: Box::new(session),
                    generation: conn,
                },
            );
            Detached::Offline(expiry)
        } else {
            inner.slots.remove(client_id);
            shrink_when_sparse(&mut inner.slots);
            Detached::Ended(session)
        }
    }

    /// Connection `conn` stops waiting for a hand-off (it timed out): the holder gets its slot
    /// back, so that when it detaches its session is kept as usual. No-op when `conn` no longer
    /// waits (superseded, or the holder already left).
    pub fn abandon(&self, client_id: &ClientId, conn: ConnectionId) {
        let mut inner = self.lock();
        if let Some(Slot::Online {
            conn: c,
            handoff: handoff @ Some(_),
            ..
        }) = inner.slots.get_mut(client_id)
            && *c == conn
            && let Some(h) = handoff.take().map(|h| *h)
        {
            inner.slots.insert(
                client_id.clone(),
                Slot::Online {
                    conn: h.from,
                    owner: h.from_owner,
                    kick: h.from_kick,
                    handoff: None,
                    live: h.from_live,
                },
            );
        }
    }

    /// Puts a session read back from the store at start-up in place, offline.
    pub fn restore(&self, session: Session, generation: ConnectionId) {
        let client_id = session.client_id.clone();
        self.lock().slots.insert(
            client_id,
            Slot::Offline {
                session: Box::new(session),
                generation,
            },
        );
    }

    /// Removes an offline session whose expiry has passed, if it is still the one left by
    /// `generation`. Returns it for clean-up.
    pub fn expire(&self, client_id: &ClientId, generation: ConnectionId) -> Option<Session> {
        let mut inner = self.lock();
        match inner.slots.get(client_id) {
            Some(Slot::Offline { generation: g, .. }) if *g == generation => {
                let removed = inner.slots.remove(client_id);
                shrink_when_sparse(&mut inner.slots);
                match removed {
                    Some(Slot::Offline { session, .. }) => Some(*session),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Registers a will waiting for its delay, left by a session of `owner`; replaces (and
    /// aborts) an older one.
    pub fn add_pending_will(
        &self,
        client_id: ClientId,
        conn: ConnectionId,
        task: tokio::task::AbortHandle,
        owner: Owner,
    ) {
        if let Some((_, old, _)) = self
            .lock()
            .pending_wills
            .insert(client_id, (conn, task, owner))
        {
            old.abort();
        }
    }

    /// Called by a will task when its delay passed: true if it is still pending (and now removed),
    /// false if a new connection cancelled it.
    pub fn take_pending_will(&self, client_id: &ClientId, conn: ConnectionId) -> bool {
        let mut inner = self.lock();
        match inner.pending_wills.get(client_id) {
            Some((c, _, _)) if *c == conn => {
                inner.pending_wills.remove(client_id);
                true
            }
            _ => false,
        }
    }

    /// Cancels the will waiting for its delay of `client_id`, if any (its session moved to
    /// another node, where it lives on [MQTT-3.1.3-9]).
    pub fn cancel_pending_will(&self, client_id: &str) {
        if let Some((_, task, _)) = self.lock().pending_wills.remove(client_id) {
            task.abort();
        }
    }

    /// Sessions known (online and offline).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// True when no session exists.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (sessions, of which online, messages queued, deliveries in flight), summed over every
    /// session: one pass under the lock, then each mailbox's own lock, one at a time.
    #[must_use]
    pub fn totals(&self) -> (usize, usize, usize, usize) {
        let views = self.list();
        let (mut online, mut queued, mut inflight) = (0, 0, 0);
        for v in &views {
            online += usize::from(v.online);
            match &v.live {
                Some(live) => {
                    queued += live.handle.len();
                    inflight += live.inflight();
                }
                None => queued += v.offline_queue,
            }
        }
        (views.len(), online, queued, inflight)
    }

    /// Every client id with a session, in no particular order. One pass under the lock,
    /// cloning a few pointers per session.
    #[must_use]
    pub fn list(&self) -> Vec<SessionView> {
        self.lock()
            .slots
            .iter()
            .map(|(id, slot)| SessionView::of(id, slot))
            .collect()
    }

    /// One client id's session, if it has one (a hash look-up).
    #[must_use]
    pub fn get(&self, client_id: &str) -> Option<SessionView> {
        let inner = self.lock();
        inner
            .slots
            .get_key_value(client_id)
            .map(|(id, slot)| SessionView::of(id, slot))
    }

    /// The admin view of the connection holding `client_id`, once its CONNACK is sent.
    #[must_use]
    pub fn live(&self, client_id: &str) -> Option<Arc<Live>> {
        match self.lock().slots.get(client_id) {
            Some(Slot::Online { live, .. }) => live.clone(),
            _ => None,
        }
    }

    /// Records the admin view of connection `conn`, if it still holds `client_id`.
    pub fn set_live(&self, client_id: &str, conn: ConnectionId, view: Arc<Live>) {
        if let Some(Slot::Online { conn: c, live, .. }) = self.lock().slots.get_mut(client_id)
            && *c == conn
        {
            *live = Some(view);
        }
    }

    /// The subscriptions of an offline session (`None` when `client_id` has no offline session).
    #[must_use]
    pub fn offline_subscriptions(
        &self,
        client_id: &str,
    ) -> Option<Vec<(String, SubscriptionEntry)>> {
        match self.lock().slots.get(client_id) {
            Some(Slot::Offline { session, .. }) => Some(
                session
                    .subscriptions
                    .iter()
                    .map(|(f, e)| (f.clone(), *e))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// `f` of the offline session of `client_id` (under the registry's lock: keep it short).
    /// `None` when `client_id` has no offline session.
    pub fn with_offline<T>(&self, client_id: &str, f: impl FnOnce(&Session) -> T) -> Option<T> {
        match self.lock().slots.get(client_id) {
            Some(Slot::Offline { session, .. }) => Some(f(session)),
            _ => None,
        }
    }

    /// Takes an offline session out of the registry (it moved to another node of the
    /// cluster): the caller ends it. `None` when `client_id` has no offline session.
    pub fn take_offline(&self, client_id: &str) -> Option<Session> {
        let mut inner = self.lock();
        if !matches!(inner.slots.get(client_id), Some(Slot::Offline { .. })) {
            return None;
        }
        let removed = inner.slots.remove(client_id);
        shrink_when_sparse(&mut inner.slots);
        match removed {
            Some(Slot::Offline { session, .. }) => Some(*session),
            _ => None,
        }
    }

    /// The connection that holds `client_id` now, if one does.
    #[must_use]
    pub fn holder(&self, client_id: &str) -> Option<ConnectionId> {
        match self.lock().slots.get(client_id) {
            Some(Slot::Online { conn, .. }) => Some(*conn),
            _ => None,
        }
    }

    /// Tells the connection holding `client_id` to close (an operator's kick); the session stays.
    /// False when the client is not connected.
    pub fn kick(&self, client_id: &str) -> bool {
        match self.lock().slots.get(client_id) {
            Some(Slot::Online { kick, .. }) => {
                kick.cancel();
                true
            }
            _ => false,
        }
    }

    /// Disconnects `client_id`'s connection because the same client id connected to another
    /// node of the cluster: it ends as a takeover (v5 DISCONNECT 0x8E, will as for a local
    /// takeover). False when it is not connected here.
    pub fn take_over_remote(&self, client_id: &str) -> bool {
        let mut inner = self.lock();
        let conn = match inner.slots.get(client_id) {
            Some(Slot::Online { kick, conn, .. }) => {
                kick.cancel();
                *conn
            }
            _ => return false,
        };
        inner.remote_takeovers.insert(conn);
        true
    }

    /// Whether connection `conn` was cancelled by [`Registry::take_over_remote`] (asked once,
    /// when it closes).
    pub fn taken_over_remotely(&self, conn: ConnectionId) -> bool {
        self.lock().remote_takeovers.remove(&conn)
    }

    /// Whether `client_id` has a session, and whether it is online.
    #[must_use]
    pub fn status(&self, client_id: &str) -> Option<bool> {
        self.lock()
            .slots
            .get(client_id)
            .map(|s| matches!(s, Slot::Online { .. }))
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
