//! Glue between the broker's in-memory model and the durable store: record conversions,
//! message ids, and what the broker writes when.
//!
//! # What is written when
//! - A QoS 1/2 message routed to persistent sessions: `PutMessage` (once, with one reference per
//!   session) and an `Enqueue` per session, submitted before the deliveries become visible to
//!   the subscribers, and awaited before the PUBACK/PUBREC goes to the publisher (by
//!   `crate::deliver`, which also writes shared-subscription hand-overs).
//! - A retained message (or its deletion), in the same submission.
//! - Inbound QoS 2 packet ids of persistent sessions: before PUBREC; removed on PUBREL.
//! - A persistent session's record: on connect, on (un)subscribe, on disconnect; deleted (with
//!   its queue) when the session ends.
//! - A delivery acknowledged by the subscriber (PUBACK / PUBCOMP), or dropped as expired:
//!   `Dequeue`. These need no wait: losing one in a crash only means a redelivery.
//!
//! Clean sessions are never written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hermod_proto::{
    LastWill, Packet, ProtocolVersion, Publish, PublishProperties, QoS, SubscriptionOptions,
};

use crate::message::{ClientId, Delivery, Message};
use crate::session::{Session, SubscriptionEntry};
use crate::store::WillRecord;
use crate::store::{
    MessageRecord, Op, QueueEntry, QueueState, SessionRecord, Store, SubscriptionRecord,
};

/// The store and the broker's counters for it.
#[derive(Debug)]
pub struct Persistence {
    /// The store.
    pub store: Store,
    next_message_id: AtomicU64,
    /// `[store] max_disk_bytes` (0 = none): above it, new deliveries to persistent sessions are
    /// dropped and counted rather than stored.
    pub max_disk_bytes: u64,
    /// Held (shared) by a publisher from reserving its deliveries' sequence numbers until their
    /// writes are submitted; taken (exclusive, for an instant) by a session's loader before its
    /// barrier, so that every sequence number reserved before the loader looked is submitted
    /// before the barrier (see [`Persistence::reserving`]).
    reserving: std::sync::RwLock<()>,
}

impl Persistence {
    /// Wraps an opened store; message ids continue from `next_message_id`.
    #[must_use]
    pub fn new(store: Store, next_message_id: u64) -> Self {
        Self {
            store,
            next_message_id: AtomicU64::new(next_message_id.max(1)),
            max_disk_bytes: 0,
            reserving: std::sync::RwLock::new(()),
        }
    }

