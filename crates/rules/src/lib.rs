//! Hermod's rule engine (issue 12): EMQX-compatible rule SQL, action templates and sinks.
//!
//! - [`sql`]: parse a rule (`Rule::parse`), see its sources, and apply it to a message or
//!   client event (`Rule::apply`), giving the selected row; [`sql::template`] renders a
//!   `${...}` action template for a row, as bound SQL parameters or as text.
//! - [`sink`]: where rows go, each behind a bounded queue that never makes the caller wait,
//!   with per-write results and retries: [`sink::sqlite::SqliteSink`] (batched WAL
//!   transactions on a thread of its own), [`sink::postgres::PostgresSink`] (a small pool,
//!   pipelined batches, reconnects) and [`sink::http::HttpSink`] (webhooks over a pooled
//!   hyper client, TLS by rustls).
//!
//! - [`config`]: `[[connector]]` and `[[rule]]` from Hermod's config file, checked.
//! - [`runtime`]: the connectors started and one task per rule, each rule an internal client
//!   of the broker whose session buffers what its actions have not written yet.
//! - [`bridge`]: store-and-forward bridges to other brokers (`[[bridge]]`, Mosquitto's topic
//!   syntax), each an internal client of this broker and a client of the remote one.

pub mod bridge;
pub mod config;
pub mod runtime;
pub mod sink;
pub mod sql;

pub use config::{RulesConfig, RulesConfigError};
pub use runtime::{ActionStats, BridgeInfo, RuleInfo, RuleStats, Rules, RulesError, RulesView};

pub use sql::template::{Dialect, Template, TemplateError};
pub use sql::{EvalError, Event, Input, Rule, Source, SqlError, Value};
