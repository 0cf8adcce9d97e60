//! `/rules` and `/bridges`: the rules and bridges of the config file, read-only, with their
//! counters (issue 12: "per rule and action: matched, succeeded, failed, dropped, buffered").
//!
//! Shapes follow EMQX 5 where it has one: a rule is `{id, name, sql, enable, from, actions,
//! metrics, ...}` in a paged `{data, meta}` list, and `metrics` carries EMQX's dotted names
//! (`failed.exception`, `actions.success`...) next to Hermod's own (`no_result`, `acked`,
//! `buffered`, `dropped`, and per action `succeeded`, `failed`, `retried`, `pending`), since
//! the runtime counts more than EMQX does. A bridge is EMQX's `{id: "mqtt:NAME", type, name,
//! enable, status, server}` plus its topic lines and counters; the list is a plain array, as
//! EMQX's. Rules run as configured (there is no enable switch), so `enable` is always true.
//! Without rules or bridges (none configured, or the caller gave no view) the lists are empty.

use axum::Json;
use axum::extract::State;
use hermod_rules::runtime::{BridgeInfo, RuleInfo};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiPath};
use crate::paging::{Paged, Query};
use crate::state::AppState;

fn rule_json(r: &RuleInfo, node: &str) -> Value {
    let s = &r.stats;
    let success: u64 = s.actions.iter().map(|a| a.succeeded).sum();
    let failed: u64 = s.actions.iter().map(|a| a.failed).sum();
    let actions: Vec<Value> = s
        .actions
        .iter()
        .map(|a| {
            json!({
                "target": a.target,
                "succeeded": a.succeeded,
                "failed": a.failed,
                "retried": a.retried,
                "pending": a.pending,
            })
        })
        .collect();
    json!({
        "id": s.name,
        "name": s.name,
        "sql": r.sql,
        "from": r.from,
        "enable": true,
        "description": "",
        "actions": s.actions.iter().map(|a| a.target.as_str()).collect::<Vec<_>>(),
        "node": node,
        "metrics": {
            "matched": s.matched,
            "passed": s.passed,
            "no_result": s.no_result,
            "failed": s.failed,
            "acked": s.acked,
            "buffered": s.buffered,
            "dropped": s.dropped,
            "failed.exception": s.failed,
            "failed.no_result": s.no_result,
            "actions.total": success.saturating_add(failed),
            "actions.success": success,
            "actions.failed": failed,
            "actions": actions,
        },
    })
}

fn bridge_json(b: &BridgeInfo, node: &str) -> Value {
    let s = &b.stats;
    json!({
        "id": format!("mqtt:{}", b.name),
        "type": "mqtt",
        "name": b.name,
        "enable": true,
        "status": if s.connected { "connected" } else { "disconnected" },
        "connected": s.connected,
        "server": b.remote,
        "topics": b.topics,
        "node": node,
        "metrics": {
            "messages_out": s.messages_out,
            "messages_in": s.messages_in,
            "messages_dropped": s.messages_dropped,
            "reconnects": s.reconnects,
            "failed_connects": s.failed_connects,
        },
    })
}

fn rule_infos(state: &AppState) -> Vec<RuleInfo> {
    state
        .rules
        .as_ref()
        .map(hermod_rules::runtime::RulesView::rule_infos)
        .unwrap_or_default()
}

/// `GET /api/v5/rules`: every rule with its counters, paged (`page`, `limit`), config order.
pub(crate) async fn list(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Paged<Value>>, ApiError> {
    let page = q.page()?;
    let rules = rule_infos(&state);
    Ok(Json(
        page.apply(rules.iter(), |r| rule_json(r, &state.node)),
    ))
}

/// `GET /api/v5/rules/{id}`: one rule (its id is its name); 404 `NOT_FOUND` if there is none.
pub(crate) async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    rule_infos(&state)
        .iter()
        .find(|r| r.stats.name == id)
        .map(|r| Json(rule_json(r, &state.node)))
        .ok_or_else(|| ApiError::not_found(format!("no rule named `{id}`")))
}

/// `GET /api/v5/bridges`: every bridge with its state and counters, config order.
pub(crate) async fn bridges(State(state): State<AppState>) -> Json<Vec<Value>> {
    let list = state
        .rules
        .as_ref()
        .map(hermod_rules::runtime::RulesView::bridges)
        .unwrap_or_default();
    Json(list.iter().map(|b| bridge_json(b, &state.node)).collect())
}
