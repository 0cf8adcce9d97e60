//! What a PostgreSQL sink is opened with ([`PgOptions`]) and what it reports ([`PgError`]).

use std::sync::Arc;
use std::time::Duration;

use super::super::sqlite::SinkError;

/// How a [`PostgresSink`](super::PostgresSink) connects, batches, queues and retries.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections (and connection tasks), at least 1.
    pub pool_size: usize,
    /// Most writes per transaction (0 counts as 1).
    pub batch_size: usize,
    /// Longest a write waits for its batch to fill before the transaction runs.
    pub batch_time: Duration,
    /// Writes that can wait in the queue (0 counts as 1); a send beyond it is refused.
    pub queue: usize,
    /// Statements run once at open, in order (e.g. `CREATE TABLE IF NOT EXISTS …`).
    pub init: Vec<String>,
    /// Attempts of a failed transaction after the first one.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one, up to 5 s.
    pub retry_backoff: Duration,
    /// Longest a connection attempt may take (unless the URL sets `connect_timeout`).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 4,
            batch_size: 500,
            batch_time: Duration::from_millis(10),
            queue: 10_000,
            init: Vec::new(),
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What went wrong, naming the server (`host:port/dbname`) and, where there is one, the
/// statement.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PgError {
    #[error("postgres sink: invalid connection URL: {reason}")]
    Config { reason: String },
    #[error("postgres sink {target}: cannot connect: {source}")]
    Connect {
        target: Arc<str>,
        #[source]
        source: Arc<tokio_postgres::Error>,
    },
    #[error("postgres sink {target}: init statement `{statement}`: {source}")]
    Init {
        target: Arc<str>,
        statement: String,
        #[source]
        source: Arc<tokio_postgres::Error>,
    },
    #[error("postgres sink {target}: queue full ({capacity} writes waiting)")]
    QueueFull { target: Arc<str>, capacity: usize },
    #[error("postgres sink {target}: closed")]
    Closed { target: Arc<str> },
    #[error("postgres sink {target}: statement `{statement}`: {source}")]
    Statement {
        target: Arc<str>,
        statement: Arc<str>,
        #[source]
        source: Arc<tokio_postgres::Error>,
    },
    #[error(
        "postgres sink {target}: transaction failed {attempts} times, last at `{statement}`: {source}"
    )]
    Transaction {
        target: Arc<str>,
        /// The statement (or `connect`, `BEGIN`, `COMMIT`) at which the last attempt failed.
        statement: Arc<str>,
        attempts: u32,
        #[source]
        source: Arc<tokio_postgres::Error>,
    },
    #[error("postgres sink {target}: writer thread: {reason}")]
    Thread { target: Arc<str>, reason: String },
}

impl From<PgError> for SinkError {
    fn from(e: PgError) -> Self {
        SinkError::Postgres(Box::new(e))
    }
}
