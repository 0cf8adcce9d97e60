//! The service's counters and their Prometheus text (added to the broker's `/metrics`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hermod_broker::api::KvSpace;

use crate::topic::Op;

/// The error codes a rejection can carry (AWS's), for the `code` label.
const CODES: [u16; 8] = [400, 401, 403, 404, 409, 413, 415, 429];
const OPS: [Op; 3] = [Op::Get, Op::Update, Op::Delete];

/// Counters shared by the request task, the presence task and the metrics source.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// `[op][0 = accepted, 1 = rejected]`.
    requests: [[AtomicU64; 2]; 3],
    /// By code, in [`CODES`] order; the last slot is any other code (500 included).
    rejected: [AtomicU64; CODES.len() + 1],
    /// 500s: the store could not commit an update.
    store_failures: AtomicU64,
    /// Presence messages published.
    pub(crate) presence: AtomicU64,
}

fn op_index(op: Op) -> usize {
    match op {
        Op::Get => 0,
        Op::Update => 1,
        Op::Delete => 2,
    }
}

impl Counters {
    pub(crate) fn accepted(&self, op: Op) {
        self.requests[op_index(op)][0].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, op: Op, code: u16) {
        self.requests[op_index(op)][1].fetch_add(1, Ordering::Relaxed);
        let i = CODES.iter().position(|c| *c == code).unwrap_or(CODES.len());
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
        if code == 500 {
            self.store_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests answered (accepted or rejected), all ops.
    pub(crate) fn answered(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// What the metrics source reads.
#[derive(Clone, Debug)]
pub(crate) struct View {
    pub(crate) counters: Arc<Counters>,
    pub(crate) kv: KvSpace,
}

impl View {
    /// `hermod_shadow_*` in the Prometheus text format 0.0.4.
    pub(crate) fn prometheus_text(&self) -> String {
        let c = &self.counters;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP hermod_shadow_requests_total Shadow requests answered, by operation and result.\n# TYPE hermod_shadow_requests_total counter"
        );
        for op in OPS {
            for (j, result) in ["accepted", "rejected"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "hermod_shadow_requests_total{{op=\"{}\",result=\"{result}\"}} {}",
                    op.as_str(),
                    c.requests[op_index(op)][j].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP hermod_shadow_rejected_total Shadow requests rejected, by error code.\n# TYPE hermod_shadow_rejected_total counter"
        );
        for (i, code) in CODES.iter().enumerate() {
            let _ = writeln!(
                out,
                "hermod_shadow_rejected_total{{code=\"{code}\"}} {}",
                c.rejected[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "hermod_shadow_rejected_total{{code=\"other\"}} {}",
            c.rejected[CODES.len()].load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hermod_shadow_store_failures_total Updates and deletes answered 500 because the store could not commit them.\n# TYPE hermod_shadow_store_failures_total counter\nhermod_shadow_store_failures_total {}",
            c.store_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP hermod_shadow_documents Shadows stored (classic and named, deleted ones kept for their version included).\n# TYPE hermod_shadow_documents gauge\nhermod_shadow_documents {}",
            self.kv.len()
        );
        let entries = self.kv.entries();
        // `{thing}` and `{thing}/name/{shadow}`: the thing is the first level.
        let things: std::collections::HashSet<&str> = entries
            .iter()
            .map(|(k, _)| k.split('/').next().unwrap_or(k))
            .collect();
        let _ = writeln!(
            out,
            "# HELP hermod_shadow_things Things with at least one stored shadow.\n# TYPE hermod_shadow_things gauge\nhermod_shadow_things {}",
            things.len()
        );
        let _ = writeln!(
            out,
            "# HELP hermod_shadow_presence_published_total Presence messages published.\n# TYPE hermod_shadow_presence_published_total counter\nhermod_shadow_presence_published_total {}",
            c.presence.load(Ordering::Relaxed)
        );
        out
    }
}
