//! The SQLite sink (issue 12): an embedded database file written on a dedicated OS thread.
//!
//! * **Never blocks the publisher.** [`SqliteSink::send`] puts the write on a bounded queue
//!   (`std::sync::mpsc::sync_channel`) with `try_send`; a full queue (the disk is slower than
//!   the traffic, or the database is failing) is an immediate [`SinkError::QueueFull`], and the
//!   write comes back in the [`SendError`] so that the caller can buffer it elsewhere.
//! * **Batched transactions.** The thread takes the first queued write, then keeps collecting
//!   until it has `batch_size` writes or `batch_time` has passed since that first write, and runs
//!   them in one `BEGIN IMMEDIATE … COMMIT`. Statements are prepared once per distinct text
//!   (`prepare_cached`). The database is in WAL mode with `synchronous = NORMAL`: a commit is
//!   durable against a crash of the process; against a power loss, up to the last checkpoint.
//! * **Outcome per write**, through its [`Done`](super::Done) callback, only after the
//!   transaction holding it committed (or definitely failed):
//!   - A write whose own statement fails (a syntax error, a missing table or column, a
//!     constraint violation, a type mismatch, a wrong number of parameters: anything that
//!     would fail again on a retry) is reported failed with [`SinkError::Statement`] and does
//!     not affect the other writes in its batch: SQLite undoes only that statement and the
//!     transaction goes on (if the statement's conflict clause rolled the whole transaction
//!     back, the transaction is started again without it). It is not retried.
//!   - A failure of the transaction itself (the database busy or locked past `busy_timeout`,
//!     an I/O error, a full disk, a read-only file, a failed `COMMIT`) rolls it back and runs
//!     the batch again after a backoff (`retry_backoff`, doubled per attempt, at most 5 s), at
//!     most `retries` times. Then every write still pending in it is reported failed with
//!     [`SinkError::Transaction`]. Delivery is at-least-once: a write is reported written only
//!     once committed, and retries re-run a whole rolled-back transaction, so no row is written
//!     twice by the sink itself.
//!
//!   Failed writes are counted in [`SinkStats::failed`]; the retries in
//!   [`SinkStats::retried`]. While a transaction is retried the queue keeps filling and further
//!   sends are refused (`QueueFull`) rather than waiting.
//! * **Clean shutdown.** [`SqliteSink::close`] refuses new writes, waits for every queued write
//!   to be executed and reported, and closes the database. Dropping the sink without `close`
//!   lets the thread drain the queue in the background, unobserved.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{Param, Write};

/// The longest wait between two attempts of a failed transaction.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How many distinct statements keep their prepared form.
const STATEMENT_CACHE: usize = 64;

/// How a [`SqliteSink`] batches, queues and retries.
#[derive(Debug, Clone)]
pub struct SinkOptions {
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
    /// How long a statement waits for a lock held by another connection (another process
    /// with the same file open) before it counts as a transaction failure.
    pub busy_timeout: Duration,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            batch_size: 500,
            batch_time: Duration::from_millis(10),
            queue: 10_000,
            init: Vec::new(),
            retries: 5,
            retry_backoff: Duration::from_millis(50),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// What went wrong, naming the database file and, where there is one, the statement.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("sqlite sink {}: cannot open the database: {source}", path.display())]
    Open {
        path: Arc<Path>,
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("sqlite sink {}: {reason}", path.display())]
    Unusable { path: Arc<Path>, reason: String },
    #[error("sqlite sink {}: init statement `{statement}`: {source}", path.display())]
    Init {
        path: Arc<Path>,
        statement: String,
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("sqlite sink {}: queue full ({capacity} writes waiting)", path.display())]
    QueueFull { path: Arc<Path>, capacity: usize },
    #[error("sqlite sink {}: closed", path.display())]
    Closed { path: Arc<Path> },
    #[error("sqlite sink {}: statement `{statement}`: {source}", path.display())]
    Statement {
        path: Arc<Path>,
        statement: Arc<str>,
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error(
        "sqlite sink {}: transaction failed {attempts} times, last at `{statement}`: {source}",
        path.display()
    )]
    Transaction {
        path: Arc<Path>,
        /// The statement (or `BEGIN IMMEDIATE` / `COMMIT`) at which the last attempt failed.
        statement: Arc<str>,
        attempts: u32,
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("sqlite sink: write of `{statement}` dropped before it was executed")]
    Discarded { statement: Arc<str> },
    #[error("sqlite sink {}: writer thread: {reason}", path.display())]
    Thread { path: Arc<Path>, reason: String },
    /// An error of the PostgreSQL sink (which shares [`Write`] and its callback type).
    #[error(transparent)]
    Postgres(Box<super::postgres::PgError>),
}

