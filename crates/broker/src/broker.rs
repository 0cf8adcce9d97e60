//! `Broker`: binds the listeners, accepts connections, and owns the shared state.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::{Action, Auth, ClientIdentity};
use crate::config::Config;
use crate::message::{ClientId, Message};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::session::registry::{ConnectionId, Registry};
use crate::session::{Owner, Session};
use crate::transport::Acceptor;

/// Timers to start once the broker runs: offline sessions' expiry, and wills still waiting for
/// their delay, as restored from the store.
#[derive(Debug, Default)]
struct Recovery {
    expiring: Vec<(ClientId, ConnectionId, Duration)>,
    wills: Vec<(
        ClientId,
        ConnectionId,
        Will,
        Duration,
        crate::store::SessionRecord,
    )>,
}

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
}

impl Will {
    /// A will restored from the store: published as the session's stored owner.
    fn restored(message: Message, client_id: &ClientId, owner: &Owner) -> Self {
        Self {
            message,
            publisher: Arc::new(identity_of(owner, client_id)),
            owner: owner.clone(),
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
    }
}

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The password file, ACL file, or an auth source could not be loaded.
    #[error("{origin}: {source}")]
    Auth {
        /// The configuration file (or "configuration").
        origin: String,
        /// What failed, naming the key and the file.
        source: crate::auth::AuthLoadError,
    },
    /// A listener's TLS/WebSocket/PROXY settings or files are unusable.
    #[error("{origin}: listener[{index}] ({bind}): {source}")]
    Transport {
        /// The configuration file (or "configuration").
        origin: String,
        /// Index of the `[[listener]]` table.
        index: usize,
        /// Its address.
        bind: String,
        /// Why.
        source: crate::transport::TransportError,
    },
    /// The store could not be opened (corrupt, unreadable, newer schema).
    #[error("{origin}: [store] path: {source}")]
    Store {
        /// The configuration file (or "configuration").
        origin: String,
        /// Why.
        source: crate::store::StoreError,
    },
    /// A listener could not bind.
    #[error("{origin}: listener[{index}] ({bind}): cannot bind: {source}")]
    Bind {
        /// The configuration file (or "configuration").
        origin: String,
        /// Index of the `[[listener]]` table.
        index: usize,
        /// Its address.
        bind: String,
        /// Why.
        source: std::io::Error,
    },
}

