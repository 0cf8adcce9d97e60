//! `[[connector]]` and `[[rule]]` in Hermod's config file: parsed here, from the same file the
//! broker reads (the broker lets these tables through untouched), and checked before anything
//! starts. Every error names the file, the line and the key, and for a rule's SQL the position
//! in the SQL.
//!
//! ```toml
//! [[connector]]
//! name = "local"
//! kind = "sqlite"                     # sqlite | postgres | http
//! path = "rules.db"                   # relative to the config file
//! init = ["CREATE TABLE IF NOT EXISTS messages(clientid TEXT, topic TEXT, payload BLOB, ts INTEGER)"]
//!
//! [[rule]]
//! name = "collector"
//! sql = 'SELECT clientid, topic, payload, timestamp FROM "dev/gw"'
//! [[rule.action]]
//! connector = "local"
//! statement = "INSERT INTO messages(clientid, topic, payload, ts) VALUES (${clientid}, ${topic}, ${payload}, ${timestamp})"
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hermod_proto::QoS;
use serde::Deserialize;
use toml::Spanned;

use crate::sql::Rule;
use crate::sql::template::Template;

/// What kind of system a connector writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    Sqlite,
    Postgres,
    Http,
}

/// One `[[connector]]`, checked.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub kind: ConnectorKind,
    /// SQLite: the database file (resolved against the config file's folder).
    pub path: Option<PathBuf>,
    /// PostgreSQL: `postgres://user:pass@host:port/db`; HTTP: `http(s)://host/path`.
    pub url: Option<String>,
    /// PostgreSQL connections.
    pub pool_size: usize,
    /// Most writes per transaction (SQL), and longest a write waits for its batch.
    pub batch_size: usize,
    pub batch_time: Duration,
    /// Writes waiting in the sink's memory queue; beyond it the rule holds the message
    /// unacknowledged, so it waits in Hermod's store.
    pub queue: usize,
    /// Statements run when the connector starts (`CREATE TABLE IF NOT EXISTS ...`).
    pub init: Vec<String>,
    /// HTTP: method (`POST`/`PUT`), extra headers, time for one attempt, CA file for https.
    pub method: crate::sink::http::HttpMethod,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub cafile: Option<PathBuf>,
    /// HTTP requests in flight at once.
    pub max_inflight: usize,
}

/// What an action does with a rule's row.
#[derive(Debug, Clone)]
pub enum ActionKind {
    /// Runs `statement` on a SQL connector, `${...}` bound as parameters.
    Sql {
        connector: String,
        statement: Template,
    },
    /// Sends a request to an HTTP connector: `body` rendered as JSON, or the row as a JSON
    /// object when no body is given.
    Http {
        connector: String,
        body: Option<Template>,
    },
    /// Publishes to a local topic (EMQX's `republish`).
    Republish {
        topic: Template,
        /// Rendered as text; the row as a JSON object when not given.
        payload: Option<Template>,
        qos: QoS,
        retain: bool,
    },
}

/// One `[[rule]]`, checked: its SQL parsed, its actions resolved.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    pub name: String,
    pub rule: Rule,
    pub actions: Vec<ActionKind>,
    /// Messages the rule's session may hold while its actions cannot keep up or a sink is
    /// away (in Hermod's store, on disk, when the store is on), beyond the ones under way
    /// (the rule's receive maximum, 2,000).
    pub max_buffered: usize,
    /// Bytes the rule's session may hold (topic, properties and payload of each message, in
    /// memory and on disk together; `max_buffer_bytes`, default 256 MiB as EMQX's). Whichever
    /// of this and `max_buffered` is reached first makes the buffer full.
    pub max_buffer_bytes: usize,
    /// When that is full: drop the oldest buffered message (true) or the new one.
    pub drop_oldest: bool,
    /// `buffer = "disk"` (the default): the rule's session is persistent, so what it has not
    /// written yet is in Hermod's store and survives a restart. `"memory"`: a clean session,
    /// cheaper (nothing is written to the store per message), lost on restart.
    pub durable: bool,
}

/// The rules part of a config file.
#[derive(Debug, Clone, Default)]
pub struct RulesConfig {
    pub connectors: Vec<ConnectorConfig>,
    pub rules: Vec<RuleConfig>,
    /// `[[bridge]]`, checked.
    pub bridges: Vec<crate::bridge::BridgeConfig>,
    /// The config file's folder: relative paths (a bridge's TLS files) resolve against it.
    pub base_dir: PathBuf,
}

