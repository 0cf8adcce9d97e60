//! `[store]`: the section's keys and defaults, and their translation for `store::Store::open`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::Config;

/// `[store]`: where and how durably sessions, queues and retained messages are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Data directory (relative to the config file's folder; without a config file, to the
    /// working directory).
    pub path: PathBuf,
    /// `batch` (default): a QoS 1/2 message for a persistent session is acknowledged only once
    /// it is in a committed, fsynced transaction (survives kill -9 and power loss; concurrent
    /// writers share commits). `os`: committed to the OS without fsync (survives a process crash,
    /// not a power cut). `memory`: nothing is written; everything is lost at exit.
    pub sync: SyncSetting,
    /// What to do with a corrupt or unreadable store: `fail` (default: refuse to start, naming
    /// the file) or `quarantine` (rename it to `*.bad`, log loudly, start empty).
    pub on_corrupt: CorruptSetting,
    /// Global budget for stored queued messages, in bytes (0 = none). Above it, new messages
    /// for persistent sessions are dropped and counted instead of stored.
    pub max_disk_bytes: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("hermod-data"),
            sync: SyncSetting::Batch,
            on_corrupt: CorruptSetting::Fail,
            max_disk_bytes: 0,
        }
    }
}

/// `[store] sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    /// fsync before acknowledging (group commit).
    Batch,
    /// Written to the OS before acknowledging, no fsync.
    Os,
    /// No persistence.
    Memory,
}

/// `[store] on_corrupt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptSetting {
    /// Refuse to start.
    Fail,
    /// Rename to `*.bad` and start empty.
    Quarantine,
}

impl Config {
    /// The store settings for `store::Store::open`, or `None` for `sync = "memory"`.
    #[must_use]
    pub fn store_config(&self) -> Option<crate::store::StoreConfig> {
        let sync = match self.store.sync {
            SyncSetting::Batch => crate::store::SyncMode::Batch,
            SyncSetting::Os => crate::store::SyncMode::Os,
            SyncSetting::Memory => return None,
        };
        let on_corrupt = match self.store.on_corrupt {
            CorruptSetting::Fail => crate::store::OnCorrupt::Fail,
            CorruptSetting::Quarantine => crate::store::OnCorrupt::Quarantine,
        };
        Some(crate::store::StoreConfig {
            path: self.base_dir().join(&self.store.path),
            sync,
            on_corrupt,
        })
    }
}
