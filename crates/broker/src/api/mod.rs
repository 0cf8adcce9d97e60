//! The narrow API other crates (admin HTTP API, `$SYS`, rules, bridges, cluster) use to watch and
//! drive a running broker, so that they never reach into `connection/`, `router/` or `session/`.
//!
//! Three parts, all from a [`BrokerHandle`] (`Broker::handle`):
//! - **Events** ([`BrokerHandle::events`]): a broadcast stream of [`Event`]s (client connected
//!   and disconnected, message published, delivered and dropped, subscription added and
//!   removed). Nothing is built or sent until someone subscribes, so the publish path pays one
//!   relaxed atomic load; a subscriber that falls behind loses the oldest events (it sees
//!   `Lagged`), never slows the broker.
//! - **Queries**: [`BrokerHandle::clients`], [`BrokerHandle::client`],
//!   [`BrokerHandle::client_subscriptions`], [`BrokerHandle::subscriptions`],
//!   [`BrokerHandle::retained`], [`BrokerHandle::stats`], [`BrokerHandle::bans`] — snapshots,
//!   never references into the broker's state. Exact look-ups by client id are hash look-ups;
//!   listings walk their table once.
//! - **Commands**: [`BrokerHandle::kick`], [`BrokerHandle::subscribe`] /
//!   [`BrokerHandle::unsubscribe`] on behalf of a connected client, [`BrokerHandle::publish`],
//!   [`BrokerHandle::delete_retained`], [`BrokerHandle::ban`] / [`BrokerHandle::unban`].

mod backbone;
mod events;
mod internal;
mod kv;
mod prometheus;
mod types;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hermod_proto::{PublishProperties, QoS, SubscriptionOptions};
use tokio::sync::{broadcast, oneshot};

use crate::banned::{BanEntry, BanRule};
use crate::message::{ClientId, Message};
use crate::metrics::MetricsSnapshot;
use crate::session::Owner;
use crate::session::live::{Command, Live};
use crate::session::registry::SessionView;
use crate::shared::Shared;

pub use backbone::{Backbone, Claim, MovedSession, Replay, SessionState};
pub(crate) use events::EventBus;
pub use events::{DropReason, Event};
pub use internal::{
    INTERNAL_CLIENT_PREFIX, INTERNAL_USERNAME, InternalOptions, ORIGIN_CLIENT_ID, ORIGIN_PEERHOST,
    ORIGIN_SEQ, ORIGIN_USERNAME,
};
pub(crate) use internal::{add_origin_properties, is_internal_session};
pub(crate) use kv::Kv;
pub use kv::{KvError, KvSpace, MAX_KV_VALUE};
pub use types::{ClientInfo, CommandError, ConnectionInfo, RetainedInfo, Stats, SubscriptionInfo};

/// A service's metrics as Prometheus text ([`BrokerHandle::add_metrics_source`]).
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Default)]
pub(crate) struct MetricsSources(std::sync::RwLock<Vec<MetricsSource>>);

impl std::fmt::Debug for MetricsSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSources")
    }
}

/// A handle on a running broker for other crates: events, queries and commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
}

/// A [`BrokerHandle`] that does not keep the broker alive: for what the broker itself holds
/// (a metrics source), so that no reference cycle keeps its store open after it stopped.
#[derive(Debug, Clone)]
pub struct WeakBrokerHandle {
    shared: std::sync::Weak<Shared>,
}

impl WeakBrokerHandle {
    /// The handle, while the broker is still there.
    #[must_use]
    pub fn upgrade(&self) -> Option<BrokerHandle> {
        self.shared.upgrade().map(BrokerHandle::new)
    }
}

