//! Store errors, and how redb and record-decoding errors map onto them.

use super::DecodeError;
use std::path::{Path, PathBuf};

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
    /// The cluster backbone (NATS JetStream) did not take a copy of the message: the publisher
    /// is not told it was stored. Reported by `hermod-cluster` through `Commit::pending`.
    #[error("cluster backbone: {detail}")]
    Backbone {
        /// What went wrong.
        detail: String,
    },
}

impl StoreError {
    /// An I/O error: the disk, not the data. Only these make the store unavailable and retried.
    pub(super) fn is_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}

/// Classifies a redb error for `file`.
pub(super) fn db_err(file: &Path, e: impl Into<redb::Error>) -> StoreError {
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

pub(super) fn decode_err(file: &Path, e: DecodeError) -> StoreError {
    StoreError::Corrupt {
        file: file.to_path_buf(),
        detail: e.0,
    }
}
