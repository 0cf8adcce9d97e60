//! `hermod serve`: run the broker.

use std::io::IsTerminal;
use std::path::PathBuf;

use hermod_broker::{Broker, Config};
use tracing::{error, info, warn};

/// Flags of `hermod serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Port to listen on. Without `-c`: 0.0.0.0:PORT; with `-c`: replaces the port of the first listener.
    #[arg(short, long)]
    port: Option<u16>,
    /// TOML configuration file (Mosquitto's key names; see --print-default-config).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Verbose logging (debug level). RUST_LOG overrides.
    #[arg(short, long)]
    verbose: bool,
    /// Log format on stderr: `text` (coloured on a terminal, plain otherwise; NO_COLOR turns
    /// colour off) or `json` (one JSON object a line).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Keep everything in memory (`[store] sync = "memory"`): nothing is written to disk.
    #[arg(long)]
    memory: bool,
    /// Address of the admin HTTP API (replaces `[admin] bind`), e.g. 127.0.0.1:0; `off`
    /// disables it.
    #[arg(long, value_name = "ADDR")]
    admin_bind: Option<String>,
    /// Print the default configuration as TOML and exit.
    #[arg(long)]
    print_default_config: bool,
}

/// `hermod serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object a line (timestamp, level, fields).
    Json,
}

pub(crate) async fn run(args: ServeArgs) -> u8 {
    if args.print_default_config {
        print!("{}", Config::default_toml());
        return 0;
    }
    init_logging(args.verbose, args.log_format);
    // A start-up error: one line on stderr, in the log format asked for.
    let fatal = |e: &dyn std::fmt::Display| match args.log_format {
        LogFormat::Text => eprintln!("Error: {e}"),
        LogFormat::Json => error!("{e}"),
    };
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                fatal(&e);
                return 1;
            }
        },
        None => Config::default(),
    };
    // `[[connector]]` and `[[rule]]` from the same file, checked before anything starts.
    let rules_config = match &args.config {
        Some(path) => match hermod_rules::RulesConfig::load(path) {
            Ok(r) => r,
            Err(e) => {
                fatal(&e);
                return 1;
            }
        },
        None => hermod_rules::RulesConfig::default(),
    };
    // `[shadow]`, `[[thing_type]]` (and their schemas) and `[presence]`, likewise.
    let shadow_config = match &args.config {
        Some(path) => match hermod_shadow::ShadowConfig::load(path) {
            Ok(s) => s,
            Err(e) => {
                fatal(&e);
                return 1;
            }
        },
        None => hermod_shadow::ShadowConfig::default(),
    };
    // `[cluster]`, likewise: absent, this node is alone, exactly as without it.
    let cluster_config = match &args.config {
        Some(path) => match hermod_cluster::ClusterConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                fatal(&e);
                return 1;
            }
        },
        None => None,
    };
    if args.memory {
        config.store.sync = hermod_broker::config::SyncSetting::Memory;
    }
    if let Some(port) = args.port {
        match config.listeners.first_mut() {
            Some(l) => {
                let host = l
                    .bind
                    .rsplit_once(':')
                    .map_or("0.0.0.0", |(h, _)| h)
                    .to_owned();
                l.bind = format!("{host}:{port}");
            }
            None => config
                .listeners
                .push(hermod_broker::ListenerConfig::tcp(&format!(
                    "0.0.0.0:{port}"
                ))),
        }
    }
    match args.admin_bind.as_deref() {
        Some("off") => config.admin.enabled = false,
        Some(addr) => {
            config.admin.enabled = true;
            config.admin.bind = addr.to_owned();
        }
        None => {}
    }
    let has_password_source =
        config.password_file.is_some() || config.auth.http.is_some() || config.auth.jwt.is_some();
    let anonymous_open = config.allow_anonymous == Some(true)
        || (config.allow_anonymous.is_none() && !has_password_source);
    let admin_config = config.clone();
    let broker = match Broker::bind_with_path(config, args.config.clone()).await {
        Ok(b) => b,
        Err(e) => {
            fatal(&e);
            return 1;
        }
    };
    // The cluster first: it must see every subscription and publish from the start.
    let cluster = match &cluster_config {
        Some(c) => match hermod_cluster::Cluster::start(broker.handle(), c).await {
            Ok(cluster) => {
                broker.handle().add_metrics_source(cluster.metrics_source());
                Some(cluster)
            }
            Err(e) => {
                fatal(&e);
                return 1;
            }
        },
        None => None,
    };
    let rules = match hermod_rules::Rules::start(broker.handle(), &rules_config).await {
        Ok(r) => r,
        Err(e) => {
            fatal(&e);
            return 1;
        }
    };
    broker.handle().add_metrics_source(rules.metrics_source());
    let shadows = match hermod_shadow::ShadowService::start(broker.handle(), &shadow_config) {
        Ok(s) => s,
        Err(e) => {
            fatal(&e);
            return 1;
        }
    };
    broker.handle().add_metrics_source(shadows.metrics_source());
    // The admin API (and the Prometheus and `hermod ctl` listeners) share the broker's life;
    // it shows the rules and bridges through a read-only view, and sends shadow updates and
    // deletes through the shadow service's own queue.
    let services = hermod_admin::Services {
        rules: Some(rules.view()),
        shadows: shadows.client(),
        cluster: cluster.as_ref().map(hermod_cluster::Cluster::view),
    };
    let admin = match hermod_admin::start_with(broker.handle(), &admin_config, services).await {
        Ok(a) => a,
        Err(e) => {
            fatal(&e);
            return 1;
        }
    };
    // Signal handlers first, so that "started" means SIGTERM, SIGINT and SIGHUP are handled.
    let signal = shutdown_signal();
    let stop_admin = admin.stop_token();
    let shutdown = async move {
        signal.await;
        stop_admin.cancel();
    };
    spawn_reload_on_sighup(broker.reloader());
    info!(version = env!("CARGO_PKG_VERSION"), addrs = ?broker.local_addrs(), "hermod started");
    // Only once the broker is up: a start-up that fails is not followed by this warning.
    if anonymous_open {
        warn!(
            "anonymous clients are allowed and every topic is open to every client (but things' shadow topics: \
             each client its own). To lock this down, \
             run with a config file (-c) that sets `allow_anonymous = false` (password files and ACLs: see the README)"
        );
    }
    broker.run(shutdown).await;
    shadows.shutdown().await;
    rules.shutdown().await;
    if let Some(c) = cluster {
        c.shutdown().await;
    }
    admin.shutdown().await;
    info!("hermod stopped");
    0
}

