//! The public operations of a [`Store`] handle: submitting ops (and the [`Commit`] a submission
//! returns), health, reading queues back, counters and closing.

use super::error::{db_err, decode_err};
use super::writer::{Submission, read_slot};
use super::*;
use redb::ReadableDatabase;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

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

    /// A commit that something other than the store completes, through the returned sender:
    /// the scale-out backbone (`api::Backbone`) hands one back for each QoS 1/2 message it
    /// forwards, so that the publisher's acknowledgement waits for the replicated copy exactly
    /// as it waits for the local one. Dropping the sender fails the commit (`Closed`).
    pub fn pending() -> (oneshot::Sender<Result<(), StoreError>>, Self) {
        let (tx, rx) = oneshot::channel();
        (
            tx,
            Commit {
                inner: CommitInner::Waiting(rx),
            },
        )
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

    /// Calls `f` with the duration of every successful commit (write transaction and fsync),
    /// from the writer thread (`f` must be quick). Only the first call sets it.
    pub fn on_commit(&self, f: impl Fn(std::time::Duration) + Send + Sync + 'static) {
        let _ = self.inner.shared.commit_observer.set(Box::new(f));
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