/// State shared by every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Authentication and ACLs; replaced as a whole on reload, so a check sees either the old
    /// rules or the new ones, never a mix.
    pub(crate) auth: ArcSwap<Auth>,
    /// The password-hashing threads, shared by every `Auth` loaded (reloads included).
    hash_pool: Arc<crate::auth::HashPool>,
    /// Failed-login counts and blocks per address (`[auth_failures]`); kept across reloads.
    pub(crate) throttle: Arc<crate::auth::Throttle>,
    /// `[[banned]]` plus run-time bans; reload replaces the former.
    pub(crate) banned: crate::banned::Banned,
    /// One acceptor per listener (TLS state swapped on reload).
    acceptors: Vec<Arc<Acceptor>>,
    pub(crate) router: Router,
    pub(crate) registry: Registry,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
    next_connection: AtomicU64,
    /// The configuration file, re-read on reload.
    config_path: Option<std::path::PathBuf>,
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
            self.router.reroute_shared(&session.client_id, d, gate);
        }
        // After the hand-overs above were submitted: deleting first could lose them in a crash.
        if delete_stored
            && session.handle.is_durable()
            && let Some(p) = &self.router.persistence
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
                shared.end_session(session);
            }
        });
    }

    /// Re-reads the configuration file (when there is one), the password and ACL files, auth
    /// sources, `[[banned]]`, `[auth_failures]` and TLS files, and swaps them in only if
    /// everything loads (run-time bans and failure counts are kept): on any error the old
    /// configuration stays in force and the error is returned (and logged by the caller).
    /// Other changed keys need a restart and are reported as such.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let config = match &self.config_path {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None => self.config.clone(),
        };
        let origin = self
            .config_path
            .as_ref()
            .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
        let auth = Auth::load(&config.auth_settings(), &config.base_dir())
            .map_err(|e| format!("{origin}: {e}"))?
            .with_hash_pool(self.hash_pool.clone());
        if config.listeners.len() != self.acceptors.len() {
            return Err("the number of [[listener]] tables changed: that needs a restart; nothing was reloaded".into());
        }
        // Build every listener's new TLS state first; swap nothing unless all of them load.
        let mut fresh = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let settings = l.transport_settings(Some(&config.base_dir()), config.max_packet_size);
            Acceptor::new(&settings)
                .map_err(|e| format!("{origin}: listener[{i}] ({}): {e}", l.bind))?;
            fresh.push(settings);
        }
        for (acceptor, settings) in self.acceptors.iter().zip(&fresh) {
            acceptor.reload(settings).map_err(|e| e.to_string())?;
        }
        self.auth.store(Arc::new(auth));
        self.banned.replace_config(&config.banned);
        self.throttle.configure(config.throttle_settings());
        let mut same = config.clone();
        same.allow_anonymous = self.config.allow_anonymous;
        same.password_file.clone_from(&self.config.password_file);
        same.acl_file.clone_from(&self.config.acl_file);
        same.auth.clone_from(&self.config.auth);
        same.listeners.clone_from(&self.config.listeners);
        same.banned.clone_from(&self.config.banned);
        same.auth_failures.clone_from(&self.config.auth_failures);
        if same != self.config {
            warn!(
                "configuration reloaded: access control, bans and TLS files applied; other changed keys need a restart"
            );
        } else {
            info!("configuration reloaded: access control, bans and TLS files applied");
        }
        Ok(())
    }

    /// Puts back what the store recovered: retained messages, and persistent sessions as offline
    /// sessions with their subscriptions and queue positions. Expiry keeps counting across the
    /// restart (wall-clock disconnect time + session expiry; a session that was online when the
    /// broker stopped counts from now). Returns the expiry timers to arm.
    fn recover(self: &Arc<Self>, r: crate::store::Recovered) -> Recovery {
        let Some(p) = self.router.persistence.clone() else {
            return Recovery::default();
        };
        let now = Instant::now();
        let now_ms = crate::persist::unix_ms_now();
        let mut drop_ops = Vec::new();
        for (topic, rec) in &r.retained {
            let m = crate::persist::message_from_record(rec, now, now_ms);
            if m.is_expired(now) {
                drop_ops.push(crate::store::Op::DeleteRetained(topic.clone()));
            } else {
                self.router.restore_retained(Arc::new(m));
            }
        }
        let mut inflight_in: std::collections::HashMap<&str, Vec<u16>> =
            std::collections::HashMap::new();
        for (cid, pid) in &r.inflight_in {
            inflight_in.entry(cid.as_str()).or_default().push(*pid);
        }
        let mut expiring = Vec::new();
        let mut wills = Vec::new();
        let mut restored = 0usize;
        for (cid, rec) in &r.sessions {
            let client_id: ClientId = cid.as_str().into();
            let expiry = rec.expiry.map(|s| Duration::from_secs(u64::from(s)));
            let offline_for = rec.disconnected_at_unix_ms.map_or(Duration::ZERO, |t| {
                Duration::from_millis(now_ms.saturating_sub(t))
            });
            let remaining = expiry.map(|e| e.saturating_sub(offline_for));
            if remaining == Some(Duration::ZERO) {
                if let (Some(w), Some(_)) = (&rec.will, rec.disconnected_at_unix_ms) {
                    // The session ended while the broker was down: its pending will is due.
                    let message = crate::persist::will_message(w, &client_id, now);
                    self.publish_will(Will::restored(message, &client_id, &rec.owner));
                }
                drop_ops.extend(crate::persist::delete_session(&client_id));
                continue;
            }
            let mut session = self.new_session(client_id.clone());
            session.expiry = expiry;
            session.owner = rec.owner.clone();
            session
                .handle
                .set_reader(identity_of(&rec.owner, &client_id));
            session.handle.set_online(false);
            match r.queues.get(cid) {
                Some(q) => session.handle.restore_queue(q.next_seq, q.first_seq),
                None => session.handle.set_durable(true),
            }
            for sub in &rec.subscriptions {
                let entry = crate::persist::subscription_from_record(sub);
                self.router
                    .subscribe(&sub.filter, session.handle.clone(), entry.options, entry.id);
                session.subscriptions.insert(sub.filter.clone(), entry);
            }
            if let Some(pids) = inflight_in.get(cid.as_str()) {
                session.inflight_in.extend(pids.iter().copied());
            }
            let generation = self.next_connection_id();
            if let (Some(w), Some(_)) = (&rec.will, rec.disconnected_at_unix_ms) {
                // A will that was waiting for its delay when the broker stopped: still published
                // once the rest of the delay (bounded by the session's remaining life) passes.
                let delay =
                    Duration::from_secs(u64::from(w.delay_secs)).saturating_sub(offline_for);
                let delay = remaining.map_or(delay, |r| delay.min(r));
                let mut clear = rec.clone();
                clear.will = None;
                wills.push((
                    client_id.clone(),
                    generation,
                    Will::restored(
                        crate::persist::will_message(w, &client_id, now),
                        &client_id,
                        &rec.owner,
                    ),
                    delay,
                    clear,
                ));
            }
            self.registry.restore(session, generation);
            if let Some(d) = remaining {
                expiring.push((client_id, generation, d));
            }
            restored += 1;
        }
        p.submit_detached(drop_ops);
        if restored > 0 || !r.retained.is_empty() {
            info!(
                sessions = restored,
                retained = self.router.retained_count(),
                "restored from the store"
            );
        }
        Recovery { expiring, wills }
    }

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
                if let (Some(rec), Some(p)) = (clear, &shared.router.persistence)
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
    /// force now (checked at CONNECT too; a reload may have changed them since).
    pub(crate) fn publish_will(&self, will: Will) {
        let topic = &will.message.topic;
        if !self
            .auth
            .load()
            .authorize(&will.publisher, Action::Publish(topic))
        {
            info!(client_id = %will.publisher.client_id, %topic, "will not published: denied by the ACL now in force");
            return;
        }
        Metrics::incr(&self.metrics.messages_received);
        // Wills have no publisher left to slow down or acknowledge: busy mailboxes and the store
        // commit are not waited for.
        let mut sink = crate::router::PublishSink::default();
        let auth = self.auth.load();
        self.router.publish(
            Arc::new(will.message),
            self.config.retain_available,
            auth.filters_receive().then_some(&**auth),
            &mut sink,
        );
    }
}

