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
//! Not wired into the broker yet: the rule runtime (the broker side that feeds rules and the
//! `[[connector]]`/`[[rule]]` config) is the next step of issue 12.

pub mod bridge;
pub mod sink;
pub mod sql;

pub use sql::template::{Dialect, Template, TemplateError};
pub use sql::{EvalError, Event, Input, Rule, Source, SqlError, Value};
