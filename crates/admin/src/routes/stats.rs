//! `/stats`, `/metrics` (JSON), `/monitor`, `/monitor_current`, and Prometheus' `/metrics`.
//!
//! Every mapping from the broker's [`Stats`] to EMQX's key names is in [`stats_keys`] and
//! [`metrics_keys`]: when `Stats` grows a field, add one line there (and to the OpenAPI file).
//! EMQX's keys that Hermod does not count are left out rather than answered as 0.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use hermod_broker::api::Stats;
use hermod_broker::metrics::MetricsSnapshot;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::monitor::{Sample, unix_millis};
use crate::paging::Query;
use crate::state::AppState;

/// `/stats` keys (EMQX 5 names). EMQX's `connections.count` counts sessions (connected or
/// not), `live_connections.count` the connected ones.
pub(crate) fn stats_keys(s: &Stats) -> Vec<(&'static str, u64)> {
    vec![
        ("connections.count", s.sessions as u64),
        ("connections.max", s.clients_maximum),
        ("live_connections.count", s.clients_connected),
        ("sessions.count", s.sessions as u64),
        ("subscriptions.count", s.subscriptions as u64),
        ("subscriptions.shared.count", s.shared_subscriptions as u64),
        ("topics.count", s.topics as u64),
        ("retained.count", s.retained as u64),
    ]
}

/// `/metrics` keys (EMQX 5 names; `hermod.*` for Hermod's own). Counters but the `hermod.*`
/// gauges.
pub(crate) fn metrics_keys(s: &Stats, m: &MetricsSnapshot) -> Vec<(&'static str, u64)> {
    let connects: u64 = m.connects.iter().map(|l| l.results[0]).sum();
    let disconnects: u64 = m.disconnects.iter().sum();
    vec![
        ("client.connected", connects),
        ("client.disconnected", disconnects),
        ("messages.received", s.messages_received),
        ("messages.sent", s.messages_sent),
        ("messages.dropped", s.messages_dropped),
        ("messages.expired", s.messages_expired),
        ("messages.dropped.no_subscribers", s.messages_no_subscribers),
        ("bytes.received", s.bytes_received),
        ("bytes.sent", s.bytes_sent),
        ("packets.received", s.packets_received),
        ("packets.sent", s.packets_sent),
        ("client.auth.failure", s.auth_failures),
        ("session.expired", s.clients_expired),
        ("hermod.publish_bytes_received", s.publish_bytes_received),
        ("hermod.publish_bytes_sent", s.publish_bytes_sent),
        ("hermod.clients_connected", s.clients_connected),
        ("hermod.sessions_offline", s.clients_disconnected as u64),
        ("hermod.inflight", s.inflight as u64),
        ("hermod.queued", s.queued as u64),
        ("hermod.store_bytes", s.store_bytes),
        ("hermod.connections_refused", s.connections_refused),
        ("hermod.protocol_errors", s.protocol_errors),
        ("hermod.store_available", u64::from(s.store_available)),
    ]
}

fn object(node: &str, keys: Vec<(&'static str, u64)>) -> Value {
    let mut m = Map::new();
    m.insert("node".into(), Value::from(node));
    for (k, v) in keys {
        m.insert(k.into(), Value::from(v));
    }
    Value::Object(m)
}

/// One node's answer, or the object alone with `?aggregate=true`.
fn per_node(q: &Query, v: Value) -> Result<Json<Value>, ApiError> {
    if q.flag("aggregate")? {
        Ok(Json(v))
    } else {
        Ok(Json(Value::Array(vec![v])))
    }
}

/// `GET /api/v5/stats`.
pub(crate) async fn stats(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Value>, ApiError> {
    let s = state.handle.stats();
    per_node(&q, object(&state.node, stats_keys(&s)))
}

/// `GET /api/v5/metrics` (JSON counters).
pub(crate) async fn metrics(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Value>, ApiError> {
    let m = state.handle.metrics();
    let s = state.handle.stats_with(&m);
    per_node(&q, object(&state.node, metrics_keys(&s, &m)))
}

/// `GET /api/v5/monitor?latest=N`: the 10 s samples of the last N seconds (default 3600).
pub(crate) async fn monitor(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Vec<Sample>>, ApiError> {
    let latest = q.number::<u64>("latest")?.unwrap_or(3600);
    let since = unix_millis().saturating_sub(latest.saturating_mul(1000));
    Ok(Json(state.monitor.history(since)))
}

/// `GET /api/v5/monitor_current`: gauges now, rates over the last few seconds.
pub(crate) async fn monitor_current(State(state): State<AppState>) -> Json<Value> {
    let s = state.handle.stats();
    let rates = state.monitor.rates(Instant::now(), &s);
    let round = |r: f64| (r * 100.0).round() / 100.0;
    Json(json!({
        "connections": s.sessions,
        "live_connections": s.connections,
        "sessions": s.sessions,
        "subscriptions": s.subscriptions,
        "topics": s.topics,
        "retained_msg_count": s.retained,
        "received_msg_rate": round(rates.received),
        "sent_msg_rate": round(rates.sent),
        "dropped_msg_rate": round(rates.dropped),
    }))
}

/// `GET /metrics`: Prometheus text exposition, without credentials (a scrape target).
pub(crate) async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let h = state.handle.clone();
    let text = tokio::task::spawn_blocking(move || h.prometheus_text())
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