/// A rules configuration that cannot be used: the file, line, key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct RulesConfigError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    connector: Vec<Spanned<RawConnector>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    bridge: Vec<Spanned<crate::bridge::BridgeConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    name: String,
    kind: ConnectorKind,
    path: Option<PathBuf>,
    url: Option<String>,
    pool_size: Option<usize>,
    batch_size: Option<usize>,
    batch_time: Option<String>,
    queue: Option<usize>,
    #[serde(default)]
    init: Vec<String>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout: Option<String>,
    cafile: Option<PathBuf>,
    max_inflight: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    sql: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    max_buffered: Option<usize>,
    max_buffer_bytes: Option<ByteSize>,
    on_full: Option<String>,
    buffer: Option<String>,
    #[serde(default)]
    action: Vec<Spanned<RawAction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    connector: Option<String>,
    statement: Option<String>,
    body: Option<String>,
    republish: Option<String>,
    payload: Option<String>,
    qos: Option<u8>,
    retain: Option<bool>,
}

fn yes() -> bool {
    true
}

impl RulesConfig {
    /// Reads the `[[connector]]` and `[[rule]]` tables of a config file (other keys are the
    /// broker's). An absent table is no rule.
    ///
    /// # Errors
    /// The file cannot be read, or a table is wrong; the message names the line and key.
    pub fn load(path: &Path) -> Result<Self, RulesConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesConfigError {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// As [`RulesConfig::load`], from text; relative paths resolve against `path`'s folder.
    ///
    /// # Errors
    /// See [`RulesConfig::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, RulesConfigError> {
        let fail = |message: String| RulesConfigError {
            path: path.to_owned(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| fail(e.to_string().trim().to_owned()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut names = HashSet::new();
        let mut connectors = Vec::new();
        for c in file.connector {
            let at = line(c.span().start);
            let c = c.into_inner();
            let where_ = format!("line {at}: connector {:?}", c.name);
            if !valid_name(&c.name) {
                return Err(fail(format!(
                    "{where_}: key `name`: use letters, digits, `-` and `_`"
                )));
            }
            if !names.insert(c.name.clone()) {
                return Err(fail(format!(
                    "{where_}: key `name`: a connector with this name already exists"
                )));
            }
            connectors.push(connector(c, base).map_err(|m| fail(format!("{where_}: {m}")))?);
        }
        let mut rule_names = HashSet::new();
        let mut rules = Vec::new();
        for r in file.rule {
            let at = line(r.span().start);
            let r = r.into_inner();
            let where_ = format!("line {at}: rule {:?}", r.name);
            if !rule_names.insert(r.name.clone()) {
                return Err(fail(format!(
                    "{where_}: key `name`: a rule with this name already exists"
                )));
            }
            if !valid_name(&r.name) {
                return Err(fail(format!(
                    "{where_}: key `name`: use letters, digits, `-` and `_` (it names the rule's session)"
                )));
            }
            if !r.enabled {
                continue;
            }
            let sql_line = line(r.sql.span().start);
            let rule = Rule::parse(r.sql.get_ref()).map_err(|e| {
                fail(format!(
                    "line {}: rule {:?}: key `sql`: {} (at {}:{} of the SQL)",
                    sql_line + e.line - 1,
                    r.name,
                    e.message,
                    e.line,
                    e.column
                ))
            })?;
            let mut actions = Vec::new();
            for a in r.action {
                let at = line(a.span().start);
                let a = a.into_inner();
                let kind = action(a, &connectors).map_err(|m| {
                    fail(format!(
                        "line {at}: rule {:?}: [[rule.action]]: {m}",
                        r.name
                    ))
                })?;
                actions.push(kind);
            }
            if actions.is_empty() {
                return Err(fail(format!(
                    "{where_}: no [[rule.action]]: where should its rows go?"
                )));
            }
            let drop_oldest = match r.on_full.as_deref() {
                None | Some("drop_new") => false,
                Some("drop_oldest") => true,
                Some(other) => {
                    return Err(fail(format!(
                        "{where_}: key `on_full`: `{other}` is not `drop_new` or `drop_oldest`"
                    )));
                }
            };
            let durable = match r.buffer.as_deref() {
                None | Some("disk") => true,
                Some("memory") => false,
                Some(other) => {
                    return Err(fail(format!(
                        "{where_}: key `buffer`: `{other}` is not `disk` or `memory`"
                    )));
                }
            };
            rules.push(RuleConfig {
                name: r.name,
                rule,
                actions,
                max_buffered: positive("max_buffered", r.max_buffered, 1_000_000)
                    .map_err(|m| fail(format!("{where_}: {m}")))?,
                max_buffer_bytes: byte_size(
                    "max_buffer_bytes",
                    r.max_buffer_bytes.as_ref(),
                    DEFAULT_MAX_BUFFER_BYTES,
                )
                .map_err(|m| fail(format!("{where_}: {m}")))?,
                drop_oldest,
                durable,
            });
        }
        let mut bridge_names = HashSet::new();
        let mut bridges = Vec::new();
        for b in file.bridge {
            let at = line(b.span().start);
            let b = b.into_inner();
            b.validate().map_err(|e| fail(format!("line {at}: {e}")))?;
            if !bridge_names.insert(b.name.clone()) {
                return Err(fail(format!(
                    "line {at}: bridge `{}`: name: a bridge with this name already exists",
                    b.name
                )));
            }
            bridges.push(b);
        }
        Ok(RulesConfig {
            connectors,
            rules,
            bridges,
            base_dir: base.to_path_buf(),
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn connector(c: RawConnector, base: &Path) -> Result<ConnectorConfig, String> {
    let duration = |key: &str, v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(s) => parse_duration(s).map_err(|m| format!("key `{key}`: {m}")),
    };
    let need = |key: &str, present: bool| {
        if present {
            Ok(())
        } else {
            Err(format!(
                "key `{key}` is required for kind = {:?}",
                format!("{:?}", c.kind).to_lowercase()
            ))
        }
    };
    match c.kind {
        ConnectorKind::Sqlite => need("path", c.path.is_some())?,
        ConnectorKind::Postgres | ConnectorKind::Http => need("url", c.url.is_some())?,
    }
    let method = match c.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("POST") => crate::sink::http::HttpMethod::Post,
        Some("PUT") => crate::sink::http::HttpMethod::Put,
        Some(other) => return Err(format!("key `method`: `{other}` is not POST or PUT")),
    };
    Ok(ConnectorConfig {
        path: c.path.map(|p| base.join(p)),
        url: c.url,
        pool_size: positive("pool_size", c.pool_size, 4)?.min(64),
        batch_size: positive("batch_size", c.batch_size, 500)?,
        batch_time: duration("batch_time", &c.batch_time, Duration::from_millis(10))?,
        queue: positive("queue", c.queue, 10_000)?,
        init: c.init,
        method,
        headers: c.headers.into_iter().collect(),
        timeout: duration("timeout", &c.timeout, Duration::from_secs(5))?,
        cafile: c.cafile.map(|p| base.join(p)),
        max_inflight: positive("max_inflight", c.max_inflight, 16)?.min(65_536),
        name: c.name,
        kind: c.kind,
    })
}

fn action(a: RawAction, connectors: &[ConnectorConfig]) -> Result<ActionKind, String> {
    let template = |key: &str, text: &str| {
        Template::parse(text).map_err(|e| format!("key `{key}`: {}", e.message))
    };
    if let Some(topic) = &a.republish {
        if a.connector.is_some() || a.statement.is_some() || a.body.is_some() {
            return Err("`republish` takes `payload`, `qos` and `retain`, not `connector`, `statement` or `body`".into());
        }
        let qos = match a.qos.unwrap_or(0) {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            n => return Err(format!("key `qos`: {n} is not 0, 1 or 2")),
        };
        return Ok(ActionKind::Republish {
            topic: template("republish", topic)?,
            payload: a
                .payload
                .as_deref()
                .map(|p| template("payload", p))
                .transpose()?,
            qos,
            retain: a.retain.unwrap_or(false),
        });
    }
    if a.payload.is_some() || a.qos.is_some() || a.retain.is_some() {
        return Err("`payload`, `qos` and `retain` go with `republish`".into());
    }
    let Some(name) = a.connector else {
        return Err("give `connector` (with `statement` or `body`) or `republish`".into());
    };
    let Some(c) = connectors.iter().find(|c| c.name == name) else {
        let known: Vec<&str> = connectors.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "key `connector`: no [[connector]] named {name:?} (there is: {known:?})"
        ));
    };
    match c.kind {
        ConnectorKind::Sqlite | ConnectorKind::Postgres => {
            if a.body.is_some() {
                return Err(format!(
                    "key `body`: connector {name:?} is SQL: give `statement`"
                ));
            }
            let Some(statement) = a.statement else {
                return Err(format!(
                    "key `statement` is required for SQL connector {name:?}"
                ));
            };
            Ok(ActionKind::Sql {
                connector: name,
                statement: template("statement", &statement)?,
            })
        }
        ConnectorKind::Http => {
            if a.statement.is_some() {
                return Err(format!(
                    "key `statement`: connector {name:?} is HTTP: give `body` (or nothing: the row as JSON)"
                ));
            }
            Ok(ActionKind::Http {
                connector: name,
                body: a.body.as_deref().map(|b| template("body", b)).transpose()?,
            })
        }
    }
}

/// A count that must be at least 1: `default` when absent.
fn positive(key: &str, value: Option<usize>, default: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(0) => Err(format!("key `{key}`: must be at least 1")),
        Some(n) => Ok(n),
    }
}

/// `max_buffer_bytes` when not given: EMQX's default buffer size.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 256 * 1024 * 1024;

/// A size in the config: a number of bytes, or a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Number(u64),
    Text(String),
}

/// A positive byte size: `1048576`, `"512KB"`, `"256MB"`, `"1GiB"` (units are powers of 1024
/// whether written `KB` or `KiB`, as EMQX reads them; case does not matter).
fn byte_size(key: &str, value: Option<&ByteSize>, default: usize) -> Result<usize, String> {
    let bad =
        |s: &str| format!("key `{key}`: `{s}` is not a size like 1048576, \"512KB\" or \"256MB\"");
    let n = match value {
        None => return Ok(default),
        Some(ByteSize::Number(n)) => *n,
        Some(ByteSize::Text(s)) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num.parse().map_err(|_| bad(s))?;
            let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                _ => return Err(bad(s)),
            };
            n.checked_mul(scale).ok_or_else(|| bad(s))?
        }
    };
    match usize::try_from(n) {
        Ok(0) => Err(format!("key `{key}`: must be at least 1 byte")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("key `{key}`: {n} is too large")),
    }
}

