//! Listeners: the admin listener (`[admin] bind`, plain HTTP or TLS with `certfile`/`keyfile`),
//! the Unix socket `<store path>/hermod.sock` for `hermod ctl` (`[admin] socket`, only with an
//! on-disk store), and the metrics listener (`[metrics] bind`, `GET /metrics` only).
//!
//! Each accepted connection is served by hyper's HTTP/1.1 server in a task of its own (a TLS
//! handshake never holds up the accept loop), with the peer recorded in the request so that
//! `auth` knows a socket request from a TCP one and can throttle per address. Connections are
//! capped ([`MAX_CONNECTIONS`] per listener), request heads must arrive within
//! [`HEADER_TIMEOUT`], and on shutdown every connection finishes its request in flight (bounded
//! by [`SHUTDOWN_WAIT`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hermod_broker::Config;
use hermod_broker::api::BrokerHandle;
use hermod_rules::runtime::RulesView;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use crate::accounts::AccountStore;
use crate::auth::{Peer, Tokens};
use crate::monitor::Monitor;
use crate::state::{AppState, Parts};

/// Open connections per listener; more are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time to send a request head (and to finish a TLS handshake).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The socket's name in the store folder.
pub const SOCKET_NAME: &str = "hermod.sock";

/// Why the admin server could not start. The message names the config key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// A listener could not be bound.
    #[error("{key} `{bind}`: cannot listen: {source}")]
    Bind {
        /// `admin.bind` or `metrics.bind`.
        key: &'static str,
        bind: String,
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("admin.{key} {}: {message}", path.display())]
    Tls {
        /// `certfile` or `keyfile`.
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    /// The Unix socket could not be created.
    #[error("admin.socket {}: {source}", path.display())]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The admin users file is unreadable or cannot be written.
    #[error("admin users: {0}")]
    Accounts(String),
}

/// The running admin server. Stops on [`AdminServer::shutdown`] (or, without waiting, when
/// dropped).
#[derive(Debug)]
pub struct AdminServer {
    local_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    socket_path: Option<PathBuf>,
    tls: bool,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl AdminServer {
    /// The admin listener's address (`None` when `[admin] enabled = false`).
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The metrics listener's address, if `[metrics] bind` is set.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The Unix socket, if served.
    #[must_use]
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket_path.as_deref()
    }

    /// `http://addr` or `https://addr`, for the log.
    #[must_use]
    pub fn url(&self) -> Option<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.local_addr.map(|a| format!("{scheme}://{a}"))
    }

    /// A token that stops the server when cancelled (e.g. from the broker's shutdown future).
    #[must_use]
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops accepting, lets requests in flight finish (at most [`SHUTDOWN_WAIT`]), removes
    /// the socket file.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_WAIT + Duration::from_secs(1), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("admin API: some connections did not close in time");
        }
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the admin API can show besides the broker, given by whoever started those parts (the
/// broker crate does not know them). Each is optional: what is missing answers as empty.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// The running rules and bridges (`GET /api/v5/rules`, `/api/v5/bridges`).
    pub rules: Option<RulesView>,
    /// The shadow service, for `PUT`/`DELETE /api/v5/things/{thing}/shadow`.
    pub shadows: Option<hermod_shadow::service::ShadowClient>,
    /// This node's view of the cluster (`GET /api/v5/cluster`), when `[cluster]` is set.
    pub cluster: Option<hermod_cluster::ClusterView>,
}

/// Starts the admin API for `handle` as `config`'s `[admin]` and `[metrics]` say, with no
/// [`Services`] (no rules, no bridges): [`start_with`] with the default.
///
/// # Errors
/// As [`start_with`].
pub async fn start(handle: BrokerHandle, config: &Config) -> Result<AdminServer, AdminError> {
    start_with(handle, config, Services::default()).await
}

