//! Hermod's admin HTTP API: the REST API under `/api/v5` (EMQX 5's paths and JSON shapes, so
//! scripts written for EMQX work unchanged), Prometheus at `/metrics`, the OpenAPI description at
//! `/api-docs/swagger.json`, the dashboard at `/`, and the same router on the Unix socket
//! `hermod ctl` talks to. `docs/admin-api.md` is the contract.
//!
//! The crate reaches the broker only through [`hermod_broker::api::BrokerHandle`]: queries are
//! snapshots, commands go through the handle, so nothing here can hold a broker lock.
//!
//! # Layout
//! - [`server`] — [`start`] (and [`start_with`], which also shows the rules and bridges given
//!   in [`Services`]): the admin listener (plain or TLS), the Unix socket, the metrics
//!   listener, and [`AdminServer`] (addresses, shutdown).
//! - `router` — the routes and which of them need credentials.
//! - `auth` — who is calling: bearer tokens, API keys, the socket; roles; login throttling.
//! - `users_store` — admin users and API keys: argon2id hashes in `admin-users.json`.
//! - `routes/*` — one file per resource (clients, subscriptions, retained, banned, publish,
//!   stats and monitor, users and API keys, login and status, rules and bridges).
//! - `monitor` — the sampler behind `/monitor` and `/monitor_current`.
//! - `paging`, `error` — the list and error shapes every endpoint shares.
//! - `openapi` — the OpenAPI document (hand-written JSON).

mod accounts;
mod auth;
mod dashboard;
mod error;
mod monitor;
mod openapi;
mod paging;
mod router;
mod routes;
pub mod server;
mod state;
mod users_store;

pub use server::{AdminError, AdminServer, Services, start, start_with};
