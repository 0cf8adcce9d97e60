//! `/clients`: list (paged, filtered), one client, kick.
//!
//! Exact `clientid` filters are hash look-ups (`BrokerHandle::client`), so asking for a few
//! clients costs the same with 10 or 10 million sessions; other filters walk the snapshot once
//! and only the page asked for is turned into JSON. `username` has no index in the broker, so
//! it filters the listing (one pass).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hermod_broker::api::ClientInfo;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiPath};
use crate::paging::{Paged, Query};
use crate::routes::rfc3339;
use crate::state::AppState;

/// `expiry_interval` for a session that never expires (MQTT 5's 0xFFFFFFFF).
const NEVER: u64 = u32::MAX as u64;

/// The contract's client object.
pub(crate) fn client_json(c: &ClientInfo, node: &str) -> Value {
    let conn = c.connection.as_ref();
    json!({
        "clientid": &*c.client_id,
        "username": c.username.as_deref(),
        "ip_address": conn.map(|k| k.peer.ip().to_string()),
        "port": conn.map(|k| k.peer.port()),
        "connected": c.online,
        "proto_name": "MQTT",
        "proto_ver": conn.map(|k| k.protocol.level()),
        "keepalive": conn.map(|k| k.keep_alive),
        "clean_start": conn.map(|k| k.clean_start),
        "expiry_interval": c.expiry_interval.map_or(NEVER, |d| d.as_secs()),
        "connected_at": conn.map(|k| rfc3339(k.connected_at)),
        "subscriptions_cnt": c.subscriptions,
        "mqueue_len": c.queued,
        "inflight_cnt": c.inflight,
        "node": node,
        "is_bridge": false,
    })
}

/// The non-key filters of `GET /clients`.
#[derive(Debug, Default)]
struct Filters<'a> {
    usernames: Vec<&'a str>,
    like_clientid: Option<&'a str>,
    ip_address: Option<std::net::IpAddr>,
    connected: Option<bool>,
    proto_ver: Option<u8>,
}

impl<'a> Filters<'a> {
    fn parse(q: &'a Query) -> Result<Self, ApiError> {
        let connected = match q.get("conn_state") {
            None => None,
            Some("connected") => Some(true),
            Some("disconnected") => Some(false),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "`conn_state` must be connected or disconnected",
                ));
            }
        };
        let proto_ver = match q.number::<u8>("proto_ver")? {
            None => None,
            Some(v @ 3..=5) => Some(v),
            Some(_) => return Err(ApiError::bad_request("`proto_ver` must be 3, 4 or 5")),
        };
        let ip_address = q
            .get("ip_address")
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::bad_request("`ip_address` must be an IP address"))
            })
            .transpose()?;
        Ok(Self {
            usernames: q.all("username"),
            like_clientid: q.get("like_clientid"),
            ip_address,
            connected,
            proto_ver,
        })
    }

    fn matches(&self, c: &ClientInfo) -> bool {
        let conn = c.connection.as_ref();
        (self.usernames.is_empty()
            || c.username
                .as_deref()
                .is_some_and(|u| self.usernames.contains(&u)))
            && self.like_clientid.is_none_or(|s| c.client_id.contains(s))
            && self
                .ip_address
                .is_none_or(|ip| conn.is_some_and(|k| k.peer.ip() == ip))
            && self.connected.is_none_or(|on| c.online == on)
            && self
                .proto_ver
                .is_none_or(|v| conn.is_some_and(|k| k.protocol.level() == v))
    }
}

/// `GET /api/v5/clients`.
pub(crate) async fn list(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Paged<Value>>, ApiError> {
    let page = q.page()?;
    let filters = Filters::parse(&q)?;
    let ids = q.all("clientid");
    let node = state.node.as_str();
    let out = if ids.is_empty() {
        let all = state.handle.clients();
        page.apply(all.iter().filter(|c| filters.matches(c)), |c| {
            client_json(c, node)
        })
    } else {
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        let found: Vec<ClientInfo> = ids
            .into_iter()
            .filter_map(|id| state.handle.client(id))
            .filter(|c| filters.matches(c))
            .collect();
        page.apply(found.iter(), |c| client_json(c, node))
    };
    Ok(Json(out))
}

/// `GET /api/v5/clients/{clientid}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .handle
        .client(&id)
        .map(|c| Json(client_json(&c, &state.node)))
        .ok_or_else(ApiError::client_not_found)
}

/// `DELETE /api/v5/clients/{clientid}`: disconnects the client (v5: DISCONNECT 0x98
/// "Administrative action" [MQTT-3.14.2-1]); its session stays as its expiry says.
pub(crate) async fn kick(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.handle.kick(&id) {
        tracing::info!(client_id = %id, "admin API: client kicked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::client_not_found())
    }
}
