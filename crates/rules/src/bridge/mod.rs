//! Store-and-forward bridges to other MQTT brokers (issue 12 item 4), configured as
//! Mosquitto's (`[[bridge]]` tables, Mosquitto's `topic` line syntax: see [`BridgeConfig`]).
//!
//! A bridge is two MQTT connections and a loop between them:
//! - **local**: an internal connection into this broker
//!   ([`BrokerHandle::connect_internal`]) with the persistent session `$hermod/bridge/<name>`,
//!   subscribed to the `out`/`both` patterns with No Local (what the bridge itself publishes
//!   locally is not sent back out) and Retain As Published;
//! - **remote**: a client of the remote broker (TCP or TLS, MQTT 5 or 3.1.1) with a persistent
//!   session, subscribed to the `in`/`both` patterns (No Local on MQTT 5).
//!
//! A message is acknowledged where it came from only once the other side has taken it
//! (PUBACK, or PUBREC for QoS 2), so what the remote has not taken stays in this broker's
//! store. When the link fails both connections are dropped: the local session goes offline
//! and queues (bounded by `max_queued_messages`, `on_full`); after a backoff (1 s doubling
//! to 30 s) the remote is reconnected first, then the local session, whose unacknowledged
//! messages the broker sends again, in order. `$SYS/broker/connection/<name>/state` is `1`
//! (retained) while the link is up and `0` while it is down.
//!
//! Delivery is at least once across link failures: a message the remote took but whose
//! acknowledgement was lost with the link is sent again (with its original order kept).
//! QoS 2 packet ids still owed a PUBCOMP are released with PUBREL on the next connection of
//! the same process; after a restart of this broker they are not known any more.
//!
//! Known limits: MQTT 3.1.1 has no No Local, so on a `both` line a message sent out comes back
//! in once (Mosquitto's private bridge flag is not spoken); a message matching several lines
//! is forwarded once, mapped by the first line (in config order) that maps it; bridge names
//! must be unique (two bridges with one name take each other's session over).

mod config;
mod flow;
#[cfg(test)]
mod flow_tests;
mod link;
mod tls;
mod topic;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hermod_broker::api::BrokerHandle;
use hermod_proto::QoS;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{BridgeConfig, BridgeProtocol, OnFull, Transport};
pub use topic::{Direction, TopicMap};

/// What stops a bridge from starting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// A bad field or topic line (`field` is e.g. `address` or ``topic[1] `cmd/# x 1` ``).
    #[error("bridge `{bridge}`: {field}: {message}")]
    Config {
        bridge: String,
        field: String,
        message: String,
    },
    /// A TLS file that cannot be read or used.
    #[error("bridge `{bridge}`: {}: {message}", .file.display())]
    Tls {
        bridge: String,
        file: PathBuf,
        message: String,
    },
    /// `start` was called outside a tokio runtime.
    #[error("bridge `{bridge}`: not started from within a tokio runtime")]
    NoRuntime { bridge: String },
}

