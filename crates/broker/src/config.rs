//! Broker configuration: a TOML file whose keys take Mosquitto's names wherever Mosquitto has one,
//! so a Mosquitto user recognises every line. Unknown keys are rejected; errors name the file,
//! line and key. Defaults live in the `Default` impls only, and `--print-default-config` prints
//! them, so documented and real defaults cannot drift apart.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::{AuthSettings, AuthTable, ThrottleSettings};
use crate::banned::BanEntry;
use crate::transport::{Transport, TransportSettings};

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
    /// Bytes (topic, properties and payload) a session may hold in memory (Mosquitto's `max_queued_bytes`; 0 = no byte
    /// limit, `max_queued_messages` still applies). Stored queues are bounded on disk by
    /// `max_queued_messages` and `[store] max_disk_bytes`.
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
    /// Largest topic alias a v5 client may use inbound (Mosquitto's `max_topic_alias`, default 10).
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
    /// Whether retained messages are supported (Mosquitto's `retain_available`).
    pub retain_available: bool,
    /// Listeners. With no config file: one TCP listener on 0.0.0.0:1883. Once a config file is
    /// given, there is no implicit listener: the file lists them all.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `[store]`: durable storage.
    pub store: StoreSection,
    /// `[auth_failures]`: blocking an address after repeated failed logins.
    pub auth_failures: AuthFailuresSection,
    /// `[[banned]]`: client ids, usernames and addresses refused at CONNECT (0x8A "Banned").
    #[serde(
        rename = "banned",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::banned::deserialize_list"
    )]
    pub banned: Vec<BanEntry>,
    /// Folder of the config file: relative paths in it are resolved against this.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

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

/// `[auth_failures]`: after `max` failed authentications from one address within `window`, the
/// address is refused for `block` (CONNACK 0x8A, 3.1.1: 5), before any password is hashed, a
/// right one included. Successful logins are not counted. `max = 0` turns this off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFailuresSection {
    /// Failed authentications from one address (within `window`) that block it; 0 = off.
    pub max: u32,
    /// The counting window, from the first failure, e.g. "1m".
    pub window: String,
    /// How long a blocked address is refused, e.g. "5m".
    pub block: String,
    /// Most addresses tracked at once (memory bound; the least recently seen are forgotten).
    pub max_addresses: usize,
    /// Loopback addresses are never blocked: local processes (health checks, scripts) and a
    /// proxy on the same host without the PROXY protocol would otherwise lock everyone out.
    pub exempt_loopback: bool,
}

impl Default for AuthFailuresSection {
    fn default() -> Self {
        Self {
            max: 10,
            window: "1m".into(),
            block: "5m".into(),
            max_addresses: 10_000,
            exempt_loopback: true,
        }
    }
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

/// One `[[listener]]` table. The transport keys are those of [`TransportSettings`], copied here
/// because serde's `flatten` does not combine with `deny_unknown_fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to bind, e.g. "0.0.0.0:1883" or "[::]:1883".
    pub bind: String,
    /// A name for logs and metrics; defaults to the bind address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tcp` (default), `tls`, `ws`, `wss`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub transport: Transport,
    /// PEM certificate chain (tls, wss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,
    /// PEM private key of `certfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,
    /// PEM CA certificates for client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    /// Clients must present a certificate signed by `cafile`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub require_certificate: bool,
    /// PEM certificate revocation list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crlfile: Option<PathBuf>,
    /// The client certificate's CN becomes the username (as Mosquitto).
    #[serde(default, skip_serializing_if = "is_default")]
    pub use_identity_as_username: bool,
    /// WebSocket path (ws, wss); default "/mqtt".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Expect a PROXY protocol v1/v2 header (behind HAProxy or a cloud load balancer).
    #[serde(default, skip_serializing_if = "is_default")]
    pub proxy_protocol: bool,
    /// Seconds for PROXY header + TLS + WebSocket handshakes; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_timeout: Option<u64>,
    /// Most simultaneous connections on this listener (Mosquitto's listener `max_connections`);
    /// the global `max_connections` applies as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

impl ListenerConfig {
    /// A plain TCP listener.
    #[must_use]
    pub fn tcp(bind: &str) -> Self {
        Self {
            bind: bind.into(),
            name: None,
            transport: Transport::Tcp,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            crlfile: None,
            use_identity_as_username: false,
            path: None,
            proxy_protocol: false,
            handshake_timeout: None,
            max_connections: None,
        }
    }

