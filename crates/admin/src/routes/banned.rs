//! `/banned`: the ban list, in EMQX's shape (`as` = `clientid`, `username`, `peerhost` or
//! `peerhost_net`). A new ban applies at once: new CONNECTs it matches are refused (0x8A), and
//! the connected clients it matches are kicked. Who added a ban and why is kept here (the
//! broker's list holds only what it needs to refuse), in memory.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use hermod_broker::banned::{BanEntry, BanRule, IpNet, format_rfc3339, parse_rfc3339, unix_secs};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::paging::{Paged, Query};
use crate::state::{AppState, BanNote};

/// A rule as EMQX names it: `(as, who)`.
fn rule_parts(rule: &BanRule) -> (&'static str, String) {
    match rule {
        BanRule::ClientId(c) => ("clientid", c.clone()),
        BanRule::Username(u) => ("username", u.clone()),
        BanRule::Address(net) => {
            let text = net.to_string();
            match text.split_once('/') {
                Some((addr, p)) if p == "32" && addr.contains('.') => ("peerhost", addr.to_owned()),
                Some((addr, "128")) => ("peerhost", addr.to_owned()),
                _ => ("peerhost_net", text),
            }
        }
    }
}

/// The rule for `(as, who)`.
fn parse_rule(kind: &str, who: &str) -> Result<BanRule, ApiError> {
    if who.is_empty() {
        return Err(ApiError::bad_request("`who` must not be empty"));
    }
    match kind {
        "clientid" => Ok(BanRule::ClientId(who.to_owned())),
        "username" => Ok(BanRule::Username(who.to_owned())),
        "peerhost" if !who.contains('/') => who
            .parse::<IpNet>()
            .map(BanRule::Address)
            .map_err(|_| ApiError::bad_request("`who` must be an IP address for peerhost")),
        "peerhost" => Err(ApiError::bad_request(
            "`who` must be an IP address for peerhost (a network is peerhost_net)",
        )),
        "peerhost_net" => who
            .parse::<IpNet>()
            .map(BanRule::Address)
            .map_err(|e| ApiError::bad_request(format!("`who`: {e}"))),
        _ => Err(ApiError::bad_request(
            "`as` must be clientid, username, peerhost or peerhost_net",
        )),
    }
}

fn ban_json(e: &BanEntry, note: Option<&BanNote>) -> Value {
    let (kind, who) = rule_parts(&e.rule);
    json!({
        "as": kind,
        "who": who,
        "until": e.until.map(format_rfc3339),
        "by": note.map_or("config", |n| n.by.as_str()),
        "reason": note.map_or("", |n| n.reason.as_str()),
        "at": note.map(|n| format_rfc3339(n.at)),
    })
}

/// `GET /api/v5/banned`.
pub(crate) async fn list(
    State(state): State<AppState>,
    q: Query,
) -> Result<Json<Paged<Value>>, ApiError> {
    let page = q.page()?;
    let bans = state.handle.bans();
    let notes = state.ban_notes().clone();
    Ok(Json(page.apply(bans.iter(), |e| ban_json(e, notes.get(&e.rule)))))
}

/// The body of `POST /banned`.
#[derive(Debug, Deserialize)]
pub(crate) struct BanBody {
    #[serde(rename = "as")]
    kind: String,
    who: String,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

/// `POST /api/v5/banned`: adds the ban and kicks the connected clients it matches.
pub(crate) async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<BanBody>,
) -> Result<Json<Value>, ApiError> {
    let rule = parse_rule(&body.kind, &body.who)?;
    let now = unix_secs(std::time::SystemTime::now());
    let until = match body.until.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let t = parse_rfc3339(s).map_err(|e| ApiError::bad_request(format!("`until`: {e}")))?;
            if t <= now {
                return Err(ApiError::bad_request("`until` is in the past"));
            }
            Some(t)
        }
    };
    if state
        .handle
        .bans()
        .iter()
        .any(|e| e.rule == rule && e.active_at(now))
    {
        return Err(ApiError::conflict("this ban exists (delete it first to change it)"));
    }
    let entry = BanEntry {
        rule: rule.clone(),
        until,
    };
    let note = BanNote {
        by: body.by.unwrap_or(caller.name),
        reason: body.reason.unwrap_or_default(),
        at: now,
    };
    state.ban_notes().insert(rule.clone(), note.clone());
    state.handle.ban(entry.clone());
    let kicked = kick_matching(&state, &rule);
    tracing::info!(ban = %entry, kicked, "admin API: ban added");
    Ok(Json(ban_json(&entry, Some(&note))))
}

/// Kicks the connected clients `rule` matches; returns how many.
fn kick_matching(state: &AppState, rule: &BanRule) -> usize {
    match rule {
        BanRule::ClientId(id) => usize::from(state.handle.kick(id)),
        BanRule::Username(u) => state
            .handle
            .clients()
            .iter()
            .filter(|c| c.online && c.username.as_deref() == Some(u.as_str()))
            .filter(|c| state.handle.kick(&c.client_id))
            .count(),
        BanRule::Address(net) => state
            .handle
            .clients()
            .iter()
            .filter(|c| {
                c.connection.as_ref().is_some_and(|k| {
                    let ip = match k.peer.ip() {
                        std::net::IpAddr::V6(v6) => v6
                            .to_ipv4_mapped()
                            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
                        v4 => v4,
                    };
                    net.contains(ip)
                })
            })
            .filter(|c| state.handle.kick(&c.client_id))
            .count(),
    }
}

/// `DELETE /api/v5/banned/{as}/{who}` (`who` URL-encoded; a network's `/` may be `%2F`).
pub(crate) async fn delete(
    State(state): State<AppState>,
    ApiPath((kind, who)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let rule = parse_rule(&kind, &who)?;
    if state.handle.unban(&rule) {
        state.ban_notes().remove(&rule);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such ban"))
    }
}
