//! [`RulesView`]: a read-only, cloneable window on the running rules and bridges — what each
//! one is (from the config) and its counters now. The broker's `/metrics` reads it (as a
//! metrics source) and so does the admin API; neither can change a rule through it.

use std::sync::Arc;

use hermod_broker::api::WeakBrokerHandle;

use super::stats::{RuleCounters, RuleStats};
use super::task::RuleTask;
use crate::bridge::{BridgeConfig, BridgeHandle, BridgeStats};
use crate::config::RuleConfig;
use crate::sql::Source;

/// One running rule as the view holds it: the config's text, kept so that an operator can see
/// what the rule does without the file, and its live counters.
#[derive(Debug)]
pub(crate) struct RuleEntry {
    pub(crate) name: String,
    pub(crate) sql: String,
    pub(crate) from: Vec<String>,
    pub(crate) counters: Arc<RuleCounters>,
}

impl RuleEntry {
    pub(crate) fn new(config: &RuleConfig, counters: Arc<RuleCounters>) -> Self {
        Self {
            name: config.name.clone(),
            sql: config.rule.sql().to_owned(),
            from: config.rule.sources().iter().map(source_text).collect(),
            counters,
        }
    }
}

/// A FROM source as written in rule SQL: the topic filter, or the event's `$events/...` name.
fn source_text(s: &Source) -> String {
    match s {
        Source::Topic(filter) => filter.clone(),
        Source::Event(e) => e.source_name().unwrap_or(e.field_name()).to_owned(),
    }
}

/// One running bridge as the view holds it: its counters, and where it goes and what it
/// carries (from the config; the password and TLS files are not kept).
#[derive(Debug)]
pub(crate) struct BridgeEntry {
    pub(crate) handle: BridgeHandle,
    pub(crate) remote: String,
    pub(crate) topics: Vec<String>,
}

impl BridgeEntry {
    pub(crate) fn new(config: &BridgeConfig, handle: BridgeHandle) -> Self {
        Self {
            handle,
            remote: config.address.clone(),
            topics: config.topic.clone(),
        }
    }
}

/// A rule as an operator sees it: what it reads and its counters now
/// ([`RulesView::rule_infos`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule SQL as written in the config.
    pub sql: String,
    /// Its FROM sources: topic filters and `$events/...` names, in SQL order.
    pub from: Vec<String>,
    /// Its counters (the name is [`RuleStats::name`]).
    pub stats: RuleStats,
}

/// A bridge as an operator sees it ([`RulesView::bridges`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeInfo {
    pub name: String,
    /// The remote broker, `host:port` as configured.
    pub remote: String,
    /// The topic lines as configured (Mosquitto's syntax: `PATTERN [DIR QOS LOCAL REMOTE]`).
    pub topics: Vec<String>,
    pub stats: BridgeStats,
}

/// A read-only view of the running rules and bridges, from [`super::Rules::view`]. Cheap to
/// clone (two `Arc`s and a weak broker handle); it keeps no rule running and outlives
/// [`super::Rules::shutdown`] harmlessly (the counters stop moving).
#[derive(Debug, Clone)]
pub struct RulesView {
    /// Weak: the broker holds this view (as a metrics source).
    pub(crate) handle: WeakBrokerHandle,
    pub(crate) rules: Arc<Vec<RuleEntry>>,
    pub(crate) bridges: Arc<Vec<BridgeEntry>>,
}

impl RulesView {
    /// Every rule's counters, in config order, with what waits in its session (0 once the
    /// broker is gone).
    #[must_use]
    pub fn rules(&self) -> Vec<RuleStats> {
        let broker = self.handle.upgrade();
        self.rules
            .iter()
            .map(|r| {
                let session = broker
                    .as_ref()
                    .and_then(|b| b.client(&RuleTask::client_id(&r.name)));
                let buffered = session
                    .as_ref()
                    .map_or(0, |i| (i.queued + i.inflight + i.stored) as u64);
                let dropped = session.as_ref().map_or(0, |i| i.dropped);
                r.counters.snapshot(&r.name, buffered, dropped)
            })
            .collect()
    }

    /// Every rule with its SQL and FROM sources and its counters, in config order.
    #[must_use]
    pub fn rule_infos(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .zip(self.rules())
            .map(|(r, stats)| RuleInfo {
                sql: r.sql.clone(),
                from: r.from.clone(),
                stats,
            })
            .collect()
    }

    /// Every bridge with its remote address, topic lines and counters, in config order.
    #[must_use]
    pub fn bridges(&self) -> Vec<BridgeInfo> {
        self.bridges
            .iter()
            .map(|b| BridgeInfo {
                name: b.handle.name().to_owned(),
                remote: b.remote.clone(),
                topics: b.topics.clone(),
                stats: b.handle.stats(),
            })
            .collect()
    }

    /// Whether there is neither a rule nor a bridge.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.bridges.is_empty()
    }
}
