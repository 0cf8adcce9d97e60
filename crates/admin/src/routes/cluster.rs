//! `/cluster`: this node's view of the cluster (Hermod's own; `hermod ctl cluster status`).
//!
//! Clustered (a `[cluster]` section, [`crate::Services::cluster`] given): hermod-cluster's
//! `ClusterStatus` as JSON (`node`, `nats_state`, `nats_server`, `jetstream_ready`,
//! `replicas`, `nodes`, `forwarded`, `received`, `forward_failures`, `dropped`, `sessions`,
//! `sessions_moved_in`, `sessions_moved_out`) plus `"enabled": true`. Not clustered: `{"enabled": false, "node": <this node>, "nodes": []}`,
//! 200 as well: a single node is a valid state, not an error.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /api/v5/cluster`.
pub(crate) async fn status(State(state): State<AppState>) -> Json<Value> {
    let Some(cluster) = &state.cluster else {
        return Json(json!({"enabled": false, "node": state.node, "nodes": []}));
    };
    let mut v = serde_json::to_value(cluster.status().await).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert("enabled".into(), Value::Bool(true));
    }
    Json(v)
}