/// A bridge's counters (since it started) and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Both connections up and subscribed.
    pub connected: bool,
    /// Messages the remote took (acknowledged, or sent at QoS 0).
    pub messages_out: u64,
    /// Messages the local broker took from the remote.
    pub messages_in: u64,
    /// Messages dropped by the bridge: no topic line maps them, refused by the other side,
    /// larger than its maximum packet size, or QoS 0 past the bridge's buffer.
    pub messages_dropped: u64,
    /// Times the link came up again after being down.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub failed_connects: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    connected: AtomicBool,
    messages_out: AtomicU64,
    messages_in: AtomicU64,
    messages_dropped: AtomicU64,
    reconnects: AtomicU64,
    failed_connects: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> BridgeStats {
        BridgeStats {
            connected: self.connected.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_dropped: self.messages_dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            failed_connects: self.failed_connects.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A cheap, cloneable view of a running bridge's counters.
#[derive(Debug, Clone)]
pub struct BridgeHandle {
    name: Arc<str>,
    counters: Arc<Counters>,
}

impl BridgeHandle {
    /// The bridge's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counters and state now.
    #[must_use]
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }
}

/// A running bridge (its task runs on the tokio runtime it was started on). Dropping it stops
/// the bridge as [`Bridge::shutdown`] does, without waiting.
#[derive(Debug)]
pub struct Bridge {
    handle: BridgeHandle,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// How long [`Bridge::shutdown`] waits for the DISCONNECTs to go out.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

impl Bridge {
    /// The bridge's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The counters and state now.
    #[must_use]
    pub fn stats(&self) -> BridgeStats {
        self.handle.stats()
    }

    /// A handle on the counters that outlives borrows of the bridge.
    #[must_use]
    pub fn handle(&self) -> BridgeHandle {
        self.handle.clone()
    }

    /// Stops the bridge: DISCONNECT to both sides (messages the remote has not acknowledged
    /// stay in the local session, for the next start), state `0`.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_WAIT, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Starts a bridge on the current tokio runtime. The config is validated and the TLS files
/// (relative to `base_dir`, the config file's folder) are read now; connecting is left to
/// the bridge's task, which retries for ever.
///
/// # Errors
/// A bad config or TLS file, naming the bridge and the field or file; no tokio runtime.
pub fn start(
    handle: BrokerHandle,
    config: BridgeConfig,
    base_dir: &Path,
) -> Result<Bridge, BridgeError> {
    config.validate()?;
    let maps = config.topic_maps()?;
    let dialer = tls::Dialer::new(&config, base_dir)?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| BridgeError::NoRuntime {
        bridge: config.name.clone(),
    })?;
    if config.protocol_version == BridgeProtocol::Mqttv311
        && maps.iter().any(|m| m.direction == Direction::Both)
    {
        tracing::warn!(bridge = %config.name,
            "MQTT 3.1.1 has no No Local: messages sent out on a `both` line come back in once");
    }
    let counters = Arc::new(Counters::default());
    let (stop, stop_rx) = watch::channel(false);
    let bridge_handle = BridgeHandle {
        name: config.name.as_str().into(),
        counters: counters.clone(),
    };
    let ctx = link::Ctx {
        broker: handle,
        config,
        maps,
        dialer,
        counters,
    };
    let task = runtime.spawn(supervise(ctx, stop_rx));
    Ok(Bridge {
        handle: bridge_handle,
        stop,
        task,
    })
}

/// First wait after a failure, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Keeps the link up until stopped.
async fn supervise(ctx: link::Ctx, mut stop: watch::Receiver<bool>) {
    let name = ctx.config.name.clone();
    let state_topic = format!("$SYS/broker/connection/{name}/state");
    let set_state = |up: bool| {
        ctx.counters.connected.store(up, Ordering::Relaxed);
        let payload = Bytes::from_static(if up { b"1" } else { b"0" });
        ctx.broker
            .publish(&state_topic, payload, QoS::AtMostOnce, true);
    };
    set_state(false);
    let mut carry = flow::Carry::default();
    let mut backoff = MIN_BACKOFF;
    let mut was_up = false;
    loop {
        let mut up = false;
        let end = link::run(&ctx, &mut carry, &mut stop, &mut || {
            up = true;
            if was_up {
                Counters::add(&ctx.counters.reconnects, 1);
            }
            was_up = true;
            tracing::info!(bridge = %name, address = %ctx.config.address, "bridge link up");
            set_state(true);
        })
        .await;
        match end {
            link::End::Stop => break,
            link::End::Down(why) => {
                if up {
                    backoff = MIN_BACKOFF;
                    tracing::warn!(bridge = %name, reason = %why, "bridge link down");
                    set_state(false);
                } else {
                    Counters::add(&ctx.counters.failed_connects, 1);
                    tracing::warn!(bridge = %name, reason = %why, retry_in = ?backoff,
                        "bridge cannot connect");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    set_state(false);
    tracing::info!(bridge = %name, "bridge stopped");
}