    /// Hold while reserving stored deliveries and until their writes are submitted (no await
    /// in between). A session's loader reads the store up to the last sequence number reserved
    /// and treats an entry missing below it as deleted; without this, a publisher that had
    /// reserved a number but not yet submitted its write when the loader's barrier went in
    /// made the loader skip that entry, which then waited in the store until a restart (1 row
    /// in ~270,000 under a rule's fan-in, 2026-12-03).
    pub(crate) fn reserving(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        // The lock guards no data: a panic while holding it leaves nothing inconsistent.
        self.reserving
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits (an instant: publishers hold [`Persistence::reserving`] only across synchronous
    /// code) until every sequence number reserved so far has its write submitted.
    pub(crate) fn wait_for_reservations(&self) {
        drop(
            self.reserving
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    /// True when stored messages exceed the disk budget.
    #[must_use]
    pub fn over_budget(&self) -> bool {
        self.max_disk_bytes > 0 && self.store.message_bytes() >= self.max_disk_bytes
    }

    /// False while a disk error keeps the store from writing ([`Store::healthy`]): durable
    /// publishes are then refused and persistent sessions cannot connect.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.store.healthy()
    }

    /// A fresh message id.
    pub fn next_message_id(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits ops without waiting for their commit (they are applied in submission order).
    pub fn submit_detached(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        drop(self.store.submit(ops));
    }
}

/// Wall-clock now, ms since the Unix epoch.
#[must_use]
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Encodes v5 publish properties (minus topic alias and subscription ids) as the opaque
/// property bytes of a record: the body of a v5 PUBLISH, decoded back with our own codec.
#[must_use]
pub fn encode_properties(p: &PublishProperties) -> Bytes {
    if *p == PublishProperties::default() {
        return Bytes::new();
    }
    let mut props = p.clone();
    props.topic_alias = None;
    props.subscription_identifiers.clear();
    let packet = Packet::Publish(Publish {
        topic: "p".into(),
        properties: props,
        ..Publish::default()
    });
    let mut buf = BytesMut::new();
    match hermod_proto::encode_packet(&packet, ProtocolVersion::V5, &mut buf) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}

/// Decodes what [`encode_properties`] wrote; a damaged block yields no properties.
#[must_use]
pub fn decode_properties(b: &Bytes) -> PublishProperties {
    if b.is_empty() {
        return PublishProperties::default();
    }
    let mut buf = BytesMut::from(&b[..]);
    match hermod_proto::decode_packet(&mut buf, ProtocolVersion::V5, usize::MAX) {
        Ok(Some(Packet::Publish(p))) => p.properties,
        _ => PublishProperties::default(),
    }
}

/// The stored form of a message.
#[must_use]
pub fn message_record(m: &Message, now: Instant, now_ms: u64) -> MessageRecord {
    MessageRecord {
        topic: m.topic.to_string(),
        payload: m.payload.clone(),
        qos: m.qos as u8,
        retain: m.retain,
        properties: encode_properties(&m.properties),
        received_at_unix_ms: now_ms,
        expiry_at_unix_ms: m.expires_at.map(|t| {
            now_ms.saturating_add(
                u64::try_from(t.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
            )
        }),
        publisher: m.publisher.as_ref().map(|c| crate::store::PublisherRecord {
            client_id: c.to_string(),
            username: m
                .origin
                .as_ref()
                .and_then(|o| o.username.as_deref().map(str::to_owned)),
            peer: m.origin.as_ref().map(|o| o.peer.to_string()),
        }),
    }
}

/// A message read back from the store. Expiry keeps counting across restarts: it is the
/// wall-clock expiry time mapped onto the monotonic clock.
#[must_use]
pub fn message_from_record(r: &MessageRecord, now: Instant, now_ms: u64) -> Message {
    Message {
        topic: r.topic.as_str().into(),
        payload: r.payload.clone(),
        qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtLeastOnce),
        retain: r.retain,
        properties: decode_properties(&r.properties),
        publisher: r
            .publisher
            .as_ref()
            .map(|p| ClientId::from(p.client_id.as_str())),
        received_at: None,
        // The username and address come back together (one `Origin` per message read back,
        // where a connection's messages share one).
        origin: r.publisher.as_ref().and_then(|p| {
            let peer = p.peer.as_deref()?.parse().ok()?;
            Some(Arc::new(crate::message::Origin {
                username: p.username.as_deref().map(Arc::from),
                peer,
            }))
        }),
        expires_at: r
            .expiry_at_unix_ms
            .map(|t| now + Duration::from_millis(t.saturating_sub(now_ms))),
        settle: None,
    }
}

/// The queue entry for a delivery of stored message `message_id`.
#[must_use]
pub fn queue_entry(d: &Delivery, message_id: u64) -> QueueEntry {
    QueueEntry {
        message_id,
        qos: d.qos as u8,
        retain: d.retain,
        subscription_ids: d.subscription_ids.clone(),
        shared: d
            .shared
            .as_ref()
            .map(|k| (k.0.to_string(), k.1.to_string())),
        state: QueueState::Queued,
    }
}

/// A delivery read back from a session's stored queue.
#[must_use]
pub fn delivery_from_entry(seq: u64, e: &QueueEntry, message: Arc<Message>) -> Delivery {
    Delivery {
        message,
        qos: QoS::from_u8(e.qos).unwrap_or(QoS::AtLeastOnce),
        retain: e.retain,
        subscription_ids: e.subscription_ids.clone(),
        shared: e
            .shared
            .as_ref()
            .map(|(g, f)| Arc::new((g.as_str().into(), f.as_str().into()))),
        seq: Some(seq),
    }
}

/// The stored form of a session.
#[must_use]
pub fn session_record(s: &Session, protocol_level: u8, online: bool) -> SessionRecord {
    SessionRecord {
        expiry: s
            .expiry
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX - 1)),
        disconnected_at_unix_ms: if online { None } else { Some(unix_ms_now()) },
        protocol_level,
        // Stored as rows of their own (`subscription_record`), so that a SUBSCRIBE writes one
        // small row instead of the whole session.
        subscriptions: Vec::new(),
        will: None,
        owner: s.owner.clone(),
    }
}

/// The stored form of one subscription (a row of the `subscriptions` table).
#[must_use]
pub fn subscription_record(filter: &str, e: &SubscriptionEntry) -> SubscriptionRecord {
    SubscriptionRecord {
        filter: filter.to_owned(),
        qos: e.options.qos as u8,
        no_local: e.options.no_local,
        retain_as_published: e.options.retain_as_published,
        retain_handling: e.options.retain_handling as u8,
        subscription_id: e.id,
    }
}

/// A subscription read back from a session record.
#[must_use]
pub fn subscription_from_record(r: &SubscriptionRecord) -> SubscriptionEntry {
    SubscriptionEntry {
        options: SubscriptionOptions {
            qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtMostOnce),
            no_local: r.no_local,
            retain_as_published: r.retain_as_published,
            retain_handling: match r.retain_handling {
                1 => hermod_proto::RetainHandling::SendIfNew,
                2 => hermod_proto::RetainHandling::DoNotSend,
                _ => hermod_proto::RetainHandling::SendAtSubscribe,
            },
        },
        id: r.subscription_id,
    }
}

/// The stored form of a pending will.
#[must_use]
pub fn will_record(w: &LastWill) -> WillRecord {
    let p = &w.properties;
    let props = PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        ..PublishProperties::default()
    };
    WillRecord {
        topic: w.topic.clone(),
        payload: w.payload.clone(),
        qos: w.qos as u8,
        retain: w.retain,
        properties: encode_properties(&props),
        delay_secs: p.will_delay_interval.unwrap_or(0),
    }
}