/// A broker with its listeners bound (so their addresses are known before `run`).
#[derive(Debug)]
pub struct Broker {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    /// Restored offline sessions whose expiry timers start with `run`.
    recovery: Recovery,
}

impl Broker {
    /// Validates the configuration and binds every listener.
    ///
    /// # Errors
    /// Invalid configuration, or an address that cannot be bound.
    pub async fn bind(config: Config) -> Result<Self, BrokerError> {
        Self::bind_with_path(config, None).await
    }

    /// As [`Broker::bind`], remembering the configuration file so that [`Reloader::reload`]
    /// (and SIGHUP in `hermod serve`) re-reads it.
    ///
    /// # Errors
    /// Invalid configuration, unusable auth or TLS files, or an address that cannot be bound.
    pub async fn bind_with_path(
        config: Config,
        config_path: Option<std::path::PathBuf>,
    ) -> Result<Self, BrokerError> {
        let origin = config_path
            .as_ref()
            .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
        config.validate(&origin)?;
        let throttle = Arc::new(crate::auth::Throttle::new(config.throttle_settings()));
        let hash_pool = Arc::new(crate::auth::HashPool::new(
            crate::auth::hash_pool::default_threads(),
            Some(throttle.clone()),
        ));
        let auth = Auth::load(&config.auth_settings(), &config.base_dir())
            .map_err(|source| BrokerError::Auth {
                origin: origin.clone(),
                source,
            })?
            .with_hash_pool(hash_pool.clone());
        let mut acceptors = Vec::new();
        for (index, l) in config.listeners.iter().enumerate() {
            let settings = l.transport_settings(Some(&config.base_dir()), config.max_packet_size);
            let acceptor = Acceptor::new(&settings).map_err(|source| BrokerError::Transport {
                origin: origin.clone(),
                index,
                bind: l.bind.clone(),
                source,
            })?;
            acceptors.push(Arc::new(acceptor));
        }
        let mut listeners = Vec::new();
        for (index, l) in config.listeners.iter().enumerate() {
            let listener =
                TcpListener::bind(&l.bind)
                    .await
                    .map_err(|source| BrokerError::Bind {
                        origin: origin.clone(),
                        index,
                        bind: l.bind.clone(),
                        source,
                    })?;
            listeners.push(listener);
        }
        let metrics = Arc::new(Metrics::default());
        let (persistence, recovered) = match config.store_config() {
            Some(sc) => {
                let (store, recovered) =
                    crate::store::Store::open(&sc).map_err(|source| BrokerError::Store {
                        origin: origin.clone(),
                        source,
                    })?;
                info!(file = %store.file().display(), sync = ?sc.sync, sessions = recovered.sessions.len(),
                      retained = recovered.retained.len(), "store opened");
                let next = recovered.next_message_id;
                (
                    Some(Arc::new({
                        let mut p = crate::persist::Persistence::new(store, next);
                        p.max_disk_bytes = config.store.max_disk_bytes;
                        p
                    })),
                    Some(recovered),
                )
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            auth: ArcSwap::from_pointee(auth),
            hash_pool,
            throttle,
            banned: crate::banned::Banned::new(&config.banned),
            acceptors,
            config_path,
            router: Router::new(metrics.clone(), persistence),
            registry: Registry::default(),
            metrics,
            shutdown: CancellationToken::new(),
            next_connection: AtomicU64::new(0),
            config,
        });
        let recovery = match recovered {
            Some(r) => shared.recover(r),
            None => Recovery::default(),
        };
        Ok(Self {
            shared,
            listeners,
            recovery,
        })
    }

