//! `[[bridge]]`: the config of one bridge, as Mosquitto's `connection` section (its `topic`
//! lines are parsed in [`super::topic`]).

use std::path::PathBuf;

use serde::Deserialize;

use super::BridgeError;
use super::topic::TopicMap;

/// One `[[bridge]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Names the bridge in logs, `$SYS/broker/connection/<name>/state` and the local client id
    /// `$hermod/bridge/<name>`.
    pub name: String,
    /// The remote broker, `host:port` (`[v6addr]:port` for an IPv6 literal).
    pub address: String,
    #[serde(default)]
    pub transport: Transport,
    /// CA certificates (PEM) to verify the remote with; the system bundle when absent.
    #[serde(default)]
    pub cafile: Option<PathBuf>,
    /// Client certificate chain (PEM), with `keyfile`.
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// Client private key (PEM), with `certfile`.
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The remote client id; `hermod-bridge-<name>` when absent.
    #[serde(default)]
    pub clientid: Option<String>,
    #[serde(default)]
    pub protocol_version: BridgeProtocol,
    /// Keep alive towards the remote, in seconds (0: none).
    #[serde(default = "default_keepalive")]
    pub keepalive: u16,
    /// Topic lines, Mosquitto's syntax.
    pub topic: Vec<String>,
    /// Messages kept for the remote while it is away (the local session's limit).
    #[serde(default = "default_max_queued")]
    pub max_queued_messages: usize,
    /// Bytes kept for the remote while it is away (topic, properties and payload; memory and
    /// disk together), as the global `max_queued_bytes`; 0 = no byte limit. With the store on,
    /// this is the bridge's disk budget.
    #[serde(default)]
    pub max_queued_bytes: usize,
    #[serde(default)]
    pub on_full: OnFull,
}

fn default_keepalive() -> u16 {
    60
}

fn default_max_queued() -> usize {
    1_000_000
}

/// `transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Tls,
}

/// `protocol_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeProtocol {
    #[default]
    Mqttv5,
    Mqttv311,
}

/// `on_full`: what happens to a new message when `max_queued_messages` are waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    #[default]
    DropNew,
    DropOldest,
}

/// Whether `name` may name a bridge (one topic level, no wildcards).
fn name_ok(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#', '\0']) && !name.starts_with('$')
}

/// `host:port` or `[v6]:port` split into host and port.
pub(crate) fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['[', ']', ' ']) {
        return None;
    }
    Some((host.to_owned(), port))
}

