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
//! | `kv` | `(namespace, key)` | bytes: documents of the broker's services (device shadows), opaque here |
//!
//! The reference count lives in its own table so a dequeue rewrites 4 bytes, not the payload.
//! At open the counts are recomputed from the queue (the source of truth) and any damage a
//! half-finished sequence of submissions could leave is repaired: queue entries of unknown
//! sessions or messages, `inflight_in` of unknown sessions, unreferenced messages.

//!
//! # Source layout
//! This file holds the public types; `error.rs` the errors, `handle.rs` the [`Store`] handle's
//! operations and [`Commit`], `open.rs` opening (and quarantine), `recover.rs` reading back and
//! repairing at open, `writer.rs` the writer thread (group commit, reopen-and-retry),
//! `apply.rs` ops applied to the tables, `records/` the record encodings, `backend.rs` the redb
//! storage backend (fsync modes, test fault injection).
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

mod apply;
mod backend;
mod error;
mod handle;
mod open;
mod records;
mod recover;
#[cfg(test)]
mod tests;
mod writer;

pub use error::StoreError;
pub use handle::Commit;
pub use records::{
    DecodeError, MessageRecord, PublisherRecord, QueueEntry, QueueState, SessionRecord,
    SubscriptionRecord, WillRecord,
};

use redb::TableDefinition;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use writer::Inner;

#[cfg(feature = "test-faults")]
#[doc(hidden)]
pub use backend::COMMIT_DELAY_ENV;
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
const KV: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("kv");
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
    /// Set a service's document: `(namespace, key, value)`.
    PutKv(String, String, Vec<u8>),
    /// Remove a service's document. A no-op if it is gone.
    DeleteKv(String, String),
}

/// A session's queue as found at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Number of entries.
    pub len: usize,
    /// Lowest seq.
    pub first_seq: u64,
    /// Highest seq + 1: where the next `Enqueue` should go.
    pub next_seq: u64,
    /// `(seq, bytes of its stored message record)` of every entry, for byte limits.
    pub sizes: Vec<(u64, u32)>,
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
    /// Services' documents: `(namespace, key, value)`.
    pub kv: Vec<(String, String, Vec<u8>)>,
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