    /// The transport settings, with relative paths resolved against `base`.
    #[must_use]
    pub fn transport_settings(
        &self,
        base: Option<&Path>,
        max_packet_size: u32,
    ) -> TransportSettings {
        let resolve = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| base.map_or_else(|| p.clone(), |b| b.join(p)))
        };
        let defaults = TransportSettings::default();
        TransportSettings {
            transport: self.transport,
            certfile: resolve(&self.certfile),
            keyfile: resolve(&self.keyfile),
            cafile: resolve(&self.cafile),
            require_certificate: self.require_certificate,
            crlfile: resolve(&self.crlfile),
            use_identity_as_username: self.use_identity_as_username,
            path: self.path.clone().unwrap_or(defaults.path),
            proxy_protocol: self.proxy_protocol,
            handshake_timeout: self
                .handshake_timeout
                .map_or(defaults.handshake_timeout, Duration::from_secs),
            ws_max_message_size: crate::transport::ws_max_message_size_for(max_packet_size),
        }
    }
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
            retain_available: true,
            listeners: vec![ListenerConfig::tcp("0.0.0.0:1883")],
            password_file: None,
            acl_file: None,
            auth: AuthTable::default(),
            store: StoreSection::default(),
            auth_failures: AuthFailuresSection::default(),
            banned: Vec::new(),
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
            ..Self::default()
        }
    }

    /// The defaults as TOML, for `hermod serve --print-default-config`.
    #[must_use]
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Self::default()).unwrap_or_default()
    }

    /// Checks values that parse but cannot be used.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.listeners.is_empty() {
            return Err(invalid(
                "listener",
                "no [[listener]] table: add one, e.g. [[listener]] bind = \"0.0.0.0:1883\"".into(),
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Err(e) = l.transport_settings(None, self.max_packet_size).validate() {
                return Err(invalid(&format!("listener[{i}]"), e.to_string()));
            }
            if l.handshake_timeout == Some(0) {
                return Err(invalid(
                    &format!("listener[{i}].handshake_timeout"),
                    "must be at least 1 second".into(),
                ));
            }
            if l.bind.parse::<SocketAddr>().is_err() && !is_host_and_port(&l.bind) {
                return Err(invalid(
                    &format!("listener[{i}].bind"),
                    format!(
                        "`{}` is not an address with a port, e.g. \"0.0.0.0:1883\"",
                        l.bind
                    ),
                ));
            }
        }
        if self.max_packet_size < 64 {
            return Err(invalid(
                "max_packet_size",
                "must be at least 64 bytes".into(),
            ));
        }
        if self.max_packet_size as usize > hermod_proto::MAX_REMAINING_LENGTH + 5 {
            return Err(invalid(
                "max_packet_size",
                "must be at most 268435460 bytes".into(),
            ));
        }
        if self.max_inflight_messages == 0 {
            return Err(invalid(
                "max_inflight_messages",
                "must be at least 1".into(),
            ));
        }
        if self.max_queued_messages == 0 {
            return Err(invalid("max_queued_messages", "must be at least 1".into()));
        }
        if self.max_topic_levels == 0 {
            return Err(invalid("max_topic_levels", "must be at least 1".into()));
        }
        if self.max_client_id_length < 23 {
            return Err(invalid(
                "max_client_id_length",
                "must be at least 23 (the spec's minimum)".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        if self.connect_timeout == 0 {
            return Err(invalid(
                "connect_timeout",
                "must be at least 1 second".into(),
            ));
        }
        if let Some(s) = &self.persistent_client_expiration {
            parse_duration(s).map_err(|m| invalid("persistent_client_expiration", m))?;
        }
        let af = &self.auth_failures;
        parse_duration(&af.window).map_err(|m| invalid("auth_failures.window", m))?;
        parse_duration(&af.block).map_err(|m| invalid("auth_failures.block", m))?;
        if af.max > 0 && af.max_addresses == 0 {
            return Err(invalid(
                "auth_failures.max_addresses",
                "must be at least 1 (or set auth_failures.max = 0 to turn blocking off)".into(),
            ));
        }
        Ok(())
    }

    /// The access-control keys, for `auth::Auth::load`.
    #[must_use]
    pub fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            allow_anonymous: self.allow_anonymous,
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
            auth: self.auth.clone(),
        }
    }

    /// `[auth_failures]` for the throttle (validated by [`Config::validate`]).
    #[must_use]
    pub fn throttle_settings(&self) -> ThrottleSettings {
        let af = &self.auth_failures;
        match (parse_duration(&af.window), parse_duration(&af.block)) {
            (Ok(window), Ok(block)) => ThrottleSettings {
                max_failures: af.max,
                window,
                block,
                max_addresses: af.max_addresses,
                exempt_loopback: af.exempt_loopback,
            },
            _ => ThrottleSettings::OFF,
        }
    }

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

/// `host:port` with a host name (resolved when the listener binds, as Mosquitto does) and a
/// numeric port.
fn is_host_and_port(bind: &str) -> bool {
    bind.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    })
}

