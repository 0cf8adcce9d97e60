//! The rule runtime: connectors started from `[[connector]]`, and one task per `[[rule]]`.
//!
//! Each rule is an internal client of the broker (`BrokerHandle::connect_internal`) with a
//! persistent session `$hermod/rule/<name>` subscribed at QoS 1 to the rule's FROM topics.
//! So the broker treats a rule as any subscriber — same routing, same bounded mailbox, same
//! store — and a message waits in the rule's session, on disk when the store is on, until
//! every action of the rule has written it (see `task.rs`). That is the "buffer on disk while
//! a sink is away": the store's queue, bounded by the rule's `max_buffered` (`on_full`).
//! Events (`$events/...`) come from the broker's event stream: best effort, not stored.
//!
//! What runs is seen, read-only, through a [`RulesView`] (`view.rs`: each rule's SQL, FROM and
//! counters, each bridge's remote, topic lines and counters), which the admin API is given and
//! from which `/metrics` is written (`prometheus.rs`).

mod actions;
mod input;
mod prometheus;
mod stats;
mod task;
mod view;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hermod_broker::api::{BrokerHandle, InternalOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{ConnectorConfig, ConnectorKind, RulesConfig};
use crate::sink::http::{HttpOptions, HttpSink};
use crate::sink::postgres::{PgOptions, PostgresSink};
use crate::sink::{SinkOptions, SqliteSink};
use actions::{Action, Sink};
use stats::{ActionCounters, RuleCounters};
pub use stats::{ActionStats, RuleStats};
use task::RuleTask;
use view::{BridgeEntry, RuleEntry};
pub use view::{BridgeInfo, RuleInfo, RulesView};

/// Why the rules could not start: a connector that cannot be opened, or a bridge whose TLS
/// files cannot be used; named.
#[derive(Debug, thiserror::Error)]
#[error("{name:?}: {message}")]
pub struct RulesError {
    pub name: String,
    pub message: String,
}

/// The running rules. Dropping it stops nothing: call [`Rules::shutdown`].
pub struct Rules {
    view: RulesView,
    tasks: Vec<JoinHandle<()>>,
    bridges: Vec<crate::bridge::Bridge>,
    sinks: Vec<Sink>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Rules {
    /// Opens the connectors (a SQLite file, an HTTP client; a PostgreSQL pool connects in the
    /// background) and starts every rule. Call from within the broker's runtime.
    ///
    /// # Errors
    /// A connector that cannot start: a SQLite file that cannot be opened or whose `init`
    /// fails, an invalid URL, an unreadable CA file.
    pub async fn start(handle: BrokerHandle, config: &RulesConfig) -> Result<Rules, RulesError> {
        let mut sinks = Vec::new();
        for c in &config.connectors {
            sinks.push((c.name.clone(), open(c).await?));
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut rules = Vec::new();
        let mut tasks = Vec::new();
        for r in &config.rules {
            let actions: Vec<Action> = r
                .actions
                .iter()
                .map(|a| {
                    let sink = match a {
                        crate::config::ActionKind::Sql { connector, .. }
                        | crate::config::ActionKind::Http { connector, .. } => sinks
                            .iter()
                            .find(|(n, _)| n == connector)
                            .map(|(_, s)| s.clone()),
                        crate::config::ActionKind::Republish { .. } => None,
                    };
                    Action::new(a.clone(), sink)
                })
                .collect();
            let counters = Arc::new(RuleCounters {
                actions: actions
                    .iter()
                    .map(|a| ActionCounters {
                        target: a.target(),
                        ..ActionCounters::default()
                    })
                    .collect(),
                ..RuleCounters::default()
            });
            let t = RuleTask {
                name: Arc::from(r.name.as_str()),
                rule: r.rule.clone(),
                actions,
                counters: counters.clone(),
                handle: handle.clone(),
                options: InternalOptions {
                    max_queued_messages: r.max_buffered,
                    max_queued_bytes: r.max_buffer_bytes,
                    drop_oldest: r.drop_oldest,
                },
                stop: stop_rx.clone(),
                durable: r.durable,
            };
            rules.push(RuleEntry::new(r, counters));
            tasks.push(tokio::spawn(t.run()));
        }
        if !rules.is_empty() {
            info!(
                rules = rules.len(),
                connectors = sinks.len(),
                "rules started"
            );
        }
        let mut bridges = Vec::new();
        for b in &config.bridges {
            match crate::bridge::start(handle.clone(), b.clone(), &config.base_dir) {
                Ok(b) => bridges.push(b),
                Err(e) => {
                    let _ = stop.send(true);
                    for b in bridges {
                        b.shutdown().await;
                    }
                    return Err(RulesError {
                        name: b.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        // `bridges` holds one bridge per `config.bridges`, in order (any failure returned above).
        let bridge_entries = config
            .bridges
            .iter()
            .zip(&bridges)
            .map(|(c, b)| BridgeEntry::new(c, b.handle()))
            .collect();
        Ok(Rules {
            view: RulesView {
                handle: handle.downgrade(),
                rules: Arc::new(rules),
                bridges: Arc::new(bridge_entries),
            },
            tasks,
            bridges,
            sinks: sinks.into_iter().map(|(_, s)| s).collect(),
            stop,
        })
    }

    /// Every rule's counters, with what waits in its session.
    #[must_use]
    pub fn stats(&self) -> Vec<RuleStats> {
        self.view.rules()
    }

    /// A read-only view of the rules and bridges (what each is, its counters), for the admin
    /// API; it stays valid after [`Rules::shutdown`] (the counters stop moving).
    #[must_use]
    pub fn view(&self) -> RulesView {
        self.view.clone()
    }

    /// The counters as Prometheus text (`hermod_rule_*`).
    #[must_use]
    pub fn prometheus_text(&self) -> String {
        self.view.prometheus_text()
    }

    /// The counters for `/metrics`: give it to `BrokerHandle::add_metrics_source`.
    #[must_use]
    pub fn metrics_source(&self) -> hermod_broker::api::MetricsSource {
        let view = self.view.clone();
        Arc::new(move || view.prometheus_text())
    }

    /// Stops the rules (each disconnects; what was not acknowledged stays in its session for
    /// the next start) and closes the connectors, writing what they hold.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for b in self.bridges {
            b.shutdown().await;
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        for s in self.sinks {
            match s {
                Sink::Sqlite(s) => {
                    let _ = tokio::task::spawn_blocking(move || s.close()).await;
                }
                Sink::Postgres(p) => {
                    let _ =
                        tokio::task::spawn_blocking(move || p.get().map(PostgresSink::close)).await;
                }
                Sink::Http(h) => {
                    let _ = h.close().await;
                }
            }
        }
    }
}

/// Starts one connector.
async fn open(c: &ConnectorConfig) -> Result<Sink, RulesError> {
    let err = |message: String| RulesError {
        name: c.name.clone(),
        message,
    };
    match c.kind {
        ConnectorKind::Sqlite => {
            let path = c.path.clone().ok_or_else(|| err("no path".into()))?;
            let options = SinkOptions {
                batch_size: c.batch_size,
                batch_time: c.batch_time,
                queue: c.queue,
                init: c.init.clone(),
                ..SinkOptions::default()
            };
            let sink = tokio::task::spawn_blocking(move || SqliteSink::open(path, options))
                .await
                .map_err(|e| err(e.to_string()))?
                .map_err(|e| err(e.to_string()))?;
            Ok(Sink::Sqlite(Arc::new(sink)))
        }
        ConnectorKind::Postgres => {
            let url = c.url.clone().ok_or_else(|| err("no url".into()))?;
            let options = PgOptions {
                pool_size: c.pool_size,
                batch_size: c.batch_size,
                batch_time: c.batch_time,
                queue: c.queue,
                init: c.init.clone(),
                ..PgOptions::default()
            };
            // A URL that cannot be parsed is a start-up error; a server that is down is not.
            if let Err(e) = url.parse::<tokio_postgres::Config>() {
                return Err(err(format!("invalid url: {e}")));
            }
            let cell = Arc::new(OnceLock::new());
            let slot = cell.clone();
            let name = c.name.clone();
            std::thread::Builder::new()
                .name("hermod-pg-connect".into())
                .spawn(move || {
                    let mut wait = Duration::from_millis(500);
                    loop {
                        match PostgresSink::open(&url, options.clone()) {
                            Ok(s) => {
                                info!(connector = %name, "postgres connected");
                                let _ = slot.set(s);
                                return;
                            }
                            Err(e) => {
                                warn!(connector = %name, "postgres not reachable, retrying in {wait:?}: {e}");
                                std::thread::sleep(wait);
                                wait = (wait * 2).min(Duration::from_secs(10));
                            }
                        }
                        if Arc::strong_count(&slot) == 1 {
                            return; // the rules were shut down
                        }
                    }
                })
                .map_err(|e| err(e.to_string()))?;
            Ok(Sink::Postgres(cell))
        }
        ConnectorKind::Http => {
            let options = HttpOptions {
                url: c.url.clone().unwrap_or_default(),
                method: c.method,
                headers: c.headers.clone(),
                timeout: c.timeout,
                max_inflight: c.max_inflight,
                queue: c.queue,
                ca_file: c.cafile.clone(),
                ..HttpOptions::default()
            };
            let sink = HttpSink::start(options, &tokio::runtime::Handle::current())
                .map_err(|e| err(e.to_string()))?;
            Ok(Sink::Http(Arc::new(sink)))
        }
    }
}
