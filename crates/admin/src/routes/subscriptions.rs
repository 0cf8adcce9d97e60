//! `/subscriptions`, `/topics`, and one client's subscriptions: list, subscribe and
//! unsubscribe on its behalf (through its connection, so the subscribe ACL, quotas and retained
//! delivery apply as for its own SUBSCRIBE).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hermod_broker::api::{CommandError, SubscriptionInfo};
use hermod_proto::{RetainHandling, SubscriptionOptions};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiJson, ApiPath};
use crate::paging::{Paged, Query};
use crate::routes::{flag01, qos_from, qos_number};
use crate::state::AppState;

/// The contract's subscription object (`topic` is the filter as subscribed, `$share/g/f` for a
/// shared one).
fn sub_json(s: &SubscriptionInfo, node: &str) -> Value {
    json!({
        "clientid": &*s.client_id,
        "topic": s.filter,
        "qos": qos_number(s.options.qos),
        "nl": u8::from(s.options.no_local),
        "rap": u8::from(s.options.retain_as_published),
        "rh": s.options.retain_handling as u8,
        "node": node,
    })
}

/// `GET /api/v5/subscriptions`: paged; `clientid` is a direct look-up, the other filters
/// (`topic`, `match_topic`, `qos`, `share_group`) filter the one tree walk.
pub(crate) async fn list(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Paged<Value>>, ApiError> {
    let page = q.page()?;
    let qos = q.number::<u8>("qos")?.map(qos_from).transpose()?;
    let topic = q.get("topic");
    let match_topic = q.get("match_topic");
    let group = q.get("share_group");
    let subs = match q.get("clientid") {
        Some(id) => state
            .handle
            .client_subscriptions(id)
            .await
            .unwrap_or_default(),
        None => state.handle.subscriptions(),
    };
    let keep = |s: &&SubscriptionInfo| {
        topic.is_none_or(|t| s.topic == t || s.filter == t)
            && match_topic.is_none_or(|t| hermod_proto::topic::matches(&s.topic, t))
            && qos.is_none_or(|q| s.options.qos == q)
            && group.is_none_or(|g| s.share_group.as_deref() == Some(g))
    };
    Ok(Json(
        page.apply(subs.iter().filter(keep), |s| sub_json(s, &state.node)),
    ))
}

/// `GET /api/v5/topics`: distinct subscribed filters (without `$share/{group}/`), sorted.
pub(crate) async fn topics(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Paged<Value>>, ApiError> {
    let page = q.page()?;
    let only = q.get("topic");
    let subs = state.handle.subscriptions();
    let distinct: BTreeSet<&str> = subs
        .iter()
        .map(|s| s.topic.as_str())
        .filter(|t| only.is_none_or(|o| o == *t))
        .collect();
    Ok(Json(page.apply(distinct, |t| {
        json!({ "topic": t, "node": state.node })
    })))
}

/// `GET /api/v5/clients/{clientid}/subscriptions` (a list, not paged, as EMQX's).
pub(crate) async fn of_client(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let subs = state
        .handle
        .client_subscriptions(&id)
        .await
        .ok_or_else(ApiError::client_not_found)?;
    Ok(Json(subs.iter().map(|s| sub_json(s, &state.node)).collect()))
}

/// The body of `POST .../subscribe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribeBody {
    topic: String,
    #[serde(default)]
    qos: u8,
    #[serde(default, deserialize_with = "flag01")]
    nl: bool,
    #[serde(default, deserialize_with = "flag01")]
    rap: bool,
    #[serde(default)]
    rh: u8,
}

fn command_error(e: CommandError) -> ApiError {
    match e {
        CommandError::NotConnected => ApiError::client_not_found(),
        CommandError::InvalidFilter(why) => ApiError::bad_request(format!("`topic`: {why}")),
        CommandError::Busy => ApiError::unavailable("the client is busy or going away; try again"),
        CommandError::Refused(code) => ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!("the broker refused the subscription (reason code {:#04x})", code.0),
        ),
        other => ApiError::internal(other),
    }
}

/// `POST /api/v5/clients/{clientid}/subscribe`.
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SubscribeBody>,
) -> Result<Json<Value>, ApiError> {
    let retain_handling = match body.rh {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(ApiError::bad_request("`rh` must be 0, 1 or 2")),
    };
    let options = SubscriptionOptions {
        qos: qos_from(body.qos)?,
        no_local: body.nl,
        retain_as_published: body.rap,
        retain_handling,
    };
    let granted = state
        .handle
        .subscribe(&id, &body.topic, options)
        .await
        .map_err(command_error)?;
    Ok(Json(json!({
        "clientid": id,
        "topic": body.topic,
        "qos": qos_number(granted),
        "node": state.node,
    })))
}

/// The body of `POST .../unsubscribe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnsubscribeBody {
    topic: String,
}

/// `POST /api/v5/clients/{clientid}/unsubscribe`: 204 whether or not it was subscribed.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UnsubscribeBody>,
) -> Result<StatusCode, ApiError> {
    state
        .handle
        .unsubscribe(&id, &body.topic)
        .await
        .map_err(command_error)?;
    Ok(StatusCode::NO_CONTENT)
}
