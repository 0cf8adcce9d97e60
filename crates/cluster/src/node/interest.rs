//! This node's interest (the first topic levels of its subscriptions, counted) and the core
//! NATS subscriptions that follow it, through which QoS 0 messages of the other nodes arrive.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use hermod_broker::api::BrokerHandle;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::{Inner, MAX_LEVELS, inbound};
use crate::subject::{self, Interest};

impl Inner {
    pub(super) fn change_interest(&self, filter: &str, added: bool) {
        let changed = match hermod_proto::topic::parse_shared(filter) {
            // A shared group is served through the cluster's queue group and durable consumer
            // (`group_task`), not through this node's interest.
            Ok(Some((group, inner))) => count(
                &mut self
                    .shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                (group.to_owned(), inner.to_owned()),
                added,
            ),
            _ => count(
                &mut self
                    .interest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                subject::first_level_interest(filter),
                added,
            ),
        };
        if changed {
            self.interest_changed.send_modify(|g| *g += 1);
        }
    }

    /// Whether subscribing to `filter` would add a shared group past `max_shared_groups`.
    pub(super) fn refuses_group(&self, filter: &str) -> bool {
        let Ok(Some((group, inner))) = hermod_proto::topic::parse_shared(filter) else {
            return false;
        };
        let groups = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (group.to_owned(), inner.to_owned());
        !groups.contains_key(&key) && groups.len() >= self.config.max_shared_groups
    }

    /// The shared groups with members here now.
    pub(super) fn groups(&self) -> HashSet<(String, String)> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The interests to subscribe to now: `All` alone when any filter starts with a wildcard
    /// (it covers the others, which would otherwise deliver twice).
    pub(super) fn wanted(&self) -> HashSet<Interest> {
        let map = self
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Past MAX_LEVELS distinct first levels, one subscription to everything is cheaper
        // (and a consumer's filter list stays small).
        if map.contains_key(&Interest::All) || map.len() > MAX_LEVELS {
            return HashSet::from([Interest::All]);
        }
        map.keys().cloned().collect()
    }
}

/// Counts one more (or one less) of `key`; true when it appeared or disappeared.
fn count<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, added: bool) -> bool {
    if added {
        let n = map.entry(key).or_insert(0);
        *n += 1;
        *n == 1
    } else {
        match map.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                map.remove(&key);
                true
            }
            None => false,
        }
    }
}

/// Keeps one NATS subscription set per wanted interest, and hands what arrives to the broker.
pub(super) async fn interest_task(inner: Arc<Inner>, broker: BrokerHandle) {
    let mut changed = inner.interest_changed.subscribe();
    let mut active: HashMap<Interest, JoinHandle<()>> = HashMap::new();
    // `mq.*.%T` (topics whose first level alone is too long for a subject): once, while any
    // level is wanted and `All` (which covers it) is not.
    let mut always: Option<JoinHandle<()>> = None;
    loop {
        let wanted = inner.wanted();
        // Unsubscribe first: an overlap would deliver twice (QoS 0 is at most once).
        active.retain(|i, task| {
            let keep = wanted.contains(i);
            if !keep {
                task.abort();
            }
            keep
        });
        let want_always = !wanted.is_empty() && !wanted.contains(&Interest::All);
        if !want_always && let Some(t) = always.take() {
            t.abort();
        }
        for i in wanted {
            if active.contains_key(&i) {
                continue;
            }
            let subs = subscribe(&inner, subject::interest_subjects(subject::LIVE_QOS0, &i)).await;
            active.insert(
                i,
                tokio::spawn(receive(inner.clone(), broker.clone(), subs)),
            );
        }
        if want_always && always.is_none() {
            let subs = subscribe(&inner, subject::always_subjects(subject::LIVE_QOS0)).await;
            always = Some(tokio::spawn(receive(inner.clone(), broker.clone(), subs)));
        }
        inner.interests.store(active.len(), Ordering::Relaxed);
        if changed.changed().await.is_err() {
            break;
        }
    }
    for (_, t) in active {
        t.abort();
    }
    if let Some(t) = always {
        t.abort();
    }
}

async fn subscribe(inner: &Inner, subjects: Vec<String>) -> Vec<async_nats::Subscriber> {
    let mut subs = Vec::new();
    for s in subjects {
        match inner.client.subscribe(s.clone()).await {
            Ok(sub) => subs.push(sub),
            Err(e) => warn!(subject = %s, error = %e, "cluster: cannot subscribe"),
        }
    }
    subs
}

async fn receive(inner: Arc<Inner>, broker: BrokerHandle, subs: Vec<async_nats::Subscriber>) {
    let mut all = futures_util::stream::select_all(subs);
    while let Some(msg) = all.next().await {
        if let Err(e) = inbound::publish_remote(&inner, &broker, msg.payload, |_| true).await {
            debug!(subject = %msg.subject, error = %e, "cluster: malformed message ignored");
        }
    }
}
