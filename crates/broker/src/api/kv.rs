//! Durable documents for the broker's services ([`BrokerHandle::kv`]): device shadows (and
//! later other state of a service) kept in Hermod's own store, in the same file and the same
//! group commits as sessions and messages, instead of a second database beside it.
//!
//! Each service has a namespace (`"shadow"`) of `key -> bytes`; the broker does not look inside.
//! Every entry is also held in memory (read at start-up), so reads never touch the disk: the
//! services this is for keep small documents (a shadow is at most a few KiB) for at most tens of
//! thousands of keys.
//!
//! Writes follow the store's rule for acknowledgements: [`KvSpace::put`] resolves once the write
//! is committed (fsynced with `sync = "batch"`), so a service can answer "accepted" only for what
//! survives `kill -9`. The value is visible to [`KvSpace::get`] at once. If the commit fails (the
//! disk is full or failing), the store keeps the write queued and commits it once the disk works,
//! so memory and disk agree again; the caller is told, and should not report success.
//! With `sync = "memory"` there is no store: writes resolve at once and last until the broker
//! stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use super::BrokerHandle;
use crate::persist::Persistence;
use crate::store::{Op, StoreError};

/// Largest value a service may store under one key.
pub const MAX_KV_VALUE: usize = 1 << 20;

/// Why a write was not committed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A value over [`MAX_KV_VALUE`] bytes.
    #[error("value of {0} bytes is over the limit of {MAX_KV_VALUE}")]
    TooLarge(usize),
    /// The store could not commit it (it will once the disk works; see the module docs).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every namespace's entries, and the store they are written to.
#[derive(Debug, Default)]
pub(crate) struct Kv {
    spaces: Mutex<HashMap<Arc<str>, BTreeMap<String, Bytes>>>,
}

impl Kv {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, BTreeMap<String, Bytes>>> {
        // Inserts and removes only: a panic elsewhere cannot leave a map half-changed.
        self.spaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts back what the store held at start-up.
    pub(crate) fn restore(&self, rows: Vec<(String, String, Vec<u8>)>) {
        let mut spaces = self.lock();
        for (ns, key, value) in rows {
            spaces
                .entry(Arc::from(ns))
                .or_default()
                .insert(key, Bytes::from(value));
        }
    }
}

/// One service's namespace of durable documents (from [`BrokerHandle::kv`]). Cheap to clone.
#[derive(Clone)]
pub struct KvSpace {
    ns: Arc<str>,
    kv: Arc<Kv>,
    /// Weak: a service holding its space must not keep the store open after the broker stopped
    /// (a restart on the same directory would find the file locked); writes then fail with
    /// `StoreError::Closed`.
    persistence: Option<Weak<Persistence>>,
}

impl std::fmt::Debug for KvSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSpace")
            .field("namespace", &self.ns)
            .field("durable", &self.persistence.is_some())
            .finish()
    }
}

impl BrokerHandle {
    /// The durable documents of namespace `ns` (see the module docs of `api::kv`).
    #[must_use]
    pub fn kv(&self, ns: &str) -> KvSpace {
        KvSpace {
            ns: Arc::from(ns),
            kv: self.shared.kv.clone(),
            persistence: self.shared.persistence.as_ref().map(Arc::downgrade),
        }
    }
}

impl KvSpace {
    /// The value under `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.kv
            .lock()
            .get(&self.ns)
            .and_then(|m| m.get(key).cloned())
    }

    /// Every entry, in key order.
    #[must_use]
    pub fn entries(&self) -> Vec<(String, Bytes)> {
        self.kv.lock().get(&self.ns).map_or_else(Vec::new, |m| {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        })
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.kv.lock().get(&self.ns).map_or(0, BTreeMap::len)
    }

    /// Number of keys starting with `prefix` (a range of the ordered map: no scan of the rest).
    #[must_use]
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.kv.lock().get(&self.ns).map_or(0, |m| {
            m.range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
        })
    }

    /// True when the namespace holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether writes go to disk (a store is open).
    #[must_use]
    pub fn is_durable(&self) -> bool {
        self.persistence.is_some()
    }

    /// Submits `op` when there is a store (`None` without one).
    fn store_op(&self, op: Op) -> Result<Option<crate::store::Commit>, KvError> {
        match &self.persistence {
            None => Ok(None),
            Some(weak) => match weak.upgrade() {
                Some(p) => Ok(Some(p.store.submit(vec![op]))),
                None => Err(KvError::Store(StoreError::Closed)),
            },
        }
    }

    /// Sets `key` to `value`; resolves once that is committed to the store.
    ///
    /// # Errors
    /// [`KvError::TooLarge`] (nothing changed), or the store's error (the value is set and will
    /// be written once the disk works).
    pub async fn put(&self, key: &str, value: Bytes) -> Result<(), KvError> {
        if value.len() > MAX_KV_VALUE {
            return Err(KvError::TooLarge(value.len()));
        }
        let commit = {
            // Under the lock, so two writers of one key reach the store in the order their
            // values reached memory.
            let mut spaces = self.kv.lock();
            let commit = self.store_op(Op::PutKv(
                self.ns.to_string(),
                key.to_owned(),
                value.to_vec(),
            ))?;
            spaces
                .entry(self.ns.clone())
                .or_default()
                .insert(key.to_owned(), value);
            commit
        };
        match commit {
            Some(c) => Ok(c.await?),
            None => Ok(()),
        }
    }

    /// Removes `key`; resolves once that is committed. Removing a missing key is not an error.
    ///
    /// # Errors
    /// The store's error (the key is gone from memory and will be from disk once it works).
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        let commit = {
            let mut spaces = self.kv.lock();
            let commit = self.store_op(Op::DeleteKv(self.ns.to_string(), key.to_owned()))?;
            if let Some(m) = spaces.get_mut(&self.ns) {
                m.remove(key);
            }
            commit
        };
        match commit {
            Some(c) => Ok(c.await?),
            None => Ok(()),
        }
    }
}
