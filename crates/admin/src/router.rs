//! The routes, and which need credentials: `/api/v5/status`, `/api/v5/login`, `/metrics` and
//! `/api-docs/swagger.json` are public; every other `/api/v5` path goes through
//! `auth::require_auth`. The same router serves the TCP listener and the Unix socket (where
//! `require_auth` lets every request through as an administrator's).
//!
//! Each `.route(...)` here must appear in `openapi.json` (a test reads this file and checks).

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post, put};

use crate::auth;
use crate::dashboard;
use crate::error::ApiError;
use crate::openapi;
use crate::routes::{
    banned, clients, cluster, login, publish, reload, retained, rules, stats, subscriptions,
    things, users,
};
use crate::state::AppState;

/// The whole admin router.
pub(crate) fn router(state: AppState) -> Router {
    let public = Router::new()
        .route("/api/v5/status", get(login::status))
        .route("/api/v5/login", post(login::login))
        .route("/metrics", get(stats::prometheus))
        .route("/api-docs/swagger.json", get(openapi::swagger))
        .route(
            "/api/v5/{*rest}",
            get(unknown).post(unknown).put(unknown).delete(unknown),
        );
    let protected = Router::new()
        .route("/api/v5/logout", post(login::logout))
        .route("/api/v5/clients", get(clients::list))
        .route(
            "/api/v5/clients/{clientid}",
            get(clients::get).delete(clients::kick),
        )
        .route(
            "/api/v5/clients/{clientid}/subscriptions",
            get(subscriptions::of_client),
        )
        .route(
            "/api/v5/clients/{clientid}/subscribe",
            post(subscriptions::subscribe),
        )
        .route(
            "/api/v5/clients/{clientid}/unsubscribe",
            post(subscriptions::unsubscribe),
        )
        .route("/api/v5/subscriptions", get(subscriptions::list))
        .route("/api/v5/topics", get(subscriptions::topics))
        .route("/api/v5/stats", get(stats::stats))
        .route("/api/v5/metrics", get(stats::metrics))
        .route("/api/v5/monitor", get(stats::monitor))
        .route("/api/v5/monitor_current", get(stats::monitor_current))
        .route("/api/v5/publish", post(publish::publish))
        .route("/api/v5/mqtt/retainer/messages", get(retained::list))
        .route(
            "/api/v5/mqtt/retainer/message/{*topic}",
            get(retained::get).delete(retained::delete),
        )
        .route("/api/v5/banned", get(banned::list).post(banned::add))
        .route("/api/v5/banned/{as}/{*who}", delete(banned::delete))
        .route(
            "/api/v5/users",
            get(users::list_users).post(users::add_user),
        )
        .route(
            "/api/v5/users/{username}",
            put(users::update_user).delete(users::delete_user),
        )
        .route(
            "/api/v5/users/{username}/change_pwd",
            post(users::change_password),
        )
        .route(
            "/api/v5/api_key",
            get(users::list_keys).post(users::add_key),
        )
        .route(
            "/api/v5/api_key/{name}",
            get(users::get_key)
                .put(users::update_key)
                .delete(users::delete_key),
        )
        .route("/api/v5/reload", post(reload::reload))
        .route("/api/v5/rules", get(rules::list))
        .route("/api/v5/rules/{id}", get(rules::get))
        .route("/api/v5/bridges", get(rules::bridges))
        .route("/api/v5/cluster", get(cluster::status))
        .route("/api/v5/things", get(things::list))
        .route(
            "/api/v5/things/{thing}/shadow",
            get(things::get).put(things::update).delete(things::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ));
    public
        .merge(protected)
        .with_state(state)
        .merge(dashboard::routes())
}

/// The metrics listener's router: `GET /metrics` only.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(stats::prometheus))
        .with_state(state)
}

async fn unknown() -> ApiError {
    ApiError::not_found("no such API path")
}
