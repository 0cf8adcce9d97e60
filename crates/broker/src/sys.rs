//! The `$SYS/broker/...` topics, with Mosquitto's names and values, published every
//! `sys_interval` seconds (0: none) as retained QoS 0 messages, through [`BrokerHandle`] only
//! (its stats and metrics, and `publish` as the broker).
//!
//! As Mosquitto's `sys_tree__update` (src/sys_tree.c) does, a topic is published only when its
//! value changed since it was last published (the uptime always changes), and the load
//! averages (`load/.../{1min,5min,15min}`) are exponentially decaying averages of per-minute
//! rates, Mosquitto's `calc_load`:
//!
//! ```text
//! rate    = (counter now - counter at the last update) * 60 / seconds since it
//! new     = rate + exp(-seconds since the last update / 60 | 300 | 900) * (current - rate)
//! ```
//!
//! published ("%.2f") at the first update, then only when `|new - current| >= 0.01`.
//! `load/sockets` counts accepted sockets, `load/connections` CONNECT packets answered.
//!
//! Hermod's values: `messages/*` count MQTT packets of any type and `publish/messages/*`
//! PUBLISH packets, as Mosquitto; `clients/total` is the number of sessions (connected or
//! not), `clients/disconnected` the offline ones, `clients/maximum` the most clients connected
//! at once; `messages/stored` and `store/messages/count` the messages queued for sessions plus
//! the retained ones; `store/messages/bytes` the bytes of queued messages in the durable store
//! (0 without one). The receive ACL applies to these messages as to any (a client that may not
//! read `$SYS/#` gets none), and clients cannot publish to `$SYS` (`auth::topic::publish_dollar_allowed`, which `Auth::authorize`
//! applies with or without an ACL file, as Mosquitto's `acl__check_dollar`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hermod_proto::QoS;

use crate::api::{BrokerHandle, Stats};
use crate::metrics::MetricsSnapshot;

/// Runs until the broker shuts down: one update at once, then one every `interval`.
pub(crate) async fn run(handle: BrokerHandle, interval: Duration) {
    let mut tree = SysTree::new(Instant::now());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = handle.shutdown_started() => return,
        }
        let m = handle.metrics();
        let st = handle.stats_with(&m);
        for (topic, value) in tree.update(Instant::now(), &st, &m) {
            handle.publish(&topic, value.into(), QoS::AtMostOnce, true);
        }
    }
}

/// The 1, 5 and 15 minute averages of one counter's per-minute rate.
#[derive(Debug)]
struct Load {
    /// The counter at the last update.
    last: u64,
    values: [f64; 3],
}

/// What was published, and the load averages.
#[derive(Debug)]
pub(crate) struct SysTree {
    started: Instant,
    /// The last update (`None` before the first).
    last_update: Option<Instant>,
    /// Last value published, by topic.
    published: HashMap<String, String>,
    loads: HashMap<&'static str, Load>,
}

const PREFIX: &str = "$SYS/broker/";

impl SysTree {
    pub(crate) fn new(started: Instant) -> Self {
        Self {
            started,
            last_update: None,
            published: HashMap::new(),
            loads: HashMap::new(),
        }
    }

    /// The (topic, value) pairs to publish at `now`: the values that changed since their last
    /// publication.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        st: &Stats,
        m: &MetricsSnapshot,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let initial = self.last_update.is_none();
        let mut set = |tree: &mut Self, name: &str, value: String| {
            let topic = format!("{PREFIX}{name}");
            if tree.published.get(&topic) != Some(&value) {
                tree.published.insert(topic.clone(), value.clone());
                out.push((topic, value));
            }
        };
        set(
            self,
            "version",
            format!("hermod {}", env!("CARGO_PKG_VERSION")),
        );
        let uptime = now.saturating_duration_since(self.started).as_secs();
        set(self, "uptime", format!("{uptime} seconds"));
        set(self, "clients/connected", st.clients_connected.to_string());
        set(
            self,
            "clients/disconnected",
            st.clients_disconnected.to_string(),
        );
        set(self, "clients/expired", st.clients_expired.to_string());
        set(self, "clients/maximum", st.clients_maximum.to_string());
        set(self, "clients/total", st.sessions.to_string());
        let stored = (st.queued + st.retained).to_string();
        set(self, "messages/stored", stored.clone());
        set(self, "store/messages/count", stored);
        set(self, "store/messages/bytes", st.store_bytes.to_string());
        set(
            self,
            "messages/received",
            m.packets_received_total.to_string(),
        );
        set(self, "messages/sent", m.packets_sent_total.to_string());
        set(self, "bytes/received", m.bytes_received.to_string());
        set(self, "bytes/sent", m.bytes_sent.to_string());
        set(
            self,
            "publish/messages/received",
            m.messages_received.to_string(),
        );
        set(self, "publish/messages/sent", m.messages_sent.to_string());
        set(
            self,
            "publish/messages/dropped",
            m.messages_dropped.to_string(),
        );
        set(
            self,
            "publish/bytes/received",
            m.publish_bytes_received.to_string(),
        );
        set(self, "publish/bytes/sent", m.publish_bytes_sent.to_string());
        set(self, "subscriptions/count", st.subscriptions.to_string());
        set(
            self,
            "shared_subscriptions/count",
            st.shared_subscriptions.to_string(),
        );
        set(self, "retained messages/count", st.retained.to_string());

