//! Opening a store: the database file and its redb backend, the corrupt-file policy
//! (quarantine), and starting the writer thread. Reading back and repairing is `recover.rs`.

use super::backend::{self, ModeBackend};
use super::error::db_err;
use super::writer::{Inner, Pending, Shared, Writer};
use super::*;
use redb::backends::FileBackend;
use redb::{Builder, Database, DatabaseError, ReadableDatabase, ReadableTable};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Condvar, Mutex, RwLock};

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
        ops_cancelled: AtomicU64::new(0),
        fsyncs,
        message_bytes: AtomicU64::new(recovered.message_bytes),
        healthy: AtomicBool::new(true),
        io_failures: AtomicU64::new(0),
        reopens: AtomicU64::new(0),
        observer: Mutex::new(None),
        commit_observer: std::sync::OnceLock::new(),
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

pub(super) fn create_database(
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

/// Bytes of stored messages (encoded records) in `db`.
pub(super) fn stored_message_bytes(db: &Database, file: &Path) -> Result<u64, StoreError> {
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
