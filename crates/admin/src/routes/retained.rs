//! `/mqtt/retainer/...`: retained messages, listed (by filter, paged), read and deleted one
//! topic at a time. The topic in the path is URL-encoded (`a%2Fb`), or plain (`a/b`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hermod_broker::api::RetainedInfo;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiPath};
use crate::paging::{Paged, Query};
use crate::routes::qos_number;
use crate::state::AppState;

fn retained_json(m: &RetainedInfo) -> Value {
    json!({
        "topic": &*m.topic,
        "qos": qos_number(m.qos),
        "payload": STANDARD.encode(&m.payload),
        "payload_size": m.payload.len(),
    })
}

/// `GET /api/v5/mqtt/retainer/messages`; `topic` is a filter (default `#`).
pub(crate) async fn list(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Paged<Value>>, ApiError> {
    let page = q.page()?;
    let filter = q.get("topic").unwrap_or("#");
    if hermod_proto::topic::validate_topic_filter(filter).is_err() {
        return Err(ApiError::bad_request("`topic` is not a valid topic filter"));
    }
    let messages = state.handle.retained(filter);
    Ok(Json(page.apply(messages.iter(), retained_json)))
}

fn check_topic(topic: &str) -> Result<(), ApiError> {
    hermod_proto::topic::validate_topic_name(topic)
        .map_err(|_| ApiError::bad_request("not a valid topic name (no wildcards)"))
}

/// `GET /api/v5/mqtt/retainer/message/{topic}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_topic(&topic)?;
    state
        .handle
        .retained(&topic)
        .iter()
        .find(|m| *m.topic == *topic)
        .map(|m| Json(retained_json(m)))
        .ok_or_else(|| ApiError::not_found("no retained message on this topic"))
}

/// `DELETE /api/v5/mqtt/retainer/message/{topic}` (nothing is delivered to subscribers).
pub(crate) async fn delete(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    check_topic(&topic)?;
    if state.handle.delete_retained(&topic) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no retained message on this topic"))
    }
}
