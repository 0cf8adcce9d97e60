//! Sinks: where a rule's actions write (issue 12).
//!
//! A sink takes [`Write`]s, a statement with `?` markers plus its bound [`Param`]s (what the
//! action template produces from `${...}` placeholders), and reports each write's outcome
//! through its optional [`Done`] callback. Values are always bound as parameters, never
//! spliced into the SQL text.

pub mod http;
pub mod postgres;
pub mod sqlite;

pub use sqlite::{SendError, SinkError, SinkOptions, SinkStats, SqliteSink};

use std::fmt;
use std::sync::Arc;

/// One SQL parameter, in SQLite's storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// The parameters of one write (one row for an `INSERT`).
pub type Row = Vec<Param>;

impl From<&serde_json::Value> for Param {
    /// JSON to SQL: `null` → Null, `true`/`false` → Int 1/0, integers → Int (an unsigned one
    /// above `i64::MAX` → Float, as SQLite does with such a literal), other numbers → Float,
    /// strings → Text, objects and arrays → their JSON text.
    fn from(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Param::Null,
            Value::Bool(b) => Param::Int(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Param::Int(i),
                None => n
                    .as_f64()
                    .map_or_else(|| Param::Text(n.to_string()), Param::Float),
            },
            Value::String(s) => Param::Text(s.clone()),
            Value::Array(_) | Value::Object(_) => Param::Text(value.to_string()),
        }
    }
}

impl From<serde_json::Value> for Param {
    /// As `From<&Value>`, without copying a string.
    fn from(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::String(s) => Param::Text(s),
            other => Param::from(&other),
        }
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<f64> for Param {
    fn from(v: f64) -> Self {
        Param::Float(v)
    }
}

impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Param::Int(i64::from(v))
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_owned())
    }
}

impl From<Vec<u8>> for Param {
    fn from(v: Vec<u8>) -> Self {
        Param::Blob(v)
    }
}

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// Called once with a write's outcome, on the sink's thread: keep it short (send on a channel,
/// bump a counter). A panic in it is caught and does not stop the sink.
pub type Done = Box<dyn FnOnce(Result<(), SinkError>) + Send + 'static>;

/// One statement execution: `statement` with `?` markers, `params` bound in order.
pub struct Write {
    pub statement: Arc<str>,
    pub params: Row,
    /// Reported exactly once: with the write's outcome, or with [`SinkError::Discarded`] if
    /// the write is dropped unexecuted (a [`SendError`] dropped by its caller, a sink gone).
    pub done: Option<Done>,
}

impl Write {
    pub fn new(statement: Arc<str>, params: Row) -> Self {
        Write {
            statement,
            params,
            done: None,
        }
    }

    /// Sets the callback that receives this write's outcome.
    pub fn on_done(mut self, done: impl FnOnce(Result<(), SinkError>) + Send + 'static) -> Self {
        self.done = Some(Box::new(done));
        self
    }

    /// Reports `result` to the callback, if any (once; a panic in it is contained).
    pub(crate) fn report(&mut self, result: Result<(), SinkError>) {
        if let Some(done) = self.done.take() {
            // The callback is foreign code running on the sink's thread: a panic must not
            // take every later write down with it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || done(result)));
        }
    }
}

impl Drop for Write {
    fn drop(&mut self) {
        if self.done.is_some() {
            let statement = self.statement.clone();
            self.report(Err(SinkError::Discarded { statement }));
        }
    }
}

impl fmt::Debug for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Write")
            .field("statement", &self.statement)
            .field("params", &self.params)
            .field("done", &self.done.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests;
