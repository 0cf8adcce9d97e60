//! The rules' and bridges' counters as Prometheus text (`hermod_rule_*`, `hermod_bridge_*`),
//! for the broker's `/metrics` (see [`super::Rules::metrics_source`]).

use super::stats::RuleStats;
use super::view::RulesView;

impl RulesView {
    /// The counters as Prometheus text (`hermod_rule_*`), to add to `/metrics`.
    #[must_use]
    pub fn prometheus_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if self.rules.is_empty() && self.bridges.is_empty() {
            return out;
        }
        let stats = self.rules();
        let rule_counter = |out: &mut String,
                            name: &str,
                            help: &str,
                            get: &dyn Fn(&RuleStats) -> u64| {
            if stats.is_empty() {
                return;
            }
            let _ = writeln!(
                out,
                "# HELP hermod_rule_{name}_total {help}\n# TYPE hermod_rule_{name}_total counter"
            );
            for s in &stats {
                let _ = writeln!(
                    out,
                    "hermod_rule_{name}_total{{rule=\"{}\"}} {}",
                    s.name,
                    get(s)
                );
            }
        };
        rule_counter(&mut out, "matched", "Inputs the rule ran on.", &|s| {
            s.matched
        });
        rule_counter(&mut out, "passed", "Inputs for which WHERE held.", &|s| {
            s.passed
        });
        rule_counter(
            &mut out,
            "failed",
            "Inputs on which the rule SQL failed.",
            &|s| s.failed,
        );
        rule_counter(
            &mut out,
            "dropped",
            "Messages dropped from the rule's buffer (max_buffered, on_full).",
            &|s| s.dropped,
        );
        if !stats.is_empty() {
            let _ = writeln!(
                out,
                "# HELP hermod_rule_buffered Messages waiting in the rule's session.\n# TYPE hermod_rule_buffered gauge"
            );
        }
        for s in &stats {
            let _ = writeln!(
                out,
                "hermod_rule_buffered{{rule=\"{}\"}} {}",
                s.name, s.buffered
            );
        }
        for (name, help) in [
            ("succeeded", "Action writes done."),
            ("failed", "Action writes failed for good."),
            ("retried", "Action writes tried again."),
        ] {
            if stats.is_empty() {
                break;
            }
            let _ = writeln!(
                out,
                "# HELP hermod_rule_action_{name}_total {help}\n# TYPE hermod_rule_action_{name}_total counter"
            );
            for s in &stats {
                for a in &s.actions {
                    let v = match name {
                        "succeeded" => a.succeeded,
                        "failed" => a.failed,
                        _ => a.retried,
                    };
                    let _ = writeln!(
                        out,
                        "hermod_rule_action_{name}_total{{rule=\"{}\",action=\"{}\"}} {v}",
                        s.name, a.target
                    );
                }
            }
        }
        for (name, help, kind) in [
            (
                "connected",
                "1 while the bridge's link is up (both sides connected).",
                "gauge",
            ),
            (
                "messages_out",
                "Messages the remote broker took.",
                "counter",
            ),
            (
                "messages_in",
                "Messages taken from the remote broker.",
                "counter",
            ),
            (
                "messages_dropped",
                "Messages the bridge dropped.",
                "counter",
            ),
            (
                "reconnects",
                "Times the link came up again after being down.",
                "counter",
            ),
        ] {
            if self.bridges.is_empty() {
                break;
            }
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(
                out,
                "# HELP hermod_bridge_{name}{suffix} {help}\n# TYPE hermod_bridge_{name}{suffix} {kind}"
            );
            for b in self.bridges.iter() {
                let s = b.handle.stats();
                let v = match name {
                    "connected" => u64::from(s.connected),
                    "messages_out" => s.messages_out,
                    "messages_in" => s.messages_in,
                    "messages_dropped" => s.messages_dropped,
                    _ => s.reconnects,
                };
                let _ = writeln!(
                    out,
                    "hermod_bridge_{name}{suffix}{{bridge=\"{}\"}} {v}",
                    b.handle.name()
                );
            }
        }
        out
    }
}
