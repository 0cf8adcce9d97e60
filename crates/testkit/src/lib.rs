//! Test scaffolding shared by Hermod's test suites (a dev-dependency only, never published):
//!
//! - [`Client`]: a raw MQTT client over TCP, TLS, WebSocket or WebSocket over TLS ([`Via`]) on
//!   top of hermod-proto's codec, precise enough to send anything (including bytes no real
//!   client would send) and to observe exactly what the broker answers.
//! - [`TestBroker`]: a broker in this process on OS-chosen ports, built from a [`Config`]
//!   ([`TestBroker::with`]) or from a TOML file in a temporary folder ([`TestBroker::start_in`],
//!   so relative paths resolve as with `hermod serve -c`).
//! - [`Pki`]: certificates made with rcgen at run time (nothing secret is committed).
//! - [`AuthServer`]: a fake HTTP(S) service for `[auth.http]`.
//! - [`nats::NatsCluster`]: real nats-server processes (JetStream, clustered) for the cluster tests.
//! - packet builders ([`connect_packet`], [`publish`], ...) and the usual constants.
//!
//! [`Config`]: hermod_broker::Config
// Test scaffolding: the client holds boxed trait objects and the helpers panic on purpose.
#![allow(missing_debug_implementations)]

mod auth_server;
mod broker;
mod client;
pub mod nats;
mod packets;
mod pki;
mod promtool;

use std::time::Duration;

pub use auth_server::{AuthServer, json_response};
pub use broker::{TestBroker, broker_panics, tempdir, write};
pub use client::{Client, Io, Recv, Via};
pub use hermod_proto::{
    Connect, ConnectAck, Disconnect, DisconnectProperties, LastWill, Packet, PacketId,
    ProtocolVersion, Publish, PublishAck, PublishProperties, QoS, ReasonCode, RetainHandling,
    Subscribe, SubscribeAck, SubscribeProperties, SubscriptionOptions, Unsubscribe, UnsubscribeAck,
    WillProperties,
};
pub use packets::{
    connect_auth, connect_packet, encode, got, opts, payloads, persistent, pid, publish, sorted,
};
pub use pki::{Leaf, Pki, client_config, tls_client_config};
pub use promtool::promtool_accepts;

pub const V31: ProtocolVersion = ProtocolVersion::V31;
pub const V311: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const Q0: QoS = QoS::AtMostOnce;
pub const Q1: QoS = QoS::AtLeastOnce;
pub const Q2: QoS = QoS::ExactlyOnce;

/// Longest wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(3);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(400);
