//! The narrow API other crates (admin HTTP API, `$SYS`, rules, bridges, cluster) use to watch and
//! drive a running broker, so that they never reach into `connection/`, `router/` or `session/`.
//!
//! Three parts, all from a [`BrokerHandle`] (`Broker::handle`):
//! - **Events** ([`BrokerHandle::events`]): a broadcast stream of [`Event`]s (client connected
//!   and disconnected, message published, subscription added and removed). Nothing is built or
//!   sent until someone subscribes, so the publish path pays one relaxed atomic load; a
//!   subscriber that falls behind loses the oldest events (it sees `Lagged`), never slows the
//!   broker.
//! - **Queries**: [`BrokerHandle::clients`], [`BrokerHandle::retained`],
//!   [`BrokerHandle::stats`], [`BrokerHandle::bans`] — snapshots, never references into the
//!   broker's state.
//! - **Commands**: [`BrokerHandle::kick`], [`BrokerHandle::publish`],
//!   [`BrokerHandle::delete_retained`], [`BrokerHandle::ban`] / [`BrokerHandle::unban`].
//!
//! Not yet: subscribing on behalf of a client (an online session's subscriptions belong to its
//! connection task, so that needs a command channel into the connection), and per-message
//! delivered/dropped events (counters in [`crate::metrics::Metrics`] cover them for now).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use hermod_proto::{ProtocolVersion, PublishProperties, QoS};
use tokio::sync::broadcast;

use crate::banned::{BanEntry, BanRule};
use crate::message::{ClientId, Message};
use crate::metrics::Metrics;
use crate::session::Owner;
use crate::shared::Shared;

/// Events buffered per subscriber before the oldest are dropped (`Lagged`).
const EVENT_BUFFER: usize = 4096;

/// Something that happened in the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A client completed CONNECT (CONNACK success sent).
    ClientConnected {
        client_id: ClientId,
        username: Option<Arc<str>>,
        peer: SocketAddr,
        protocol: ProtocolVersion,
        clean_start: bool,
        session_present: bool,
    },
    /// A client's connection ended (`reason` says how, e.g. "normal", "lost", "taken over").
    ClientDisconnected { client_id: ClientId, reason: String },
    /// A message was accepted from a client (after the publish ACL) or published by the broker
    /// (a will, or [`BrokerHandle::publish`]; then `publisher` is `None` for the latter).
    MessagePublished {
        topic: Arc<str>,
        qos: QoS,
        retain: bool,
        size: usize,
        publisher: Option<ClientId>,
        /// Sessions it was queued for.
        delivered: usize,
    },
    /// A subscription was granted (new or replaced).
    SubscriptionAdded {
        client_id: ClientId,
        filter: String,
        qos: QoS,
    },
    /// A subscription was removed by UNSUBSCRIBE.
    SubscriptionRemoved { client_id: ClientId, filter: String },
}

/// The broker's event stream.
#[derive(Debug)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Set once somebody subscribed: until then no event is even built.
    watched: AtomicBool,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::Sender::new(EVENT_BUFFER),
            watched: AtomicBool::new(false),
        }
    }
}

impl EventBus {
    /// Sends the event `make` builds, if anybody has ever subscribed.
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if self.watched.load(Ordering::Relaxed) {
            // No receiver left: the event is dropped, which is fine.
            let _ = self.tx.send(make());
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        let rx = self.tx.subscribe();
        self.watched.store(true, Ordering::Relaxed);
        rx
    }
}

/// A client id known to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: ClientId,
    /// Connected now (false: an offline persistent session).
    pub online: bool,
    /// The identity the session belongs to: `Some(username)`, or `None` for anonymous (or a
    /// session restored from a store written before owners were recorded).
    pub username: Option<Arc<str>>,
}

/// A retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedInfo {
    pub topic: Arc<str>,
    pub qos: QoS,
    pub payload: Bytes,
}

/// Counters and gauges at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub connections: u64,
    pub sessions: usize,
    pub subscriptions: usize,
    pub retained: usize,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub messages_expired: u64,
    pub protocol_errors: u64,
    pub connections_refused: u64,
    pub store_available: bool,
}

/// A handle on a running broker for other crates: events, queries and commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    shared: Arc<Shared>,
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

    /// Every client id with a session, online or offline, sorted by client id.
    #[must_use]
    pub fn clients(&self) -> Vec<ClientInfo> {
        let mut v: Vec<ClientInfo> = self
            .shared
            .registry
            .list()
            .into_iter()
            .map(|(client_id, online, owner)| ClientInfo {
                client_id,
                online,
                username: match owner {
                    Owner::User(u) => Some(u),
                    Owner::Anonymous | Owner::Unknown => None,
                },
            })
            .collect();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        v
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

    /// Counters and gauges now.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let m = &self.shared.metrics;
        Stats {
            connections: Metrics::get(&m.connections),
            sessions: self.shared.registry.len(),
            subscriptions: self.shared.router.subscription_count(),
            retained: self.shared.router.retained_count(),
            messages_received: Metrics::get(&m.messages_received),
            messages_sent: Metrics::get(&m.messages_sent),
            messages_dropped: Metrics::get(&m.messages_dropped),
            messages_expired: Metrics::get(&m.messages_expired),
            protocol_errors: Metrics::get(&m.protocol_errors),
            connections_refused: Metrics::get(&m.connections_refused),
            store_available: Metrics::get(&m.store_available) == 1,
        }
    }

    /// The bans in force (config and run time).
    #[must_use]
    pub fn bans(&self) -> Vec<BanEntry> {
        self.shared.banned.list()
    }

    /// Disconnects the client (v5: DISCONNECT 0x8E... as for a takeover, its will is handled
    /// as for a takeover too). Its session stays (a persistent one goes offline). False when the
    /// client is not connected.
    pub fn kick(&self, client_id: &str) -> bool {
        self.shared.registry.kick(client_id)
    }

    /// Publishes a message as the broker (no publisher, no ACL: the caller is the operator).
    pub fn publish(&self, topic: &str, payload: Bytes, qos: QoS, retain: bool) {
        let message = Message {
            topic: topic.into(),
            payload,
            qos,
            retain,
            properties: PublishProperties::default(),
            publisher: None,
            expires_at: None,
        };
        self.shared.publish_unacknowledged(message);
    }

    /// Deletes the retained message of `topic` without delivering anything (an empty retained
    /// PUBLISH would reach current subscribers). True if there was one.
    pub fn delete_retained(&self, topic: &str) -> bool {
        self.shared.delete_retained(topic)
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
}
