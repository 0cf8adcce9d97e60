//! Broker configuration: a TOML file whose keys take Mosquitto's names wherever Mosquitto has one,
//! so a Mosquitto user recognises every line. Unknown keys are rejected; errors name the file,
//! line and key. Defaults live in the `Default` impls only, and `--print-default-config` prints
//! them, so documented and real defaults cannot drift apart.
//!
//! # Layout
//! - this file: [`Config`] (every top-level key), its defaults, [`QueueOverflow`],
//!   [`ConfigError`], `load`/`parse` and the accessors the broker reads;
//! - `listener` — [`ListenerConfig`] (`[[listener]]`) and its transport settings;
//! - `store` — [`StoreSection`] (`[store]`) and [`Config::store_config`];
//! - `admin` — [`AdminSection`] (`[admin]`) and [`MetricsSection`] (`[metrics]`);
//! - `auth_failures` — [`AuthFailuresSection`] (`[auth_failures]`) and
//!   [`Config::throttle_settings`];
//! - `validate` — [`Config::validate`]: values that parse but cannot be used;
//! - `duration` — [`parse_duration`], Mosquitto's duration syntax ("30m", "2h", "14d");
//! - `tests`, `prop_tests` — unit tests, and randomised tests of the parser.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::{AuthSettings, AuthTable};
use crate::banned::BanEntry;

mod admin;
mod auth_failures;
mod duration;
mod listener;
mod store;
mod validate;

