//! Durable storage for persistent sessions: sessions, offline queues, inbound QoS 2 state and
//! retained messages, in one [redb](https://docs.rs/redb) file.
//!
//! # Guarantees
//! A [`Store::submit`] resolves only once its ops are in a committed write transaction:
//! - [`SyncMode::Batch`]: the commit was fsynced: it survives `kill -9` and power loss.
//! - [`SyncMode::Os`]: the commit was written to the OS (page cache) without fsync: it survives a
//!   process crash, not a power cut. (See `backend.rs` for why this is not redb's
//!   `Durability::None`.)
//!
//! `sync = "memory"` means no `Store` at all: the broker simply does not open one.
//!
//! # Group commit
//! One writer thread owns all writes. Submitters append `(ops, waiter)` to a pending list and
//! wake it; it takes everything pending (up to [`MAX_OPS_PER_TXN`] ops, whole submissions only,
//! so a submission is always atomic), applies it in one write transaction, commits once and
//! completes every waiter with the result. Submissions arriving during a commit wait for the
//! next one, so under load one fsync covers many messages. Backpressure: if more than
//! [`MAX_PENDING_OPS`] ops are pending, `submit` blocks the calling thread until the writer
//! catches up (this only happens when the disk cannot keep up at all).
//!
//! # Disk faults
//! redb latches an I/O error: after one failed write every later transaction fails
//! (`PreviousIo`) until the database is closed and opened again. So when a commit fails with an
//! I/O error (a full disk, EIO, a file size limit) the writer:
//! - marks the store **unavailable** ([`Store::healthy`] is false; logged once at `error`, and
//!   reported to the [`Store::on_health_change`] observer). Submissions made while it is
//!   unavailable are queued as usual, but their [`Commit`] resolves at once with
//!   [`StoreError::Unavailable`], so nobody waits on a broken disk;
//! - closes the database and opens it again, with a backoff of [`RETRY_FIRST`] doubling up to
//!   [`RETRY_MAX`], until it opens and **the same failed batch** commits on it. The store is then
//!   available again (logged at `info`) and the writer goes on with what is pending, in order.
//!   No restart is needed.
//!
//! The failed batch is retried, not dropped, because the broker has already acted on it in
//! memory: queue sequence numbers and message ids were reserved, stored deliveries handed to
//! online subscribers, a session's queue position moved. A failed redb transaction is rolled
//! back as a whole, so after the reopen the file holds the last successful commit, and applying
//! the batch then leaves the file exactly as if the fault had not happened: nothing reserved in
//! memory is orphaned, no sequence number or reference count disagrees with the file. (Should a
//! failed commit nevertheless have reached the file, e.g. an fsync that failed after its writes,
//! replaying it is harmless: in sequence the ops are idempotent: absolute puts and deletes,
//! dequeues of entries that must exist, `PutMessage` resetting its reference count before its
//! `Enqueue`s, and an `Enqueue` that finds its own entry already there releases nothing.)
//!
//! Acknowledgements never go out for uncommitted ops: the waiters of the failed batch (and of
//! everything submitted before the store went down) wait up to [`FAILED_COMMIT_WAIT`] for a
//! retry to succeed, then resolve with [`StoreError::Unavailable`] (their publishers are told
//! the message was not accepted). Their ops stay queued and are still written once the disk
//! works, so the file stays consistent with memory; a message refused that way may therefore
//! still reach its subscribers, which QoS 1 allows and a publisher's retry makes a duplicate of.
//! Errors that are not I/O (a corrupt record, a value too large) fail their batch as before and
//! do not make the store unavailable. If the store is closed while unavailable, one last attempt
//! is made and whatever still cannot be written is logged and dropped.
//!
//! # Tables
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&str` | `u32` (`"schema_version"`) |
//! | `sessions` | client id | [`SessionRecord`] (without its subscriptions) |
//! | `subscriptions` | `(client id, filter)` | [`SubscriptionRecord`] row: one per subscription, so a SUBSCRIBE writes one small row, not the whole session (schema 2) |
//! | `messages` | message id `u64` | [`MessageRecord`] |
//! | `message_refs` | message id `u64` | `u32`: queue entries referencing the message |
//! | `queue` | `(client id, seq u64)` | [`QueueEntry`] |
//! | `inflight_in` | `(client id, packet id u16)` | `()` |
//! | `retained` | topic | [`MessageRecord`] |
//!
//! The reference count lives in its own table so a dequeue rewrites 4 bytes, not the payload.
//! At open the counts are recomputed from the queue (the source of truth) and any damage a
//! half-finished sequence of submissions could leave is repaired: queue entries of unknown
//! sessions or messages, `inflight_in` of unknown sessions, unreferenced messages.

//!
//! # Engine choice (redb 4.6 vs fjall 3.1)
//! Measured on the 2-core dev VM (ext4), same workload (N threads each committing
//! PutMessage+Enqueue of a 100-byte payload and waiting; `bench_group_commit` here, a throwaway
//! fjall program with the same group-commit writer): 32 threads: redb batch ~12.8k msg/s, os
//! ~27k; fjall SyncAll ~52k, Buffer ~117k (fjall is 2.3-4x faster at writes; 128 threads: redb
//! 20k/38k, fjall 47k/97k). redb is kept: one file (simple to quarantine), real multi-table
//! transactions with read-modify-write (reference counts) inside the group commit, ordered tuple
//! keys without tombstone build-up under a queue's insert-then-delete workload, page checksums
//! verified at open. The `Op` API hides the engine should the store become the bottleneck.

mod backend;
mod records;
mod recover;
#[cfg(test)]
mod tests;

pub use records::{
    DecodeError, MessageRecord, QueueEntry, QueueState, SessionRecord, SubscriptionRecord,
    WillRecord,
};

use backend::ModeBackend;
use redb::backends::FileBackend;
use redb::{
    Builder, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[doc(hidden)]
pub use backend::{FaultSwitch, fault_switch};

/// The schema version this code writes and reads.
/// 2: subscriptions in their own table, one row each (version 1 kept them inside the session
/// record; such stores are migrated when opened).
pub const SCHEMA_VERSION: u32 = 2;
/// File name of the database inside the store directory.
pub const DB_FILE_NAME: &str = "hermod.redb";
/// The writer takes whole submissions into one transaction until it holds this many ops (a
/// single larger submission gets a transaction of its own).
pub const MAX_OPS_PER_TXN: usize = 20_000;
/// Above this many pending (not yet taken) ops, [`Store::submit`] blocks until the writer
/// catches up.
pub const MAX_PENDING_OPS: usize = 1_000_000;
/// redb page cache size.
const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// After an I/O error, the first reopen-and-retry comes this long after the failure; the wait
/// doubles after each failed attempt, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two reopen-and-retry attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long the waiters of a commit that failed with an I/O error (and of submissions made
/// before the store went down) wait for a retry to succeed before they get
/// [`StoreError::Unavailable`].
pub const FAILED_COMMIT_WAIT: Duration = Duration::from_secs(2);

const META: TableDefinition<'_, &str, u32> = TableDefinition::new("meta");
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("messages");
const MESSAGE_REFS: TableDefinition<'_, u64, u32> = TableDefinition::new("message_refs");
const QUEUE: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("queue");
const INFLIGHT_IN: TableDefinition<'_, (&str, u16), ()> = TableDefinition::new("inflight_in");
const SUBSCRIPTIONS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("subscriptions");
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");
const SCHEMA_KEY: &str = "schema_version";

/// `[store] sync`, for the modes that open a store (`memory` opens none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// fsync every commit (group commit shares it among concurrent writers).
    #[default]
    Batch,
    /// Write every commit to the OS without fsync.
    Os,
}

/// `[store] on_corrupt`: what to do with a store file that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCorrupt {
    /// Refuse to start, naming the file.
    #[default]
    Fail,
    /// Rename the file to `*.bad`, log an error and start empty.
    Quarantine,
}

/// Where and how to open the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The store directory (created if missing); the database is `DB_FILE_NAME` inside it.
    pub path: PathBuf,
    /// Durability of commits.
    pub sync: SyncMode,
    /// Corrupt-file policy.
    pub on_corrupt: OnCorrupt,
}

impl StoreConfig {
    /// `batch` and `fail` at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            sync: SyncMode::Batch,
            on_corrupt: OnCorrupt::Fail,
        }
    }

    /// The database file.
    #[must_use]
    pub fn file(&self) -> PathBuf {
        self.path.join(DB_FILE_NAME)
    }
}

/// A store error. `Clone`, because one failed commit fails all of its waiters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened (directory not creatable, file in use, ...).
    #[error("cannot open store {}: {detail}", file.display())]
    Open {
        /// The file or directory.
        file: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// An I/O error reading or writing the store.
    #[error("store {}: I/O error: {detail}", file.display())]
    Io {
        /// The database file.
        file: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The file is not a readable Hermod store.
    #[error("store {} is corrupt: {detail}", file.display())]
    Corrupt {
        /// The database file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file was written by a newer Hermod.
    #[error(
        "store {} has schema version {found}, this Hermod supports up to {supported}",
        file.display()
    )]
    UnsupportedSchema {
        /// The database file.
        file: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Newest version this code reads.
        supported: u32,
    },
    /// The store has been closed (or its writer thread is gone).
    #[error("store is closed")]
    Closed,
    /// The store cannot write now: a disk error made it unavailable; the writer is reopening the
    /// database and retrying (see the module docs). The ops were not (yet) committed.
    #[error("store {} is unavailable after a disk error (retrying)", file.display())]
    Unavailable {
        /// The database file.
        file: PathBuf,
    },
    /// Something redb refused that is neither I/O nor corruption (e.g. a value too large): the
    /// batch fails, the store stays available.
    #[error("store {}: {detail}", file.display())]
    Refused {
        /// The database file.
        file: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl StoreError {
    /// An I/O error: the disk, not the data. Only these make the store unavailable and retried.
    fn is_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}

/// Classifies a redb error for `file`.
fn db_err(file: &Path, e: impl Into<redb::Error>) -> StoreError {
    let file = file.to_path_buf();
    match e.into() {
        redb::Error::Corrupted(detail) => StoreError::Corrupt { file, detail },
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => StoreError::Corrupt {
            file,
            detail: e.to_string(),
        },
        e @ (redb::Error::TableTypeMismatch { .. } | redb::Error::TableIsMultimap(_)) => {
            StoreError::Corrupt {
                file,
                detail: e.to_string(),
            }
        }
        e @ (redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch) => {
            StoreError::Open {
                file,
                detail: format!("{e} (is another Hermod using it?)"),
            }
        }
        e @ (redb::Error::Io(_)
        | redb::Error::PreviousIo
        | redb::Error::DatabaseClosed
        | redb::Error::Backend(_)
        | redb::Error::Unsupported
        | redb::Error::LockPoisoned(_)) => StoreError::Io {
            file,
            detail: e.to_string(),
        },
        e => StoreError::Refused {
            file,
            detail: e.to_string(),
        },
    }
}

fn decode_err(file: &Path, e: DecodeError) -> StoreError {
    StoreError::Corrupt {
        file: file.to_path_buf(),
        detail: e.0,
    }
}

/// One change. Ops of one [`Store::submit`] are applied in order, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a session (its `subscriptions` field is stored as rows, like
    /// `PutSubscription`, when not empty).
    PutSession(String, SessionRecord),
    /// Delete a session with its queue (decrementing its messages' references), its
    /// subscriptions and its `inflight_in` entries.
    DeleteSession(String),
    /// Create or replace one subscription of a session.
    PutSubscription(String, SubscriptionRecord),
    /// Remove one subscription of a session (by filter). A no-op if it is gone.
    DeleteSubscription(String, String),
    /// Store a message referenced by `refs` queue entries (the `Enqueue`s that follow). With
    /// `refs == 0` nothing is stored.
    PutMessage(u64, MessageRecord, u32),
    /// Queue a message for a session at `seq`. Does not change the message's references
    /// (`PutMessage` counted them). A no-op for an unknown session (the reference it was counted
    /// for is dropped) or an unknown message. Replacing an entry at the same seq releases the old
    /// entry's reference, unless it refers to the same message (so that replaying a batch is
    /// harmless).
    Enqueue(String, u64, QueueEntry),
    /// Replace an existing queue entry (state change). A no-op if the entry is gone.
    UpdateQueueEntry(String, u64, QueueEntry),
    /// Remove a queue entry, releasing its message reference (the message is deleted at 0).
    /// A no-op if the entry is gone.
    Dequeue(String, u64),
    /// Inbound QoS 2 packet id awaiting PUBREL.
    PutInflightIn(String, u16),
    /// PUBREL received.
    DeleteInflightIn(String, u16),
    /// Set the retained message of a topic.
    PutRetained(String, MessageRecord),
    /// Clear the retained message of a topic.
    DeleteRetained(String),
}

/// A session's queue as found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// Number of entries.
    pub len: usize,
    /// Lowest seq.
    pub first_seq: u64,
    /// Highest seq + 1: where the next `Enqueue` should go.
    pub next_seq: u64,
}

/// Everything read back at open (queues are paged in with [`Store::load_queue`]).
#[derive(Debug, Default)]
pub struct Recovered {
    /// All sessions.
    pub sessions: Vec<(String, SessionRecord)>,
    /// Non-empty queues by client id.
    pub queues: HashMap<String, QueueInfo>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inflight_in: Vec<(String, u16)>,
    /// Retained messages by topic.
    pub retained: Vec<(String, MessageRecord)>,
    /// Higher than any stored message id.
    pub next_message_id: u64,
    /// Inconsistencies repaired at open (orphan entries removed, reference counts fixed).
    pub repairs: usize,
    /// Where a corrupt file was moved, with `on_corrupt = "quarantine"`.
    pub quarantined: Option<PathBuf>,
    /// Bytes of stored queued messages (encoded records), for the disk budget.
    pub message_bytes: u64,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Write transactions committed by the writer.
    pub commits: u64,
    /// Submissions completed successfully.
    pub submissions: u64,
    /// Ops applied in successful commits.
    pub ops: u64,
    /// fsyncs issued (always 0 with [`SyncMode::Os`]).
    pub fsyncs: u64,
    /// Commits that failed with an I/O error (each made the store unavailable or was a failed
    /// retry while it was).
    pub io_failures: u64,
    /// Times the database was reopened after an I/O error.
    pub reopens: u64,
}

// ---------------------------------------------------------------------------------------------
// The handle and the writer thread.

struct Submission {
    ops: Vec<Op>,
    /// `None` once the waiter has been answered (failed while the store was unavailable): the
    /// ops are still written.
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl Submission {
    fn complete(&mut self, r: Result<(), StoreError>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(r);
        }
    }
}

/// The open database; `None` while the writer reopens it after a disk error.
type DbSlot = RwLock<Option<Database>>;

/// Called with the new state when the store becomes unavailable (`false`) or available again.
type HealthObserver = Box<dyn Fn(bool) + Send + Sync>;

#[derive(Default)]
struct Pending {
    subs: VecDeque<Submission>,
    ops: usize,
    /// No new submissions: the writer drains what is pending and exits.
    closing: bool,
    /// The writer thread has exited (or panicked).
    writer_gone: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes submitters blocked on backpressure.
    space: Condvar,
    commits: AtomicU64,
    submissions: AtomicU64,
    ops: AtomicU64,
    fsyncs: Arc<AtomicU64>,
    /// Bytes of stored queued messages (encoded records), kept up to date by the writer.
    message_bytes: AtomicU64,
    /// False from a commit failing with an I/O error until the database is reopened and the
    /// failed batch committed. Changed under the `pending` lock.
    healthy: AtomicBool,
    io_failures: AtomicU64,
    reopens: AtomicU64,
    observer: Mutex<Option<HealthObserver>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave `Pending` inconsistent in a way that
        // matters (it is a queue and flags), so recover from poisoning.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a health transition (the caller holds the `pending` lock) and tells the observer.
    fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::SeqCst) != healthy {
            let observer = self.observer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = observer.as_ref() {
                f(healthy);
            }
        }
    }
}

fn read_slot(slot: &DbSlot) -> std::sync::RwLockReadGuard<'_, Option<Database>> {
    slot.read().unwrap_or_else(|p| p.into_inner())
}

fn write_slot(slot: &DbSlot) -> std::sync::RwLockWriteGuard<'_, Option<Database>> {
    slot.write().unwrap_or_else(|p| p.into_inner())
}

struct Inner {
    shared: Arc<Shared>,
    db: Arc<DbSlot>,
    file: PathBuf,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn shutdown(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!(file = %self.file.display(), "store writer thread panicked");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The durable store: a cheap, cloneable handle to one writer thread and the database.
///
/// Dropping the last handle (or [`Store::close`]) commits everything submitted so far and stops
/// the writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("file", &self.inner.file)
            .finish()
    }
}

/// Resolves once the ops of one [`Store::submit`] are committed per the [`SyncMode`].
#[derive(Debug)]
#[must_use = "a Commit does nothing unless awaited; dropping it does not cancel the ops"]
pub struct Commit {
    inner: CommitInner,
}

#[derive(Debug)]
enum CommitInner {
    Waiting(oneshot::Receiver<Result<(), StoreError>>),
    Ready(Option<Result<(), StoreError>>),
}

impl Commit {
    fn ready(r: Result<(), StoreError>) -> Self {
        Commit {
            inner: CommitInner::Ready(Some(r)),
        }
    }

    /// A commit that has already failed with `e` (for ops that were refused before reaching the
    /// store, e.g. because it is unavailable).
    pub fn failed(e: StoreError) -> Self {
        Self::ready(Err(e))
    }

    /// Blocks the calling thread until the commit completes. Must not be called from inside an
    /// async runtime thread (await the `Commit` there).
    pub fn wait(self) -> Result<(), StoreError> {
        match self.inner {
            CommitInner::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(StoreError::Closed)),
            CommitInner::Ready(r) => r.unwrap_or(Err(StoreError::Closed)),
        }
    }
}

impl Future for Commit {
    type Output = Result<(), StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            CommitInner::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(StoreError::Closed))),
            CommitInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(StoreError::Closed))),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store directory and its database, checks the schema,
    /// repairs inconsistencies and reads everything back.
    ///
    /// A corrupt file is refused ([`OnCorrupt::Fail`], error naming it) or renamed to `*.bad`
    /// and replaced by an empty store ([`OnCorrupt::Quarantine`], logged with `tracing::error!`).
    /// A file written by a newer schema is always refused: it is not corrupt, and renaming it
    /// away would make a downgrade silently lose it.
    pub fn open(cfg: &StoreConfig) -> Result<(Store, Recovered), StoreError> {
        std::fs::create_dir_all(&cfg.path).map_err(|e| StoreError::Open {
            file: cfg.path.clone(),
            detail: e.to_string(),
        })?;
        let file = cfg.file();
        match open_db(&file, cfg.sync) {
            Err(StoreError::Corrupt { file, detail })
                if cfg.on_corrupt == OnCorrupt::Quarantine =>
            {
                let bad = quarantine_path(&file);
                std::fs::rename(&file, &bad).map_err(|e| StoreError::Open {
                    file: file.clone(),
                    detail: format!(
                        "corrupt ({detail}), and renaming it to {} failed: {e}",
                        bad.display()
                    ),
                })?;
                tracing::error!(
                    file = %file.display(),
                    quarantined = %bad.display(),
                    %detail,
                    "STORE IS CORRUPT: moved it aside and starting with an EMPTY store; \
                     persistent sessions, queued and retained messages in it are not loaded"
                );
                let (store, mut recovered) = open_db(&file, cfg.sync)?;
                recovered.quarantined = Some(bad);
                Ok((store, recovered))
            }
            r => r,
        }
    }

    /// Queues `ops` for the next commit and returns at once (it never waits for I/O; it blocks
    /// only under the [`MAX_PENDING_OPS`] backpressure bound). The returned [`Commit`] resolves
    /// when the ops are committed; dropping it does not cancel them.
    pub fn submit(&self, ops: Vec<Op>) -> Commit {
        let shared = &self.inner.shared;
        let (tx, rx) = oneshot::channel();
        let mut p = shared.lock();
        while p.ops > MAX_PENDING_OPS && !p.closing && !p.writer_gone {
            p = shared.space.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        if p.closing || p.writer_gone {
            return Commit::ready(Err(StoreError::Closed));
        }
        p.ops += ops.len();
        if !shared.healthy.load(Ordering::SeqCst) {
            // Queued in order (written once the disk works), but nobody waits for it.
            p.subs.push_back(Submission { ops, done: None });
            drop(p);
            shared.work.notify_one();
            return Commit::failed(self.unavailable());
        }
        p.subs.push_back(Submission {
            ops,
            done: Some(tx),
        });
        drop(p);
        shared.work.notify_one();
        Commit {
            inner: CommitInner::Waiting(rx),
        }
    }

    fn unavailable(&self) -> StoreError {
        StoreError::Unavailable {
            file: self.inner.file.clone(),
        }
    }

    /// False while a disk error keeps the store from writing (from the failed commit until the
    /// database has been reopened and the failed batch committed; see the module docs).
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.inner.shared.healthy.load(Ordering::SeqCst)
    }

    /// Calls `f` with the current state now, and with the new one at every change of
    /// [`Store::healthy`] (from the writer thread: `f` must be quick). Replaces an earlier
    /// observer.
    pub fn on_health_change(&self, f: impl Fn(bool) + Send + Sync + 'static) {
        let shared = &self.inner.shared;
        let p = shared.lock();
        f(shared.healthy.load(Ordering::SeqCst));
        *shared.observer.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
        drop(p);
    }

    /// Up to `limit` queue entries of `client_id` after `after_seq` (from the start if `None`),
    /// in seq order, each with its message. Reads the last committed state (not ops still
    /// pending). Blocking I/O: call from a blocking context (e.g. `spawn_blocking`).
    pub fn load_queue(
        &self,
        client_id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, QueueEntry, Arc<MessageRecord>)>, StoreError> {
        let file = &self.inner.file;
        let start = match after_seq {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(s) => s + 1,
        };
        let slot = read_slot(&self.inner.db);
        let db = slot.as_ref().ok_or_else(|| self.unavailable())?;
        let txn = db.begin_read().map_err(|e| db_err(file, e))?;
        let queue = txn.open_table(QUEUE).map_err(|e| db_err(file, e))?;
        let messages = txn.open_table(MESSAGES).map_err(|e| db_err(file, e))?;
        let mut cache: HashMap<u64, Arc<MessageRecord>> = HashMap::new();
        let mut out = Vec::new();
        for item in queue
            .range((client_id, start)..=(client_id, u64::MAX))
            .map_err(|e| db_err(file, e))?
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| db_err(file, e))?;
            let seq = k.value().1;
            let entry = QueueEntry::decode(v.value()).map_err(|e| decode_err(file, e))?;
            let msg = match cache.get(&entry.message_id) {
                Some(m) => m.clone(),
                None => {
                    let Some(raw) = messages
                        .get(entry.message_id)
                        .map_err(|e| db_err(file, e))?
                    else {
                        tracing::warn!(
                            client_id,
                            seq,
                            message_id = entry.message_id,
                            "store: queue entry refers to a missing message; skipped"
                        );
                        continue;
                    };
                    let m = Arc::new(
                        MessageRecord::decode(raw.value()).map_err(|e| decode_err(file, e))?,
                    );
                    cache.insert(entry.message_id, m.clone());
                    m
                }
            };
            out.push((seq, entry, msg));
        }
        Ok(out)
    }

    /// Number of committed queue entries of `client_id` (counts them: O(len)).
    pub fn queue_len(&self, client_id: &str) -> Result<usize, StoreError> {
        let file = &self.inner.file;
        let slot = read_slot(&self.inner.db);
        let db = slot.as_ref().ok_or_else(|| self.unavailable())?;
        let txn = db.begin_read().map_err(|e| db_err(file, e))?;
        let queue = txn.open_table(QUEUE).map_err(|e| db_err(file, e))?;
        let mut n = 0;
        for item in queue
            .range((client_id, 0)..=(client_id, u64::MAX))
            .map_err(|e| db_err(file, e))?
        {
            item.map_err(|e| db_err(file, e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Bytes of queued messages in the store (encoded records, not counting B-tree overhead or
    /// free pages), for a disk budget.
    #[must_use]
    pub fn message_bytes(&self) -> u64 {
        self.inner.shared.message_bytes.load(Ordering::Relaxed)
    }

    /// Counters of the writer.
    #[must_use]
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.shared;
        StoreStats {
            commits: s.commits.load(Ordering::Relaxed),
            submissions: s.submissions.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            io_failures: s.io_failures.load(Ordering::Relaxed),
            reopens: s.reopens.load(Ordering::Relaxed),
        }
    }

    /// The database file.
    #[must_use]
    pub fn file(&self) -> &Path {
        &self.inner.file
    }

    /// Commits everything submitted so far and stops the writer thread. Other clones of this
    /// handle get [`StoreError::Closed`] from `submit` afterwards; the file is closed when the
    /// last clone is dropped.
    pub fn close(self) {
        self.inner.shutdown();
    }
}

/// `hermod.redb` → `hermod.redb.bad`, or `hermod.redb.N.bad` if that exists.
fn quarantine_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DB_FILE_NAME.to_owned());
    let mut candidate = file.with_file_name(format!("{name}.bad"));
    let mut n = 1;
    while candidate.exists() {
        candidate = file.with_file_name(format!("{name}.{n}.bad"));
        n += 1;
    }
    candidate
}

fn open_db(file: &Path, sync: SyncMode) -> Result<(Store, Recovered), StoreError> {
    let fsyncs = Arc::new(AtomicU64::new(0));
    // redb asserts on some kinds of corruption in debug builds (and promises only an error in
    // release builds); a panic while opening is a corrupt file either way.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let db = create_database(file, sync, fsyncs.clone())?;
        let recovered = recover::recover(&db, file)?;
        Ok::<_, StoreError>((db, recovered))
    }));
    let (db, recovered) = match opened {
        Ok(r) => r?,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            return Err(StoreError::Corrupt {
                file: file.to_path_buf(),
                detail: format!("reading it failed: {msg}"),
            });
        }
    };
    if recovered.repairs > 0 {
        tracing::warn!(
            file = %file.display(),
            repairs = recovered.repairs,
            "store: repaired inconsistent entries at open"
        );
    }
    let db = Arc::new(RwLock::new(Some(db)));
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        work: Condvar::new(),
        space: Condvar::new(),
        commits: AtomicU64::new(0),
        submissions: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        fsyncs,
        message_bytes: AtomicU64::new(recovered.message_bytes),
        healthy: AtomicBool::new(true),
        io_failures: AtomicU64::new(0),
        reopens: AtomicU64::new(0),
        observer: Mutex::new(None),
    });
    let writer = {
        let w = Writer {
            shared: shared.clone(),
            db: db.clone(),
            file: file.to_path_buf(),
            sync,
        };
        std::thread::Builder::new()
            .name("hermod-store".into())
            .spawn(move || w.run())
            .map_err(|e| StoreError::Open {
                file: file.to_path_buf(),
                detail: format!("cannot start the writer thread: {e}"),
            })?
    };
    let store = Store {
        inner: Arc::new(Inner {
            shared,
            db,
            file: file.to_path_buf(),
            writer: Mutex::new(Some(writer)),
        }),
    };
    Ok((store, recovered))
}

fn create_database(
    file: &Path,
    sync: SyncMode,
    fsyncs: Arc<AtomicU64>,
) -> Result<Database, StoreError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(file)
        .map_err(|e| StoreError::Open {
            file: file.to_path_buf(),
            detail: e.to_string(),
        })?;
    let inner = FileBackend::new(f).map_err(|e| db_err(file, e))?;
    let backend = ModeBackend {
        inner,
        fsync: sync == SyncMode::Batch,
        fsyncs,
        faults: backend::registered_fault_switch(file),
    };
    Builder::new()
        .set_cache_size(CACHE_BYTES)
        // Verify every page checksum at every open, not only after a crash: otherwise a
        // damaged page of a cleanly closed file is trusted (a flipped payload byte would be
        // delivered as is). It costs one read of the file at startup.
        .set_check_integrity_on_open(true)
        .create_with_backend(backend)
        .map_err(|e: DatabaseError| match e {
            DatabaseError::UpgradeRequired(v) => StoreError::Open {
                file: file.to_path_buf(),
                detail: format!("redb file format {v} needs a manual upgrade"),
            },
            DatabaseError::RepairAborted => StoreError::Corrupt {
                file: file.to_path_buf(),
                detail: "crash repair failed".into(),
            },
            e => db_err(file, e),
        })
}

/// Guarantees waiters never hang: when the writer exits (normally or by panic), mark it gone
/// and drop whatever is still pending (their `Commit`s resolve to `Closed`).
struct WriterGone<'a>(&'a Shared);

impl Drop for WriterGone<'_> {
    fn drop(&mut self) {
        let mut p = self.0.lock();
        p.writer_gone = true;
        p.subs.clear();
        p.ops = 0;
        drop(p);
        self.0.space.notify_all();
    }
}

/// The writer thread: group commit, and reopening the database after a disk error.
struct Writer {
    shared: Arc<Shared>,
    db: Arc<DbSlot>,
    file: PathBuf,
    sync: SyncMode,
}

/// How a disk error ended (see [`Writer::recover`]).
enum Recovery {
    /// The database was reopened and the failed batch committed: the change in message bytes.
    Committed(i64),
    /// The database was reopened, but the batch failed with an error that is not I/O.
    Failed(StoreError),
    /// The store is closing and the disk still fails: the writer gives up.
    GiveUp(StoreError),
}

impl Writer {
    fn run(&self) {
        let shared = &*self.shared;
        let _gone = WriterGone(shared);
        // Fault injection for the crash test (`crates/hermod/tests/crash.rs`): a delay before each
        // commit widens the window in which acknowledged-but-uncommitted data would be lost, so the
        // test fails if an acknowledgement ever goes out before its commit. Unset in production.
        let commit_delay = std::env::var("HERMOD_TEST_COMMIT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        loop {
            let mut batch: Vec<Submission> = {
                let mut p = shared.lock();
                while p.subs.is_empty() && !p.closing {
                    p = shared.work.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if p.subs.is_empty() {
                    return; // closing, and everything is committed
                }
                let mut batch = Vec::new();
                let mut n = 0;
                while let Some(s) = p.subs.front() {
                    if !batch.is_empty() && n + s.ops.len() > MAX_OPS_PER_TXN {
                        break;
                    }
                    n += s.ops.len();
                    if let Some(s) = p.subs.pop_front() {
                        batch.push(s);
                    }
                }
                p.ops -= n;
                batch
            };
            shared.space.notify_all();
            if let Some(d) = commit_delay {
                std::thread::sleep(d);
            }
            let result = match self.commit(&batch) {
                Err(e) if e.is_io() => match self.recover(&mut batch, e) {
                    Recovery::Committed(delta) => Ok(delta),
                    Recovery::Failed(e) => Err(e),
                    Recovery::GiveUp(e) => {
                        let (subs, ops) = {
                            let p = shared.lock();
                            (p.subs.len() + batch.len(), p.ops)
                        };
                        let ops = ops + batch.iter().map(|s| s.ops.len()).sum::<usize>();
                        tracing::error!(
                            file = %self.file.display(),
                            error = %e,
                            submissions = subs,
                            ops,
                            "store closed while unavailable: these changes were NOT written \
                             (none of them was acknowledged)"
                        );
                        for s in &mut batch {
                            s.complete(Err(e.clone()));
                        }
                        return; // WriterGone drops what is pending
                    }
                },
                r => r,
            };
            match result {
                Ok(delta) => {
                    self.add_message_bytes(delta);
                    let n_ops: usize = batch.iter().map(|s| s.ops.len()).sum();
                    shared.commits.fetch_add(1, Ordering::Relaxed);
                    shared
                        .submissions
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    shared.ops.fetch_add(n_ops as u64, Ordering::Relaxed);
                    for s in &mut batch {
                        s.complete(Ok(()));
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, submissions = batch.len(), "store commit failed");
                    for s in &mut batch {
                        s.complete(Err(err.clone()));
                    }
                }
            }
        }
    }

    fn add_message_bytes(&self, delta: i64) {
        let bytes = &self.shared.message_bytes;
        if delta >= 0 {
            bytes.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            let _ = bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(delta.unsigned_abs()))
            });
        }
    }

    /// Applies and commits `batch` on the open database.
    fn commit(&self, batch: &[Submission]) -> Result<i64, StoreError> {
        let slot = read_slot(&self.db);
        match slot.as_ref() {
            Some(db) => commit_batch(db, &self.file, batch),
            None => Err(StoreError::Io {
                file: self.file.clone(),
                detail: "the database is closed after a disk error".into(),
            }),
        }
    }

    /// Closes the database (after an I/O error redb refuses everything until it is reopened);
    /// its file and locks are released at once.
    fn close_db(&self) {
        let db = write_slot(&self.db).take();
        if let Some(db) = db
            && let Err(e) = db.close()
        {
            tracing::debug!(file = %self.file.display(), error = %e, "store: closing the failed database");
        }
    }

    /// Opens the database again and recounts the stored message bytes.
    fn reopen(&self) -> Result<(), StoreError> {
        self.close_db();
        let fsyncs = self.shared.fsyncs.clone();
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = create_database(&self.file, self.sync, fsyncs)?;
            let bytes = stored_message_bytes(&db, &self.file)?;
            Ok::<_, StoreError>((db, bytes))
        }));
        let (db, bytes) = match opened {
            Ok(r) => r?,
            Err(_) => {
                return Err(StoreError::Corrupt {
                    file: self.file.clone(),
                    detail: "reading it failed (redb panicked)".into(),
                });
            }
        };
        self.shared.message_bytes.store(bytes, Ordering::Relaxed);
        *write_slot(&self.db) = Some(db);
        self.shared.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// After `batch` failed with the I/O error `err`: marks the store unavailable, then reopens
    /// the database and retries the same batch with backoff until it commits (see the module
    /// docs). Waiters submitted before the failure are answered `Unavailable` after
    /// [`FAILED_COMMIT_WAIT`]; their ops stay queued.
    fn recover(&self, batch: &mut [Submission], err: StoreError) -> Recovery {
        let shared = &*self.shared;
        let down_at = Instant::now();
        let deadline = down_at + FAILED_COMMIT_WAIT;
        shared.io_failures.fetch_add(1, Ordering::Relaxed);
        {
            let _p = shared.lock();
            shared.set_healthy(false);
        }
        tracing::error!(
            file = %self.file.display(),
            error = %err,
            submissions = batch.len(),
            "STORE UNAVAILABLE: a commit failed with an I/O error. Durable publishes and \
             persistent sessions are refused until the disk works again; reopening the database \
             and retrying the failed commit (nothing uncommitted is acknowledged)"
        );
        self.close_db();
        let unavailable = StoreError::Unavailable {
            file: self.file.clone(),
        };
        let mut wait = RETRY_FIRST;
        let mut next = down_at + wait;
        let mut answered = false;
        let mut attempts: u32 = 0;
        let mut last_err = err;
        loop {
            let closing = {
                let mut p = shared.lock();
                loop {
                    if p.closing {
                        break true;
                    }
                    let now = Instant::now();
                    if !answered && now >= deadline {
                        // Nobody waits on a broken disk longer than this.
                        for s in p.subs.iter_mut() {
                            s.complete(Err(unavailable.clone()));
                        }
                        for s in batch.iter_mut() {
                            s.complete(Err(unavailable.clone()));
                        }
                        answered = true;
                    }
                    if now >= next {
                        break false;
                    }
                    let until = if answered { next } else { next.min(deadline) };
                    p = shared
                        .work
                        .wait_timeout(p, until.saturating_duration_since(now))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            };
            attempts += 1;
            let result = self.reopen().and_then(|()| self.commit(batch));
            match result {
                Ok(delta) => {
                    {
                        let _p = shared.lock();
                        shared.set_healthy(true);
                    }
                    tracing::info!(
                        file = %self.file.display(),
                        attempts,
                        down_ms = u64::try_from(down_at.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "store available again: database reopened and the failed commit \
                         written; durable traffic resumes"
                    );
                    return Recovery::Committed(delta);
                }
                Err(e) if !e.is_io() && read_slot(&self.db).is_some() => {
                    // The database works again; the batch itself is refused.
                    let _p = shared.lock();
                    shared.set_healthy(true);
                    tracing::info!(file = %self.file.display(), attempts, "store available again: database reopened");
                    return Recovery::Failed(e);
                }
                Err(e) => {
                    if e.is_io() {
                        shared.io_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    self.close_db();
                    if closing {
                        return Recovery::GiveUp(e);
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                    next = Instant::now() + wait;
                    if e != last_err || attempts.is_multiple_of(10) {
                        tracing::warn!(
                            file = %self.file.display(),
                            error = %e,
                            attempts,
                            next_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                            "store still unavailable: reopening and retrying failed"
                        );
                    }
                    last_err = e;
                }
            }
        }
    }
}

/// Bytes of stored messages (encoded records) in `db`.
fn stored_message_bytes(db: &Database, file: &Path) -> Result<u64, StoreError> {
    let e = |err: redb::Error| db_err(file, err);
    let txn = db.begin_read().map_err(|x| e(x.into()))?;
    let messages = match txn.open_table(MESSAGES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(x) => return Err(e(x.into())),
    };
    let mut bytes = 0u64;
    for item in messages.iter().map_err(|x| e(x.into()))? {
        let (_, v) = item.map_err(|x| e(x.into()))?;
        bytes += v.value().len() as u64;
    }
    Ok(bytes)
}

/// Applies and commits one batch; returns the change in stored message bytes.
fn commit_batch(db: &Database, file: &Path, batch: &[Submission]) -> Result<i64, StoreError> {
    let e = |err: redb::Error| db_err(file, err);
    let mut txn = db.begin_write().map_err(|x| e(x.into()))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|x| e(x.into()))?;
    let delta = apply_ops(&txn, file, batch.iter().flat_map(|s| s.ops.iter()))?;
    txn.commit().map_err(|x| e(x.into()))?;
    Ok(delta)
}

struct Tables<'t> {
    sessions: redb::Table<'t, &'static str, &'static [u8]>,
    messages: redb::Table<'t, u64, &'static [u8]>,
    refs: redb::Table<'t, u64, u32>,
    queue: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    inflight: redb::Table<'t, (&'static str, u16), ()>,
    retained: redb::Table<'t, &'static str, &'static [u8]>,
    subscriptions: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    /// Change in stored message bytes by the ops applied so far.
    bytes_delta: i64,
}

fn apply_ops<'o>(
    txn: &WriteTransaction,
    file: &Path,
    ops: impl Iterator<Item = &'o Op>,
) -> Result<i64, StoreError> {
    let e = |err: redb::Error| db_err(file, err);
    let mut t = Tables {
        sessions: txn.open_table(SESSIONS).map_err(|x| e(x.into()))?,
        messages: txn.open_table(MESSAGES).map_err(|x| e(x.into()))?,
        refs: txn.open_table(MESSAGE_REFS).map_err(|x| e(x.into()))?,
        queue: txn.open_table(QUEUE).map_err(|x| e(x.into()))?,
        inflight: txn.open_table(INFLIGHT_IN).map_err(|x| e(x.into()))?,
        retained: txn.open_table(RETAINED).map_err(|x| e(x.into()))?,
        subscriptions: txn.open_table(SUBSCRIPTIONS).map_err(|x| e(x.into()))?,
        bytes_delta: 0,
    };
    for op in ops {
        apply_op(&mut t, file, op)?;
    }
    Ok(t.bytes_delta)
}

fn apply_op(t: &mut Tables<'_>, file: &Path, op: &Op) -> Result<(), StoreError> {
    let e = |err: redb::StorageError| db_err(file, err);
    match op {
        Op::PutSession(id, s) => {
            for sub in &s.subscriptions {
                t.subscriptions
                    .insert(
                        (id.as_str(), sub.filter.as_str()),
                        sub.encode_row().as_slice(),
                    )
                    .map_err(e)?;
            }
            let bare = SessionRecord {
                subscriptions: Vec::new(),
                ..s.clone()
            };
            t.sessions
                .insert(id.as_str(), bare.encode().as_slice())
                .map_err(e)?;
        }
        Op::PutSubscription(id, sub) => {
            t.subscriptions
                .insert(
                    (id.as_str(), sub.filter.as_str()),
                    sub.encode_row().as_slice(),
                )
                .map_err(e)?;
        }
        Op::DeleteSubscription(id, filter) => {
            t.subscriptions
                .remove((id.as_str(), filter.as_str()))
                .map_err(e)?;
        }
        Op::DeleteSession(id) => {
            t.sessions.remove(id.as_str()).map_err(e)?;
            // Every (id, filter) key sorts before (id + "\0", ""): exactly this session's rows.
            let next = format!("{id}\0");
            t.subscriptions
                .retain_in((id.as_str(), "")..(next.as_str(), ""), |_, _| false)
                .map_err(e)?;
            let mut entries = Vec::new();
            for item in t
                .queue
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                .map_err(e)?
            {
                let (k, v) = item.map_err(e)?;
                let entry = QueueEntry::decode(v.value()).map_err(|x| decode_err(file, x))?;
                entries.push((k.value().1, entry.message_id));
            }
            for (seq, message_id) in entries {
                t.queue.remove((id.as_str(), seq)).map_err(e)?;
                release(t, message_id).map_err(e)?;
            }
            t.inflight
                .retain_in((id.as_str(), 0)..=(id.as_str(), u16::MAX), |_, _| false)
                .map_err(e)?;
        }
        Op::PutMessage(mid, m, refs) => {
            if *refs == 0 {
                tracing::debug!(message_id = mid, "store: PutMessage with 0 refs ignored");
            } else {
                let encoded = m.encode();
                t.bytes_delta += encoded.len() as i64;
                if let Some(old) = t.messages.insert(*mid, encoded.as_slice()).map_err(e)? {
                    t.bytes_delta -= old.value().len() as i64;
                }
                t.refs.insert(*mid, *refs).map_err(e)?;
            }
        }
        Op::Enqueue(id, seq, entry) => {
            if t.sessions.get(id.as_str()).map_err(e)?.is_none() {
                tracing::debug!(client_id = %id, seq, "store: Enqueue for unknown session ignored");
                release(t, entry.message_id).map_err(e)?;
                return Ok(());
            }
            if t.messages.get(entry.message_id).map_err(e)?.is_none() {
                tracing::warn!(
                    client_id = %id,
                    seq,
                    message_id = entry.message_id,
                    "store: Enqueue of an unknown message ignored"
                );
                return Ok(());
            }
            let old = t
                .queue
                .insert((id.as_str(), *seq), entry.encode().as_slice())
                .map_err(e)?
                .map(|g| QueueEntry::decode(g.value()));
            if let Some(old) = old {
                let old = old.map_err(|x| decode_err(file, x))?;
                // The same message at the same place: a batch retried after a disk error that
                // had in fact reached the file (its `PutMessage` already reset the count).
                if old.message_id != entry.message_id {
                    release(t, old.message_id).map_err(e)?;
                }
            }
        }
        Op::UpdateQueueEntry(id, seq, entry) => {
            let old = t
                .queue
                .get((id.as_str(), *seq))
                .map_err(e)?
                .map(|g| QueueEntry::decode(g.value()));
            let Some(old) = old else {
                tracing::debug!(client_id = %id, seq, "store: update of a missing queue entry ignored");
                return Ok(());
            };
            let old = old.map_err(|x| decode_err(file, x))?;
            if old.message_id != entry.message_id {
                // Not expected from the broker; keep the counts right anyway.
                if !acquire(t, entry.message_id).map_err(e)? {
                    tracing::warn!(
                        client_id = %id,
                        seq,
                        "store: update to an unknown message ignored"
                    );
                    return Ok(());
                }
                release(t, old.message_id).map_err(e)?;
            }
            t.queue
                .insert((id.as_str(), *seq), entry.encode().as_slice())
                .map_err(e)?;
        }
        Op::Dequeue(id, seq) => {
            let old = t
                .queue
                .remove((id.as_str(), *seq))
                .map_err(e)?
                .map(|g| QueueEntry::decode(g.value()));
            match old {
                None => {
                    tracing::debug!(client_id = %id, seq, "store: Dequeue of a missing entry ignored")
                }
                Some(old) => {
                    let old = old.map_err(|x| decode_err(file, x))?;
                    release(t, old.message_id).map_err(e)?;
                }
            }
        }
        Op::PutInflightIn(id, pid) => {
            t.inflight.insert((id.as_str(), *pid), ()).map_err(e)?;
        }
        Op::DeleteInflightIn(id, pid) => {
            t.inflight.remove((id.as_str(), *pid)).map_err(e)?;
        }
        Op::PutRetained(topic, m) => {
            t.retained
                .insert(topic.as_str(), m.encode().as_slice())
                .map_err(e)?;
        }
        Op::DeleteRetained(topic) => {
            t.retained.remove(topic.as_str()).map_err(e)?;
        }
    }
    Ok(())
}

/// Drops one reference to a message, deleting it at 0.
fn release(t: &mut Tables<'_>, message_id: u64) -> Result<(), redb::StorageError> {
    let n = t.refs.get(message_id)?.map(|g| g.value());
    match n {
        None => {
            tracing::debug!(message_id, "store: release of an unknown message ignored");
        }
        Some(0 | 1) => {
            t.refs.remove(message_id)?;
            if let Some(old) = t.messages.remove(message_id)? {
                t.bytes_delta -= old.value().len() as i64;
            }
        }
        Some(n) => {
            t.refs.insert(message_id, n - 1)?;
        }
    }
    Ok(())
}

/// Adds one reference to an existing message; false if it does not exist.
fn acquire(t: &mut Tables<'_>, message_id: u64) -> Result<bool, redb::StorageError> {
    let n = t.refs.get(message_id)?.map(|g| g.value());
    match n {
        None => Ok(false),
        Some(n) => {
            t.refs.insert(message_id, n.saturating_add(1))?;
            Ok(true)
        }
    }
}
