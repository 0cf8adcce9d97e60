//! `Shared`: the state every connection task holds (configuration, auth, router, store,
//! registry, metrics), and the session lifecycle operations on it (new, end, expire, wills).
//!
//! `broker` builds it and runs the listeners; `connection` uses it; neither is imported from
//! here, so the dependencies run one way: broker -> connection -> shared.

mod recovery;
mod reload;
mod will;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::auth::Auth;
use crate::config::Config;
use crate::message::ClientId;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::session::Session;
use crate::session::registry::{ConnectionId, Registry};
use crate::transport::Acceptor;

pub(crate) use recovery::Recovery;
pub(crate) use will::{Will, identity_of};

/// State shared by every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Authentication and ACLs; replaced as a whole on reload, so a check sees either the old
    /// rules or the new ones, never a mix.
    pub(crate) auth: ArcSwap<Auth>,
    /// The password-hashing threads, shared by every `Auth` loaded (reloads included).
    pub(crate) hash_pool: Arc<crate::auth::HashPool>,
    /// Failed-login counts and blocks per address (`[auth_failures]`); kept across reloads.
    pub(crate) throttle: Arc<crate::auth::Throttle>,
    /// `[[banned]]` plus run-time bans; reload replaces the former.
    pub(crate) banned: crate::banned::Banned,
    /// One acceptor per listener (TLS state swapped on reload).
    pub(crate) acceptors: Vec<Arc<Acceptor>>,
    /// Subscriptions and retained messages: matching only, no I/O.
    pub(crate) router: Router,
    /// The store, when persistence is on.
    pub(crate) persistence: Option<Arc<crate::persist::Persistence>>,
    pub(crate) registry: Registry,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) next_connection: AtomicU64,
    /// The configuration file, re-read on reload.
    pub(crate) config_path: Option<std::path::PathBuf>,
    /// Events for `api::BrokerHandle::events`.
    pub(crate) events: Arc<crate::api::EventBus>,
    /// More Prometheus text from the services around the broker (rules, bridges), appended
    /// to [`crate::api::BrokerHandle::prometheus_text`].
    pub(crate) metrics_sources: crate::api::MetricsSources,
    /// Services' durable documents (`api::BrokerHandle::kv`).
    pub(crate) kv: Arc<crate::api::Kv>,
}
impl Shared {
    /// A new, empty session with the configured queue limits.
    pub(crate) fn new_session(&self, client_id: ClientId) -> Session {
        let cfg = &self.config;
        let s = Session::new(client_id, cfg.max_queued_messages, cfg.queue_qos0_messages);
        s.handle.set_limits(
            cfg.max_queued_bytes,
            cfg.queue_overflow == crate::config::QueueOverflow::DropOldest,
        );
        s
    }

    pub(crate) fn next_connection_id(&self) -> ConnectionId {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ends a session for good: removes its subscriptions, closes its mailbox, and hands its
    /// unfinished shared-subscription deliveries to other members of their groups. Removes only
    /// what this session owns: its own mailbox's subscriptions, and its stored record unless
    /// another connection holds the client id now (whose record it would be).
    pub(crate) fn end_session(&self, session: Session) {
        let stored_is_ours = self.registry.status(&session.client_id).is_none();
        self.end_session_with(session, stored_is_ours);
    }

    /// As [`Shared::end_session`]; `delete_stored` says whether the client id's stored record
    /// and queue are this session's to delete (a clean start replacing it: yes).
    pub(crate) fn end_session_with(&self, mut session: Session, delete_stored: bool) {
        for filter in session.subscriptions.keys() {
            self.router.unsubscribe_session(filter, &session.handle);
        }
        let mut orphans = session.take_shared_inflight();
        orphans.extend(
            session
                .handle
                .close()
                .into_iter()
                .filter(|d| d.shared.is_some()),
        );
        let auth = self.auth.load();
        let gate = auth.filters_receive().then_some(&**auth);
        for mut d in orphans {
            if !delete_stored {
                // The client id's stored queue is another incarnation's: leave it alone.
                d.seq = None;
            }
            crate::deliver::reroute_shared(
                &self.router,
                self.persistence.as_deref(),
                &session.client_id,
                d,
                gate,
            );
        }
        // After the hand-overs above were submitted: deleting first could lose them in a crash.
        if delete_stored
            && session.handle.is_durable()
            && let Some(p) = &self.persistence
        {
            p.submit_detached(crate::persist::delete_session(&session.client_id));
        }
        debug!(client_id = %session.client_id, "session ended");
    }

    /// Arms the offline expiry timer of a persistent session left by connection `conn`.
    pub(crate) fn arm_expiry(
        self: &Arc<Self>,
        client_id: ClientId,
        conn: ConnectionId,
        after: Duration,
    ) {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(after) => {}
                () = shared.shutdown.cancelled() => return,
            }
            if let Some(session) = shared.registry.expire(&client_id, conn) {
                info!(%client_id, "session expired");
                shared.metrics.session_expired();
                shared.end_session(session);
            }
        });
    }

    /// Removes the retained message of `topic` (memory and store) without routing anything.
    /// True if there was one.
    pub(crate) fn delete_retained(&self, topic: &str) -> bool {
        let removed = self.router.remove_retained(topic);
        if removed && let Some(p) = &self.persistence {
            p.submit_detached(vec![crate::store::Op::DeleteRetained(topic.to_owned())]);
        }
        removed
    }
}
