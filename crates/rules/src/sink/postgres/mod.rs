//! The PostgreSQL sink (issue 12): `tokio-postgres` with a small hand-written pool, on a
//! dedicated OS thread running its own single-threaded tokio runtime (so that the sink works
//! the same from async and from blocking code, and never competes with the broker's tasks).
//!
//! Same API and semantics as the [SQLite sink](super::sqlite), with these differences:
//!
//! * **Pool.** `pool_size` connection tasks take batches from one bounded queue; each has its
//!   own connection and prepares each distinct statement once (cached per connection). A
//!   batch runs in one `BEGIN … COMMIT` on one connection, its statements pipelined.
//! * **Statements** use `$1..$n` markers (`Template::to_sql_params(.., Dialect::Postgres)`).
//!   They are prepared untyped, so the server infers each parameter's type from its context
//!   (the column it goes into), and [`Param`](super::Param)s are converted to it:
//!   `Int` → `INT8` (also `INT4`/`INT2` when it fits, `FLOAT8`/`FLOAT4`, and `BOOL` as
//!   non-zero), `Float` → `FLOAT8` (or `FLOAT4`), `Text` → `TEXT` (or `VARCHAR`, `BPCHAR`,
//!   `NAME`, `JSON`, `JSONB`), `Blob` → `BYTEA`, `Null` → a NULL of whatever type the parameter
//!   has. Columns must accept those (`NUMERIC`, `TIMESTAMPTZ`, `UUID`… do not: cast in the
//!   statement, e.g. `to_timestamp($4::int8 / 1000.0)` or `$1::text::uuid`); another combination
//!   (text into an `INT8` column, say) fails that write with [`PgError::Statement`], as a type
//!   mismatch would, and is not retried.
//! * **Connection failures** (refused, reset, the server shutting down, a timeout) are
//!   transaction failures: the batch is retried with backoff (`retry_backoff`, doubled per
//!   attempt, at most 5 s; at most `retries` times) on a new connection. A write is reported
//!   written only after its `COMMIT` succeeded. If the connection breaks while `COMMIT` is in
//!   flight, the outcome is unknown and the batch is retried: delivery is at-least-once (with
//!   `${id}` in a unique column and `ON CONFLICT DO NOTHING`, exactly once).
//! * **Per-write errors** are the SQLSTATE classes 0A, 21, 22, 23, 42 and 44 (unsupported
//!   feature, cardinality, data exception, constraint violation, syntax or undefined object or
//!   permission, check option), and the client-side ones (wrong parameter count, a value the
//!   column's type cannot take). Such a write is reported failed with [`PgError::Statement`],
//!   and its batch runs again without it (PostgreSQL aborts the whole transaction on an
//!   error); it is not retried.
//! * **No TLS yet**: connections are plain TCP or a Unix socket (`NoTls`); a URL with
//!   `sslmode=require` fails at open. Use it on loopback, a private network or a Unix socket.
//! * **Opening** parses the URL (`postgres://user:pass@host:port/db?connect_timeout=5` or the
//!   `key=value` form), connects once and runs `init`: a wrong URL, an unreachable server, bad
//!   credentials or a failing init statement fail [`PostgresSink::open`]. Later connection
//!   losses are retried as above.
//!
//! Errors are [`SinkError::Postgres`] values (so that [`Write`]'s callback type is shared with
//! the SQLite sink); they name the server as `host:port/dbname`, never the password.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::Write;
use super::sqlite::{SendError, SinkError, SinkStats};

mod options;
mod types;

pub use options::{PgError, PgOptions};
use types::is_write_error;

/// The longest wait between two attempts of a failed transaction.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    retried: AtomicU64,
    connects: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The PostgreSQL sink: see the module documentation. `Send + Sync`: share it with an `Arc`.
