//! `[cluster]` in the config file. Absent: a single node, exactly as without this crate.
//!
//! ```toml
//! [cluster]
//! node = "b1"                                  # this node's name, unique in the cluster
//! nats = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
//! user = "hermod"                              # or token = "..."
//! password = "..."
//! cafile = "nats-ca.pem"                       # TLS to NATS; certfile/keyfile for mutual TLS
//! replicas = 3                                 # JetStream replicas (default: 3 on a NATS
//!                                              # cluster, 1 on a single server)
//! ack_timeout = "5s"                           # how long a QoS 1/2 publisher waits for JetStream
//! max_age = "1d"                               # how long QoS 1/2 copies stay in the stream
//! max_bytes = "1GB"                            # and how much of them
//! max_queued_bytes = "64MB"                    # messages waiting to be sent to NATS
//! max_shared_groups = 1000                     # distinct $share groups with members here
//! shared_redelivery = "30s"                    # a shared-group message held by a dead node
//!                                              # goes to another member after this
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The cluster settings of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name: unique in the cluster, `[A-Za-z0-9_-]`, 1–64 characters (it is a
    /// NATS subject token and a KV key).
    pub node: String,
    /// NATS server URLs (`nats://` or `tls://`); the client learns the others from them.
    pub nats: Vec<String>,
    /// NATS user and password.
    pub user: Option<String>,
    pub password: Option<String>,
    /// NATS token.
    pub token: Option<String>,
    /// CA of the NATS servers' certificates (TLS required when set).
    pub cafile: Option<PathBuf>,
    /// Client certificate and key for NATS servers that verify clients.
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// JetStream replicas of the stream and buckets; `None`: 3 on a NATS cluster, 1 on a
    /// single server.
    pub replicas: Option<usize>,
    /// How long a QoS 1/2 publisher's acknowledgement waits for JetStream's.
    pub ack_timeout: Duration,
    /// How long the QoS 1/2 copies stay in the stream `MQ_MSGS`.
    pub max_age: Duration,
    /// The stream's size limit (oldest copies go first).
    pub max_bytes: u64,
    /// Bound on messages waiting to go to NATS: past it QoS 0 messages are not forwarded
    /// (counted) and QoS 1/2 publishers get a failed acknowledgement.
    pub max_queued_bytes: usize,
    /// Distinct shared groups (`$share/{group}/{filter}`) this node serves at once: each is a
    /// durable JetStream consumer and a NATS queue subscription, so clients must not be able
    /// to create them without bound. Past it a SUBSCRIBE to a new group is refused (v5 0x97
    /// quota exceeded, v3.1.1 0x80).
    pub max_shared_groups: usize,
    /// How long a QoS 1/2 message of a shared group, given to a member on a node that then
    /// died before the member acknowledged it, waits before JetStream gives it to another
    /// member (the group consumer's `ack_wait`; live nodes mark what they hold in progress).
    /// The same on every node.
    pub shared_redelivery: Duration,
}

impl ClusterConfig {
    /// A config for `node` on `nats`, with every other setting at its default.
    #[must_use]
    pub fn new(node: &str, nats: Vec<String>) -> Self {
        Self {
            node: node.to_owned(),
            nats,
            user: None,
            password: None,
            token: None,
            cafile: None,
            certfile: None,
            keyfile: None,
            replicas: None,
            ack_timeout: Duration::from_secs(5),
            max_age: Duration::from_secs(86_400),
            max_bytes: 1 << 30,
            max_queued_bytes: 64 << 20,
            max_shared_groups: 1000,
            shared_redelivery: Duration::from_secs(30),
        }
    }
}

/// A `[cluster]` section that cannot be used: the file and line, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ClusterConfigError {
    /// The config file.
    pub path: PathBuf,
    /// `line N: [cluster] key `k`: ...`.
    pub message: String,
}

#[derive(Deserialize)]
struct File {
    cluster: Option<Spanned<Section>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    node: Option<Spanned<String>>,
    nats: Option<Spanned<Vec<String>>>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    cafile: Option<PathBuf>,
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    replicas: Option<Spanned<i64>>,
    ack_timeout: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
    max_bytes: Option<Spanned<Size>>,
    max_queued_bytes: Option<Spanned<Size>>,
    max_shared_groups: Option<Spanned<i64>>,
    shared_redelivery: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Number(u64),
    Text(String),
}

