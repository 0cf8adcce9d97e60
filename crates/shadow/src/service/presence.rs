//! Presence: a retained `$hermod/things/{clientid}/presence` message per client, kept current
//! from the broker's event stream.
//!
//! `{"online": true, "ts": <unix ms>, "reason": "connected"}` when a client connects, and
//! `{"online": false, "ts": ..., "reason": ...}` when it goes, with the reason the broker gives:
//! `disconnected` (DISCONNECT, with or without will), `connection_lost`, `keepalive_timeout`,
//! `takeover`, `kicked`, `protocol_error`, `server_error`, `server_shutdown`. Published by the
//! broker itself (QoS 1, retained), so a subscriber gets the current state at once and every
//! change after it.
//!
//! **Takeover.** When a client id connects again while its old connection is open, the broker
//! reports the new connection and the old one's end in either order. The task counts open
//! connections per client id: an end that leaves another connection open publishes nothing,
//! so the retained state ends `online: true` whichever event comes first (if the end comes
//! first, subscribers see `online: false, reason: takeover` and then `online: true`).
//!
//! **Start-up.** A broker that was killed leaves `online: true` retained for clients that were
//! connected; at start the task publishes `online: false, reason: "server_restart"` for every
//! retained presence that says online for a client that is not connected.
//!
//! Events are best effort (a task that falls behind misses some); when that happens the task
//! compares its counts with the broker's list of connected clients and publishes what changed.
//! Only client ids that are valid thing names (`[a-zA-Z0-9:_-]`, at most 128 bytes) get a
//! presence topic; internal clients (`$hermod/...`) never do.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use hermod_broker::api::{BrokerHandle, Event, INTERNAL_CLIENT_PREFIX};
use hermod_proto::QoS;
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tracing::warn;

use super::stats::Counters;
use crate::topic::is_valid_thing_name;

/// The presence topic of a client id.
pub fn presence_topic(client_id: &str) -> String {
    format!("$hermod/things/{client_id}/presence")
}

/// The presence `reason` for the broker's `ClientDisconnected` reason.
pub fn disconnect_reason(broker_reason: &str) -> &'static str {
    match broker_reason {
        "normal" | "normal with will" => "disconnected",
        "lost" => "connection_lost",
        "keep alive timeout" => "keepalive_timeout",
        "taken over" => "takeover",
        "kicked" => "kicked",
        "protocol error" => "protocol_error",
        "store failed" => "server_error",
        "shutdown" => "server_shutdown",
        _ => "unknown",
    }
}

/// Open connections per client id (see the module docs: takeover).
#[derive(Debug, Default)]
struct Open(HashMap<Arc<str>, u32>);

impl Open {
    fn connected(&mut self, client_id: &Arc<str>) {
        *self.0.entry(client_id.clone()).or_default() += 1;
    }

    /// One connection of `client_id` ended; true when it was its last (publish offline).
    fn disconnected(&mut self, client_id: &str) -> bool {
        let left = match self.0.get_mut(client_id) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.0.remove(client_id);
        }
        left == 0
    }
}

pub(crate) struct PresenceTask {
    pub(crate) handle: BrokerHandle,
    pub(crate) counters: Arc<Counters>,
    pub(crate) events: broadcast::Receiver<Event>,
    pub(crate) stop: watch::Receiver<bool>,
}

fn tracked(client_id: &str) -> bool {
    !client_id.starts_with(INTERNAL_CLIENT_PREFIX) && is_valid_thing_name(client_id)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PresenceTask {
    fn publish(&self, client_id: &str, online: bool, reason: &str) {
        let payload = json!({"online": online, "ts": now_ms(), "reason": reason}).to_string();
        self.handle.publish(
            &presence_topic(client_id),
            Bytes::from(payload),
            QoS::AtLeastOnce,
            true,
        );
        self.counters.presence.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) async fn run(mut self) {
        let mut open = Open::default();
        self.mark_stale_offline();
        loop {
            let event = tokio::select! {
                _ = self.stop.changed() => return,
                e = self.events.recv() => e,
            };
            match event {
                Ok(Event::ClientConnected { client_id, .. }) if tracked(&client_id) => {
                    open.connected(&client_id);
                    self.publish(&client_id, true, "connected");
                }
                Ok(Event::ClientDisconnected { client_id, reason }) if tracked(&client_id) => {
                    if open.disconnected(&client_id) {
                        self.publish(&client_id, false, disconnect_reason(&reason));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "presence fell behind the broker's events; resynchronising"
                    );
                    self.resync(&mut open.0);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Retained `online: true` for clients that are not connected: left by a broker that was
    /// killed.
    fn mark_stale_offline(&self) {
        for r in self.handle.retained("$hermod/things/+/presence") {
            let Some(client_id) = r
                .topic
                .strip_prefix("$hermod/things/")
                .and_then(|t| t.strip_suffix("/presence"))
            else {
                continue;
            };
            let online = serde_json::from_slice::<serde_json::Value>(&r.payload)
                .ok()
                .and_then(|v| v.get("online").and_then(serde_json::Value::as_bool))
                .unwrap_or(false);
            let connected = self.handle.client(client_id).is_some_and(|c| c.online);
            if online && !connected {
                self.publish(client_id, false, "server_restart");
            }
        }
    }

    /// After missed events: the broker's connected clients are the truth.
    fn resync(&self, open: &mut HashMap<Arc<str>, u32>) {
        let online: HashMap<Arc<str>, ()> = self
            .handle
            .clients()
            .into_iter()
            .filter(|c| c.online && tracked(&c.client_id))
            .map(|c| (c.client_id, ()))
            .collect();
        for id in open.keys() {
            if !online.contains_key(id) {
                self.publish(id, false, "unknown");
            }
        }
        for id in online.keys() {
            if !open.contains_key(id) {
                self.publish(id, true, "connected");
            }
        }
        *open = online.into_keys().map(|id| (id, 1)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_in_either_order_ends_online() {
        let id: Arc<str> = Arc::from("dev-1");
        // The new connection is reported first: the old one's end publishes nothing.
        let mut open = Open::default();
        open.connected(&id);
        open.connected(&id);
        assert!(
            !open.disconnected(&id),
            "still connected through the new connection"
        );
        assert!(open.disconnected(&id), "then the last one goes");
        // The old connection's end is reported first: offline, then the connect puts it back.
        let mut open = Open::default();
        open.connected(&id);
        assert!(open.disconnected(&id));
        open.connected(&id);
        assert_eq!(open.0.get(&id), Some(&1));
        // An end never seen connected (the task started later): offline.
        assert!(Open::default().disconnected("other"));
    }

    #[test]
    fn reasons() {
        assert_eq!(disconnect_reason("normal"), "disconnected");
        assert_eq!(disconnect_reason("keep alive timeout"), "keepalive_timeout");
        assert_eq!(disconnect_reason("taken over"), "takeover");
        assert_eq!(disconnect_reason("lost"), "connection_lost");
        assert_eq!(disconnect_reason("something new"), "unknown");
        assert!(!tracked("$hermod/shadow"));
        assert!(!tracked("a/b"));
        assert!(tracked("lamp-1"));
    }
}