/// SIGHUP re-reads the config, password, ACL and TLS files; a file that fails to load leaves the
/// old configuration in force (and is logged), never a half-applied or empty ACL.
fn spawn_reload_on_sighup(reloader: hermod_broker::broker::Reloader) {
    // Installed here, before the task runs: a SIGHUP right after start-up reloads instead of
    // killing the process (SIGHUP's default action).
    #[cfg(unix)]
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP: configuration reload disabled");
        return;
    };
    #[cfg(unix)]
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP received: reloading configuration");
            if let Err(e) = reloader.reload() {
                error!("reload failed, the previous configuration stays in force: {e}");
            }
        }
    });
    #[cfg(not(unix))]
    let _ = reloader;
}

/// Logs go to stderr (stdout stays free for `--print-default-config` and the like). Text is
/// coloured only when stderr is a terminal and `NO_COLOR` is unset or empty, so a log redirected
/// to a file or a pipe has no escape codes.
fn init_logging(verbose: bool, format: LogFormat) {
    // The NATS client's own lines ("connected successfully", "event: connected") repeat the
    // cluster's ("cluster: connected to NATS"): its warnings and errors only, unless asked.
    let default = if verbose {
        "debug,async_nats=info"
    } else {
        "info,async_nats=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            builder
                .with_ansi(std::io::stderr().is_terminal() && !no_color)
                .try_init()
        }
        LogFormat::Json => builder.with_ansi(false).json().try_init(),
    };
}

/// Resolves on SIGINT or SIGTERM.
/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives right after start-up (before `run` polls it)
/// still shuts the broker down cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let int = async {
                match int {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match term {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = int => info!("SIGINT received"),
                () = term => info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        info!("SIGINT received");
    }
}
