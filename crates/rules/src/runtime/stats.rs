//! Per rule and per action counters, as EMQX names them where it has a name for them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one rule, updated by its task.
#[derive(Debug, Default)]
pub(crate) struct RuleCounters {
    pub(crate) matched: AtomicU64,
    pub(crate) passed: AtomicU64,
    pub(crate) no_result: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) actions: Vec<ActionCounters>,
}

/// Counters of one action.
#[derive(Debug, Default)]
pub(crate) struct ActionCounters {
    pub(crate) target: String,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) pending: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// One rule's counters at one moment ([`super::Rules::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub name: String,
    /// Inputs the rule ran on (messages from its topics, events).
    pub matched: u64,
    /// Inputs for which WHERE held: a row went to the actions.
    pub passed: u64,
    /// Inputs for which WHERE did not hold.
    pub no_result: u64,
    /// Inputs on which the SQL failed (a function given the wrong type...): counted, skipped.
    pub failed: u64,
    /// Messages finished (every action done) and acknowledged, so gone from the buffer.
    pub acked: u64,
    /// Messages waiting in the rule's session (in memory and on disk), from the broker.
    pub buffered: u64,
    /// Messages dropped from the rule's session because it was full (`max_buffered`,
    /// `on_full`), from the broker.
    pub dropped: u64,
    pub actions: Vec<ActionStats>,
}

/// One action's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionStats {
    /// `sqlite:local`, `http:hook`, `republish`.
    pub target: String,
    /// Writes done.
    pub succeeded: u64,
    /// Writes that failed for good (the statement is wrong for this row, the server said
    /// 4xx): counted and logged, the message is not retried.
    pub failed: u64,
    /// Attempts after a failure that may pass (sink unreachable, queue full, 5xx).
    pub retried: u64,
    /// Writes under way now.
    pub pending: u64,
}

impl RuleCounters {
    pub(crate) fn snapshot(&self, name: &str, buffered: u64, dropped: u64) -> RuleStats {
        RuleStats {
            name: name.to_owned(),
            matched: get(&self.matched),
            passed: get(&self.passed),
            no_result: get(&self.no_result),
            failed: get(&self.failed),
            acked: get(&self.acked),
            buffered,
            dropped,
            actions: self
                .actions
                .iter()
                .map(|a| ActionStats {
                    target: a.target.clone(),
                    succeeded: get(&a.succeeded),
                    failed: get(&a.failed),
                    retried: get(&a.retried),
                    pending: get(&a.pending),
                })
                .collect(),
        }
    }
}
