//! Outbound deliveries: from the session's mailbox into the write buffer while the inflight
//! window has room, and re-sending what a resumed session had not had acknowledged.

use std::time::Instant;

use hermod_proto::{
    Packet, Publish, PublishAck, PublishProperties, PublishRef, QoS, encode_publish, encoded_len,
    encoded_publish_len,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::{Connection, WRITE_HIGH_WATER};
use crate::api::DropReason;
use crate::auth::Action;
use crate::message::Delivery;
use crate::metrics::AclKind;
use crate::session::OutboundState;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Moves deliveries from the mailbox into the write buffer while the inflight window has room.
    /// Returns true when more may be waiting (the write buffer filled up first).
    pub(super) fn pump(&mut self, now: Instant) -> bool {
        loop {
            if self.wbuf.len() >= WRITE_HIGH_WATER {
                return true;
            }
            while self.session.inflight_out.len() < self.neg.receive_max
                && let Some(o) = self.session.next_resend()
            {
                self.resend_one(&o, now);
            }
            let room = self
                .neg
                .receive_max
                .saturating_sub(self.session.inflight_out.len());
            let mut batch = std::mem::take(&mut self.batch);
            self.session.handle.pop_ready(room, 64, &mut batch);
            if batch.is_empty() {
                self.batch = batch;
                return false;
            }
            for d in batch.drain(..) {
                self.send_delivery(d, now);
            }
            self.batch = batch;
        }
    }

    pub(super) fn send_delivery(&mut self, d: Delivery, now: Instant) {
        if let Some(seq) = d.seq
            && self.session.has_inflight_seq(seq)
        {
            return; // paged in again from disk while already in flight
        }
        if d.message.is_expired(now) {
            self.drop_delivery(DropReason::Expired, &d.message.topic);
            self.dequeue(d.seq);
            return;
        }
        // Read access is checked on delivery, live and retained alike (as Mosquitto 2.0 does),
        // with the rules in force now: a reload applies to connected clients at once.
        let allowed = self
            .shared
            .auth
            .load()
            .authorize(&self.identity, Action::Receive(&d.message.topic));
        self.stats.acl(AclKind::Receive, allowed);
        if !allowed {
            self.drop_delivery(DropReason::NotAuthorized, &d.message.topic);
            self.dequeue(d.seq);
            return;
        }
        let packet_id = if d.qos == QoS::AtMostOnce {
            None
        } else {
            match self.session.next_packet_id() {
                Some(id) => Some(id),
                None => return,
            }
        };
        if !self.encode_delivery(&d, packet_id, now) {
            // [MQTT-3.1.2-25]: larger than the client's Maximum Packet Size: discard, as if sent.
            self.drop_delivery(DropReason::TooLarge, &d.message.topic);
            self.dequeue(d.seq);
            return;
        }
        self.stats.publish_sent(d.qos, d.message.payload.len());
        if !d.retain
            && let Some(at) = d.message.received_at
        {
            self.stats.latency(now.saturating_duration_since(at));
        }
        self.shared
            .events
            .emit(|| crate::api::Event::MessageDelivered {
                client_id: self.client_id.clone(),
                topic: d.message.topic.clone(),
                qos: d.qos,
            });
        if let Some(id) = packet_id {
            self.session.track(id, d);
        }
    }

    /// Writes the PUBLISH of a first delivery. Returns false, writing nothing, when it is
    /// larger than the client's Maximum Packet Size.
    ///
    /// Most deliveries are encoded straight from the shared message (topic, payload and, when
    /// no per-delivery property changes them, its properties): no `Publish` is built, so a
    /// fan-out to many subscribers copies no topic per copy. A client that takes topic aliases
    /// gets a `Publish`, since the alias rewrites the topic and the properties.
    fn encode_delivery(
        &mut self,
        d: &Delivery,
        packet_id: Option<hermod_proto::PacketId>,
        now: Instant,
    ) -> bool {
        let version = self.neg.version;
        let max = self.neg.client_max_packet;
        let m = &d.message;
        if self.neg.client_alias_max > 0 {
            let mut publish = self.to_publish(d, packet_id, false, now);
            // Sized only for clients that set a Maximum Packet Size (the encoder sizes it again).
            if max != usize::MAX && encoded_len(&publish, version) > max {
                return false;
            }
            self.alias_topic(&mut publish, &m.topic);
            self.write(&publish);
            return true;
        }
        let own;
        let properties = if version.is_v5() && !self.properties_as_stored(d) {
            own = self.delivery_properties(d, now);
            &own
        } else {
            &m.properties
        };
        let view = PublishRef {
            dup: false,
            qos: d.qos,
            retain: d.retain,
            topic: &m.topic,
            packet_id,
            properties,
            payload: &m.payload,
        };
        if max != usize::MAX && encoded_publish_len(&view, version) > max {
            return false;
        }
        self.stats.packet_sent(crate::metrics::PUBLISH_TYPE);
        if let Err(e) = encode_publish(&view, version, &mut self.wbuf) {
            warn!(client_id = %self.client_id, error = %e, "packet could not be encoded; skipped");
        }
        true
    }

    /// Whether a delivery's PUBLISH carries the message's properties unchanged: no expiry to
    /// count down, no subscription identifiers (neither this subscriber's nor any a message
    /// from elsewhere might carry), not an internal service's connection.
    fn properties_as_stored(&self, d: &Delivery) -> bool {
        let p = &d.message.properties;
        d.message.expires_at.is_none()
            && p.message_expiry_interval.is_none()
            && p.subscription_identifiers.is_empty()
            && p.topic_alias.is_none()
            && d.subscription_ids.is_empty()
            && !self.internal
    }

    /// The v5 properties of one delivery: the message's, with the expiry left [MQTT-3.3.2-6],
    /// the matching subscriptions' identifiers [MQTT-3.3.4-3], and for an internal service
    /// where the message came from.
    fn delivery_properties(&self, d: &Delivery, now: Instant) -> PublishProperties {
        let m = &d.message;
        let mut p = m.properties.clone();
        p.topic_alias = None; // the publisher's, if any; ours is set by `alias_topic`
        p.message_expiry_interval = m.remaining_expiry(now);
        p.subscription_identifiers.clone_from(&d.subscription_ids);
        if self.internal {
            crate::api::add_origin_properties(&mut p, m, d.seq);
        }
        p
    }

    pub(super) fn to_publish(
        &self,
        d: &Delivery,
        packet_id: Option<hermod_proto::PacketId>,
        dup: bool,
        now: Instant,
    ) -> Packet {
        let m = &d.message;
        let properties = if self.neg.version.is_v5() {
            self.delivery_properties(d, now)
        } else {
            PublishProperties::default()
        };
        Packet::Publish(Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic: m.topic.to_string(),
            packet_id,
            payload: m.payload.clone(),
            properties,
        })
    }

    /// Sends `topic` as an outbound topic alias where the client allows them and it helps (see
    /// `super::aliases`). Call just before the packet is written: a new alias is recorded as
    /// known to the client.
    fn alias_topic(&mut self, packet: &mut Packet, topic: &std::sync::Arc<str>) {
        let max = self.neg.client_alias_max;
        if max == 0 {
            return;
        }
        // A new alias adds 3 bytes of properties: never past the client's Maximum Packet Size.
        if self.neg.client_max_packet != usize::MAX
            && encoded_len(packet, self.neg.version) + 3 > self.neg.client_max_packet
        {
            return;
        }
        let Packet::Publish(p) = packet else { return };
        let aliases = self
            .out_aliases
            .get_or_insert_with(|| Box::new(super::aliases::OutAliases::new(max)));
        if let Some((alias, known)) = aliases.assign(topic) {
            super::aliases::apply(p, alias, known);
        }
    }

    /// Re-sends unacknowledged deliveries after a session resumes: PUBLISH with DUP set, or
    /// PUBREL for those already received [MQTT-4.4.0-1]; never more than the client's Receive
    /// Maximum at once [MQTT-3.3.4-9] — `pump` sends the rest as acknowledgements make room.
    pub(super) fn resend_inflight(&mut self) {
        let now = Instant::now();
        for o in self.session.split_resend(self.neg.receive_max) {
            self.resend_one(&o, now);
        }
    }

    pub(super) fn resend_one(&mut self, o: &crate::session::Outbound, now: Instant) {
        if o.state != OutboundState::AwaitingComplete
            && !self
                .shared
                .auth
                .load()
                .authorize(&self.identity, Action::Receive(&o.delivery.message.topic))
        {
            // Re-checked on every re-send with the rules in force now (the analogue of
            // Mosquitto's CVE-2018-12546 fix): an ACL reload also applies to what was in flight.
            self.stats.acl(AclKind::Receive, false);
            self.drop_delivery(DropReason::NotAuthorized, &o.delivery.message.topic);
            self.session.forget(o.packet_id);
            self.dequeue(o.delivery.seq);
            return;
        }
        if o.state == OutboundState::AwaitingComplete {
            self.write(&Packet::PublishRelease(PublishAck::new(o.packet_id)));
        } else {
            let mut p = self.to_publish(&o.delivery, Some(o.packet_id), true, now);
            self.alias_topic(&mut p, &o.delivery.message.topic);
            self.write(&p);
        }
    }
}