#[derive(Debug)]
pub struct PostgresSink {
    target: Arc<str>,
    /// `None` once closed: dropping the sender ends the connection tasks after the queue drains.
    tx: RwLock<Option<mpsc::Sender<Write>>>,
    capacity: usize,
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresSink {
    /// Parses `url`, connects once, runs `options.init` and starts the pool (see the module
    /// documentation). Blocking: from async code, call it in `spawn_blocking`.
    pub fn open(url: &str, options: PgOptions) -> Result<PostgresSink, SinkError> {
        let mut config: Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| PgError::Config {
                    reason: e.to_string(),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(PgError::Config {
                reason: "sslmode=require: TLS is not supported yet".into(),
            }
            .into());
        }
        let target = target_of(&config);
        let capacity = options.queue.max(1);
        let (tx, rx) = mpsc::channel::<Write>(capacity);
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            config,
            target: target.clone(),
            counters: counters.clone(),
            rx: tokio::sync::Mutex::new(rx),
            batch_size: options.batch_size.max(1),
            batch_time: options.batch_time,
            retries: options.retries,
            retry_backoff: options.retry_backoff,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError::Thread {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        // The first connection, and init, before anything is accepted.
        let first = runtime.block_on(async {
            let conn = shared.connect().await.map_err(|source| PgError::Connect {
                target: target.clone(),
                source: Arc::new(source),
            })?;
            for statement in &options.init {
                conn.client
                    .batch_execute(statement)
                    .await
                    .map_err(|source| PgError::Init {
                        target: target.clone(),
                        statement: statement.clone(),
                        source: Arc::new(source),
                    })?;
            }
            Ok::<_, PgError>(conn)
        })?;
        let pool_size = options.pool_size.max(1);
        let thread = std::thread::Builder::new()
            .name("hermod-pg-sink".into())
            .spawn(move || {
                // A `Write`'s callback is `Send` but not `Sync`, so the tasks stay on this
                // thread (`spawn_local`).
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let mut tasks = Vec::with_capacity(pool_size);
                    let mut first = Some(first);
                    for _ in 0..pool_size {
                        let worker = Worker {
                            shared: shared.clone(),
                            conn: first.take(),
                        };
                        tasks.push(tokio::task::spawn_local(worker.run()));
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            })
            .map_err(|e| PgError::Thread {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        Ok(PostgresSink {
            target,
            tx: RwLock::new(Some(tx)),
            capacity,
            counters,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The server, as `host:port/dbname`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Queues `write` without ever waiting: a full queue or a closed sink gives the write back
    /// in the error.
    pub fn send(&self, write: Write) -> Result<(), SendError> {
        let refused = |error: PgError, write: Write| {
            add(&self.counters.rejected, 1);
            Err(SendError {
                error: error.into(),
                write,
            })
        };
        let guard = match self.tx.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(tx) = guard.as_ref() else {
            return refused(
                PgError::Closed {
                    target: self.target.clone(),
                },
                write,
            );
        };
        match tx.try_send(write) {
            Ok(()) => {
                add(&self.counters.accepted, 1);
                Ok(())
            }
            Err(TrySendError::Full(write)) => refused(
                PgError::QueueFull {
                    target: self.target.clone(),
                    capacity: self.capacity,
                },
                write,
            ),
            Err(TrySendError::Closed(write)) => refused(
                PgError::Closed {
                    target: self.target.clone(),
                },
                write,
            ),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> SinkStats {
        let c = &*self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            accepted: get(&c.accepted),
            rejected: get(&c.rejected),
            written: get(&c.written),
            failed: get(&c.failed),
            batches: get(&c.batches),
            retried: get(&c.retried),
        }
    }

    /// Connections made since open (the first one included): more than `pool_size` means
    /// reconnections.
    pub fn connects(&self) -> u64 {
        self.counters.connects.load(Ordering::Relaxed)
    }

    /// Refuses further writes, then waits until every queued write has been executed (with
    /// its retries) and reported, and the connections are closed. Blocking: from async code,
    /// call it in `spawn_blocking`. Calling it again returns the counters.
    pub fn close(&self) -> Result<SinkStats, SinkError> {
        match self.tx.write() {
            Ok(mut g) => drop(g.take()),
            Err(poisoned) => drop(poisoned.into_inner().take()),
        }
        let thread = match self.thread.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            return Err(PgError::Thread {
                target: self.target.clone(),
                reason: "the writer thread panicked".into(),
            }
            .into());
        }
        Ok(self.stats())
    }
}

fn target_of(config: &Config) -> Arc<str> {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    Arc::from(format!("{host}:{port}/{db}"))
}

struct Shared {
    config: Config,
    target: Arc<str>,
    counters: Arc<Counters>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Write>>,
    batch_size: usize,
    batch_time: Duration,
    retries: u32,
    retry_backoff: Duration,
}

impl Shared {
    async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        // The connection's I/O: ends (and the client reports `closed`) when the server goes away.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        add(&self.counters.connects, 1);
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

struct Conn {
    client: Client,
    statements: HashMap<Arc<str>, Statement>,
}

/// A failed transaction: where, and why.
struct TxFailure {
    statement: Arc<str>,
    error: tokio_postgres::Error,
}

struct Worker {
    shared: Arc<Shared>,
    conn: Option<Conn>,
}

impl Worker {
    async fn run(mut self) {
        // Fill the pool now (best effort: a failure is retried with the first batch).
        if self.conn.is_none() {
            self.conn = self.shared.connect().await.ok();
        }
        let mut batch: Vec<Write> = Vec::with_capacity(self.shared.batch_size);
        loop {
            if !self.fill(&mut batch).await {
                break;
            }
            self.commit(&mut batch).await;
        }
        if !batch.is_empty() {
            self.commit(&mut batch).await;
        }
    }

    /// Takes the next batch off the shared queue: waits for a first write, then collects until
    /// `batch_size` or `batch_time`. Returns false when the queue is closed and empty.
    async fn fill(&self, batch: &mut Vec<Write>) -> bool {
        let shared = &*self.shared;
        let mut rx = shared.rx.lock().await;
        match rx.recv().await {
            Some(write) => batch.push(write),
            None => return false,
        }
        let deadline = tokio::time::Instant::now().checked_add(shared.batch_time);
        while batch.len() < shared.batch_size {
            match rx.try_recv() {
                Ok(write) => {
                    batch.push(write);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let next = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(next) => next,
                    Err(_elapsed) => return true,
                },
                None => rx.recv().await,
            };
            match next {
                Some(write) => batch.push(write),
                None => return true,
            }
        }
        true
    }

    /// Runs `batch` in one transaction, retrying a failed one (on a new connection if it
    /// broke), and reports every write. Leaves `batch` empty.
    async fn commit(&mut self, batch: &mut Vec<Write>) {
        if batch.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let mut own_errors: Vec<Option<SinkError>> = Vec::new();
        own_errors.resize_with(batch.len(), || None);
        let mut backoff = shared.retry_backoff;
        let mut attempts = 0u32;
        let outcome = loop {
            attempts += 1;
            match self.transaction(batch, &mut own_errors).await {
                Ok(()) => break Ok(()),
                Err(failure) => {
                    match &self.conn {
                        Some(conn) if !conn.client.is_closed() => {
                            // Best effort; if it fails the connection is dropped below.
                            if conn.client.batch_execute("ROLLBACK").await.is_err() {
                                self.conn = None;
                            }
                        }
                        _ => self.conn = None,
                    }
                    if attempts > shared.retries {
                        break Err(failure);
                    }
                    add(&shared.counters.retried, 1);
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        };
        let failure = match outcome {
            Ok(()) => {
                add(&shared.counters.batches, 1);
                None
            }
            Err(TxFailure { statement, error }) => Some(SinkError::from(PgError::Transaction {
                target: shared.target.clone(),
                statement,
                attempts,
                source: Arc::new(error),
            })),
        };
        let (mut written, mut failed) = (0u64, 0u64);
        for (mut write, own_error) in batch.drain(..).zip(own_errors) {
            let result = match (own_error, &failure) {
                (Some(e), _) => Err(e),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Ok(()),
            };
            if result.is_ok() {
                written += 1;
            } else {
                failed += 1;
            }
            write.report(result);
        }
        add(&shared.counters.written, written);
        add(&shared.counters.failed, failed);
    }

    /// One attempt: connect if needed, prepare the statements not yet prepared on this
    /// connection, then `BEGIN`, every write not in `own_errors` (pipelined), `COMMIT`. A write
    /// whose own statement fails is recorded in `own_errors` and the transaction starts again
    /// without it.
    async fn transaction(
        &mut self,
        batch: &[Write],
        own_errors: &mut [Option<SinkError>],
    ) -> Result<(), TxFailure> {
        let shared = self.shared.clone();
        let at = |statement: &'static str| {
            move |error| TxFailure {
                statement: Arc::from(statement),
                error,
            }
        };
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.conn = Some(shared.connect().await.map_err(at("connect"))?);
        }
        let Some(conn) = self.conn.as_mut() else {
            unreachable!("connected above")
        };
        let own = |write: &Write, error| {
            SinkError::from(PgError::Statement {
                target: shared.target.clone(),
                statement: write.statement.clone(),
                source: Arc::new(error),
            })
        };
        // Prepare once per connection; a statement that does not prepare fails its writes.
        let mut unprepared: HashMap<Arc<str>, Arc<tokio_postgres::Error>> = HashMap::new();
        for (write, own_error) in batch.iter().zip(own_errors.iter_mut()) {
            if own_error.is_some() || conn.statements.contains_key(&write.statement) {
                continue;
            }
            let error = match unprepared.get(&write.statement) {
                Some(error) => error.clone(),
                None => match conn.client.prepare(&write.statement).await {
                    Ok(statement) => {
                        conn.statements.insert(write.statement.clone(), statement);
                        continue;
                    }
                    Err(error) if is_write_error(&error) => {
                        let error = Arc::new(error);
                        unprepared.insert(write.statement.clone(), error.clone());
                        error
                    }
                    Err(error) => {
                        return Err(TxFailure {
                            statement: write.statement.clone(),
                            error,
                        });
                    }
                },
            };
            *own_error = Some(SinkError::from(PgError::Statement {
                target: shared.target.clone(),
                statement: write.statement.clone(),
                source: error,
            }));
        }
        'attempt: loop {
            let client = &conn.client;
            let pending: Vec<usize> = (0..batch.len())
                .filter(|&i| own_errors[i].is_none())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            // BEGIN, the writes and COMMIT go out pipelined, in order, on this connection.
            let begin = client.batch_execute("BEGIN");
            let executes = pending.iter().map(|&i| {
                let write = &batch[i];
                let statement = &conn.statements[&write.statement];
                let params: Vec<&(dyn ToSql + Sync)> = write
                    .params
                    .iter()
                    .map(|p| p as &(dyn ToSql + Sync))
                    .collect();
                async move { client.execute(statement, &params).await }
            });
            let (begun, results) =
                futures_util::future::join(begin, futures_util::future::join_all(executes)).await;
            begun.map_err(at("BEGIN"))?;
            for (&i, result) in pending.iter().zip(results) {
                if let Err(error) = result {
                    if is_write_error(&error) {
                        own_errors[i] = Some(own(&batch[i], error));
                        // The transaction is aborted: start again without this write.
                        client
                            .batch_execute("ROLLBACK")
                            .await
                            .map_err(at("ROLLBACK"))?;
                        continue 'attempt;
                    }
                    return Err(TxFailure {
                        statement: batch[i].statement.clone(),
                        error,
                    });
                }
            }
            return client.batch_execute("COMMIT").await.map_err(at("COMMIT"));
        }
    }
}