impl ClusterConfig {
    /// Reads `[cluster]` from the config file: `None` when there is none.
    ///
    /// # Errors
    /// The file cannot be read, or a key is missing or wrong (the error names the line).
    pub fn load(path: &Path) -> Result<Option<Self>, ClusterConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ClusterConfigError {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// As [`ClusterConfig::load`], from text; file paths resolve against `path`'s folder.
    ///
    /// # Errors
    /// See [`ClusterConfig::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Option<Self>, ClusterConfigError> {
        let fail = |message: String| ClusterConfigError {
            path: path.to_owned(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| fail(e.to_string().trim().to_owned()))?;
        let Some(section) = file.cluster else {
            return Ok(None);
        };
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let at = line(section.span().start);
        let s = section.into_inner();
        let base = path.parent().unwrap_or(Path::new("."));
        let key_err = |span: std::ops::Range<usize>, key: &str, what: String| {
            fail(format!(
                "line {}: [cluster] key `{key}`: {what}",
                line(span.start)
            ))
        };
        let node = s.node.ok_or_else(|| {
            fail(format!(
                "line {at}: [cluster] needs `node`, this node's name (unique in the cluster)"
            ))
        })?;
        if !valid_node_name(node.get_ref()) {
            return Err(key_err(
                node.span(),
                "node",
                format!(
                    "`{}` is not a node name: 1-64 characters of A-Z, a-z, 0-9, `_` and `-`",
                    node.get_ref()
                ),
            ));
        }
        let nats = s.nats.ok_or_else(|| {
            fail(format!(
                "line {at}: [cluster] needs `nats`, the NATS server URLs, e.g. nats = [\"nats://127.0.0.1:4222\"]"
            ))
        })?;
        if nats.get_ref().is_empty() {
            return Err(key_err(nats.span(), "nats", "lists no server".into()));
        }
        for url in nats.get_ref() {
            let ok = ["nats://", "tls://"]
                .iter()
                .any(|p| url.starts_with(p) && url.len() > p.len());
            if !ok {
                return Err(key_err(
                    nats.span(),
                    "nats",
                    format!("`{url}` is not a nats:// or tls:// URL"),
                ));
            }
        }
        let mut c = ClusterConfig::new(node.get_ref(), nats.into_inner());
        if s.token.is_some() && (s.user.is_some() || s.password.is_some()) {
            return Err(fail(format!(
                "line {at}: [cluster] has both `token` and `user`/`password`: NATS takes one"
            )));
        }
        if s.user.is_some() != s.password.is_some() {
            return Err(fail(format!(
                "line {at}: [cluster] `user` and `password` go together"
            )));
        }
        c.user = s.user;
        c.password = s.password;
        c.token = s.token;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        c.cafile = s.cafile.map(resolve);
        c.certfile = s.certfile.map(resolve);
        c.keyfile = s.keyfile.map(resolve);
        if c.certfile.is_some() != c.keyfile.is_some() {
            return Err(fail(format!(
                "line {at}: [cluster] `certfile` and `keyfile` go together"
            )));
        }
        for f in [&c.cafile, &c.certfile, &c.keyfile].into_iter().flatten() {
            if !f.is_file() {
                return Err(fail(format!(
                    "line {at}: [cluster] file {} does not exist",
                    f.display()
                )));
            }
        }
        if let Some(r) = s.replicas {
            match usize::try_from(*r.get_ref()) {
                Ok(n @ 1..=5) => c.replicas = Some(n),
                _ => {
                    return Err(key_err(
                        r.span(),
                        "replicas",
                        format!("{} is not between 1 and 5", r.get_ref()),
                    ));
                }
            }
        }
        let duration = |key: &str, v: Option<Spanned<String>>, default: Duration| match v {
            None => Ok(default),
            Some(v) => match parse_duration(v.get_ref()) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(key_err(v.span(), key, "must be more than 0".into())),
                Err(e) => Err(key_err(v.span(), key, e)),
            },
        };
        c.ack_timeout = duration("ack_timeout", s.ack_timeout, c.ack_timeout)?;
        c.max_age = duration("max_age", s.max_age, c.max_age)?;
        if let Some(v) = s.shared_redelivery {
            let span = v.span();
            let d = duration("shared_redelivery", Some(v), c.shared_redelivery)?;
            if d < Duration::from_secs(1) {
                return Err(key_err(
                    span,
                    "shared_redelivery",
                    "must be at least 1s".into(),
                ));
            }
            c.shared_redelivery = d;
        }
        if let Some(v) = s.max_bytes {
            c.max_bytes = size(v.get_ref()).map_err(|e| key_err(v.span(), "max_bytes", e))?;
        }
        if let Some(v) = s.max_queued_bytes {
            let n = size(v.get_ref()).map_err(|e| key_err(v.span(), "max_queued_bytes", e))?;
            c.max_queued_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(v) = s.max_shared_groups {
            match usize::try_from(*v.get_ref()) {
                Ok(n) if n >= 1 => c.max_shared_groups = n,
                _ => {
                    return Err(key_err(
                        v.span(),
                        "max_shared_groups",
                        format!("must be at least 1, not {}", v.get_ref()),
                    ));
                }
            }
        }
        Ok(Some(c))
    }
}

/// `[A-Za-z0-9_-]{1,64}`: safe as a NATS token, a KV key and a label value.
#[must_use]
pub fn valid_node_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `"500ms"`, `"5s"`, `"2m"`, `"1h"`, `"1d"`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Some(ms) = s.trim().strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("`{s}` is not a duration like \"500ms\", \"5s\" or \"1d\""));
    }
    hermod_broker::config::parse_duration(s)
}