        // Load averages (sys_tree.c `calc_load`).
        let elapsed = self
            .last_update
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        let connects: u64 = m.connects.iter().flat_map(|l| l.results).sum();
        let counters: [(&'static str, u64); 9] = [
            ("messages/received", m.packets_received_total),
            ("messages/sent", m.packets_sent_total),
            ("publish/dropped", m.messages_dropped),
            ("publish/received", m.messages_received),
            ("publish/sent", m.messages_sent),
            ("bytes/received", m.bytes_received),
            ("bytes/sent", m.bytes_sent),
            ("sockets", m.sockets_accepted),
            ("connections", connects),
        ];
        for (name, counter) in counters {
            let load = self.loads.entry(name).or_insert(Load {
                last: counter,
                values: [0.0; 3],
            });
            let rate = if elapsed > 0.0 {
                counter.saturating_sub(load.last) as f64 * 60.0 / elapsed
            } else {
                0.0
            };
            load.last = counter;
            for (i, (minutes, period)) in [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)]
                .into_iter()
                .enumerate()
            {
                let current = load.values[i];
                let new = if initial {
                    current
                } else {
                    rate + (-elapsed / period).exp() * (current - rate)
                };
                load.values[i] = new;
                if initial || (new - current).abs() >= 0.01 {
                    let topic = format!("{PREFIX}load/{name}/{minutes}");
                    let value = format!("{new:.2}");
                    self.published.insert(topic.clone(), value.clone());
                    out.push((topic, value));
                }
            }
        }
        self.last_update = Some(now);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn stats() -> Stats {
        Stats {
            connections: 0,
            sessions: 0,
            subscriptions: 0,
            retained: 0,
            messages_received: 0,
            messages_sent: 0,
            messages_dropped: 0,
            messages_expired: 0,
            protocol_errors: 0,
            connections_refused: 0,
            store_available: false,
            clients_connected: 0,
            clients_disconnected: 0,
            clients_maximum: 0,
            clients_expired: 0,
            shared_subscriptions: 0,
            topics: 0,
            inflight: 0,
            queued: 0,
            store_bytes: 0,
            messages_no_subscribers: 0,
            bytes_received: 0,
            bytes_sent: 0,
            publish_bytes_received: 0,
            publish_bytes_sent: 0,
            packets_received: 0,
            packets_sent: 0,
            auth_failures: 0,
        }
    }

    fn get<'a>(out: &'a [(String, String)], name: &str) -> Option<&'a str> {
        let topic = format!("{PREFIX}{name}");
        out.iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn only_changes_are_published_and_loads_follow_mosquitto() {
        let t0 = Instant::now();
        let mut tree = SysTree::new(t0);
        let mut m = Metrics::default().snapshot();
        let st = stats();
        let first = tree.update(t0, &st, &m);
        assert_eq!(get(&first, "publish/messages/received"), Some("0"));
        assert_eq!(get(&first, "load/publish/received/1min"), Some("0.00"));
        assert_eq!(get(&first, "retained messages/count"), Some("0"));
        assert!(get(&first, "version").is_some_and(|v| v.starts_with("hermod ")));

        // Nothing changed: only the uptime.
        let t1 = t0 + Duration::from_secs(10);
        let idle = tree.update(t1, &st, &m);
        assert_eq!(idle.len(), 1, "{idle:?}");
        assert_eq!(get(&idle, "uptime"), Some("10 seconds"));

        // 600 PUBLISH in 10 s: 3600 a minute; the 1 minute load is 3600 * (1 - e^(-10/60)).
        m.messages_received = 600;
        let t2 = t1 + Duration::from_secs(10);
        let busy = tree.update(t2, &st, &m);
        assert_eq!(get(&busy, "publish/messages/received"), Some("600"));
        let want1 = 3600.0 * (1.0 - (-10.0f64 / 60.0).exp());
        let want15 = 3600.0 * (1.0 - (-10.0f64 / 900.0).exp());
        assert_eq!(
            get(&busy, "load/publish/received/1min"),
            Some(&*format!("{want1:.2}"))
        );
        assert_eq!(
            get(&busy, "load/publish/received/15min"),
            Some(&*format!("{want15:.2}"))
        );
        assert!(
            get(&busy, "load/publish/sent/1min").is_none(),
            "unchanged load"
        );
        // Idle again: the load decays, the counter is not re-published.
        let after = tree.update(t2 + Duration::from_secs(10), &st, &m);
        assert!(get(&after, "publish/messages/received").is_none());
        let decayed: f64 = get(&after, "load/publish/received/1min")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::MAX);
        assert!(decayed < want1);
    }
}