/// A write the sink did not take: why, and the write itself (its callback not called), so
/// that the caller can keep it elsewhere. Dropping it reports [`SinkError::Discarded`] to the
/// callback.
#[derive(Debug)]
pub struct SendError {
    pub error: SinkError,
    pub write: Write,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Writes taken by `send`.
    pub accepted: u64,
    /// Writes refused by `send` (queue full, closed).
    pub rejected: u64,
    /// Writes committed.
    pub written: u64,
    /// Writes reported failed (their statement failed, or their transaction after its retries).
    pub failed: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Transaction attempts after a failed one.
    pub retried: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    retried: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

enum Msg {
    Write(Write),
    Close,
}

/// The SQLite sink: see the module documentation. `Send + Sync`: share it with an `Arc`.
#[derive(Debug)]
pub struct SqliteSink {
    path: Arc<Path>,
    tx: SyncSender<Msg>,
    capacity: usize,
    closed: AtomicBool,
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Write(w) => w.fmt(f),
            Msg::Close => f.write_str("Close"),
        }
    }
}

impl SqliteSink {
    /// Opens (creating it if missing) the database at `path` in WAL mode, runs
    /// `options.init`, and starts the writer thread. Fails with the file named if the file
    /// cannot be opened or written, is not a database, or an init statement fails.
    pub fn open(path: impl AsRef<Path>, options: SinkOptions) -> Result<SqliteSink, SinkError> {
        let path: Arc<Path> = Arc::from(path.as_ref());
        let conn = open_connection(&path, &options)?;
        let capacity = options.queue.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            conn,
            rx,
            path: path.clone(),
            counters: counters.clone(),
            batch_size: options.batch_size.max(1),
            batch_time: options.batch_time,
            retries: options.retries,
            retry_backoff: options.retry_backoff,
        };
        let thread = std::thread::Builder::new()
            .name("hermod-sqlite-sink".into())
            .spawn(move || worker.run())
            .map_err(|e| SinkError::Thread {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(SqliteSink {
            path,
            tx,
            capacity,
            closed: AtomicBool::new(false),
            counters,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `write` without ever waiting: a full queue or a closed sink gives the write back
    /// in the error.
    pub fn send(&self, write: Write) -> Result<(), SendError> {
        let refused = |error: SinkError, write: Write| {
            Counters::add(&self.counters.rejected, 1);
            Err(SendError { error, write })
        };
        if self.closed.load(Ordering::Acquire) {
            return refused(
                SinkError::Closed {
                    path: self.path.clone(),
                },
                write,
            );
        }
        match self.tx.try_send(Msg::Write(write)) {
            Ok(()) => {
                Counters::add(&self.counters.accepted, 1);
                Ok(())
            }
            Err(TrySendError::Full(msg)) => refused(
                SinkError::QueueFull {
                    path: self.path.clone(),
                    capacity: self.capacity,
                },
                unsent(msg),
            ),
            Err(TrySendError::Disconnected(msg)) => refused(
                SinkError::Closed {
                    path: self.path.clone(),
                },
                unsent(msg),
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

    /// Refuses further writes, then waits until every queued write has been executed and
    /// reported and the database is closed. Blocking (it waits on the disk): from async code,
    /// call it in `spawn_blocking`. Calling it again returns the counters.
    pub fn close(&self) -> Result<SinkStats, SinkError> {
        self.closed.store(true, Ordering::Release);
        let thread = match self.thread.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(thread) = thread {
            // Waits for room if the queue is full; an error means the thread is already gone.
            let _ = self.tx.send(Msg::Close);
            if thread.join().is_err() {
                return Err(SinkError::Thread {
                    path: self.path.clone(),
                    reason: "the writer thread panicked".into(),
                });
            }
        }
        Ok(self.stats())
    }
}

/// The write inside a message that `send` could not queue (`send` only queues writes).
fn unsent(msg: Msg) -> Write {
    match msg {
        Msg::Write(write) => write,
        Msg::Close => unreachable!("SqliteSink::send queues only writes"),
    }
}

fn open_connection(path: &Arc<Path>, options: &SinkOptions) -> Result<Connection, SinkError> {
    let open_err = |e: rusqlite::Error| SinkError::Open {
        path: path.clone(),
        source: Arc::new(e),
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(options.busy_timeout).map_err(open_err)?;
    // SQLite opens a file it may not write read-only rather than failing: say so now, not at
    // the first write.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(open_err)? {
        return Err(SinkError::Unusable {
            path: path.clone(),
            reason: "the database is read-only (file or directory not writable)".into(),
        });
    }
    // The first statement reads the file: "file is not a database" shows up here.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(SinkError::Unusable {
            path: path.clone(),
            reason: format!("cannot use WAL mode (journal_mode stays `{mode}`)"),
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    for statement in &options.init {
        conn.execute_batch(statement).map_err(|e| SinkError::Init {
            path: path.clone(),
            statement: statement.clone(),
            source: Arc::new(e),
        })?;
    }
    Ok(conn)
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(*i),
            Param::Float(f) => ValueRef::Real(*f),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Whether `e`, from executing one write's statement, is that write's own fault (it would fail
/// the same way again) rather than the transaction's or the database's.
fn is_write_error(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => matches!(
            failure.code,
            // SQLITE_ERROR: syntax errors, missing tables or columns.
            ErrorCode::Unknown
                | ErrorCode::ConstraintViolation
                | ErrorCode::TypeMismatch
                | ErrorCode::TooBig
                | ErrorCode::ParameterOutOfRange
                | ErrorCode::AuthorizationForStatementDenied
        ),
        // Detected by rusqlite before SQLite runs anything: wrong parameter count, several
        // statements in one, a statement that returns rows, invalid SQL text, …
        _ => true,
    }
}

/// A failed transaction: where, and why.
struct TxFailure {
    statement: Arc<str>,
    error: rusqlite::Error,
}

struct Worker {
    conn: Connection,
    rx: Receiver<Msg>,
    path: Arc<Path>,
    counters: Arc<Counters>,
    batch_size: usize,
    batch_time: Duration,
    retries: u32,
    retry_backoff: Duration,
}

/// How long the writer naps between looks at its queue while a batch fills (see `fill`).
const FILL_NAP: Duration = Duration::from_millis(1);

impl Worker {
    fn run(self) {
        let mut batch: Vec<Write> = Vec::with_capacity(self.batch_size);
        let mut closing = false;
        while !closing {
            match self.rx.recv() {
                Ok(Msg::Write(write)) => batch.push(write),
                Ok(Msg::Close) | Err(_) => break,
            }
            closing = self.fill(&mut batch);
            self.commit(&mut batch);
        }
        // Closing: whatever is still queued, without waiting for batches to fill.
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Write(write)) => {
                    batch.push(write);
                    if batch.len() >= self.batch_size {
                        self.commit(&mut batch);
                    }
                }
                Ok(Msg::Close) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if !batch.is_empty() {
            self.commit(&mut batch);
        }
        // The connection closes (and checkpoints the WAL) when `self` drops; writes queued
        // after this point are dropped with the receiver and report `Discarded`.
    }

    /// Adds queued writes to `batch` until it is full or `batch_time` has passed since its
    /// first write. Returns whether the sink is closing.
    fn fill(&self, batch: &mut Vec<Write>) -> bool {
        // A `batch_time` too long to add to the clock means: wait until the batch is full.
        let deadline = Instant::now().checked_add(self.batch_time);
        while batch.len() < self.batch_size {
            let msg = match self.rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Disconnected) => return true,
                Err(TryRecvError::Empty) => {
                    let waited = match deadline {
                        Some(deadline) => {
                            let now = Instant::now();
                            if now >= deadline {
                                return false;
                            }
                            // Nap, then look again, rather than park in `recv_timeout`: a
                            // parked thread is woken (a futex call and a context switch) by
                            // every write the rule sends, which cost more than the insert
                            // itself under load. A nap of at most `FILL_NAP` adds at most that
                            // to a batch that fills meanwhile.
                            std::thread::sleep((deadline - now).min(FILL_NAP));
                            continue;
                        }
                        None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    match waited {
                        Ok(msg) => msg,
                        Err(RecvTimeoutError::Timeout) => return false,
                        Err(RecvTimeoutError::Disconnected) => return true,
                    }
                }
            };
            match msg {
                Msg::Write(write) => batch.push(write),
                Msg::Close => return true,
            }
        }
        false
    }

    /// Runs `batch` in one transaction, retrying a failed transaction, and reports every write.
    /// Leaves `batch` empty.
    fn commit(&self, batch: &mut Vec<Write>) {
        if batch.is_empty() {
            return;
        }
        // The writes that failed on their own statement, kept out of later attempts.
        let mut own_errors: Vec<Option<SinkError>> = Vec::new();
        own_errors.resize_with(batch.len(), || None);
        let mut backoff = self.retry_backoff;
        let mut attempts = 0u32;
        let outcome = loop {
            attempts += 1;
            match self.transaction(batch, &mut own_errors) {
                Ok(()) => break Ok(()),
                Err(failure) => {
                    if !self.conn.is_autocommit() {
                        // Best effort: if ROLLBACK fails too, the next BEGIN fails and says why.
                        let _ = self.conn.execute_batch("ROLLBACK");
                    }
                    if attempts > self.retries {
                        break Err(failure);
                    }
                    Counters::add(&self.counters.retried, 1);
                    std::thread::sleep(backoff);
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        };
        let (mut written, mut failed) = (0u64, 0u64);
        let failure = match outcome {
            Ok(()) => {
                Counters::add(&self.counters.batches, 1);
                None
            }
            Err(TxFailure { statement, error }) => Some(SinkError::Transaction {
                path: self.path.clone(),
                statement,
                attempts,
                source: Arc::new(error),
            }),
        };
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
        Counters::add(&self.counters.written, written);
        Counters::add(&self.counters.failed, failed);
    }

    /// One attempt: every write of `batch` not yet in `own_errors`, then COMMIT. A write whose
    /// own statement fails is recorded in `own_errors` and the transaction goes on (started
    /// again without it if that statement rolled it back).
    fn transaction(
        &self,
        batch: &[Write],
        own_errors: &mut [Option<SinkError>],
    ) -> Result<(), TxFailure> {
        fn at(statement: &'static str) -> impl FnOnce(rusqlite::Error) -> TxFailure {
            move |error| TxFailure {
                statement: Arc::from(statement),
                error,
            }
        }
        'attempt: loop {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(at("BEGIN IMMEDIATE"))?;
            for (write, own_error) in batch.iter().zip(own_errors.iter_mut()) {
                if own_error.is_some() {
                    continue;
                }
                if let Err(error) = self.execute(write) {
                    if !is_write_error(&error) {
                        return Err(TxFailure {
                            statement: write.statement.clone(),
                            error,
                        });
                    }
                    *own_error = Some(SinkError::Statement {
                        path: self.path.clone(),
                        statement: write.statement.clone(),
                        source: Arc::new(error),
                    });
                    if self.conn.is_autocommit() {
                        continue 'attempt;
                    }
                }
            }
            return self.conn.execute_batch("COMMIT").map_err(at("COMMIT"));
        }
    }

    fn execute(&self, write: &Write) -> rusqlite::Result<usize> {
        let mut statement = self.conn.prepare_cached(&write.statement)?;
        statement.execute(rusqlite::params_from_iter(write.params.iter()))
    }
}