/// A positive size: `1048576`, `"512KB"`, `"64MB"`, `"1GB"` (powers of 1024).
fn size(v: &Size) -> Result<u64, String> {
    let n = match v {
        Size::Number(n) => *n,
        Size::Text(s) => {
            let bad = || format!("`{s}` is not a size like 1048576, \"64MB\" or \"1GB\"");
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num.parse().map_err(|_| bad())?;
            let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                _ => return Err(bad()),
            };
            n.checked_mul(scale).ok_or_else(bad)?
        }
    };
    if n == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Option<ClusterConfig>, String> {
        ClusterConfig::parse(text, Path::new("/etc/hermod/hermod.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_section_is_a_single_node() {
        assert_eq!(parse("sys_interval = 10\n").unwrap(), None);
    }

    #[test]
    fn full_section() {
        let c = parse(
            "[cluster]\nnode = \"b-1\"\nnats = [\"nats://127.0.0.1:4222\", \"tls://n2:4222\"]\n\
             user = \"u\"\npassword = \"p\"\nreplicas = 3\nack_timeout = \"500ms\"\nmax_age = \"2h\"\n\
             max_bytes = \"2GB\"\nmax_queued_bytes = 1048576\nshared_redelivery = \"2m\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.node, "b-1");
        assert_eq!(c.nats.len(), 2);
        assert_eq!(c.replicas, Some(3));
        assert_eq!(c.ack_timeout, Duration::from_millis(500));
        assert_eq!(c.max_age, Duration::from_secs(7200));
        assert_eq!(c.max_bytes, 2 << 30);
        assert_eq!(c.max_queued_bytes, 1 << 20);
        assert_eq!(c.shared_redelivery, Duration::from_secs(120));
        assert_eq!(c.user.as_deref(), Some("u"));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let cases = [
            (
                "[cluster]\nnats = [\"nats://a:1\"]\n",
                "line 1: [cluster] needs `node`",
            ),
            (
                "[cluster]\nnode = \"a\"\n",
                "line 1: [cluster] needs `nats`",
            ),
            (
                "[cluster]\nnode = \"a.b\"\nnats = [\"nats://a:1\"]\n",
                "line 2: [cluster] key `node`",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"http://a:1\"]\n",
                "line 3: [cluster] key `nats`",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = []\n",
                "key `nats`: lists no server",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\nmax_shared_groups = 0\n",
                "line 4: [cluster] key `max_shared_groups`: must be at least 1, not 0",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\n\nreplicas = 9\n",
                "line 5: [cluster] key `replicas`",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\nack_timeout = \"soon\"\n",
                "line 4: [cluster] key `ack_timeout`",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\nshared_redelivery = \"200ms\"\n",
                "line 4: [cluster] key `shared_redelivery`: must be at least 1s",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\nmax_bytes = \"1TB\"\n",
                "line 4: [cluster] key `max_bytes`",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\nuser = \"u\"\n",
                "go together",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\nnodes = 3\n",
                "unknown field `nodes`",
            ),
            (
                "[cluster]\nnode = \"a\"\nnats = [\"nats://a:1\"]\ncafile = \"nope.pem\"\n",
                "/etc/hermod/nope.pem does not exist",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with("/etc/hermod/hermod.toml: "), "{e}");
            assert!(e.contains(want), "{text:?}: {e} (wanted {want})");
        }
    }
}
