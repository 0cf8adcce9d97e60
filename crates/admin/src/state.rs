//! What every handler gets: the broker handle and the admin API's own state. Cheap to clone
//! (one `Arc`).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use hermod_broker::api::BrokerHandle;
use hermod_broker::banned::BanRule;
use hermod_rules::runtime::RulesView;

use crate::accounts::AccountStore;
use crate::auth::{Throttle, Tokens};
use crate::monitor::Monitor;

/// Who added a run-time ban and why (the broker's ban list keeps only rule and end).
#[derive(Debug, Clone, Default)]
pub(crate) struct BanNote {
    pub(crate) by: String,
    pub(crate) reason: String,
    /// Unix seconds.
    pub(crate) at: i64,
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) handle: BrokerHandle,
    pub(crate) accounts: AccountStore,
    pub(crate) tokens: Tokens,
    pub(crate) throttle: Throttle,
    pub(crate) monitor: Monitor,
    /// The node name in answers (`hermod@<host>`), as EMQX's `node` fields.
    pub(crate) node: String,
    pub(crate) started: Instant,
    pub(crate) max_topic_levels: usize,
    pub(crate) max_packet_size: usize,
    /// Cancelled when the server shuts down (`/status` answers 503 from then on).
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// The running rules and bridges, when the caller gave them ([`crate::Services`]).
    pub(crate) rules: Option<RulesView>,
    pub(crate) shadows: Option<hermod_shadow::service::ShadowClient>,
    /// This node's view of the cluster (`GET /api/v5/cluster`), when clustered.
    pub(crate) cluster: Option<hermod_cluster::ClusterView>,
    bans: Mutex<HashMap<BanRule, BanNote>>,
}

/// [`Inner`] behind an `Arc`, as axum state.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The parts [`AppState::new`] is built from.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) handle: BrokerHandle,
    pub(crate) accounts: AccountStore,
    pub(crate) tokens: Tokens,
    pub(crate) monitor: Monitor,
    pub(crate) max_topic_levels: usize,
    pub(crate) max_packet_size: usize,
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    pub(crate) rules: Option<RulesView>,
    pub(crate) shadows: Option<hermod_shadow::service::ShadowClient>,
    pub(crate) cluster: Option<hermod_cluster::ClusterView>,
}

impl AppState {
    pub(crate) fn new(p: Parts) -> Self {
        Self(Arc::new(Inner {
            handle: p.handle,
            accounts: p.accounts,
            tokens: p.tokens,
            throttle: Throttle::default(),
            monitor: p.monitor,
            node: node_name(),
            started: Instant::now(),
            max_topic_levels: p.max_topic_levels,
            max_packet_size: p.max_packet_size,
            stopping: p.stopping,
            rules: p.rules,
            shadows: p.shadows,
            cluster: p.cluster,
            bans: Mutex::new(HashMap::new()),
        }))
    }
}

impl Inner {
    pub(crate) fn ban_notes(&self) -> MutexGuard<'_, HashMap<BanRule, BanNote>> {
        self.bans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `hermod@<host name>` (from `HOSTNAME` or /etc/hostname; `localhost` otherwise).
fn node_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("hermod@{host}")
}