/// Parses Mosquitto's duration syntax: a number followed by `s`, `m`, `h`, `d`, `w` or `y`.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || format!("`{s}` is not a duration like \"30m\", \"2h\", \"14d\" or \"1w\"");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(err()),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_print_default_config() {
        let text = Config::default_toml();
        let mut cfg = Config::parse(&text, Path::new("default.toml")).expect("defaults parse");
        assert_eq!(
            cfg.base_dir.as_deref(),
            Some(Path::new("")),
            "relative paths resolve against the file's folder"
        );
        cfg.base_dir = None;
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn unknown_key_is_rejected_with_file_and_key() {
        let err = Config::parse(
            "max_keepalive = 60\nmax_keepalvie = 5\n[[listener]]\nbind = \"127.0.0.1:1\"\n",
            Path::new("/etc/hermod.toml"),
        )
        .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("/etc/hermod.toml"), "{msg}");
        assert!(msg.contains("max_keepalvie"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::parse("max_inflight_messages = \"lots\"\n", Path::new("h.toml"))
            .expect_err("type");
        assert!(err.to_string().contains("max_inflight_messages"), "{err}");
    }

    #[test]
    fn bad_bind_names_the_listener() {
        let err = Config::parse("[[listener]]\nbind = \"localhost\"\n", Path::new("h.toml"))
            .expect_err("bind");
        assert!(err.to_string().contains("listener[0].bind"), "{err}");
        // Host names are accepted (resolved at bind), as Mosquitto does.
        for ok in [
            "localhost:1883",
            "mqtt.example.com:8883",
            "[::1]:1883",
            "0.0.0.0:1",
        ] {
            let text = format!("[[listener]]\nbind = \"{ok}\"\n");
            assert!(Config::parse(&text, Path::new("h.toml")).is_ok(), "{ok}");
        }
        for bad in ["localhost:", ":1883", "local host:1883", "localhost:99999"] {
            let text = format!("[[listener]]\nbind = \"{bad}\"\n");
            assert!(Config::parse(&text, Path::new("h.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_file_without_listeners_is_refused() {
        let err =
            Config::parse("max_keepalive = 60\n", Path::new("h.toml")).expect_err("no listener");
        assert!(err.to_string().contains("listener"), "{err}");
    }

    #[test]
    fn auth_failures_and_banned_entries() {
        let base = "[[listener]]\nbind = \"127.0.0.1:1\"\n";
        let cfg = Config::parse(
            &format!("{base}[auth_failures]\nmax = 3\nwindow = \"10s\"\nblock = \"2m\"\n[[banned]]\nclient_id = \"evil\"\n[[banned]]\naddress = \"10.1.0.0/16\"\nuntil = \"2027-01-01T00:00:00Z\"\n"),
            Path::new("h.toml"),
        )
        .expect("parses");
        assert_eq!(
            cfg.throttle_settings(),
            ThrottleSettings {
                max_failures: 3,
                window: Duration::from_secs(10),
                block: Duration::from_secs(120),
                max_addresses: 10_000,
                exempt_loopback: true,
            }
        );
        assert_eq!(cfg.banned.len(), 2);
        assert_eq!(cfg.banned[1].until, Some(1_798_761_600));
        for (text, needles) in [
            (
                "[[banned]]\nclient_id = \"a\"\n[[banned]]\naddress = \"10.0.0.0/33\"\n",
                &["h.toml", "banned[1]", "`address`", "10.0.0.0/33"][..],
            ),
            (
                "[[banned]]\nclient_id = \"a\"\nusername = \"b\"\n",
                &["banned[0]", "exactly one", "client_id, username"][..],
            ),
            (
                "[[banned]]\nclient_id = \"a\"\nuntil = \"2027-01-01\"\n",
                &["line 5", "`until`"][..],
            ),
            (
                "[auth_failures]\nwindow = \"1 min\"\n",
                &["auth_failures.window"][..],
            ),
            ("[auth_failures]\nmax_adresses = 5\n", &["max_adresses"][..]),
        ] {
            let e = Config::parse(&format!("{base}{text}"), Path::new("h.toml"))
                .expect_err(text)
                .to_string();
            for n in needles {
                assert!(e.contains(n), "{text:?}: {n:?} not in {e}");
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("2 hours").is_err());
        assert!(parse_duration("h").is_err());
    }
}
