//! `hermod bench`: a load generator for any MQTT broker.
//!
//! Scenarios: `pairs` (P publisher→subscriber pairs, one topic each), `fanin` (P publishers → S
//! subscribers of one topic, S = 1 by default), `fanout` (P = 1 publisher → S subscribers),
//! `shared` (P publishers → a `$share` group of S members) and `conn` (open C idle connections,
//! optionally at a given rate, and hold them). `forwarder` is not a load but the other end: a
//! bare single-threaded forwarder, the ceiling brokers are measured against.
//!
//! Every payload starts with the time (ns since the run's base instant) at which it was meant to
//! be sent, so end-to-end latency is measured by the subscriber with no clock sync. Under
//! `--rate` the schedule is open loop and the stamp is the *intended* send time, so a stalled
//! broker cannot hide latency (no coordinated omission). `--window` caps the messages sent but
//! not yet received across all publishers, so an unlimited run measures a sustainable rate
//! rather than a burst into socket buffers.
//!
//! Layout: [`args`] (flags), [`plan`] (scenario → clients), [`run`] (connecting; the traffic
//! scenarios' run, drain and report), [`conn`] (the connection scenario), [`wire`] (handshakes,
//! PUBLISH template, in-place scanner), [`transport`] (TCP, TLS, WebSocket, WebSocket over TLS
//! under the engine's readiness loop), [`engine`] (the per-connection loop, flow control,
//! counters), [`stats`] (summary, JSON).

mod args;
mod conn;
mod engine;
mod forwarder;
mod plan;
mod run;
mod stats;
mod transport;
mod wire;

pub(crate) use args::BenchArgs;
pub(crate) use run::run;
