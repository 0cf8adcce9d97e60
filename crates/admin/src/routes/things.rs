//! `/things`: device shadows, read from the broker's store (`BrokerHandle::kv`, where the
//! shadow service keeps them), answered as the shadow service answers `get`.
//!
//! Read-only for now: an update or delete must go through the shadow service (one request at a
//! time per thing, committed before it is answered, delta and documents published), so it is
//! made over MQTT (`$hermod/things/THING/shadow/update`, with an ACL grant).

use axum::Json;
use axum::extract::State;
use hermod_shadow::service::{KV_NAMESPACE, split_store_key};
use hermod_shadow::{Engine, Limits, Models, Op, Prefix, Request, Shadow};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiPath};
use crate::paging::{Paged, Query};
use crate::state::AppState;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

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
