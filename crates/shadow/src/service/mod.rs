//! The shadow service: the core ([`crate::Engine`]) wired to a running broker.
//!
//! - Requests (`requests.rs`): an internal MQTT 5 client `$hermod/shadow` subscribed at QoS 1 to
//!   `$hermod/things/+/shadow/+` and `.../shadow/name/+/+` (and the `$aws` ones with
//!   `aws_compat`); each request is answered by the engine, its new document committed to the
//!   broker's store ([`hermod_broker::api::KvSpace`], namespace `"shadow"`, key `{thing}` or
//!   `{thing}/name/{shadow}`, value [`crate::Shadow::to_bytes`]) before its replies go out.
//! - Presence (`presence.rs`): retained `$hermod/things/{clientid}/presence` from the broker's
//!   events, when `[presence] enabled = true`.
//!
//! Like the rules, the service is an MQTT client of the broker and not a part of it: the
//! broker routes, stores, limits and counts its messages as any client's, and the service
//! bypasses only the ACL (it answers for the broker). The ACL rule that lets a device use only
//! its own thing's shadow topics (`[shadow] access`) is the broker's.
//!
//! Deleted shadows are kept as tombstones (a few dozen bytes each) so that a shadow re-created
//! within 48 hours continues its version, as AWS's do; older ones are ignored by the engine and
//! removed from the store when the service starts.

mod config;
mod presence;
mod requests;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use hermod_broker::api::{BrokerHandle, MetricsSource};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Access, MAX_DOCUMENT_BYTES_LIMIT, ShadowConfig, ShadowConfigError, ThingType};
pub use presence::{disconnect_reason, presence_topic};
pub use requests::{Answer, ShadowClient, ShadowUnavailable, now_secs, split_store_key, store_key};

use crate::engine::Engine;
use stats::{Counters, View};

/// The namespace of the broker's durable documents that holds the shadows.
pub const KV_NAMESPACE: &str = "shadow";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// A thing model's schema does not compile.
    #[error(transparent)]
    Model(#[from] crate::ModelError),
}

/// The running service. Dropping it stops nothing: call [`ShadowService::shutdown`].
#[derive(Debug)]
pub struct ShadowService {
    view: View,
    /// Requests in process; `None` when the request task is off.
    client: Option<requests::ShadowClient>,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl ShadowService {
    /// Starts what `config` enables: the request task (`[shadow] enabled`, the default) and the
    /// presence task (`[presence] enabled`). Call from within the broker's runtime.
    ///
    /// # Errors
    /// A thing model that does not compile (already checked by [`ShadowConfig::load`]).
    pub fn start(
        handle: BrokerHandle,
        config: &ShadowConfig,
    ) -> Result<ShadowService, ShadowError> {
        let engine = Arc::new(Engine::new(config.limits.clone(), config.models()?));
        let counters = Arc::new(Counters::default());
        let kv = handle.kv(KV_NAMESPACE);
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut client = None;
        if config.enabled {
            // Bounded: a caller waits (the admin API's request) rather than queueing without end.
            let (tx, local) = tokio::sync::mpsc::channel(64);
            client = Some(requests::ShadowClient { tx });
            let task = requests::RequestTask {
                handle: handle.clone(),
                engine,
                kv: kv.clone(),
                counters: counters.clone(),
                aws_compat: config.aws_compat,
                max_pending_per_thing: config.max_pending_per_thing,
                max_shadows_per_thing: config.max_shadows_per_thing,
                max_shadows: config.max_shadows,
                stop: stop_rx.clone(),
                local,
            };
            tasks.push(tokio::spawn(task.run()));
        }
        if config.presence {
            let task = presence::PresenceTask {
                // Subscribed here, so no connection after `start` returns goes unseen.
                events: handle.events(),
                handle: handle.clone(),
                counters: counters.clone(),
                stop: stop_rx,
            };
            tasks.push(tokio::spawn(task.run()));
        }
        Ok(ShadowService {
            view: View { counters, kv },
            client,
            tasks,
            stop,
        })
    }

    /// The client id of the service's internal session (`$hermod/shadow`).
    #[must_use]
    pub fn client_id() -> String {
        requests::client_id()
    }

    /// A handle for requests made in process (the admin API); `None` when `[shadow] enabled`
    /// is false.
    #[must_use]
    pub fn client(&self) -> Option<requests::ShadowClient> {
        self.client.clone()
    }

    /// Requests answered since the start (accepted or rejected).
    #[must_use]
    pub fn requests_answered(&self) -> u64 {
        self.view.counters.answered()
    }

    /// The counters as Prometheus text (`hermod_shadow_*`).
    #[must_use]
    pub fn prometheus_text(&self) -> String {
        self.view.prometheus_text()
    }

    /// The counters for `/metrics`: give it to `BrokerHandle::add_metrics_source`.
    #[must_use]
    pub fn metrics_source(&self) -> MetricsSource {
        let view = self.view.clone();
        Arc::new(move || view.prometheus_text())
    }

    /// Stops the tasks. What was committed stays; a request not answered yet is not (its
    /// client retries: see the `requests` module docs).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}