    /// Address of the first listener.
    ///
    /// # Panics
    /// Never: `bind` refuses a configuration without listeners.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0]
    }

    /// Addresses of all listeners, in configuration order.
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .map(|l| {
                l.local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
            })
            .collect()
    }

    /// A handle that reloads access control and TLS files while the broker runs.
    #[must_use]
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Counters, shared with the running broker.
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// Runs until `shutdown` resolves, then stops accepting, sends v5 clients DISCONNECT 0x8B,
    /// publishes no wills for them, and returns once every connection task has finished.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        for (client_id, generation, message, delay, clear) in self.recovery.wills {
            self.shared
                .schedule_will(&client_id, generation, message, delay, Some(clear));
        }
        for (client_id, generation, after) in self.recovery.expiring {
            self.shared.arm_expiry(client_id, generation, after);
        }
        let tracker = TaskTracker::new();
        for (i, (listener, cfg)) in self
            .listeners
            .into_iter()
            .zip(self.shared.config.listeners.clone())
            .enumerate()
        {
            let shared = self.shared.clone();
            let t = tracker.clone();
            let name = cfg.name.clone().unwrap_or_else(|| cfg.bind.clone());
            let acceptor = self.shared.acceptors[i].clone();
            tracker.spawn(accept_loop(
                listener,
                name,
                acceptor,
                shared,
                t,
                cfg.max_connections,
            ));
        }
        shutdown.await;
        info!("shutting down: closing listeners and connections");
        self.shared.shutdown.cancel();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close within 10 s");
        }
        if let Some(p) = &self.shared.router.persistence {
            // Everything submitted so far (session records of the connections just closed) is
            // committed once this barrier resolves.
            if let Err(e) = p.store.submit(Vec::new()).await {
                warn!(error = %e, "store: final commit failed");
            }
        }
    }
}

/// Reloads access control and TLS files of a running broker (SIGHUP in `hermod serve`).
#[derive(Debug, Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    /// Re-reads the config file, password and ACL files, auth sources and TLS files; swaps them
    /// in atomically, or keeps the old ones (and returns the error) if anything fails to load.
    ///
    /// # Errors
    /// What failed to load, naming the file.
    pub fn reload(&self) -> Result<(), String> {
        self.shared.reload()
    }
}

/// Counts the open connections of one listener, for its own `max_connections`.
struct ListenerSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    name: String,
    acceptor: Arc<Acceptor>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    listener_max: Option<usize>,
) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let local = listener.local_addr().ok();
    info!(listener = %name, addr = ?local, "listening");
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                if Metrics::get(&shared.metrics.connections) >= shared.config.max_connections as u64
                {
                    Metrics::incr(&shared.metrics.connections_refused);
                    debug!(%peer, "max_connections reached: connection closed");
                    drop(stream);
                    continue;
                }
                if listener_max.is_some_and(|max| open.load(Ordering::Relaxed) >= max) {
                    Metrics::incr(&shared.metrics.connections_refused);
                    debug!(%peer, listener = %name, "listener max_connections reached: connection closed");
                    drop(stream);
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let slot = ListenerSlot(open.clone());
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let acceptor = acceptor.clone();
                // TLS / WebSocket / PROXY handshakes run in the connection's own task, with a
                // timeout, never in the accept loop.
                tracker.spawn(async move {
                    let _counted = crate::connection::Counted::new(shared.metrics.clone());
                    let _slot = slot;
                    match acceptor.accept(stream, peer).await {
                        Ok((stream, info)) => crate::connection::run(stream, info, shared).await,
                        // A refused TLS handshake (bad client certificate...) is a warning,
                        // at most one line a second per listener (`suppressed`: how many
                        // were not logged since the previous line); `listener_addr` is the
                        // `addr` of the listener's "listening" line.
                        Err(e) if e.is_tls_refusal() => {
                            match acceptor.refusal_log().admit(Instant::now()) {
                                Some(suppressed) => warn!(
                                    %peer, listener_addr = ?local, error = %e, suppressed,
                                    "TLS handshake refused"
                                ),
                                None => debug!(%peer, error = %e, "TLS handshake refused"),
                            }
                        }
                        Err(e) => debug!(%peer, error = %e, "transport handshake failed"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, log at most once a second,
                // keep serving existing clients.
                Metrics::incr(&shared.metrics.connections_refused);
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(listener = %name, error = %e, "accept failed; backing off");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
