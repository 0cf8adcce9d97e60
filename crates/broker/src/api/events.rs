//! The broker's event stream: what happened, for watchers that must never slow the broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hermod_proto::{ProtocolVersion, QoS};
use tokio::sync::broadcast;

use crate::message::ClientId;

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
    /// A subscription was removed by UNSUBSCRIBE (or the API).
    SubscriptionRemoved { client_id: ClientId, filter: String },
    /// A PUBLISH was written to a client.
    MessageDelivered {
        client_id: ClientId,
        topic: Arc<str>,
        qos: QoS,
    },
    /// A message was not delivered to a client that subscribed to it (or, with `client_id`
    /// `None`, to anyone).
    MessageDropped {
        client_id: Option<ClientId>,
        topic: Arc<str>,
        reason: DropReason,
    },
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Nobody subscribed to its topic.
    NoSubscribers,
    /// The session's queue was full (or QoS 0 while offline, or no room on a full disk).
    QueueFull,
    /// Its message expiry interval passed before it could be sent.
    Expired,
    /// Larger than the client's Maximum Packet Size [MQTT-3.1.2-25].
    TooLarge,
    /// The receiver may not read its topic (the ACL changed while it was queued).
    NotAuthorized,
}

impl DropReason {
    /// Every reason, for labels and tables.
    pub const ALL: [Self; 5] = [
        Self::NoSubscribers,
        Self::QueueFull,
        Self::Expired,
        Self::TooLarge,
        Self::NotAuthorized,
    ];

    /// A short snake-case name (`queue_full`), as used in metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSubscribers => "no_subscribers",
            Self::QueueFull => "queue_full",
            Self::Expired => "expired",
            Self::TooLarge => "too_large",
            Self::NotAuthorized => "not_authorized",
        }
    }
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

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        let rx = self.tx.subscribe();
        self.watched.store(true, Ordering::Relaxed);
        rx
    }
}