impl BrokerHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// A new subscription to the event stream (events from now on).
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Every client id with a session, online or offline, sorted by client id. One pass over
    /// the registry (a few pointer copies per session under its lock), then a sort.
    #[must_use]
    pub fn clients(&self) -> Vec<ClientInfo> {
        let mut v: Vec<ClientInfo> = self
            .shared
            .registry
            .list()
            .into_iter()
            .map(client_info)
            .collect();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        v
    }

    /// One client id's session (a hash look-up).
    #[must_use]
    pub fn client(&self, client_id: &str) -> Option<ClientInfo> {
        self.shared.registry.get(client_id).map(client_info)
    }

    /// One client's subscriptions, sorted by filter; `None` when it has no session. For a
    /// connected client its connection task answers (between two packets), so this waits for
    /// at most `timeout`.
    pub async fn client_subscriptions(&self, client_id: &str) -> Option<Vec<SubscriptionInfo>> {
        let entries = if let Some(live) = self.shared.registry.live(client_id) {
            ask(&live, |reply| Command::Subscriptions { reply })
                .await
                .ok()?
        } else {
            self.shared.registry.offline_subscriptions(client_id)?
        };
        let id: ClientId = client_id.into();
        let mut v: Vec<SubscriptionInfo> = entries
            .into_iter()
            .map(|(filter, e)| SubscriptionInfo::new(id.clone(), filter, e.options, e.id))
            .collect();
        v.sort_by(|a, b| a.filter.cmp(&b.filter));
        Some(v)
    }

    /// Every subscription of every session (online and offline), sorted by client id, then
    /// filter. Walks the subscription tree once.
    #[must_use]
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let mut v: Vec<SubscriptionInfo> = self
            .shared
            .router
            .subscriptions()
            .into_iter()
            .map(|(topic, group, client_id, options, id)| {
                let filter = match &group {
                    Some(g) => format!("$share/{g}/{topic}"),
                    None => topic.clone(),
                };
                SubscriptionInfo {
                    client_id,
                    filter,
                    topic,
                    share_group: group,
                    options,
                    id,
                }
            })
            .collect();
        v.sort_by(|a, b| (&a.client_id, &a.filter).cmp(&(&b.client_id, &b.filter)));
        v
    }

    /// Subscribes a connected client to `filter` as if it had sent SUBSCRIBE with these
    /// options: the subscribe ACL and `max_subscriptions` apply, matching retained messages are
    /// sent, the subscription is stored with a durable session. Returns the granted QoS.
    pub async fn subscribe(
        &self,
        client_id: &str,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<QoS, CommandError> {
        check_filter(filter, options, self.shared.config.max_topic_levels)?;
        let live = self.connected(client_id)?;
        let code = ask(&live, |reply| Command::Subscribe {
            filter: filter.to_owned(),
            options,
            reply,
        })
        .await?;
        match code.0 {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(CommandError::Refused(code)),
        }
    }

    /// Removes a connected client's subscription, as if it had sent UNSUBSCRIBE. True if it
    /// existed.
    pub async fn unsubscribe(&self, client_id: &str, filter: &str) -> Result<bool, CommandError> {
        let live = self.connected(client_id)?;
        ask(&live, |reply| Command::Unsubscribe {
            filter: filter.to_owned(),
            reply,
        })
        .await
    }

    /// The admin view of a connected client, for a command.
    fn connected(&self, client_id: &str) -> Result<Arc<Live>, CommandError> {
        self.shared
            .registry
            .live(client_id)
            .ok_or(CommandError::NotConnected)
    }

    /// Retained messages matching `filter` (not expired), sorted by topic.
    #[must_use]
    pub fn retained(&self, filter: &str) -> Vec<RetainedInfo> {
        let mut v: Vec<RetainedInfo> = self
            .shared
            .router
            .retained_matching(filter, std::time::Instant::now())
            .into_iter()
            .map(|m| RetainedInfo {
                topic: m.topic.clone(),
                qos: m.qos,
                payload: m.payload.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.topic.cmp(&b.topic));
        v
    }

    /// Counters and gauges now. Walks the sessions once (for `queued` and `inflight`): for
    /// scrapes and `$SYS`, not for a loop.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.stats_with(&self.metrics())
    }

    /// The HTTP authorizer's counters (`[auth.http] acl_url`: requests, cache hits, errors),
    /// since the configuration was last loaded; `None` without `acl_url`.
    #[must_use]
    pub fn http_acl_stats(&self) -> Option<crate::auth::HttpAclStats> {
        self.shared.auth.load().http_acl_stats()
    }

    /// Every counter now, by label (summed over the counters' shards).
    #[must_use]
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// [`Self::stats`] with the counters of `m` (one snapshot for both).
    #[must_use]
    pub fn stats_with(&self, m: &MetricsSnapshot) -> Stats {
        let (sessions, online, queued, inflight) = self.shared.registry.totals();
        let router = &self.shared.router;
        let (shared_subscriptions, topics) = router.subscription_details();
        Stats {
            connections: m.connections,
            sessions,
            subscriptions: router.subscription_count(),
            retained: router.retained_count(),
            messages_received: m.messages_received,
            messages_sent: m.messages_sent,
            messages_dropped: m.messages_dropped,
            messages_expired: m.messages_expired,
            protocol_errors: m.protocol_errors,
            connections_refused: m.connections_refused,
            store_available: m.store_available == 1,
            clients_connected: m.clients_connected,
            clients_disconnected: sessions.saturating_sub(online),
            clients_maximum: m.clients_maximum,
            clients_expired: m.clients_expired,
            shared_subscriptions,
            topics,
            inflight,
            queued,
            store_bytes: self
                .shared
                .persistence
                .as_ref()
                .map_or(0, |p| p.store.message_bytes()),
            messages_no_subscribers: m.dropped_for(DropReason::NoSubscribers),
            bytes_received: m.bytes_received,
            bytes_sent: m.bytes_sent,
            publish_bytes_received: m.publish_bytes_received,
            publish_bytes_sent: m.publish_bytes_sent,
            packets_received: m.packets_received_total,
            packets_sent: m.packets_sent_total,
            auth_failures: m.auth_failure,
        }
    }

    /// The configured `sys_interval` (seconds between `$SYS` updates; 0 = none).
    #[must_use]
    pub fn sys_interval(&self) -> u64 {
        self.shared.config.sys_interval
    }

    /// Resolves when the broker starts shutting down.
    pub async fn shutdown_started(&self) {
        self.shared.shutdown.cancelled().await;
    }

    /// The Prometheus text exposition of the broker's metrics (for `GET /metrics`), encoded
    /// by `prometheus-client` from one snapshot: `hermod_build_info{version}`, gauges
    /// (connections, clients, sessions, subscriptions, topics, retained messages, inflight,
    /// queued, store bytes and health), `_total` counters (connects by listener and result,
    /// disconnects by reason, packets by type, bytes, messages by QoS, drops by reason, auth
    /// and ACL results) and histograms (publish-to-deliver latency, store commit time, in
    /// seconds). The Prometheus text format 0.0.4: serve it as
    /// `text/plain; version=0.0.4; charset=utf-8`.
    #[must_use]
    pub fn prometheus_text(&self) -> String {
        let m = self.metrics();
        let store = self.shared.persistence.as_ref().map(|p| p.store.stats());
        let mut text = prometheus::encode(self.stats_with(&m), m, store);
        if let Some(acl) = self.http_acl_stats() {
            // Since the configuration was last loaded: a reload is a counter reset, which
            // Prometheus's rate() handles.
            for (name, help, v) in [
                (
                    "requests",
                    "Questions sent to the HTTP authorizer ([auth.http] acl_url).",
                    acl.requests,
                ),
                (
                    "cache_hits",
                    "HTTP authorizer answers taken from its cache.",
                    acl.cache_hits,
                ),
                (
                    "errors",
                    "HTTP authorizer questions without a usable answer (denied).",
                    acl.errors,
                ),
            ] {
                text.push_str(&format!(
                    "# HELP hermod_auth_http_acl_{name}_total {help}\n# TYPE hermod_auth_http_acl_{name}_total counter\nhermod_auth_http_acl_{name}_total {v}\n"
                ));
            }
        }
        if let Ok(sources) = self.shared.metrics_sources.0.read() {
            for source in sources.iter() {
                text.push_str(&source());
            }
        }
        text
    }

    /// A handle that does not keep the broker alive (see [`WeakBrokerHandle`]).
    #[must_use]
    pub fn downgrade(&self) -> WeakBrokerHandle {
        WeakBrokerHandle {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Adds the metrics of a service around the broker (rules, bridges) to
    /// [`BrokerHandle::prometheus_text`]: `source` returns complete Prometheus text (its
    /// `# HELP`/`# TYPE` lines included) with names of its own (`hermod_rule_...`). The
    /// broker keeps `source`: let it hold a [`WeakBrokerHandle`], not a `BrokerHandle`.
    pub fn add_metrics_source(&self, source: MetricsSource) {
        if let Ok(mut sources) = self.shared.metrics_sources.0.write() {
            sources.push(source);
        }
    }

    /// The bans in force (config and run time).
    #[must_use]
    pub fn bans(&self) -> Vec<BanEntry> {
        self.shared.banned.list()
    }

    /// Disconnects the client (v5: DISCONNECT 0x98 Administrative action; its will is handled
    /// as for a takeover too). Its session stays (a persistent one goes offline). False when the
    /// client is not connected.
    pub fn kick(&self, client_id: &str) -> bool {
        self.shared.registry.kick(client_id)
    }

    /// Disconnects the client because the same client id connected to another node of the
    /// cluster: as a local takeover does (v5 DISCONNECT 0x8E "Session taken over"; a v5
    /// client's will is published). Its session stays here (a persistent one goes offline).
    /// False when the client is not connected here.
    pub fn take_over(&self, client_id: &str) -> bool {
        self.shared.registry.take_over_remote(client_id)
    }

    /// What this node knows of `client_id`'s session, for the cluster's record of it: `None`
    /// when there is none here (or its connection did not answer in time). For a connected
    /// client its connection task answers, between two packets.
    pub async fn session_state(&self, client_id: &str) -> Option<SessionState> {
        let to_state = |subs: Vec<(String, crate::session::SubscriptionEntry)>| {
            subs.into_iter()
                .map(|(f, e)| (f, e.options, e.id))
                .collect::<Vec<_>>()
        };
        if let Some(live) = self.shared.registry.live(client_id) {
            let (subs, drained) = ask(&live, |reply| Command::State { reply }).await.ok()?;
            return Some(SessionState {
                owner: live.username.clone(),
                expiry: live.expiry_interval.map(std::time::Duration::from_secs),
                subscriptions: to_state(subs),
                online: true,
                drained,
            });
        }
        self.shared.registry.with_offline(client_id, offline_state)
    }

    /// Gives up `client_id`'s session because the client connected to another node of the
    /// cluster, which takes it over: its connection here is disconnected as taken over (v5
    /// DISCONNECT 0x8E), a will waiting for its delay is cancelled (the session lives on), and
    /// the session is ended here (subscriptions, queue, stored record). Returns its state as
    /// it was at the end; `None` when there was no session to give up (or the connection did
    /// not close within 5 s).
    pub async fn release_session(&self, client_id: &str) -> Option<SessionState> {
        let registry = &self.shared.registry;
        if registry.take_over_remote(client_id) {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while registry.status(client_id) == Some(true) {
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        registry.cancel_pending_will(client_id);
        let session = registry.take_offline(client_id)?;
        let state = offline_state(&session);
        tracing::info!(%client_id, "session moved to another node");
        self.shared.end_session_with(session, true);
        Some(state)
    }

    /// When the client connected here, if it is connected.
    #[must_use]
    pub fn connected_at(&self, client_id: &str) -> Option<std::time::SystemTime> {
        self.shared.registry.live(client_id).map(|l| l.connected_at)
    }

    /// Publishes a message as the broker (no publisher, no ACL: the caller is the operator;
    /// receivers' read ACLs apply).
    pub fn publish(&self, topic: &str, payload: Bytes, qos: QoS, retain: bool) {
        let message = Message {
            topic: topic.into(),
            payload,
            qos,
            retain,
            properties: PublishProperties::default(),
            publisher: None,
            received_at: None,
            origin: None,
            expires_at: None,
            settle: None,
        };
        self.shared.publish_unacknowledged(message);
    }

    /// Deletes the retained message of `topic` without delivering anything (an empty retained
    /// PUBLISH would reach current subscribers). True if there was one here. In a cluster,
    /// every node deletes it.
    pub fn delete_retained(&self, topic: &str) -> bool {
        if let Some(b) = self.shared.router.backbone() {
            b.retained_deleted(topic);
        }
        self.shared.delete_retained(topic)
    }

    /// [`BrokerHandle::delete_retained`] on this node only, the backbone not told: for a backbone
    /// applying the cluster's state (a clear it already has must not be sent back to it).
    pub fn delete_retained_here(&self, topic: &str) -> bool {
        self.shared.delete_retained(topic)
    }

    /// Joins this broker to a cluster: `backbone` is told of every subscription (those that
    /// exist now first) and handed every message published here. Once per broker; false if a
    /// backbone was already attached.
    pub fn attach_backbone(&self, backbone: Arc<dyn Backbone>) -> bool {
        self.shared.router.attach_backbone(backbone)
    }

    /// Delivers a message that another node received to this node's subscribers (their read
    /// ACLs apply; the broker's own `$hermod/` sessions are left out), without forwarding it
    /// again or applying its retain flag: see [`BrokerHandle::set_retained`].
    ///
    /// Resolves once the receivers' mailboxes have room again (at most 100 ms per call, as a
    /// local publisher waits; a subscriber that does not drain is then marked stalled and its
    /// overflow dropped and counted): the caller reads its next message only then, so a slow
    /// subscriber slows the node's intake from the backbone, which keeps QoS 1/2 messages in
    /// the stream meanwhile, instead of the broker dropping them.
    pub async fn publish_remote(&self, message: Message) {
        let busy = self.shared.publish_remote(message);
        wait_for_space(busy).await;
    }

    /// Publishes a will that another node of the cluster held for a client whose node died:
    /// as this node's own publish (local subscribers, the other nodes), with no ACL check
    /// (its publisher was allowed at CONNECT, on the node that died).
    pub fn publish_will(&self, message: Message) {
        self.shared.publish_unacknowledged(message);
    }

    /// Delivers a message to one member (on this node) of the shared group `group` of `filter`
    /// (without `$share/`), which the cluster chose for it among all nodes' members. False when
    /// the group has no member here (that may receive it): the cluster offers it elsewhere.
    ///
    /// Waits for the member's mailbox as [`BrokerHandle::publish_remote`] does.
    pub async fn publish_shared(&self, group: &str, filter: &str, message: Message) -> bool {
        let (delivered, busy) = self.shared.publish_shared(group, filter, message);
        wait_for_space(busy).await;
        delivered
    }

    /// Sets (or, with an empty payload, clears) the retained message of `message.topic`
    /// without delivering it, in memory and in the local store: how a cluster node applies the
    /// cluster's retained messages, in the backbone's one order.
    pub fn set_retained(&self, message: Message) {
        let message = Arc::new(message);
        self.shared.router.restore_retained(message.clone());
        if let Some(p) = &self.shared.persistence {
            let op = if message.payload.is_empty() {
                crate::store::Op::DeleteRetained(message.topic.to_string())
            } else {
                crate::store::Op::PutRetained(
                    message.topic.to_string(),
                    crate::persist::message_record(
                        &message,
                        std::time::Instant::now(),
                        crate::persist::unix_ms_now(),
                    ),
                )
            };
            p.submit_detached(vec![op]);
        }
    }

    /// The topics of every retained message (`$` topics included), unsorted.
    #[must_use]
    pub fn retained_topics(&self) -> Vec<Arc<str>> {
        let mut v = Vec::new();
        self.shared
            .router
            .for_each_retained_topic(&mut |t| v.push(t.clone()));
        v
    }

    /// Adds a ban (refused at CONNECT from now on; connected clients are not kicked: call
    /// [`Self::kick`] too).
    pub fn ban(&self, entry: BanEntry) {
        self.shared.banned.add(entry);
    }

    /// Removes a ban added at run time or from the config. True if one matched.
    pub fn unban(&self, rule: &BanRule) -> bool {
        self.shared.banned.remove(rule)
    }

    /// Re-reads the config file, password and ACL files, auth sources and TLS files, as
    /// [`crate::broker::Reloader::reload`] (SIGHUP) does: all swapped in, or none (the error
    /// names what failed). Reads files: call it off the async threads.
    ///
    /// # Errors
    /// What failed to load, naming the file.
    pub fn reload(&self) -> Result<(), String> {
        self.shared.reload()
    }
}

/// How long a command waits for the connection task's answer.
const COMMAND_WAIT: Duration = Duration::from_secs(5);

/// Sends a command to a connection task and waits (at most [`COMMAND_WAIT`]) for its answer.
/// A full queue, a connection that closed before answering, or no answer in time: `Busy`.
/// Waits (once, together, at most [`REMOTE_BACKPRESSURE_WAIT`]) for mailboxes that are filling
/// up.
async fn wait_for_space(mut busy: Vec<Arc<crate::session::mailbox::SessionHandle>>) {
    if busy.is_empty() {
        return;
    }
    busy.sort_by_key(|h| Arc::as_ptr(h) as usize);
    busy.dedup_by(|a, b| Arc::ptr_eq(a, b));
    futures_util::future::join_all(
        busy.iter()
            .map(|h| h.wait_for_space(REMOTE_BACKPRESSURE_WAIT)),
    )
    .await;
}

/// How long a message from another node waits for busy mailboxes: a local publisher's wait.
const REMOTE_BACKPRESSURE_WAIT: Duration = Duration::from_millis(100);

async fn ask<T>(
    live: &Live,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, CommandError> {
    let (reply, rx) = oneshot::channel();
    live.commands
        .send(command(reply))
        .map_err(|_| CommandError::Busy)?;
    match tokio::time::timeout(COMMAND_WAIT, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(CommandError::Busy),
    }
}

/// An offline session's [`SessionState`].
fn offline_state(session: &crate::session::Session) -> SessionState {
    SessionState {
        owner: match &session.owner {
            Owner::User(u) => Some(u.clone()),
            Owner::Anonymous | Owner::Unknown => None,
        },
        expiry: session.expiry,
        subscriptions: session
            .subscriptions
            .iter()
            .map(|(f, e)| (f.clone(), e.options, e.id))
            .collect(),
        online: false,
        drained: session.is_drained(),
    }
}

fn client_info(v: SessionView) -> ClientInfo {
    let username = match v.owner {
        Owner::User(u) => Some(u),
        Owner::Anonymous | Owner::Unknown => None,
    };
    match v.live {
        Some(live) => ClientInfo {
            client_id: v.client_id,
            online: true,
            username: live.username.clone().or(username),
            connection: Some(ConnectionInfo {
                peer: live.peer,
                protocol: live.protocol,
                connected_at: live.connected_at,
                keep_alive: live.keep_alive,
                clean_start: live.clean_start,
                tls: live.tls,
            }),
            subscriptions: live.subscriptions(),
            queued: live.handle.len(),
            inflight: live.inflight(),
            stored: live.handle.disk_len(),
            dropped: live
                .handle
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            expiry_interval: live.expiry_interval.map(Duration::from_secs),
        },
        None => ClientInfo {
            client_id: v.client_id,
            online: v.online,
            username,
            connection: None,
            subscriptions: v.offline_subscriptions,
            queued: v.offline_queue,
            inflight: 0,
            stored: v.offline_handle.as_ref().map_or(0, |h| h.disk_len()),
            dropped: v
                .offline_handle
                .as_ref()
                .map_or(0, |h| h.dropped.load(std::sync::atomic::Ordering::Relaxed)),
            expiry_interval: v.offline_expiry,
        },
    }
}

/// The checks SUBSCRIBE's handler turns into a disconnect for 3.1.1 clients, made before a
/// command reaches the connection (an operator's typo must not disconnect the client).
fn check_filter(
    filter: &str,
    options: SubscriptionOptions,
    max_levels: usize,
) -> Result<(), CommandError> {
    let bad = |why: &str| Err(CommandError::InvalidFilter(why.to_owned()));
    if hermod_proto::topic::validate_topic_filter(filter).is_err() {
        return bad("not a valid MQTT topic filter");
    }
    let shared = match hermod_proto::topic::parse_shared(filter) {
        Ok(s) => s.is_some(),
        Err(_) => return bad("not a valid $share/{group}/{filter}"),
    };
    if filter.split('/').count() > max_levels {
        return bad("too many topic levels");
    }
    if shared && options.no_local {
        return bad("no local on a shared subscription [MQTT-3.8.3-4]");
    }
    Ok(())
}
