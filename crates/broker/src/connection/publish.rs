//! Inbound PUBLISH: topic aliases, limits, the publish ACL, routing, and backpressure from
//! busy subscriber mailboxes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hermod_proto::{Packet, Publish, PublishAck, PublishProperties, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::auth::Action;
use crate::deliver::PublishSink;
use crate::message::Message;
use crate::metrics::AclKind;
use crate::store::Op;

use super::{BACKPRESSURE_WAIT, Connection, End, violation};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    pub(super) fn on_publish(&mut self, p: Publish) -> Result<(), End> {
        self.stats.publish_received(p.qos, p.payload.len());
        let cfg = &self.shared.config;
        let v5 = self.neg.version.is_v5();
        let topic: Arc<str> = match p.properties.topic_alias {
            // Never set before v5 (no properties), where the maximum is 0.
            Some(alias) => {
                if alias == 0 || alias > self.neg.topic_alias_max {
                    return Err(violation(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "[MQTT-3.3.2-8/9] topic alias 0 or above Topic Alias Maximum",
                    ));
                }
                if p.topic.is_empty() {
                    match self.topic_aliases.as_ref().and_then(|m| m.get(&alias)) {
                        Some(t) => t.clone(),
                        None => {
                            return Err(violation(
                                ReasonCode::PROTOCOL_ERROR,
                                "topic alias not yet mapped to a topic",
                            ));
                        }
                    }
                } else {
                    let t: Arc<str> = p.topic.as_str().into();
                    self.topic_aliases
                        .get_or_insert_default()
                        .insert(alias, t.clone());
                    t
                }
            }
            _ => p.topic.as_str().into(),
        };
        if topic.split('/').count() > cfg.max_topic_levels {
            return Err(violation(
                ReasonCode::TOPIC_NAME_INVALID,
                "topic has more levels than max_topic_levels",
            ));
        }
        if v5 && !p.properties.subscription_identifiers.is_empty() {
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.3.4-6] subscription identifier in a PUBLISH from a client",
            ));
        }
        if p.retain && !cfg.retain_available {
            return Err(violation(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "[MQTT-3.2.2-14] retain not available",
            ));
        }
        if p.qos == QoS::ExactlyOnce
            && let Some(pid) = p.packet_id
        {
            if self.session.inflight_in.contains(&pid.get()) {
                // A re-sent QoS 2 PUBLISH: already routed once; only acknowledge [MQTT-4.3.3-10].
                self.write(&Packet::PublishReceived(PublishAck::new(pid)));
                return Ok(());
            }
            if v5 && self.session.inflight_in.len() >= usize::from(cfg.max_inflight_messages) {
                return Err(violation(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "[MQTT-3.3.4-7] more QoS 2 in flight than Receive Maximum",
                ));
            }
        }
        // `$SYS` (but a bridge's state topic) and `$share` are refused here whatever the ACL
        // says (`auth::topic::publish_dollar_allowed`, as Mosquitto).
        // Not cached by the HTTP authorizer: the packet is kept and reading pauses until it
        // answers (`Connection::resolve_parked`).
        let allowed = self
            .shared
            .auth
            .load()
            .authorize_now(&self.identity, Action::Publish(&topic));
        match allowed {
            Some(allowed) => self.publish_decided(p, topic, allowed),
            None => {
                self.parked = Some(Box::new(super::Parked::Publish(p, topic)));
                Ok(())
            }
        }
    }

    /// The rest of an inbound PUBLISH, once the ACL decided.
    pub(super) fn publish_decided(
        &mut self,
        p: Publish,
        topic: Arc<str>,
        allowed: bool,
    ) -> Result<(), End> {
        let cfg = &self.shared.config;
        let v5 = self.neg.version.is_v5();
        self.stats.acl(AclKind::Publish, allowed);
        if !allowed {
            // Denied: dropped; QoS 1/2 acknowledged with 0x87 on v5 (as the spec allows) and
            // normally on 3.1.1, which has no way to say no (Mosquitto does the same).
            debug!(client_id = %self.client_id, %topic, "publish denied by ACL");
            let reason = if v5 {
                ReasonCode::NOT_AUTHORIZED
            } else {
                ReasonCode::SUCCESS
            };
            match (p.qos, p.packet_id) {
                (QoS::AtLeastOnce, Some(pid)) => {
                    self.ack(Packet::PublishAck(PublishAck {
                        reason,
                        ..PublishAck::new(pid)
                    }));
                }
                (QoS::ExactlyOnce, Some(pid)) => {
                    if !reason.is_error() {
                        self.session.inflight_in.insert(pid.get());
                    }
                    self.ack(Packet::PublishReceived(PublishAck {
                        reason,
                        ..PublishAck::new(pid)
                    }));
                }
                _ => {}
            }
            return Ok(());
        }
        let mut properties = p.properties;
        properties.topic_alias = None;
        // The clock is read only when the message expires (it is a syscall per message otherwise).
        let expires_at = properties
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let message = Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: if v5 {
                properties
            } else {
                PublishProperties::default()
            },
            publisher: Some(self.client_id.clone()),
            expires_at,
            received_at: Some(self.read_at),
            origin: Some(self.origin.clone()),
            settle: None,
        };
        let mut sink = PublishSink::default();
        let auth = self.shared.auth.load();
        let message = Arc::new(message);
        crate::deliver::publish(
            &self.shared.router,
            self.shared.persistence.as_deref(),
            message.clone(),
            cfg.retain_available,
            auth.filters_receive().then_some(&**auth),
            crate::router::Source::Local {
                shared_elsewhere: false,
            },
            &mut sink,
        );
        self.shared
            .events
            .emit(|| crate::api::Event::MessagePublished {
                topic: message.topic.clone(),
                qos: message.qos,
                retain: message.retain,
                size: message.size(),
                publisher: message.publisher.clone(),
                delivered: sink.delivered,
            });
        self.busy.append(&mut sink.busy);
        if let Some(commit) = sink.commit
            && p.qos != QoS::AtMostOnce
        {
            // The ack waits for the durable copies [issue: nothing acknowledged is lost].
            self.pending_commits.push(commit);
        }
        if let Some(forwarded) = sink.forwarded
            && p.qos != QoS::AtMostOnce
        {
            // ...and for the cluster's replicated copy.
            self.pending_commits.push(forwarded);
        }
        let delivered = sink.delivered;
        // v5: 0x97 when copies to be stored were refused for `max_disk_bytes`; 3.1.1 cannot say no.
        // In a cluster, subscribers on other nodes are not known here: 0x10 is not said.
        let clustered = self.shared.router.backbone().is_some();
        let reason = match (v5, sink.quota_exceeded, delivered) {
            (false, _, _) => ReasonCode::SUCCESS,
            (true, true, _) => ReasonCode::QUOTA_EXCEEDED,
            (true, false, 0) if !clustered => ReasonCode::NO_MATCHING_SUBSCRIBERS,
            (true, false, _) => ReasonCode::SUCCESS,
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(pid)) => {
                let mut ack = PublishAck::new(pid);
                ack.reason = reason;
                self.ack(Packet::PublishAck(ack));
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                // An error PUBREC ends the QoS 2 flow: the id is not kept.
                if !reason.is_error() {
                    self.session.inflight_in.insert(pid.get());
                    if self.durable {
                        self.store_awaited(vec![Op::PutInflightIn(
                            self.client_id.to_string(),
                            pid.get(),
                        )]);
                    }
                }
                let mut rec = PublishAck::new(pid);
                rec.reason = reason;
                self.ack(Packet::PublishReceived(rec));
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) async fn wait_for_subscribers(&mut self) -> Result<(), End> {
        let shutdown = self.shared.shutdown.clone();
        let kick = self.kick.clone();
        let own = self.session.handle.clone();
        let mut busy = std::mem::take(&mut self.busy);
        // Our own mailbox drains only when we write: never wait for it. Each other one once.
        busy.retain(|h| !Arc::ptr_eq(h, &own));
        busy.sort_by_key(|h| Arc::as_ptr(h) as usize);
        busy.dedup_by(|a, b| Arc::ptr_eq(a, b));
        // All at once, with one deadline: eight slow subscribers cost one wait, not eight.
        let all = futures_util::future::join_all(
            busy.iter().map(|h| h.wait_for_space(BACKPRESSURE_WAIT)),
        );
        tokio::select! {
            _ = all => {}
            () = kick.cancelled() => return Err(super::kicked(&shutdown)),
        }
        Ok(())
    }
}
