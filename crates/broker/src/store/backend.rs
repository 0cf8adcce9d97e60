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
//! `sync_data` fails with "no space left on device", as a full disk does. Nothing is registered in
//! production, where the backend holds `None` and the check is one branch.

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Makes the writes of a store's database file fail while on (a test hook; see the module docs).
#[derive(Debug, Default)]
pub struct FaultSwitch {
    failing: AtomicBool,
    failures: AtomicU64,
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

/// The switch registered for `file`, if any.
pub(crate) fn registered_fault_switch(file: &Path) -> Option<Arc<FaultSwitch>> {
    let faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    faults
        .iter()
        .find(|(f, _)| f == file)
        .map(|(_, s)| s.clone())
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
        if self.fsync {
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.inner.sync_data()
        } else {
            Ok(())
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.fault()?;
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
