//! Messages and deliveries, independent of protocol version.

use bytes::Bytes;
use hermod_proto::{PublishProperties, QoS};
use std::sync::Arc;
use std::time::Instant;

/// Client identifier: the session key. Cheap to clone.
pub type ClientId = Arc<str>;

/// An application message as the broker routes it. Shared by `Arc` among all its subscribers:
/// the payload is a `Bytes` slice of the publisher's read buffer, never copied per subscriber.
#[derive(Debug)]
pub struct Message {
    /// Topic name (aliases already resolved).
    pub topic: Arc<str>,
    /// Payload.
    pub payload: Bytes,
    /// QoS as published.
    pub qos: QoS,
    /// Retain flag as published (forwarded only to retain-as-published subscriptions).
    pub retain: bool,
    /// v5 properties forwarded unchanged (payload format, content type, response topic,
    /// correlation data, user properties). Topic alias and subscription ids are stripped.
    pub properties: PublishProperties,
    /// Who published it, for the no-local option; `None` for wills published after the session ended
    /// and for broker-internal messages.
    pub publisher: Option<ClientId>,
    /// When the message expires (v5 Message Expiry Interval), counted from receipt.
    pub expires_at: Option<Instant>,
    /// When the read that brought it from its publisher returned, for the publish-to-deliver
    /// latency; `None` for wills, the broker's own messages and messages read back from the
    /// store.
    pub received_at: Option<Instant>,
    /// Who sent it, beyond the client id: for the broker's own services (rules read
    /// `username` and `peerhost`). Shared by every message of a connection; stored with the
    /// message (its own copy when read back); `None` for wills and the broker's own.
    pub origin: Option<Arc<Origin>>,
    /// Who handed the broker this message wants to know when the broker is done with it: set
    /// by a cluster backbone on a message it gave one shared-group member here, so that the
    /// cluster's copy is released only once the member has acknowledged it. `None` otherwise.
    pub settle: Option<Settle>,
}

/// How the broker finished with a message that carries a [`Settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// No part of the broker holds it any more: acknowledged by its receiver, or dropped by
    /// policy (a full queue, expiry), which is counted as usual.
    Done,
    /// Nobody here took it (the shared group has no member here that may receive it, or the
    /// last one left before acknowledging): the giver should offer it elsewhere.
    Returned,
}

/// A callback run exactly once, when the broker is done with a message: [`Settled::Returned`]
/// where the broker says so, [`Settled::Done`] when the message is dropped otherwise. Messages
/// are shared by `Arc`, so "dropped" means the last delivery of it was acknowledged or
/// discarded.
pub struct Settle {
    callback: std::sync::Mutex<Option<SettleFn>>,
}

type SettleFn = Box<dyn FnOnce(Settled) + Send>;

impl Settle {
    /// A settle that runs `callback` once.
    pub fn new(callback: impl FnOnce(Settled) + Send + 'static) -> Self {
        Self {
            callback: std::sync::Mutex::new(Some(Box::new(callback))),
        }
    }

    /// Runs the callback with `outcome` unless it already ran.
    pub(crate) fn settle(&self, outcome: Settled) {
        let callback = self
            .callback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(callback) = callback {
            callback(outcome);
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.settle(Settled::Done);
    }
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settle")
    }
}

/// The publisher of a message as the rules see it: one per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The authenticated username.
    pub username: Option<Arc<str>>,
    /// The client's address (from the PROXY header when there is one).
    pub peer: std::net::SocketAddr,
}

impl Message {
    /// True once the message's expiry has passed: it must not be delivered [MQTT-3.3.2-5].
    #[must_use]
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// The bytes this message holds, as counted by `max_queued_bytes`: topic, payload and
    /// properties (user properties included), about the size of its PUBLISH packet, which is
    /// what `max_packet_size` bounds. A message made of properties with an empty payload
    /// weighs what it really costs.
    #[must_use]
    pub fn size(&self) -> usize {
        let p = &self.properties;
        let opt = |o: Option<usize>| o.map_or(0, |n| n + 3);
        let user: usize = p
            .user_properties
            .iter()
            .map(|(k, v)| k.len() + v.len() + 5)
            .sum();
        // Fixed header, topic length, packet id, property length, the fixed-size properties.
        16 + self.topic.len()
            + self.payload.len()
            + user
            + opt(p.response_topic.as_ref().map(String::len))
            + opt(p.correlation_data.as_ref().map(Bytes::len))
            + opt(p.content_type.as_ref().map(String::len))
    }

    /// The Message Expiry Interval to send on: the received value minus time spent in the broker
    /// [MQTT-3.3.2-6], at least 1 while not expired.
    #[must_use]
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now).as_secs_f64().ceil();
            (left as u32).max(1)
        })
    }
}

/// One message routed to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// Granted QoS: min(published QoS, subscription QoS) [MQTT-3.8.4-8].
    pub qos: QoS,
    /// RETAIN flag to send: set for retained messages sent on subscribe [MQTT-3.3.1-8], and for
    /// retain-as-published subscriptions; cleared otherwise [MQTT-3.3.1-9].
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (v5).
    pub subscription_ids: Vec<u32>,
    /// Set when routed through a shared subscription: `(group, filter)`. If this session goes
    /// away before acknowledging, the delivery is handed to another member of the group.
    pub shared: Option<Arc<(Box<str>, Box<str>)>>,
    /// Position in the session's durable queue when the delivery is stored (QoS 1/2 to a
    /// persistent session with a store): acknowledging it removes that queue entry.
    pub seq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn recorder() -> (Arc<Mutex<Vec<Settled>>>, Settle) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let settle = Settle::new(move |o| s.lock().unwrap_or_else(|e| e.into_inner()).push(o));
        (seen, settle)
    }

    fn seen(v: &Arc<Mutex<Vec<Settled>>>) -> Vec<Settled> {
        v.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[test]
    fn a_settle_runs_once_done_when_dropped() {
        let (v, settle) = recorder();
        let message = Arc::new(Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            publisher: None,
            expires_at: None,
            received_at: None,
            origin: None,
            settle: Some(settle),
        });
        let held = message.clone();
        drop(message);
        assert!(seen(&v).is_empty(), "a delivery still holds it");
        drop(held);
        assert_eq!(seen(&v), vec![Settled::Done]);
    }

    #[test]
    fn a_returned_settle_does_not_also_run_done() {
        let (v, settle) = recorder();
        settle.settle(Settled::Returned);
        settle.settle(Settled::Done);
        drop(settle);
        assert_eq!(seen(&v), vec![Settled::Returned]);
    }
}
