//! The Hermod MQTT broker as a library.
//!
//! # Layout
//! - [`config`] — the TOML configuration (Mosquitto's key names), defaults and validation.
//! - [`transport`] — listener transports: TCP, TLS, WebSocket, WebSocket over TLS, each
//!   optionally behind a PROXY protocol header; the accept loop and handshakes.
//! - [`auth`] — password files, ACLs, HTTP and JWT auth, the password-hashing pool, failed-login
//!   throttling.
//! - [`banned`] — the ban list (client id, username, peer address or CIDR) checked at CONNECT.
//! - [`broker`] — `Broker::bind` (listeners bound, addresses known) and `Broker::run(shutdown)`.
//! - `connection` — one task per network connection: CONNECT handshake, packet handling, writes.
//! - [`session`] — `Session` (synchronous MQTT state), the per-session mailbox, the registry
//!   (takeover, offline sessions, will delay).
//! - [`router`] — subscription tree, retained messages, fan-out into mailboxes.
//! - [`message`] — `Message` (shared by all its subscribers) and `Delivery`.
//! - [`store`] — the durable store (one redb file): persistent sessions, offline queues, inbound
//!   QoS 2 state and retained messages, with group commit.
//! - [`persist`] — glue between the in-memory model and the store: record conversions, message
//!   ids, what is written when.
//! - [`metrics`] — counters.
//! - [`api`] — `BrokerHandle`: the narrow API for other crates (admin, rules, cluster): events,
//!   queries, commands.
//! - `shared` — the state every connection holds, and the session lifecycle (end, expiry, wills).
//! - `fuzz_support` (tests only) — fixed-seed input mutations for the randomised parser tests.
//!
//! Data flows one way: socket → connection task → router → subscriber mailboxes → their
//! connection tasks → sockets. No lock is held across an `.await`.

pub mod api;
pub mod auth;
pub mod banned;
pub mod broker;
pub mod config;
mod connection;
mod deliver;
pub mod message;
pub mod metrics;
pub mod persist;
pub mod router;
pub mod session;
mod shared;
pub mod store;
mod sys;
pub mod transport;

#[cfg(test)]
mod fuzz_support;

pub use broker::{Broker, BrokerError};
pub use config::{Config, ConfigError, ListenerConfig};
