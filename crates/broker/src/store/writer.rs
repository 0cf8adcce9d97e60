//! The writer thread: group commit of pending submissions, and after an I/O error marking the
//! store unavailable, reopening the database and retrying the failed batch with backoff.

use super::apply::apply_ops;
use super::error::db_err;
use super::open::{create_database, stored_message_bytes};
use super::*;
use redb::{Database, Durability};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

pub(super) struct Submission {
    pub(super) ops: Vec<Op>,
    /// `None` once the waiter has been answered (failed while the store was unavailable): the
    /// ops are still written.
    pub(super) done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl Submission {
    pub(super) fn complete(&mut self, r: Result<(), StoreError>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(r);
        }
    }
}

/// The open database; `None` while the writer reopens it after a disk error.
pub(super) type DbSlot = RwLock<Option<Database>>;

/// Called with the new state when the store becomes unavailable (`false`) or available again.
type HealthObserver = Box<dyn Fn(bool) + Send + Sync>;

#[derive(Default)]
pub(super) struct Pending {
    pub(super) subs: VecDeque<Submission>,
    pub(super) ops: usize,
    /// No new submissions: the writer drains what is pending and exits.
    pub(super) closing: bool,
    /// The writer thread has exited (or panicked).
    pub(super) writer_gone: bool,
}

pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    /// Wakes the writer.
    pub(super) work: Condvar,
    /// Wakes submitters blocked on backpressure.
    pub(super) space: Condvar,
    pub(super) commits: AtomicU64,
    pub(super) submissions: AtomicU64,
    pub(super) ops: AtomicU64,
    /// Ops of committed batches that cancelled out (a queue entry added and removed in one batch).
    pub(super) ops_cancelled: AtomicU64,
    pub(super) fsyncs: Arc<AtomicU64>,
    /// Bytes of stored queued messages (encoded records), kept up to date by the writer.
    pub(super) message_bytes: AtomicU64,
    /// False from a commit failing with an I/O error until the database is reopened and the
    /// failed batch committed. Changed under the `pending` lock.
    pub(super) healthy: AtomicBool,
    pub(super) io_failures: AtomicU64,
    pub(super) reopens: AtomicU64,
    pub(super) observer: Mutex<Option<HealthObserver>>,
    /// Told how long each successful commit took (set once).
    pub(super) commit_observer: std::sync::OnceLock<CommitObserver>,
}

/// Called with the duration of each successful commit (from the writer thread).
pub(super) type CommitObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave `Pending` inconsistent in a way that
        // matters (it is a queue and flags), so recover from poisoning.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a health transition (the caller holds the `pending` lock) and tells the observer.
    pub(super) fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::SeqCst) != healthy {
            let observer = self.observer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = observer.as_ref() {
                f(healthy);
            }
        }
    }
}

pub(super) fn read_slot(slot: &DbSlot) -> std::sync::RwLockReadGuard<'_, Option<Database>> {
    slot.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write_slot(slot: &DbSlot) -> std::sync::RwLockWriteGuard<'_, Option<Database>> {
    slot.write().unwrap_or_else(|p| p.into_inner())
}

pub(super) struct Inner {
    pub(super) shared: Arc<Shared>,
    pub(super) db: Arc<DbSlot>,
    pub(super) file: PathBuf,
    pub(super) writer: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    pub(super) fn shutdown(&self) {
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
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) db: Arc<DbSlot>,
    pub(super) file: PathBuf,
    pub(super) sync: SyncMode,
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
    pub(super) fn run(&self) {
        let shared = &*self.shared;
        let _gone = WriterGone(shared);
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
            let started = Instant::now();
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
                    if let Some(f) = shared.commit_observer.get() {
                        f(started.elapsed());
                    }
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
            Some(db) => {
                let (delta, cancelled) = commit_batch(db, &self.file, batch)?;
                self.shared
                    .ops_cancelled
                    .fetch_add(cancelled, Ordering::Relaxed);
                Ok(delta)
            }
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

/// Applies and commits one batch; returns the change in stored message bytes.
fn commit_batch(
    db: &Database,
    file: &Path,
    batch: &[Submission],
) -> Result<(i64, u64), StoreError> {
    let e = |err: redb::Error| db_err(file, err);
    let mut txn = db.begin_write().map_err(|x| e(x.into()))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|x| e(x.into()))?;
    let applied = apply_ops(&txn, file, batch.iter().flat_map(|s| s.ops.iter()))?;
    txn.commit().map_err(|x| e(x.into()))?;
    Ok(applied)
}