/// `"10ms"`, `"5s"`, `"2m"`; a bare number is milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like \"10ms\", \"5s\" or \"2m\""))?;
    match unit {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!(
            "`{s}` is not a duration like \"10ms\", \"5s\" or \"2m\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RulesConfig, String> {
        RulesConfig::parse(text, Path::new("/etc/hermod/hermod.toml")).map_err(|e| e.to_string())
    }

    const SQLITE: &str = "[[connector]]\nname = \"db\"\nkind = \"sqlite\"\npath = \"r.db\"\n";

    #[test]
    fn a_collector_config_parses_with_paths_resolved() {
        let c = parse(&format!(
            "allow_anonymous = true\n{SQLITE}[[rule]]\nname = \"c\"\nsql = 'SELECT * FROM \"dev/gw\"'\n[[rule.action]]\nconnector = \"db\"\nstatement = \"INSERT INTO t VALUES (${{topic}})\"\n"
        ))
        .expect("parses");
        assert_eq!(
            c.connectors[0].path.as_deref(),
            Some(Path::new("/etc/hermod/r.db"))
        );
        assert_eq!(c.rules[0].name, "c");
        assert_eq!(c.rules[0].max_buffered, 1_000_000);
        assert_eq!(c.rules[0].max_buffer_bytes, 256 << 20);
        assert!(!c.rules[0].drop_oldest);
        assert!(c.rules[0].durable, "buffered on disk by default");
        assert_eq!(c.base_dir, Path::new("/etc/hermod"));
    }

    #[test]
    fn an_sql_error_names_the_file_line_rule_and_position() {
        let e = parse(&format!(
            "{SQLITE}\n[[rule]]\nname = \"bad\"\nsql = 'SELECT x \"dev/gw\"'\n[[rule.action]]\nconnector = \"db\"\nstatement = \"SELECT 1\"\n"
        ))
        .expect_err("refused");
        assert!(
            e.starts_with("/etc/hermod/hermod.toml: line 8: rule \"bad\": key `sql`: "),
            "{e}"
        );
        assert!(e.contains("(at 1:10 of the SQL)"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let rule = |action: &str| {
            format!("{SQLITE}[[rule]]\nname = \"r\"\nsql = 'SELECT * FROM \"t\"'\n{action}")
        };
        for (text, want) in [
            (rule("[[rule.action]]\nconnector = \"nope\"\nstatement = \"x\"\n"), "line 8: rule \"r\": [[rule.action]]: key `connector`: no [[connector]] named \"nope\""),
            (rule(""), "line 5: rule \"r\": no [[rule.action]]"),
            (rule("[[rule.action]]\nconnector = \"db\"\n"), "key `statement` is required"),
            (rule("[[rule.action]]\nconnector = \"db\"\nstatement = \"x\"\nqos = 1\n"), "`payload`, `qos` and `retain` go with `republish`"),
            (rule("[[rule.action]]\nrepublish = \"a/b\"\nqos = 3\n"), "key `qos`: 3 is not 0, 1 or 2"),
            (rule("buffer = \"ram\"\n[[rule.action]]\nrepublish = \"a/b\"\n"), "key `buffer`: `ram` is not `disk` or `memory`"),
            (rule("[[rule.action]]\nconnector = \"db\"\nstatment = \"x\"\n"), "unknown field `statment`"),
            (format!("{SQLITE}{SQLITE}"), "line 5: connector \"db\": key `name`: a connector with this name already exists"),
            ("[[connector]]\nname = \"h\"\nkind = \"http\"\n".to_owned(), "key `url` is required"),
            (format!("{SQLITE}batch_size = 0\n"), "line 1: connector \"db\": key `batch_size`: must be at least 1"),
            (rule("max_buffered = 0\n[[rule.action]]\nrepublish = \"a/b\"\n"), "key `max_buffered`: must be at least 1"),
            (rule("max_buffer_bytes = 0\n[[rule.action]]\nrepublish = \"a/b\"\n"), "key `max_buffer_bytes`: must be at least 1 byte"),
            (rule("max_buffer_bytes = \"12 parsecs\"\n[[rule.action]]\nrepublish = \"a/b\"\n"), "key `max_buffer_bytes`: `12 parsecs` is not a size"),
            ("[[connector]]\nname = \"a b\"\nkind = \"http\"\nurl = \"http://x\"\n".to_owned(), "key `name`: use letters"),
            ("[[connector]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://x\"\ntimeout = \"5 minutes\"\n".to_owned(), "key `timeout`"),
            (rule("[[rule.action]]\nrepublish = \"a/b\"\n[[rule]]\nname = \"r\"\nsql = 'SELECT * FROM \"t\"'\n"), "a rule with this name already exists"),
        ] {
            let e = parse(&text).expect_err(&text);
            assert!(e.contains(want), "{e}\n-- wanted: {want}");
        }
    }

    #[test]
    fn bridges_are_checked_and_named() {
        let bridge =
            "[[bridge]]\nname = \"cloud\"\naddress = \"127.0.0.1:1883\"\ntopic = [\"a/# out 1\"]\n";
        let c = parse(bridge).expect("parses");
        assert_eq!(c.bridges[0].name, "cloud");
        let e = parse(&format!("{bridge}{bridge}")).expect_err("duplicate");
        assert!(
            e.contains("line 5: bridge `cloud`: name: a bridge with this name already exists"),
            "{e}"
        );
        let e =
            parse("[[bridge]]\nname = \"x\"\naddress = \"h:1\"\ntopic = [\"a/# sideways 1\"]\n")
                .expect_err("bad line");
        assert!(e.contains("line 1: bridge `x`: topic[0]"), "{e}");
    }

    #[test]
    fn disabled_rules_are_checked_for_names_only() {
        let c = parse(&format!(
            "{SQLITE}[[rule]]\nname = \"off\"\nenabled = false\nsql = 'not sql'\n"
        ))
        .expect("parses");
        assert!(c.rules.is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn byte_sizes_with_and_without_units() {
        let b = |t: &str| byte_size("k", Some(&ByteSize::Text(t.to_owned())), 7);
        assert_eq!(b("512"), Ok(512));
        assert_eq!(b("512KB"), Ok(512 << 10));
        assert_eq!(b("256 MiB"), Ok(256 << 20));
        assert_eq!(b("1gb"), Ok(1 << 30));
        assert!(b("1TB").is_err());
        assert!(b("").is_err());
        assert!(b("99999999999999999999GB").is_err());
        assert_eq!(byte_size("k", Some(&ByteSize::Number(42)), 7), Ok(42));
        assert_eq!(byte_size("k", None, 7), Ok(7));
    }
}