/// Starts the admin API for `handle` as `config`'s `[admin]` and `[metrics]` say, showing
/// `services` too.
///
/// # Errors
/// A listener that cannot be bound (the error names `admin.bind` or `metrics.bind`), unusable
/// TLS files, an unreadable admin users file, a socket that cannot be created.
pub async fn start_with(
    handle: BrokerHandle,
    config: &Config,
    services: Services,
) -> Result<AdminServer, AdminError> {
    let admin = &config.admin;
    let store_dir = config.store_config().map(|s| s.path);
    let accounts = if admin.enabled {
        AccountStore::open(store_dir.as_deref())
            .await
            .map_err(AdminError::Accounts)?
    } else {
        AccountStore::empty()
    };
    let ttl = hermod_broker::config::parse_duration(&admin.token_expiry)
        .unwrap_or(Duration::from_secs(3600));
    let stop = CancellationToken::new();
    let state = AppState::new(Parts {
        handle,
        accounts,
        tokens: Tokens::new(ttl),
        monitor: Monitor::default(),
        max_topic_levels: config.max_topic_levels,
        max_packet_size: usize::try_from(config.max_packet_size).unwrap_or(usize::MAX),
        stopping: stop.clone(),
        rules: services.rules,
        shadows: services.shadows,
        cluster: services.cluster,
    });
    let tasks = TaskTracker::new();
    let mut server = AdminServer {
        local_addr: None,
        metrics_addr: None,
        socket_path: None,
        tls: false,
        stop: stop.clone(),
        tasks: tasks.clone(),
    };
    if admin.enabled {
        let app = crate::router::router(state.clone());
        let tls = match (&admin.certfile, &admin.keyfile) {
            (Some(c), Some(k)) => {
                let base = config.base_dir();
                Some(tls_acceptor(&base.join(c), &base.join(k))?)
            }
            _ => None,
        };
        server.tls = tls.is_some();
        let listener = bind("admin.bind", &admin.bind).await?;
        server.local_addr = listener.local_addr().ok();
        tasks.spawn(accept_tcp(
            listener,
            app.clone(),
            tls,
            stop.clone(),
            tasks.clone(),
        ));
        if admin.socket
            && let Some(dir) = &store_dir
        {
            let path = dir.join(SOCKET_NAME);
            let listener = bind_socket(&path).map_err(|source| AdminError::Socket {
                path: path.clone(),
                source,
            })?;
            tasks.spawn(accept_unix(listener, app, stop.clone(), tasks.clone()));
            server.socket_path = Some(path);
        }
        tasks.spawn(Monitor::run(state.clone(), stop.clone()));
    }
    if let Some(bind_to) = &config.metrics.bind {
        let listener = bind("metrics.bind", bind_to).await?;
        server.metrics_addr = listener.local_addr().ok();
        let app = crate::router::metrics_router(state);
        tasks.spawn(accept_tcp(listener, app, None, stop.clone(), tasks.clone()));
    }
    if let Some(url) = server.url() {
        info!(url = %url, socket = ?server.socket_path, "admin API listening");
    }
    if let Some(a) = server.metrics_addr {
        info!(addr = %a, "Prometheus metrics listening on /metrics");
    }
    Ok(server)
}

async fn bind(key: &'static str, addr: &str) -> Result<TcpListener, AdminError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind {
            key,
            bind: addr.to_owned(),
            source,
        })
}

fn tls_acceptor(certfile: &Path, keyfile: &Path) -> Result<TlsAcceptor, AdminError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |key: &'static str, path: &Path, message: String| AdminError::Tls {
        key,
        path: path.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certfile)
        .map_err(|e| bad("certfile", certfile, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certfile", certfile, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            "certfile",
            certfile,
            "no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(keyfile)
        .map_err(|e| bad("keyfile", keyfile, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("certfile", certfile, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("keyfile", keyfile, e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Binds the socket under a temporary name, sets mode 0600, then renames it into place, so the
/// path never exists with a wider mode. A stale socket file (from a crash) is replaced.
#[cfg(unix)]
fn bind_socket(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket: not removing it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let tmp = path.with_file_name(format!(".{SOCKET_NAME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    Ok(listener)
}

#[cfg(not(unix))]
fn bind_socket(_: &Path) -> std::io::Result<std::convert::Infallible> {
    Err(std::io::Error::other("Unix sockets need a Unix system"))
}

async fn accept_tcp(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, addr) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    debug!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(peer = %addr, "admin API: too many connections, closing one");
            continue;
        };
        let (app, stop, tls) = (app.clone(), stop.clone(), tls.clone());
        tasks.spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_connection(stream, Peer::Tcp(addr), app, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_connection(s, Peer::Tcp(addr), app, stop).await,
                        Ok(Err(e)) => {
                            debug!(peer = %addr, error = %e, "admin API: TLS handshake failed")
                        }
                        Err(_) => debug!(peer = %addr, "admin API: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

#[cfg(unix)]
async fn accept_unix(
    listener: tokio::net::UnixListener,
    app: Router,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    debug!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (app, stop) = (app.clone(), stop.clone());
        tasks.spawn(async move {
            let _slot = slot;
            serve_connection(stream, Peer::Unix, app, stop).await;
        });
    }
}

#[cfg(not(unix))]
async fn accept_unix(_: std::convert::Infallible, _: Router, _: CancellationToken, _: TaskTracker) {
}

/// Serves HTTP/1.1 on one connection until it closes or the server stops.
async fn serve_connection<S>(io: S, peer: Peer, app: Router, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer);
        app.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(error = %e, "admin API: connection error");
            }
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, conn).await;
        }
    }
}
