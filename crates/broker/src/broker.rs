//! `Broker`: binds the listeners, accepts connections, and runs until shutdown; the state the
//! connections share is [`crate::shared`].

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

use crate::auth::Auth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::session::registry::Registry;
use crate::shared::{Recovery, Shared};
use crate::transport::Acceptor;

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
        let events = Arc::new(crate::api::EventBus::default());
        let listener_names = config
            .listeners
            .iter()
            .map(|l| l.name.clone().unwrap_or_else(|| l.bind.clone()))
            .collect();
        let metrics = Arc::new(Metrics::new(listener_names, events.clone()));
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
        if let Some(p) = &persistence {
            let m = metrics.clone();
            p.store.on_health_change(move |ok| {
                m.store_available.store(u64::from(ok), Ordering::Relaxed);
            });
            let m = metrics.clone();
            p.store.on_commit(move |d| m.store_commit(d));
        }
        let shared = Arc::new(Shared {
            auth: ArcSwap::from_pointee(auth),
            hash_pool,
            throttle,
            banned: crate::banned::Banned::new(&config.banned),
            acceptors,
            config_path,
            router: Router::new(metrics.clone()),
            persistence,
            registry: Registry::default(),
            metrics,
            shutdown: CancellationToken::new(),
            next_connection: AtomicU64::new(0),
            events,
            metrics_sources: crate::api::MetricsSources::default(),
            kv: Arc::default(),
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

    /// The API for other crates (admin, rules, cluster): events, queries, commands.
    #[must_use]
    pub fn handle(&self) -> crate::api::BrokerHandle {
        crate::api::BrokerHandle::new(self.shared.clone())
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
        let sys_interval = self.shared.config.sys_interval;
        if sys_interval > 0 {
            tracker.spawn(crate::sys::run(
                crate::api::BrokerHandle::new(self.shared.clone()),
                Duration::from_secs(sys_interval),
            ));
        }
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
                i,
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
        if let Some(p) = &self.shared.persistence {
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

/// Options of an accepted TCP socket that come from the configuration (`set_tcp_nodelay`).
/// Failing to set one is harmless (the socket keeps the kernel's default), so it is not an error.
fn set_socket_options(stream: &tokio::net::TcpStream, config: &Config) {
    if let Err(e) = stream.set_nodelay(config.set_tcp_nodelay) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
}

async fn accept_loop(
    listener: TcpListener,
    index: usize,
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
                    shared.metrics.connection_refused();
                    debug!(%peer, "max_connections reached: connection closed");
                    drop(stream);
                    continue;
                }
                if listener_max.is_some_and(|max| open.load(Ordering::Relaxed) >= max) {
                    shared.metrics.connection_refused();
                    debug!(%peer, listener = %name, "listener max_connections reached: connection closed");
                    drop(stream);
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let slot = ListenerSlot(open.clone());
                set_socket_options(&stream, &shared.config);
                let shared = shared.clone();
                let acceptor = acceptor.clone();
                // TLS / WebSocket / PROXY handshakes run in the connection's own task, with a
                // timeout, never in the accept loop. Boxed: the handshake's state (TLS,
                // WebSocket) and what only it needs (the addresses for its log line) are freed
                // once it is done instead of sizing every connection's task for the rest of its
                // life.
                let handshake = Box::pin(async move {
                    match acceptor.accept(stream, peer).await {
                        Ok(accepted) => Some(accepted),
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
                            None
                        }
                        Err(e) => {
                            debug!(%peer, error = %e, "transport handshake failed");
                            None
                        }
                    }
                });
                tracker.spawn(async move {
                    let _counted = crate::metrics::CountedConnection::new(shared.metrics.clone());
                    let _slot = slot;
                    // Not `if let`: its scrutinee (the stream and `PeerInfo`, 128 bytes) would
                    // live in the task for as long as the connection.
                    let Some((stream, info)) = handshake.await else {
                        return;
                    };
                    crate::connection::run(stream, info, index, shared).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, log at most once a second,
                // keep serving existing clients.
                shared.metrics.connection_refused();
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(listener = %name, error = %e, "accept failed; backing off");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    /// `set_tcp_nodelay` reaches the accepted socket, both ways (Mosquitto's option; Hermod's
    /// default is on).
    #[tokio::test]
    async fn set_tcp_nodelay_is_applied_to_accepted_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert!(Config::default().set_tcp_nodelay);
        for nodelay in [false, true, false] {
            let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(!nodelay).expect("preset");
            let config = Config {
                set_tcp_nodelay: nodelay,
                ..Config::default()
            };
            set_socket_options(&stream, &config);
            assert_eq!(stream.nodelay().expect("get"), nodelay);
        }
    }
}
