//! `/things`: device shadows, read from the broker's store (`BrokerHandle::kv`, where the
//! shadow service keeps them), answered as the shadow service answers `get`.
//!
//! Updates and deletes go through the shadow service's own queue ([`ShadowClient`]): one
//! request at a time per thing, committed before it is answered, `update/delta` and
//! `update/documents` published to the device as for an MQTT request.
//!
//! [`ShadowClient`]: hermod_shadow::service::ShadowClient

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use hermod_shadow::service::{KV_NAMESPACE, now_secs, split_store_key};
use hermod_shadow::{Engine, Limits, Models, Op, Prefix, Request, Shadow};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiPath};
use crate::paging::{Paged, Query};
use crate::state::AppState;

/// `GET /api/v5/things`: every thing with a shadow (deleted ones not listed), with its shadows'
/// names, versions and last update; paged, in thing-name order.
pub(crate) async fn list(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Paged<Value>>, ApiError> {
    let page = q.page()?;
    let mut things: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, bytes) in state.handle.kv(KV_NAMESPACE).entries() {
        let Ok(shadow) = Shadow::from_bytes(&bytes) else {
            continue;
        };
        if !shadow.exists() {
            continue;
        }
        let (thing, name) = split_store_key(&key);
        let entry = json!({
            "name": name,
            "version": shadow.version,
            "timestamp": shadow.timestamp,
        });
        match things.last_mut() {
            Some((t, shadows)) if t == thing => shadows.push(entry),
            _ => things.push((thing.to_owned(), vec![entry])),
        }
    }
    Ok(Json(page.apply(
        things.iter(),
        |(thing, shadows)| json!({ "thing": thing, "shadows": shadows }),
    )))
}

/// `GET /api/v5/things/{thing}/shadow[?name=NAME]`: the document as `get/accepted` gives it
/// (`state` with `desired`, `reported` and `delta`, `metadata`, `version`, `timestamp`); 404
/// when there is none.
pub(crate) async fn get(
    State(state): State<AppState>,
    ApiPath(thing): ApiPath<String>,
    q: Query,
) -> Result<Json<Value>, ApiError> {
    let name = q.get("name");
    let request = Request::new(Prefix::Hermod, &thing, name, Op::Get)
        .ok_or_else(|| ApiError::bad_request("not a valid thing or shadow name"))?;
    let key = hermod_shadow::service::store_key(&request);
    let current = match state.handle.kv(KV_NAMESPACE).get(&key) {
        Some(bytes) => Some(
            Shadow::from_bytes(&bytes)
                .map_err(|e| ApiError::internal(format!("stored shadow unreadable: {e}")))?,
        ),
        None => None,
    };
    let engine = Engine::new(Limits::default(), Models::none());
    let outcome = engine.handle(&request, b"", current.as_ref(), now_secs());
    let reply = outcome
        .replies
        .first()
        .ok_or_else(|| ApiError::internal("no answer from the shadow engine"))?;
    let doc: Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| ApiError::internal(format!("shadow answer: {e}")))?;
    if outcome.is_accepted() {
        Ok(Json(doc))
    } else {
        let message = doc["message"].as_str().unwrap_or("no shadow").to_owned();
        Err(ApiError::not_found(message))
    }
}

/// How long an update or delete may wait for the shadow service's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// `PUT /api/v5/things/{thing}/shadow[?name=NAME]` with an AWS update document
/// (`{"state":{"desired":{...}}}`): the `update/accepted` document, or the rejection with its
/// AWS code as the HTTP status.
pub(crate) async fn update(
    State(state): State<AppState>,
    ApiPath(thing): ApiPath<String>,
    q: Query,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    through_service(&state, &thing, q.get("name"), Op::Update, body).await
}

/// `DELETE /api/v5/things/{thing}/shadow[?name=NAME]`: the `delete/accepted` document
/// (`version`, `timestamp`), or 404.
pub(crate) async fn delete(
    State(state): State<AppState>,
    ApiPath(thing): ApiPath<String>,
    q: Query,
) -> Result<Json<Value>, ApiError> {
    through_service(&state, &thing, q.get("name"), Op::Delete, Bytes::new()).await
}

async fn through_service(
    state: &AppState,
    thing: &str,
    name: Option<&str>,
    op: Op,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let client = state.shadows.as_ref().ok_or_else(|| {
        ApiError::unavailable("the shadow service is off (`[shadow] enabled = false`)")
    })?;
    let request = Request::new(Prefix::Hermod, thing, name, op)
        .ok_or_else(|| ApiError::bad_request("not a valid thing or shadow name"))?;
    let answer = tokio::time::timeout(ANSWER_WAIT, client.request(request, body))
        .await
        .map_err(|_| ApiError::unavailable("the shadow service did not answer in time"))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let doc: Value = serde_json::from_slice(&answer.payload)
        .map_err(|e| ApiError::internal(format!("shadow answer: {e}")))?;
    if answer.accepted {
        return Ok(Json(doc));
    }
    let message = doc["message"].as_str().unwrap_or("rejected").to_owned();
    let (status, code) = match doc["code"].as_u64() {
        Some(400 | 415) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
        Some(404) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Some(409) => (StatusCode::CONFLICT, "VERSION_CONFLICT"),
        Some(413) => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
        Some(429) => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
    };
    Err(ApiError::new(status, code, message))
}
