//! A rule's actions: what each renders from a row, where it sends it, and which failures are
//! worth another attempt.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hermod_proto::QoS;

use crate::Dialect;
use crate::config::ActionKind;
use crate::sink::http::{HttpError, HttpRequest, HttpSink};
use crate::sink::postgres::{PgError, PostgresSink};
use crate::sink::{Param, SinkError, SqliteSink, Write};
use crate::sql::template::{Row, Template};

/// A started connector.
#[derive(Clone)]
pub(crate) enum Sink {
    Sqlite(Arc<SqliteSink>),
    /// Set once its first connection is made (in the background: a database that is down at
    /// start-up does not stop Hermod; writes wait, unacknowledged, until it is up).
    Postgres(Arc<OnceLock<PostgresSink>>),
    Http(Arc<HttpSink>),
}

/// One action, ready to run.
pub(crate) struct Action {
    kind: ActionKind,
    sink: Option<Sink>,
    dialect: Dialect,
}

/// What an action sends for one message: kept until it is done, to try again.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    Sql {
        statement: Arc<str>,
        params: Vec<Param>,
    },
    Http {
        body: Bytes,
    },
    Republish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    },
}

/// One action of one message.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) job: u64,
    pub(crate) action: usize,
    pub(crate) payload: Payload,
    pub(crate) attempt: u32,
}

/// How an action ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Done,
    /// For good: the message is not written by this action (counted, logged).
    Failed(String),
    /// May pass: try the job again later.
    Retry(String, Box<Job>),
}

/// What a sink reports.
pub(crate) enum Result_ {
    Ok,
    Permanent(String),
    Transient(String),
}

impl Action {
    pub(crate) fn new(kind: ActionKind, sink: Option<Sink>) -> Self {
        let dialect = match sink {
            Some(Sink::Postgres(_)) => Dialect::Postgres,
            _ => Dialect::Sqlite,
        };
        Action {
            kind,
            sink,
            dialect,
        }
    }

    /// `sqlite:local`, `http:hook`, `republish:alerts/${clientid}`.
    pub(crate) fn target(&self) -> String {
        match &self.kind {
            ActionKind::Sql { connector, .. } => match self.sink {
                Some(Sink::Postgres(_)) => format!("postgres:{connector}"),
                _ => format!("sqlite:{connector}"),
            },
            ActionKind::Http { connector, .. } => format!("http:{connector}"),
            ActionKind::Republish { .. } => "republish".to_owned(),
        }
    }

    /// What this action sends for `row`. `Err` when the template cannot be applied (counted
    /// as a failure of this action for this message).
    pub(crate) fn render(&self, row: &Row) -> Result<Payload, String> {
        match &self.kind {
            ActionKind::Sql { statement, .. } => {
                let (sql, values) = statement
                    .to_sql_params(row, self.dialect)
                    .map_err(|e| e.message)?;
                Ok(Payload::Sql {
                    statement: Arc::from(sql),
                    params: values
                        .into_iter()
                        .map(|v| Param::from(serde_json::Value::from(v)))
                        .collect(),
                })
            }
            ActionKind::Http { body, .. } => Ok(Payload::Http {
                body: Bytes::from(render_or_row(body.as_ref(), row, true)),
            }),
            ActionKind::Republish {
                topic,
                payload,
                qos,
                retain,
            } => {
                let topic = topic.render_text(row);
                if topic.is_empty()
                    || topic.contains(['+', '#', '\0'])
                    || hermod_proto::topic::validate_topic_name(&topic).is_err()
                {
                    return Err(format!("republish: `{topic}` is not a topic name"));
                }
                // A rule acts for the broker (no ACL): a topic built from a message must not
                // let a client speak in the broker's name on `$SYS/...`.
                if topic.starts_with('$') {
                    return Err(format!(
                        "republish: `{topic}` is a `$` topic, which only the broker publishes"
                    ));
                }
                Ok(Payload::Republish {
                    topic,
                    payload: Bytes::from(render_or_row(payload.as_ref(), row, false)),
                    qos: *qos,
                    retain: *retain,
                })
            }
        }
    }

    /// Hands `payload` to the sink; `report` gets the outcome. `Err` when the sink did not
    /// take it (queue full, closed, not connected yet): `report` is then never called.
    pub(crate) fn send(
        &self,
        payload: &Payload,
        report: impl FnOnce(Result_) + Send + 'static,
    ) -> Result<(), String> {
        match (payload, &self.sink) {
            (Payload::Sql { statement, params }, Some(Sink::Sqlite(s))) => {
                let w = Write::new(statement.clone(), params.clone())
                    .on_done(move |r| report(classify_sql(r)));
                s.send(w).map_err(|mut e| {
                    e.write.done = None;
                    e.error.to_string()
                })
            }
            (Payload::Sql { statement, params }, Some(Sink::Postgres(s))) => {
                let Some(s) = s.get() else {
                    return Err("postgres: not connected yet".into());
                };
                let w = Write::new(statement.clone(), params.clone())
                    .on_done(move |r| report(classify_sql(r)));
                s.send(w).map_err(|mut e| {
                    e.write.done = None;
                    e.error.to_string()
                })
            }
            (Payload::Http { body }, Some(Sink::Http(s))) => {
                let req = HttpRequest::new(body.clone()).on_done(move |r| report(classify_http(r)));
                s.send(req).map_err(|mut e| {
                    e.request.done = None;
                    e.error.to_string()
                })
            }
            _ => {
                report(Result_::Permanent(
                    "action and connector do not match".into(),
                ));
                Ok(())
            }
        }
    }
}

/// The template rendered (as JSON for a body, as text for a payload), or the whole row as a
/// JSON object.
fn render_or_row(t: Option<&Template>, row: &Row, json: bool) -> String {
    match t {
        Some(t) if json => t.render_json(row),
        Some(t) => t.render_text(row),
        None => serde_json::Value::Object(row.clone()).to_string(),
    }
}

/// A statement that fails for this row fails for good; anything else (the database away,
/// locked, the transaction failing after the sink's own retries) may pass.
fn classify_sql(r: Result<(), SinkError>) -> Result_ {
    match r {
        Ok(()) => Result_::Ok,
        Err(e @ SinkError::Statement { .. }) => Result_::Permanent(e.to_string()),
        Err(SinkError::Postgres(p)) if matches!(*p, PgError::Statement { .. }) => {
            Result_::Permanent(p.to_string())
        }
        Err(e) => Result_::Transient(e.to_string()),
    }
}

/// A 4xx answer (but 408 and 429) fails for good; 5xx, 429 and no answer may pass.
fn classify_http(r: Result<u16, HttpError>) -> Result_ {
    match r {
        Ok(_) => Result_::Ok,
        Err(e @ HttpError::Status { status, .. })
            if (400..500).contains(&status) && status != 408 && status != 429 =>
        {
            Result_::Permanent(e.to_string())
        }
        Err(e) => Result_::Transient(e.to_string()),
    }
}
