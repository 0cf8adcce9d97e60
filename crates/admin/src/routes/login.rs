//! `status` (no credentials), `login` (no credentials, throttled) and `logout`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Caller, Peer, throttled};
use crate::error::{ApiError, ApiJson};
use crate::paging::Query;
use crate::state::AppState;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `GET /api/v5/status`: 200 while serving, 503 once shutting down; `?format=json` for JSON.
pub(crate) async fn status(State(state): State<AppState>, q: Query) -> Response {
    let running = !state.stopping.is_cancelled();
    let code = if running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if q.get("format") == Some("json") {
        let body = json!({
            "status": if running { "running" } else { "stopping" },
            "version": VERSION,
            "uptime": state.started.elapsed().as_secs(),
        });
        return (code, Json(body)).into_response();
    }
    let text = if running {
        format!("hermod {VERSION} is running")
    } else {
        format!("hermod {VERSION} is stopping")
    };
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// The body of `POST /login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

/// `POST /api/v5/login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ip = peer.map_or(Peer::Unix, |Extension(p)| p).ip();
    if state.throttle.blocked(ip) {
        return Err(throttled());
    }
    match state
        .accounts
        .check_password(&body.username, &body.password)
        .await?
    {
        Some((role, change_required)) => {
            state.throttle.succeed(ip);
            let token = state
                .tokens
                .issue(&body.username, role)
                .map_err(ApiError::internal)?;
            tracing::info!(user = %body.username, peer = %ip, "admin API: login");
            Ok(Json(json!({
                "token": token,
                "role": role.as_str(),
                "version": VERSION,
                "password_change_required": change_required,
                "license": { "edition": "opensource" },
            })))
        }
        None => {
            // The failure that reaches the limit is still answered 401; the next one is 429.
            state.throttle.fail(ip);
            tracing::info!(user = %body.username, peer = %ip, "admin API: failed login");
            Err(ApiError::unauthorized(
                "BAD_USERNAME_OR_PWD",
                "bad username or password",
            ))
        }
    }
}

/// `POST /api/v5/logout`: the caller's token stops working.
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> StatusCode {
    if let Some(t) = &caller.token {
        state.tokens.revoke(t);
    }
    StatusCode::NO_CONTENT
}
