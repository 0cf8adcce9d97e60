//! SUBSCRIBE and UNSUBSCRIBE: filter checks, the subscribe ACL, limits, the subscription tree,
//! stored subscription rows, and retained messages streamed at subscribe.

use std::collections::HashMap;
use std::time::Instant;

use hermod_proto::{Packet, ReasonCode, Subscribe, SubscribeAck, Unsubscribe, UnsubscribeAck};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use crate::api::DropReason;
use crate::auth::Action;
use crate::message::Delivery;
use crate::metrics::AclKind;
use crate::session::SubscriptionEntry;
use crate::session::live::Command;
use crate::store::Op;

use super::{Connection, End, violation};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Answers with one reason code per filter (v5 values: 3.1.1 has one failure code, 0x80
    /// [MQTT-3.9.3-2], to which the encoder maps every failure).
    pub(super) fn on_subscribe(&mut self, s: Subscribe) -> Result<(), End> {
        // A filter whose answer the HTTP authorizer has not cached: the packet is kept and
        // reading pauses until it answers (`Connection::resolve_parked`).
        // The answers found are kept for `subscribe_one` (looked up once).
        let mut decided = HashMap::new();
        {
            let auth = self.shared.auth.load();
            for (f, _) in &s.filters {
                if hermod_proto::topic::validate_topic_filter(f).is_err()
                    || decided.contains_key(f.as_str())
                {
                    continue;
                }
                match auth.authorize_now(&self.identity, Action::Subscribe(f)) {
                    Some(allowed) => {
                        decided.insert(f.to_string(), allowed);
                    }
                    None => {
                        self.parked = Some(Box::new(super::Parked::Subscribe(s)));
                        return Ok(());
                    }
                }
            }
        }
        self.subscribe_decided(s, &decided)
    }

    /// Handles a SUBSCRIBE; `decided` holds the HTTP authorizer's answers the caller waited for.
    pub(super) fn subscribe_decided(
        &mut self,
        s: Subscribe,
        decided: &HashMap<String, bool>,
    ) -> Result<(), End> {
        // A filter repeated in one packet is handled once, at its last position (the last one
        // replaces the others anyway [MQTT-3.8.4-3]); every position still gets its reason code
        // [MQTT-3.8.4-6], the one of that last occurrence.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(s.filters.len());
        for (i, (filter, _)) in s.filters.iter().enumerate() {
            last.insert(filter.as_str(), i);
        }
        let mut reasons = Vec::with_capacity(s.filters.len());
        for (i, (filter, options)) in s.filters.iter().enumerate() {
            if last.get(filter.as_str()) != Some(&i) {
                reasons.push(ReasonCode::SUCCESS); // filled in below
                continue;
            }
            reasons.push(self.subscribe_one(
                filter,
                *options,
                s.properties.subscription_identifier,
                decided.get(filter.as_str()).copied(),
            )?);
        }
        for (i, (filter, _)) in s.filters.iter().enumerate() {
            if let Some(&l) = last.get(filter.as_str())
                && l != i
            {
                reasons[i] = reasons[l];
            }
        }
        self.write(&Packet::SubscribeAck(SubscribeAck {
            packet_id: s.packet_id,
            reasons,
            properties: Default::default(),
        }));
        Ok(())
    }

    /// Handles one filter of a SUBSCRIBE; returns its reason code (v5 value). Retained messages
    /// are streamed into the session's mailbox, which bounds them: past its limit they are
    /// dropped and counted like any overflow, never collected in memory first.
    fn subscribe_one(
        &mut self,
        filter: &str,
        options: hermod_proto::SubscriptionOptions,
        id: Option<u32>,
        decided: Option<bool>,
    ) -> Result<ReasonCode, End> {
        let cfg = &self.shared.config;
        let v5 = self.neg.version.is_v5();
        let shared_parts = hermod_proto::topic::parse_shared(filter);
        let valid = hermod_proto::topic::validate_topic_filter(filter).is_ok()
            && shared_parts.is_ok()
            && filter.split('/').count() <= cfg.max_topic_levels;
        if !valid {
            if v5 {
                return Ok(ReasonCode::TOPIC_FILTER_INVALID);
            }
            // 3.1.1: a malformed filter is a protocol violation; Mosquitto closes the connection.
            return Err(violation(
                ReasonCode::TOPIC_FILTER_INVALID,
                "[MQTT-4.7.1-1..3] invalid topic filter",
            ));
        }
        let share = shared_parts.ok().flatten();
        let auth = self.shared.auth.load();
        // Fail closed if the HTTP authorizer's answer is neither given nor cached (it expired
        // since it was asked: not expected).
        let allowed = decided
            .or_else(|| auth.authorize_now(&self.identity, Action::Subscribe(filter)))
            .unwrap_or(false);
        self.stats.acl(AclKind::Subscribe, allowed);
        if !allowed {
            return Ok(ReasonCode::NOT_AUTHORIZED);
        }
        if share.is_some() && options.no_local && v5 {
            return Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.8.3-4] no local on a shared subscription",
            ));
        }
        // max_subscriptions bounds what one client can make the broker hold (a replaced
        // subscription does not count twice).
        if cfg.max_subscriptions > 0
            && self.session.subscriptions.len() >= cfg.max_subscriptions
            && !self.session.subscriptions.contains_key(filter)
        {
            debug!(client_id = %self.client_id, filter, "max_subscriptions reached: refused");
            return Ok(ReasonCode::QUOTA_EXCEEDED);
        }
        if !self.internal
            && !self.session.subscriptions.contains_key(filter)
            && self
                .shared
                .router
                .backbone()
                .is_some_and(|b| b.refuses(filter))
        {
            info!(client_id = %self.client_id, filter, "refused by the cluster's bound (max_shared_groups)");
            return Ok(ReasonCode::QUOTA_EXCEEDED);
        }
        let is_new = self
            .shared
            .router
            .subscribe(filter, self.session.handle.clone(), options, id);
        let entry = SubscriptionEntry { options, id };
        if self.durable {
            // One small row per subscription, not the whole session record.
            self.store_detached(vec![Op::PutSubscription(
                self.client_id.to_string(),
                crate::persist::subscription_record(filter, &entry),
            )]);
        }
        self.session.subscriptions.insert(filter.to_owned(), entry);
        self.live
            .set_subscriptions(self.session.subscriptions.len());
        self.session_changed();
        self.shared
            .events
            .emit(|| crate::api::Event::SubscriptionAdded {
                client_id: self.client_id.clone(),
                filter: filter.to_owned(),
                qos: options.qos,
            });
        // Retained messages on subscribe (3.3.1.3 / 3.8.3.1 Retain Handling); not for shared
        // subscriptions (5.0 §4.8.2).
        let send_retained = match options.retain_handling {
            hermod_proto::RetainHandling::SendAtSubscribe => true,
            hermod_proto::RetainHandling::SendIfNew => is_new,
            hermod_proto::RetainHandling::DoNotSend => false,
        };
        if share.is_none() && send_retained && cfg.retain_available {
            let (handle, metrics) = (&self.session.handle, &self.shared.metrics);
            let client_id = &self.client_id;
            let mut full = false;
            self.shared
                .router
                .for_each_retained(filter, Instant::now(), &mut |m| {
                    if full {
                        metrics.dropped(DropReason::QueueFull, Some(client_id), &m.topic);
                        return;
                    }
                    // Counted here when denied; when allowed, where it is sent (checked again).
                    if !auth.authorize(&self.identity, Action::Receive(&m.topic)) {
                        metrics.acl(AclKind::Receive, false);
                        return;
                    }
                    let d = Delivery {
                        qos: m.qos.min(options.qos),
                        retain: true, // [MQTT-3.3.1-8]
                        subscription_ids: id.into_iter().collect(),
                        shared: None,
                        seq: None,
                        message: m.clone(),
                    };
                    // Dropped (and counted by the mailbox) at the limit: the rest is counted
                    // without being looked at again.
                    full = handle.push(d, metrics) == crate::session::mailbox::PushOutcome::Dropped;
                });
        }
        Ok(ReasonCode(options.qos as u8))
    }

    pub(super) fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let reasons = u
            .filters
            .iter()
            .map(|f| {
                if self.unsubscribe_one(f) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.write(&Packet::UnsubscribeAck(UnsubscribeAck {
            packet_id: u.packet_id,
            reasons,
            properties: Default::default(),
        }));
    }

    /// Removes one subscription; true if it existed.
    fn unsubscribe_one(&mut self, f: &str) -> bool {
        let in_session = self.session.subscriptions.remove(f).is_some();
        let in_tree = self.shared.router.unsubscribe(f, &self.client_id);
        self.live
            .set_subscriptions(self.session.subscriptions.len());
        if in_session && self.durable {
            self.store_detached(vec![Op::DeleteSubscription(
                self.client_id.to_string(),
                f.to_owned(),
            )]);
        }
        if in_session {
            self.session_changed();
        }
        if in_session || in_tree {
            self.shared
                .events
                .emit(|| crate::api::Event::SubscriptionRemoved {
                    client_id: self.client_id.clone(),
                    filter: f.to_owned(),
                });
        }
        in_session || in_tree
    }

    /// A request from the admin side ([`crate::api::BrokerHandle`]), handled between packets.
    /// The caller validated the filter, so subscribing cannot end the connection; if it would
    /// (a rule this code missed), the operator gets "unspecified error" and the client is left
    /// alone.
    /// The subscribe ACL applies, the HTTP authorizer asked if needed (ends the connection only
    /// for a shutdown or a kick while waiting for it).
    pub(super) async fn on_command(&mut self, command: Command) -> Result<(), End> {
        match command {
            Command::Subscribe {
                filter,
                options,
                reply,
            } => {
                let auth = self.shared.auth.load_full();
                let (identity, ip) = (self.identity.clone(), Some(self.peer().ip()));
                let decided = super::acl_wait(
                    self.shared.shutdown.clone(),
                    self.kick.clone(),
                    auth.authorize_async(&identity, ip, Action::Subscribe(&filter)),
                )
                .await?;
                let code = self
                    .subscribe_one(&filter, options, None, Some(decided))
                    .unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
                let _ = reply.send(code);
            }
            Command::Unsubscribe { filter, reply } => {
                let existed = self.unsubscribe_one(&filter);
                let _ = reply.send(existed);
            }
            Command::Subscriptions { reply } => {
                let subs = self
                    .session
                    .subscriptions
                    .iter()
                    .map(|(f, e)| (f.clone(), *e))
                    .collect();
                let _ = reply.send(subs);
            }
            Command::State { reply } => {
                let subs = self
                    .session
                    .subscriptions
                    .iter()
                    .map(|(f, e)| (f.clone(), *e))
                    .collect();
                let _ = reply.send((subs, self.session.is_drained()));
            }
        }
        Ok(())
    }
}
