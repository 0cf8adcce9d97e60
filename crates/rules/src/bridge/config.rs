//! `[[bridge]]`: the config of one bridge, as Mosquitto's `connection` section, and its
//! `topic` lines (`pattern [[[out|in|both] qos] local_prefix remote_prefix]`).

use std::path::PathBuf;

use hermod_proto::QoS;
use hermod_proto::topic::{matches, parse_shared, validate_topic_filter, validate_topic_name};
use serde::Deserialize;

use super::BridgeError;

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

/// Which way a topic line forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    Both,
}

impl Direction {
    /// Local → remote.
    #[must_use]
    pub fn is_out(self) -> bool {
        matches!(self, Self::Out | Self::Both)
    }

    /// Remote → local.
    #[must_use]
    pub fn is_in(self) -> bool {
        matches!(self, Self::In | Self::Both)
    }
}

/// One parsed topic line. With an empty `pattern` the prefixes are whole topic names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMap {
    pub pattern: String,
    pub direction: Direction,
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl TopicMap {
    /// Parses one line: `pattern [[[out|in|both] qos] local_prefix remote_prefix]`, `""` for
    /// an empty pattern or prefix.
    ///
    /// # Errors
    /// What is wrong with the line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let unquote = |t: &str| {
            if t == "\"\"" {
                String::new()
            } else {
                t.to_owned()
            }
        };
        let (pattern, direction, qos, local, remote) = match tokens.as_slice() {
            [] => return Err("empty topic line".into()),
            [p] => (*p, "out", "0", "", ""),
            [p, d] => (*p, *d, "0", "", ""),
            [p, d, q] => (*p, *d, *q, "", ""),
            [_, _, _, _] => return Err("a local prefix needs a remote prefix too".into()),
            [p, d, q, l, r] => (*p, *d, *q, *l, *r),
            _ => return Err("too many fields (pattern [[[out|in|both] qos] local remote])".into()),
        };
        let direction = match direction {
            "out" => Direction::Out,
            "in" => Direction::In,
            "both" => Direction::Both,
            other => return Err(format!("bad direction `{other}` (out, in or both)")),
        };
        let qos = match qos {
            "0" => QoS::AtMostOnce,
            "1" => QoS::AtLeastOnce,
            "2" => QoS::ExactlyOnce,
            other => return Err(format!("bad qos `{other}` (0, 1 or 2)")),
        };
        let map = Self {
            pattern: unquote(pattern),
            direction,
            qos,
            local_prefix: unquote(local),
            remote_prefix: unquote(remote),
        };
        map.check()?;
        Ok(map)
    }

    fn check(&self) -> Result<(), String> {
        for (which, prefix) in [
            ("local", &self.local_prefix),
            ("remote", &self.remote_prefix),
        ] {
            if prefix.contains(['+', '#']) {
                return Err(format!("{which} prefix `{prefix}` has a wildcard"));
            }
            if prefix.contains('\0') {
                return Err(format!("{which} prefix has a NUL character"));
            }
        }
        if self.pattern.is_empty() {
            if self.local_prefix.is_empty() || self.remote_prefix.is_empty() {
                return Err("an empty pattern (\"\") needs both prefixes (whole topics)".into());
            }
            return Ok(());
        }
        if validate_topic_filter(&self.pattern).is_err() {
            return Err(format!("`{}` is not a valid topic filter", self.pattern));
        }
        if matches!(parse_shared(&self.pattern), Ok(Some(_)) | Err(_)) {
            return Err("a shared subscription cannot be bridged".into());
        }
        for (which, filter) in [
            ("local", self.local_filter()),
            ("remote", self.remote_filter()),
        ] {
            if validate_topic_filter(&filter).is_err() {
                return Err(format!(
                    "{which} prefix and pattern make `{filter}`, not a filter"
                ));
            }
        }
        Ok(())
    }

    /// What to subscribe to locally (out) or to map from (in).
    #[must_use]
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// What to subscribe to on the remote (in).
    #[must_use]
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    /// The remote topic for a local one, if this line maps it out.
    #[must_use]
    pub fn map_out(&self, topic: &str) -> Option<String> {
        if !self.direction.is_out() {
            return None;
        }
        remap(
            topic,
            &self.pattern,
            &self.local_prefix,
            &self.remote_prefix,
        )
    }

    /// The local topic for a remote one, if this line maps it in.
    #[must_use]
    pub fn map_in(&self, topic: &str) -> Option<String> {
        if !self.direction.is_in() {
            return None;
        }
        remap(
            topic,
            &self.pattern,
            &self.remote_prefix,
            &self.local_prefix,
        )
    }
}

