//! The redb storage backend: redb's file backend, with or without fsync.
//!
//! redb's `Durability::None` commits only update the in-memory header (the commit slot is not
//! written at all; recovery reads the last *durable* slot), so they do not survive even a
//! process crash. For `os` we instead commit with `Durability::Immediate` — which writes every
//! page and the flipped commit slot to the file with `pwrite` — through a backend whose
//! `sync_data` is a no-op: the commit reaches the OS page cache (survives `kill -9`) but is not
//! fsynced (may be lost on power loss). redb's default 1-phase commit protects each commit with
//! checksums, so a torn write of the newest commit falls back to the previous one on repair.
//!
//! Every other method, including the byte-range locks that keep a second process from opening
//! the file, is delegated to redb's own [`FileBackend`].
//!
//! # Fault injection
//! Tests make the disk fail on purpose through a [`FaultSwitch`] registered for a database file
//! ([`fault_switch`]) before the store opens it: while it is on, every write, `set_len` and
//! `sync_data` fails with "no space left on device", as a full disk does. A switch can also make
//! commits slow ([`FaultSwitch::set_commit_delay`]): the first write after each `sync_data` (that
//! is, the first byte of the next commit to reach the file) waits first, so the commit stays
//! unwritten for that long after the writer took its batch. Nothing is registered in production,
//! where the backend holds `None` and the check is one branch.
//!
//! A test that runs the broker as another process (the `kill -9` test,
//! `crates/hermod/tests/crash.rs`) cannot call [`fault_switch`] in it. With the cargo feature
//! `test-faults` (enabled only by the `hermod` crate's dev-dependency, so only in builds that
//! also build its tests; a `cargo build`/`cargo install` of the binary never has it), a store
//! opened with no switch registered takes its commit delay from the environment variable
//! `HERMOD_TEST_COMMIT_DELAY_MS` (milliseconds; `COMMIT_DELAY_ENV`). Without the feature nothing reads the environment.

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// With the `test-faults` feature: the environment variable (milliseconds) that gives a store
/// opened without a registered [`FaultSwitch`] a commit delay (see the module docs).
#[cfg(feature = "test-faults")]
pub const COMMIT_DELAY_ENV: &str = "HERMOD_TEST_COMMIT_DELAY_MS";

/// Makes the writes of a store's database file fail while on (a test hook; see the module docs).
#[derive(Debug, Default)]
pub struct FaultSwitch {
    failing: AtomicBool,
    failures: AtomicU64,
    /// Commit delay in milliseconds (0: none).
    commit_delay_ms: AtomicU64,
    /// False from the first write of a commit until its `sync_data`: only that first write waits.
    in_commit: AtomicBool,
}

impl FaultSwitch {
    /// Turns the injected disk fault on or off.
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// Whether the fault is on.
    #[must_use]
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Operations failed by the switch so far.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Makes every later commit wait `delay` before its first write reaches the file (`None` or
    /// zero: no delay).
    pub fn set_commit_delay(&self, delay: Option<Duration>) {
        let ms = delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.commit_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Before a write: waits the commit delay if this is the first write since the last
    /// `sync_data`.
    fn before_write(&self) {
        let ms = self.commit_delay_ms.load(Ordering::SeqCst);
        if ms > 0 && !self.in_commit.swap(true, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    /// After a `sync_data`: the next write starts a new commit.
    fn after_sync(&self) {
        self.in_commit.store(false, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), io::Error> {
        if self.is_failing() {
            self.failures.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected fault)",
            ))
        } else {
            Ok(())
        }
    }
}

static FAULTS: Mutex<Vec<(PathBuf, Arc<FaultSwitch>)>> = Mutex::new(Vec::new());

/// The fault switch of the database file `file` (as [`super::StoreConfig::file`] names it),
/// registering one (off) if there is none. Every later open or reopen of that file by a store in
/// this process goes through it. A test hook: production code never calls it.
#[doc(hidden)]
pub fn fault_switch(file: &Path) -> Arc<FaultSwitch> {
    let mut faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = faults.iter().find(|(f, _)| f == file) {
        return s.clone();
    }
    let s = Arc::new(FaultSwitch::default());
    faults.push((file.to_path_buf(), s.clone()));
    s
}

/// The switch registered for `file`, if any (with the `test-faults` feature, one is registered
/// from `COMMIT_DELAY_ENV` if that is set).
pub(crate) fn registered_fault_switch(file: &Path) -> Option<Arc<FaultSwitch>> {
    let found = {
        let faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        faults
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, s)| s.clone())
    };
    #[cfg(feature = "test-faults")]
    if found.is_none()
        && let Some(ms) = std::env::var(COMMIT_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    {
        tracing::warn!(
            file = %file.display(),
            delay_ms = ms,
            "store: test fault injection: every commit is delayed ({COMMIT_DELAY_ENV})"
        );
        let s = fault_switch(file);
        s.set_commit_delay(Some(Duration::from_millis(ms)));
        return Some(s);
    }
    found
}

/// [`FileBackend`], with fsync (`batch`) or without (`os`); counts the fsyncs it does.
#[derive(Debug)]
pub(crate) struct ModeBackend {
    pub(crate) inner: FileBackend,
    /// Whether `sync_data` reaches the file.
    pub(crate) fsync: bool,
    /// `sync_data` calls passed on to the file.
    pub(crate) fsyncs: Arc<AtomicU64>,
    /// Injected disk faults (tests only).
    pub(crate) faults: Option<Arc<FaultSwitch>>,
}

impl ModeBackend {
    fn fault(&self) -> Result<(), io::Error> {
        match &self.faults {
            Some(f) => f.check(),
            None => Ok(()),
        }
    }

    fn before_write(&self) {
        if let Some(f) = &self.faults {
            f.before_write();
        }
    }

    fn after_sync(&self) {
        if let Some(f) = &self.faults {
            f.after_sync();
        }
    }
}

impl StorageBackend for ModeBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.fault()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.fault()?;
        let r = if self.fsync {
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.inner.sync_data()
        } else {
            Ok(())
        };
        self.after_sync();
        r
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.fault()?;
        self.before_write();
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