impl BridgeConfig {
    /// Parses one bridge from a TOML table (handy in tests; the main config holds a
    /// `Vec<BridgeConfig>` and calls [`Self::validate`]).
    ///
    /// # Errors
    /// A TOML or schema error, or what [`Self::validate`] finds.
    pub fn from_toml(text: &str) -> Result<Self, BridgeError> {
        let config: Self = toml::from_str(text).map_err(|e| BridgeError::Config {
            bridge: "?".into(),
            field: "toml".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The parsed topic lines.
    ///
    /// # Errors
    /// The first bad line, named by its index and text.
    pub fn topic_maps(&self) -> Result<Vec<TopicMap>, BridgeError> {
        self.topic
            .iter()
            .enumerate()
            .map(|(i, line)| {
                TopicMap::parse(line).map_err(|m| self.error(&format!("topic[{i}] `{line}`"), m))
            })
            .collect()
    }

    /// The client id used on the remote.
    #[must_use]
    pub fn remote_client_id(&self) -> String {
        self.clientid
            .clone()
            .unwrap_or_else(|| format!("hermod-bridge-{}", self.name))
    }

    /// The client id of the bridge's session in the local broker.
    #[must_use]
    pub fn local_client_id(&self) -> String {
        format!(
            "{}bridge/{}",
            hermod_broker::api::INTERNAL_CLIENT_PREFIX,
            self.name
        )
    }

    /// Checks everything that can be checked without touching files or the network.
    ///
    /// # Errors
    /// [`BridgeError::Config`] naming the bridge and the bad field or topic line.
    pub fn validate(&self) -> Result<(), BridgeError> {
        if !name_ok(&self.name) {
            return Err(self.error(
                "name",
                "must be non-empty, one topic level (no `/`, `+`, `#`) and not start with `$`",
            ));
        }
        if split_address(&self.address).is_none() {
            return Err(self.error("address", format!("`{}` is not host:port", self.address)));
        }
        if self.transport == Transport::Tcp {
            for (field, set) in [
                ("cafile", self.cafile.is_some()),
                ("certfile", self.certfile.is_some()),
                ("keyfile", self.keyfile.is_some()),
            ] {
                if set {
                    return Err(self.error(field, "only with transport = \"tls\""));
                }
            }
        }
        if self.certfile.is_some() != self.keyfile.is_some() {
            return Err(self.error("certfile", "certfile and keyfile go together"));
        }
        if self.clientid.as_deref() == Some("") {
            return Err(self.error("clientid", "must not be empty"));
        }
        if self.password.is_some()
            && self.username.is_none()
            && self.protocol_version == BridgeProtocol::Mqttv311
        {
            return Err(self.error("password", "MQTT 3.1.1 needs a username with a password"));
        }
        if self.max_queued_messages == 0 {
            return Err(self.error("max_queued_messages", "must be at least 1"));
        }
        if self.topic.is_empty() {
            return Err(self.error("topic", "at least one topic line is needed"));
        }
        self.topic_maps().map(|_| ())
    }

    pub(crate) fn error(&self, field: &str, message: impl Into<String>) -> BridgeError {
        BridgeError::Config {
            bridge: self.name.clone(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bridge(topics: &[&str]) -> String {
        let list: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
        format!(
            "name = \"cloud\"\naddress = \"127.0.0.1:1883\"\ntopic = [{}]\n",
            list.join(", ")
        )
    }

    #[test]
    fn errors_name_the_bridge_and_the_line() {
        let text = bridge(&["ok/#", "cmd/# sideways 1"]);
        let e = BridgeConfig::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("bridge `cloud`"), "{e}");
        assert!(e.contains("topic[1] `cmd/# sideways 1`"), "{e}");
        assert!(e.contains("bad direction"), "{e}");
        let e = BridgeConfig::from_toml(&bridge(&["a/# out 7"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cloud") && e.contains("topic[0]") && e.contains("qos"),
            "{e}"
        );
        let e = BridgeConfig::from_toml(&bridge(&["a/# out 1 w/+/ r/"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cloud") && e.contains("wildcard"), "{e}");
    }

    #[test]
    fn full_table_parses_with_defaults() {
        let c = BridgeConfig::from_toml(
            r#"
name = "cloud"
address = "broker.example.com:8883"
transport = "tls"
cafile = "ca.pem"
username = "edge-1"
password = "secret"
protocol_version = "mqttv311"
keepalive = 30
topic = ["sensors/# out 1 local/ site1/", "cmd/# in 1", "x/# both 0"]
max_queued_messages = 10
on_full = "drop_oldest"
"#,
        )
        .unwrap();
        assert_eq!(c.transport, Transport::Tls);
        assert_eq!(c.protocol_version, BridgeProtocol::Mqttv311);
        assert_eq!(c.on_full, OnFull::DropOldest);
        assert_eq!(c.remote_client_id(), "hermod-bridge-cloud");
        assert_eq!(c.local_client_id(), "$hermod/bridge/cloud");
        assert_eq!(c.topic_maps().unwrap().len(), 3);
        let d = BridgeConfig::from_toml(&bridge(&["a"])).unwrap();
        assert_eq!(d.transport, Transport::Tcp);
        assert_eq!(d.protocol_version, BridgeProtocol::Mqttv5);
        assert_eq!((d.keepalive, d.max_queued_messages), (60, 1_000_000));
        assert_eq!(d.on_full, OnFull::DropNew);
    }

    #[test]
    fn bad_fields_are_named() {
        let base = bridge(&["a"]);
        for (extra, field) in [
            ("transport = \"udp\"\n", "toml"),
            ("colour = \"red\"\n", "toml"),
            ("cafile = \"ca.pem\"\n", "cafile"),
            ("clientid = \"\"\n", "clientid"),
            ("max_queued_messages = 0\n", "max_queued_messages"),
        ] {
            let e = BridgeConfig::from_toml(&format!("{base}{extra}")).unwrap_err();
            assert!(e.to_string().contains(field), "{extra}: {e}");
        }
        let e = BridgeConfig::from_toml(&base.replace("127.0.0.1:1883", "nowhere")).unwrap_err();
        assert!(e.to_string().contains("address"), "{e}");
        let e = BridgeConfig::from_toml(&base.replace("\"cloud\"", "\"a/b\"")).unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
        let e = BridgeConfig::from_toml(&base.replace("[\"a\"]", "[]")).unwrap_err();
        assert!(e.to_string().contains("topic"), "{e}");
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("h:1883"), Some(("h".into(), 1883)));
        assert_eq!(split_address("[::1]:8883"), Some(("::1".into(), 8883)));
        assert_eq!(split_address("h"), None);
        assert_eq!(split_address(":1"), None);
        assert_eq!(split_address("h:0"), None);
        assert_eq!(split_address("h:99999"), None);
    }
}