/// A pending will read back from the store, as the message to publish.
#[must_use]
pub fn will_message(r: &WillRecord, client_id: &ClientId, now: Instant) -> Message {
    let properties = decode_properties(&r.properties);
    Message {
        topic: r.topic.as_str().into(),
        payload: r.payload.clone(),
        qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtMostOnce),
        retain: r.retain,
        received_at: None,
        origin: None,
        expires_at: properties
            .message_expiry_interval
            .map(|s| now + Duration::from_secs(u64::from(s))),
        properties,
        publisher: Some(client_id.clone()),
        settle: None,
    }
}

/// Ops for a session going away for good.
#[must_use]
pub fn delete_session(client_id: &ClientId) -> Vec<Op> {
    vec![Op::DeleteSession(client_id.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_through_the_record_block() {
        let p = PublishProperties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            message_expiry_interval: Some(30),
            topic_alias: Some(3),
            ..PublishProperties::default()
        };
        let back = decode_properties(&encode_properties(&p));
        assert_eq!(back.user_properties, p.user_properties);
        assert_eq!(back.content_type, p.content_type);
        assert_eq!(back.correlation_data, p.correlation_data);
        assert_eq!(
            back.topic_alias, None,
            "aliases are per connection, never stored"
        );
        assert_eq!(
            decode_properties(&Bytes::from_static(b"garbage")),
            PublishProperties::default()
        );
    }

    /// A session's loader waits for a publisher that has reserved sequence numbers but not
    /// yet submitted their writes, so that its barrier comes after them (else it skipped
    /// such an entry until a restart).
    #[test]
    fn the_loader_waits_for_reservations_being_submitted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = crate::store::Store::open(&crate::store::StoreConfig {
            path: dir.path().join("data"),
            sync: crate::store::SyncMode::Os,
            on_corrupt: crate::store::OnCorrupt::Fail,
        })
        .expect("open");
        let p = Arc::new(Persistence::new(store, 1));
        let guard = p.reserving();
        let (tx, rx) = std::sync::mpsc::channel();
        let loader = {
            let p = p.clone();
            std::thread::spawn(move || {
                p.wait_for_reservations();
                let _ = tx.send(());
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the loader went on while a reservation was being submitted"
        );
        drop(guard);
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
        loader.join().expect("loader");
    }

    /// A message read back from the store still says who published it: a rule's
    /// `clientid`, `username` and `peerhost` of a message that waited on disk.
    #[test]
    fn the_publisher_comes_back_from_the_record() {
        let now = Instant::now();
        let origin = Arc::new(crate::message::Origin {
            username: Some("alice".into()),
            peer: "192.0.2.7:51234".parse().expect("addr"),
        });
        let message =
            |publisher: Option<&str>, origin: Option<Arc<crate::message::Origin>>| Message {
                topic: "t".into(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default(),
                publisher: publisher.map(ClientId::from),
                received_at: Some(now),
                origin,
                expires_at: None,
                settle: None,
            };
        let m = message(Some("dev-7"), Some(origin.clone()));
        let r = message_record(&m, now, 1_000_000);
        let back = message_from_record(
            &crate::store::MessageRecord::decode(&r.encode()).expect("decode"),
            now,
            1_000_000,
        );
        assert_eq!(back.publisher.as_deref(), Some("dev-7"));
        assert_eq!(back.origin.as_deref(), Some(&*origin));
        // Without a username; and without a publisher at all (the broker's own message).
        let anonymous = message(
            Some("dev-8"),
            Some(Arc::new(crate::message::Origin {
                username: None,
                peer: origin.peer,
            })),
        );
        let back = message_from_record(&message_record(&anonymous, now, 0), now, 0);
        assert_eq!(back.origin, anonymous.origin);
        let own = message(None, None);
        let back = message_from_record(&message_record(&own, now, 0), now, 0);
        assert_eq!((back.publisher, back.origin), (None, None));
    }

    #[test]
    fn expiry_keeps_counting_across_the_record() {
        let now = Instant::now();
        let m = Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            publisher: None,
            received_at: None,
            origin: None,
            expires_at: Some(now + Duration::from_secs(10)),
            settle: None,
        };
        let r = message_record(&m, now, 1_000_000);
        assert_eq!(r.expiry_at_unix_ms, Some(1_010_000));
        // read back 4 s of wall clock later: 6 s left
        let later = message_from_record(&r, now, 1_004_000);
        let left = later
            .expires_at
            .expect("expiry")
            .saturating_duration_since(now);
        assert_eq!(left.as_secs(), 6);
    }
}
