//! Start-up recovery: sessions, subscriptions, queues, retained messages and pending wills read
//! back from the store, and the timers (expiry, will delay) to start once the broker runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use super::{Shared, Will, identity_of};
use crate::message::ClientId;
use crate::session::registry::ConnectionId;

/// Timers to start once the broker runs: offline sessions' expiry, and wills still waiting for
/// their delay, as restored from the store.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    pub(crate) expiring: Vec<(ClientId, ConnectionId, Duration)>,
    pub(crate) wills: Vec<(
        ClientId,
        ConnectionId,
        Will,
        Duration,
        crate::store::SessionRecord,
    )>,
}

impl Shared {
    /// Puts back what the store recovered: retained messages, and persistent sessions as offline
    /// sessions with their subscriptions and queue positions. Expiry keeps counting across the
    /// restart (wall-clock disconnect time + session expiry; a session that was online when the
    /// broker stopped counts from now). Returns the expiry timers to arm.
    pub(crate) fn recover(self: &Arc<Self>, mut r: crate::store::Recovered) -> Recovery {
        let Some(p) = self.persistence.clone() else {
            return Recovery::default();
        };
        self.kv.restore(std::mem::take(&mut r.kv));
        let now = Instant::now();
        let now_ms = crate::persist::unix_ms_now();
        let mut drop_ops = Vec::new();
        for (topic, rec) in &r.retained {
            let m = crate::persist::message_from_record(rec, now, now_ms);
            if m.is_expired(now) {
                drop_ops.push(crate::store::Op::DeleteRetained(topic.clone()));
            } else {
                self.router.restore_retained(Arc::new(m));
            }
        }
        let mut inflight_in: std::collections::HashMap<&str, Vec<u16>> =
            std::collections::HashMap::new();
        for (cid, pid) in &r.inflight_in {
            inflight_in.entry(cid.as_str()).or_default().push(*pid);
        }
        let mut expiring = Vec::new();
        let mut wills = Vec::new();
        let mut restored = 0usize;
        for (cid, rec) in &r.sessions {
            let client_id: ClientId = cid.as_str().into();
            let expiry = rec.expiry.map(|s| Duration::from_secs(u64::from(s)));
            let offline_for = rec.disconnected_at_unix_ms.map_or(Duration::ZERO, |t| {
                Duration::from_millis(now_ms.saturating_sub(t))
            });
            let remaining = expiry.map(|e| e.saturating_sub(offline_for));
            if remaining == Some(Duration::ZERO) {
                if let (Some(w), Some(_)) = (&rec.will, rec.disconnected_at_unix_ms) {
                    // The session ended while the broker was down: its pending will is due.
                    let message = crate::persist::will_message(w, &client_id, now);
                    self.publish_will(Will::restored(message, &client_id, &rec.owner));
                }
                drop_ops.extend(crate::persist::delete_session(&client_id));
                continue;
            }
            let mut session = self.new_session(client_id.clone());
            session.expiry = expiry;
            session.owner = rec.owner.clone();
            session
                .handle
                .set_reader(identity_of(&rec.owner, &client_id));
            session.handle.set_online(false);
            match r.queues.get(cid) {
                Some(q) => session
                    .handle
                    .restore_queue(q.next_seq, q.first_seq, &q.sizes),
                None => session.handle.set_durable(true),
            }
            for sub in &rec.subscriptions {
                let entry = crate::persist::subscription_from_record(sub);
                self.router
                    .subscribe(&sub.filter, session.handle.clone(), entry.options, entry.id);
                session.subscriptions.insert(sub.filter.clone(), entry);
            }
            if let Some(pids) = inflight_in.get(cid.as_str()) {
                session.inflight_in.extend(pids.iter().copied());
            }
            let generation = self.next_connection_id();
            if let (Some(w), Some(_)) = (&rec.will, rec.disconnected_at_unix_ms) {
                // A will that was waiting for its delay when the broker stopped: still published
                // once the rest of the delay (bounded by the session's remaining life) passes.
                let delay =
                    Duration::from_secs(u64::from(w.delay_secs)).saturating_sub(offline_for);
                let delay = remaining.map_or(delay, |r| delay.min(r));
                let mut clear = rec.clone();
                clear.will = None;
                wills.push((
                    client_id.clone(),
                    generation,
                    Will::restored(
                        crate::persist::will_message(w, &client_id, now),
                        &client_id,
                        &rec.owner,
                    ),
                    delay,
                    clear,
                ));
            }
            self.registry.restore(session, generation);
            if let Some(d) = remaining {
                expiring.push((client_id, generation, d));
            }
            restored += 1;
        }
        p.submit_detached(drop_ops);
        if restored > 0 || !r.retained.is_empty() {
            info!(
                sessions = restored,
                retained = self.router.retained_count(),
                "restored from the store"
            );
        }
        Recovery { expiring, wills }
    }
}