pub use admin::{AdminSection, MetricsSection};
pub use auth_failures::AuthFailuresSection;
pub use duration::parse_duration;
pub use listener::ListenerConfig;
pub use store::{CorruptSetting, StoreSection, SyncSetting};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether clients without a username may connect. `None` (the default) means "yes, with a
    /// warning at start-up"; once a password source exists (a later issue) anonymous clients are
    /// refused unless this says `true` explicitly, as in Mosquitto 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Password file: `mosquitto_passwd` lines (`$7$`, `$6$`) and Hermod's argon2id lines
    /// (`hermod passwd`). Relative to the config file's folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Mosquitto `acl_file`. Once set, whatever it does not allow is denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<PathBuf>,
    /// `[auth]`: `[auth.http]`, `[auth.jwt]` and `order`.
    #[serde(skip_serializing_if = "is_default")]
    pub auth: AuthTable,
    /// Largest keep alive (seconds) a client may ask for. v5 clients asking for more (or for 0)
    /// get this value back as Server Keep Alive; v3 clients asking for more are refused with
    /// CONNACK 0x02, as Mosquitto does. 65535 means no cap.
    pub max_keepalive: u16,
    /// Largest packet (bytes, fixed header included) accepted from a client; sent to v5 clients
    /// as Maximum Packet Size. Larger packets are refused from their fixed header, before buffering.
    pub max_packet_size: u32,
    /// Outbound QoS 1/2 messages in flight per client (the v5 client's Receive Maximum lowers it),
    /// and the Receive Maximum we announce for inbound QoS 2.
    pub max_inflight_messages: u16,
    /// Messages queued per session beyond the inflight window (online or offline). When full, new
    /// messages for that session are dropped and counted, so a slow subscriber cannot grow memory.
    pub max_queued_messages: usize,
    /// Bytes (topic, properties and payload) a session may hold queued, in memory and on disk
    /// together (Mosquitto's `max_queued_bytes`; 0 = no byte limit, `max_queued_messages` still
    /// applies). All stored queues together are also bounded by `[store] max_disk_bytes`.
    pub max_queued_bytes: usize,
    /// What to drop when a session's queue is full: `drop_new` (default, as Mosquitto) or
    /// `drop_oldest`. Either way the drop is counted (`messages_dropped`).
    pub queue_overflow: QueueOverflow,
    /// Queue QoS 0 messages for offline persistent sessions (Mosquitto's `queue_qos0_messages`).
    pub queue_qos0_messages: bool,
    /// Subscriptions one client may hold (0 = no limit); beyond it SUBSCRIBE gets 0x97 (v5) /
    /// 0x80 (3.1.1) for the filters past it, so one client cannot make the broker hold millions.
    pub max_subscriptions: usize,
    /// Expire v3.1.1 persistent sessions (and v5 ones asking for "never") after this long offline,
    /// e.g. "2h", "14d", "1w" (Mosquitto's key). Unset: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_client_expiration: Option<String>,
    /// Largest topic alias a v5 client may use inbound (Mosquitto's `max_topic_alias`, default 10);
    /// also the most aliases Hermod sends a client that announced a Topic Alias Maximum.
    pub max_topic_alias: u16,
    /// Most levels (`/`-separated) in a topic name or filter.
    pub max_topic_levels: usize,
    /// Longest client identifier accepted, in bytes.
    pub max_client_id_length: usize,
    /// Most simultaneous client connections, over all listeners; further connections are closed
    /// at accept and counted.
    pub max_connections: usize,
    /// Seconds a new connection has to send CONNECT before it is closed.
    pub connect_timeout: u64,
    /// TCP_NODELAY on accepted TCP connections (all transports over TCP), Mosquitto's
    /// `set_tcp_nodelay`. Hermod's default is `true` (Mosquitto's is `false`): each write goes out
    /// at once, for ~1 ms latencies. `false` lets the kernel's Nagle algorithm coalesce small
    /// writes while an earlier segment is unacknowledged: fewer segments and wake-ups per message
    /// at low rates (less CPU), at the price of tens of milliseconds of latency.
    pub set_tcp_nodelay: bool,
    /// Whether retained messages are supported (Mosquitto's `retain_available`).
    pub retain_available: bool,
    /// Listeners. With no config file: one TCP listener on 0.0.0.0:1883. Once a config file is
    /// given, there is no implicit listener: the file lists them all.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `[store]`: durable storage.
    pub store: StoreSection,
    /// Seconds between updates of the `$SYS/broker/...` topics (0 = no `$SYS` topics), as
    /// Mosquitto's `sys_interval`.
    pub sys_interval: u64,
    /// `[auth_failures]`: blocking an address after repeated failed logins.
    pub auth_failures: AuthFailuresSection,
    /// `[admin]`: admin HTTP API, dashboard, `hermod ctl` socket.
    pub admin: AdminSection,
    /// `[metrics]`: a Prometheus listener of its own.
    pub metrics: MetricsSection,
    /// `[[banned]]`: client ids, usernames and addresses refused at CONNECT (0x8A "Banned").
    #[serde(
        rename = "banned",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::banned::deserialize_list"
    )]
    pub banned: Vec<BanEntry>,
    /// `[[connector]]`, `[[rule]]` and `[[bridge]]`: read from the same file by hermod-rules
    /// (`hermod_rules::RulesConfig`), which reports their errors; the broker lets them through.
    #[serde(skip_serializing)]
    pub connector: Option<ForeignSection>,
    #[serde(skip_serializing)]
    pub rule: Option<ForeignSection>,
    #[serde(skip_serializing)]
    pub bridge: Option<ForeignSection>,
    /// `[shadow]`: the broker reads `access` (whose name is a client's thing, for the default
    /// rule on things' topics: `auth::things`); hermod-shadow (`hermod_shadow::ShadowConfig`)
    /// reads the rest and reports its errors. `[presence]` and `[[thing_type]]` are its alone.
    #[serde(skip_serializing)]
    pub shadow: Option<ShadowSection>,
    #[serde(skip_serializing)]
    pub presence: Option<ForeignSection>,
    #[serde(skip_serializing)]
    pub thing_type: Option<ForeignSection>,
    /// `[cluster]`: read from the same file by hermod-cluster (`hermod_cluster::ClusterConfig`),
    /// which reports its errors; the broker lets it through.
    #[serde(skip_serializing)]
    pub cluster: Option<ForeignSection>,
    /// Folder of the config file: relative paths in it are resolved against this.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// The broker's part of `[shadow]`: `access = "clientid" | "username"`; other keys are
/// hermod-shadow's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShadowSection {
    pub access: crate::auth::ThingAccess,
}

