//! `POST /publish`: a message published by the operator (no publisher, no ACL), as EMQX's.
//!
//! `properties` is accepted for EMQX compatibility but not forwarded: `BrokerHandle::publish`
//! takes none yet (noted in docs/admin-api.md).

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiJson};
use crate::routes::qos_from;
use crate::state::AppState;

/// The body.
#[derive(Debug, Deserialize)]
pub(crate) struct PublishBody {
    topic: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    payload_encoding: Option<String>,
    #[serde(default)]
    retain: bool,
    #[serde(default)]
    #[allow(dead_code)]
    properties: Option<serde_json::Map<String, Value>>,
    /// EMQX's field; ignored (the operator is the publisher).
    #[serde(default)]
    #[allow(dead_code)]
    clientid: Option<String>,
}

/// `POST /api/v5/publish` → `{"id"}`.
pub(crate) async fn publish(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<Json<Value>, ApiError> {
    let topic = body.topic.as_str();
    hermod_proto::topic::validate_topic_name(topic)
        .map_err(|_| ApiError::bad_request("`topic` is not a valid topic name (no wildcards, not empty)"))?;
    if topic.split('/').count() > state.max_topic_levels {
        return Err(ApiError::bad_request("`topic` has too many levels"));
    }
    let qos = qos_from(body.qos)?;
    let payload = match body.payload_encoding.as_deref().unwrap_or("plain") {
        "plain" => Bytes::from(body.payload.into_bytes()),
        "base64" => Bytes::from(
            STANDARD
                .decode(body.payload.trim())
                .map_err(|e| ApiError::bad_request(format!("`payload` is not base64: {e}")))?,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "`payload_encoding` must be plain or base64",
            ));
        }
    };
    if payload.len() + topic.len() > state.max_packet_size {
        return Err(ApiError::bad_request(
            "the message is larger than max_packet_size",
        ));
    }
    let id = crate::users_store::random_bytes::<16>().map_err(ApiError::internal)?;
    let id: String = id.iter().map(|b| format!("{b:02X}")).collect();
    state.handle.publish(topic, payload, qos, body.retain);
    Ok(Json(json!({ "id": id })))
}
