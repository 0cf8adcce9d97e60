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

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// [`FileBackend`], with fsync (`batch`) or without (`os`); counts the fsyncs it does.
#[derive(Debug)]
pub(crate) struct ModeBackend {
    pub(crate) inner: FileBackend,
    /// Whether `sync_data` reaches the file.
    pub(crate) fsync: bool,
    /// `sync_data` calls passed on to the file.
    pub(crate) fsyncs: Arc<AtomicU64>,
}

impl StorageBackend for ModeBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if self.fsync {
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.inner.sync_data()
        } else {
            Ok(())
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
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