impl<'de> Deserialize<'de> for ShadowSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            access: Option<String>,
            #[serde(flatten)]
            _rest: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
        }
        let raw = Raw::deserialize(d)?;
        let access = match raw.access.as_deref() {
            None | Some("clientid") => crate::auth::ThingAccess::Clientid,
            Some("username") => crate::auth::ThingAccess::Username,
            Some(other) => {
                return Err(serde::de::Error::custom(format!(
                    "key `access`: `{other}` is not `clientid` or `username`"
                )));
            }
        };
        Ok(ShadowSection { access })
    }
}

/// A section another crate reads from the same file: any TOML is accepted here, and nothing
/// of it is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForeignSection;

impl<'de> Deserialize<'de> for ForeignSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(ForeignSection)
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `queue_overflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOverflow {
    /// Drop the new message (as Mosquitto does).
    DropNew,
    /// Drop the oldest queued message to make room.
    DropOldest,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            allow_anonymous: None,
            max_keepalive: 65535,
            max_packet_size: 1024 * 1024,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_subscriptions: 10_000,
            max_queued_bytes: 0,
            queue_overflow: QueueOverflow::DropNew,
            queue_qos0_messages: false,
            persistent_client_expiration: None,
            max_topic_alias: 10,
            max_topic_levels: 128,
            max_client_id_length: 256,
            max_connections: 100_000,
            connect_timeout: 10,
            set_tcp_nodelay: true,
            retain_available: true,
            listeners: vec![ListenerConfig::tcp("0.0.0.0:1883")],
            password_file: None,
            acl_file: None,
            auth: AuthTable::default(),
            store: StoreSection::default(),
            sys_interval: 10,
            auth_failures: AuthFailuresSection::default(),
            admin: AdminSection::default(),
            metrics: MetricsSection::default(),
            banned: Vec::new(),
            connector: None,
            rule: None,
            bridge: None,
            shadow: None,
            presence: None,
            thing_type: None,
            cluster: None,
            base_dir: None,
        }
    }
}

/// A configuration that cannot be used. The message names the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, which carries line, column and key.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        /// The file, or "configuration" when built in code.
        origin: String,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}
impl Config {
    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, and the line and key where toml knows them.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in error messages.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // A file without any [[listener]] table gets none: no implicit listener (mosquitto#2285).
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            listener: Option<toml::Value>,
        }
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut cfg = cfg;
        if let Ok(probe) = toml::from_str::<Probe>(text)
            && probe.listener.is_none()
        {
            cfg.listeners.clear();
        }
        cfg.base_dir = Some(
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        );
        cfg.validate(&path.display().to_string())?;
        Ok(cfg)
    }

    /// A configuration for tests: one listener on 127.0.0.1 with an OS-chosen port.
    #[must_use]
    pub fn for_tests() -> Self {
        Self {
            allow_anonymous: Some(true),
            store: StoreSection {
                sync: SyncSetting::Memory,
                ..StoreSection::default()
            },
            listeners: vec![ListenerConfig {
                name: Some("mqtt".into()),
                ..ListenerConfig::tcp("127.0.0.1:0")
            }],
            admin: AdminSection {
                enabled: false,
                ..AdminSection::default()
            },
            // No `$SYS` messages unless a test asks for them.
            sys_interval: 0,
            ..Self::default()
        }
    }

    /// The defaults as TOML, for `hermod serve --print-default-config`.
    #[must_use]
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Self::default()).unwrap_or_default()
    }

    /// The access-control keys, for `auth::Auth::load`.
    #[must_use]
    pub fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            allow_anonymous: self.allow_anonymous,
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
            auth: self.auth.clone(),
            thing_access: self.shadow.map(|s| s.access).unwrap_or_default(),
        }
    }

    /// The folder relative paths are resolved against (the config file's, else the working directory).
    #[must_use]
    pub fn base_dir(&self) -> PathBuf {
        self.base_dir.clone().unwrap_or_else(|| PathBuf::from("."))
    }

    /// `persistent_client_expiration` as a duration (validated by [`Config::validate`]).
    #[must_use]
    pub fn persistent_client_expiration(&self) -> Option<Duration> {
        self.persistent_client_expiration
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
    }
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests;