/// `from_prefix + rest` matching `from_prefix + pattern` becomes `to_prefix + rest`.
fn remap(topic: &str, pattern: &str, from_prefix: &str, to_prefix: &str) -> Option<String> {
    if pattern.is_empty() {
        return (topic == from_prefix).then(|| to_prefix.to_owned());
    }
    let rest = topic.strip_prefix(from_prefix)?;
    if rest.is_empty() || !matches(pattern, rest) {
        return None;
    }
    let mapped = format!("{to_prefix}{rest}");
    validate_topic_name(&mapped).ok().map(|()| mapped)
}

/// The first line of `maps` that maps `topic` out (local → remote), with it.
pub(crate) fn route_out<'a>(maps: &'a [TopicMap], topic: &str) -> Option<(&'a TopicMap, String)> {
    maps.iter().find_map(|m| m.map_out(topic).map(|t| (m, t)))
}

/// The first line of `maps` that maps `topic` in (remote → local), with it.
pub(crate) fn route_in<'a>(maps: &'a [TopicMap], topic: &str) -> Option<(&'a TopicMap, String)> {
    maps.iter().find_map(|m| m.map_in(topic).map(|t| (m, t)))
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

    fn line(s: &str) -> TopicMap {
        TopicMap::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bridge(topics: &[&str]) -> String {
        let list: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
        format!(
            "name = \"cloud\"\naddress = \"127.0.0.1:1883\"\ntopic = [{}]\n",
            list.join(", ")
        )
    }

    #[test]
    fn topic_line_forms() {
        let m = line("a/#");
        assert_eq!((m.direction, m.qos), (Direction::Out, QoS::AtMostOnce));
        assert_eq!(
            (m.local_prefix.as_str(), m.remote_prefix.as_str()),
            ("", "")
        );
        let m = line("a/# in");
        assert_eq!((m.direction, m.qos), (Direction::In, QoS::AtMostOnce));
        let m = line("a/#  both   2");
        assert_eq!((m.direction, m.qos), (Direction::Both, QoS::ExactlyOnce));
        let m = line("sensors/# out 1 local/ site1/");
        assert_eq!(m.local_filter(), "local/sensors/#");
        assert_eq!(m.remote_filter(), "site1/sensors/#");
        assert_eq!(
            m.map_out("local/sensors/t").as_deref(),
            Some("site1/sensors/t")
        );
        assert_eq!(m.map_out("sensors/t"), None);
        assert_eq!(m.map_in("site1/sensors/t"), None, "out only");
        let m = line("cmd/# in 1 \"\" edge1/");
        assert_eq!(m.local_prefix, "");
        assert_eq!(m.map_in("edge1/cmd/reboot").as_deref(), Some("cmd/reboot"));
        assert_eq!(m.map_out("cmd/reboot"), None, "in only");
        let m = line("\"\" both 1 here/exact there/exact");
        assert_eq!(m.map_out("here/exact").as_deref(), Some("there/exact"));
        assert_eq!(m.map_in("there/exact").as_deref(), Some("here/exact"));
        assert_eq!(m.map_out("here/exact/more"), None);
        let m = line("x/+/y");
        assert_eq!(m.map_out("x/1/y").as_deref(), Some("x/1/y"));
        assert_eq!(m.map_out("x/1/z"), None);
    }

    #[test]
    fn bad_topic_lines() {
        for (l, why) in [
            ("", "empty"),
            ("a/# sideways", "bad direction `sideways`"),
            ("a/# out 3", "bad qos `3`"),
            ("a/# out x", "bad qos"),
            ("a/# out 1 local/", "needs a remote prefix"),
            (
                "a/# out 1 lo+cal/ r/",
                "local prefix `lo+cal/` has a wildcard",
            ),
            ("a/# out 1 l/ r/#/", "remote prefix `r/#/` has a wildcard"),
            ("a/#/b", "not a valid topic filter"),
            ("\"\" out 1 l/x \"\"", "needs both prefixes"),
            ("# out 1 l r", "not a filter"),
            ("$share/g/a out", "shared"),
            ("a out 1 l/ r/ extra", "too many fields"),
        ] {
            let e = TopicMap::parse(l).expect_err(l);
            assert!(e.contains(why), "{l}: {e}");
        }
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

    #[test]
    fn first_matching_line_routes() {
        let maps = vec![line("a/# out 1 l/ r/"), line("# both 0")];
        let (m, t) = route_out(&maps, "l/a/1").unwrap();
        assert_eq!((m.qos, t.as_str()), (QoS::AtLeastOnce, "r/a/1"));
        let (m, t) = route_out(&maps, "z").unwrap();
        assert_eq!((m.qos, t.as_str()), (QoS::AtMostOnce, "z"));
        let (_, t) = route_in(&maps, "r/a/1").unwrap();
        assert_eq!(t, "r/a/1", "the out-only line does not map in");
    }
}
