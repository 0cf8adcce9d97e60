//! Parsing the flags pub and sub share, mosquitto-style: its texts, "last one wins", `atoi`.

use hermod_proto::{ProtocolVersion, QoS};

/// Which tool is parsing: some flags exist for one only, and messages name the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    Pub,
    Sub,
}

impl Tool {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pub => "hermod pub",
            Self::Sub => "hermod sub",
        }
    }
}

/// Why parsing stopped.
#[derive(Debug)]
pub(crate) enum ParseStop {
    /// `--help`: print usage, exit 1 (as mosquitto does).
    Help,
    /// A usage error: print this text (already newline-terminated) and the "Use ... --help" hint.
    Usage(String),
    /// An error that mosquitto reports without the hint (e.g. an unreadable `-f` file).
    Plain(String),
}

/// The command-line arguments after the subcommand name, one by one.
#[derive(Debug)]
pub(crate) struct ArgIter {
    args: Vec<String>,
    pos: usize,
}

impl ArgIter {
    pub(crate) fn new(args: Vec<String>) -> Self {
        Self { args, pos: 0 }
    }

    pub(crate) fn next_arg(&mut self) -> Option<String> {
        let a = self.args.get(self.pos).cloned();
        self.pos += 1;
        a
    }

    /// The value of a flag, or mosquitto's "Error: -x argument given but no ... specified." text.
    pub(crate) fn value(&mut self, flag: &str, what: &str) -> Result<String, ParseStop> {
        self.next_arg().ok_or_else(|| {
            ParseStop::Usage(format!(
                "Error: {flag} argument given but no {what} specified.\n\n"
            ))
        })
    }
}

/// C `atoi`: optional leading whitespace and sign, then digits; anything else stops; no digits is 0.
pub(crate) fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -v } else { v }
}

/// Flags shared by pub and sub.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) version: ProtocolVersion,
    pub(crate) id: Option<String>,
    pub(crate) id_prefix: Option<String>,
    pub(crate) keepalive: u16,
    pub(crate) clean_session: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) will_topic: Option<String>,
    pub(crate) will_payload: Option<String>,
    pub(crate) will_qos: QoS,
    pub(crate) will_retain: bool,
    pub(crate) qos: QoS,
    pub(crate) debug: bool,
    pub(crate) quiet: bool,
    /// `-x`, as given (`u32::MAX` for "never expires").
    pub(crate) session_expiry: Option<u32>,
    pub(crate) nodelay: bool,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 1883,
            version: ProtocolVersion::V311,
            id: None,
            id_prefix: None,
            keepalive: 60,
            clean_session: true,
            username: None,
            password: None,
            will_topic: None,
            will_payload: None,
            will_qos: QoS::AtMostOnce,
            will_retain: false,
            qos: QoS::AtMostOnce,
            debug: false,
            quiet: false,
            session_expiry: None,
            nodelay: false,
        }
    }
}

fn parse_qos(v: &str, what: &str) -> Result<QoS, ParseStop> {
    let n = atoi(v);
    u8::try_from(n)
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| ParseStop::Usage(format!("Error: Invalid {what} given: {n}\n")))
}

impl Common {
    /// Handles `arg` if it is a shared flag. `Ok(false)` when it is not one of ours.
    pub(crate) fn parse_flag(
        &mut self,
        arg: &str,
        it: &mut ArgIter,
        tool: Tool,
    ) -> Result<bool, ParseStop> {
        match arg {
            "-h" | "--host" => self.host = it.value("-h", "host")?,
            "-p" | "--port" => {
                let v = atoi(&it.value("-p", "port")?);
                self.port = u16::try_from(v)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| ParseStop::Usage(format!("Error: Invalid port given: {v}\n")))?;
            }
            "-V" | "--protocol-version" => {
                let v = it.value("--protocol-version", "version")?;
                self.version = match v.as_str() {
                    "mqttv31" | "31" => ProtocolVersion::V31,
                    "mqttv311" | "311" => ProtocolVersion::V311,
                    "mqttv5" | "5" => ProtocolVersion::V5,
                    _ => {
                        return Err(ParseStop::Usage(
                            "Error: Invalid protocol version argument given.\n\n".to_owned(),
                        ));
                    }
                };
            }
            "-i" | "--id" => {
                if self.id_prefix.is_some() {
                    return Err(ParseStop::Usage(
                        "Error: -i and -I argument cannot be used together.\n\n".to_owned(),
                    ));
                }
                self.id = Some(it.value("-i", "id")?);
            }
            "-I" | "--id-prefix" => {
                if self.id.is_some() {
                    return Err(ParseStop::Usage(
                        "Error: -i and -I argument cannot be used together.\n\n".to_owned(),
                    ));
                }
                self.id_prefix = Some(it.value("-I", "id prefix")?);
            }
            "-k" | "--keepalive" => {
                let v = atoi(&it.value("-k", "keepalive")?);
                if !(5..=65535).contains(&v) {
                    return Err(ParseStop::Usage(
                        "Error: Invalid keepalive given, it must be between 5 and 65535 inclusive.\n\n".to_owned(),
                    ));
                }
                self.keepalive = u16::try_from(v).unwrap_or(u16::MAX);
            }
            "-c" | "--disable-clean-session" => self.clean_session = false,
            "-u" | "--username" => self.username = Some(it.value("-u", "username")?),
            "-P" | "--pw" => self.password = Some(it.value("-P", "password")?),
            "-q" | "--qos" => self.qos = parse_qos(&it.value("-q", "QoS")?, "QoS")?,
            "-d" | "--debug" => self.debug = true,
            "--quiet" => self.quiet = true,
            "--nodelay" => self.nodelay = true,
            "-x" | "--session-expiry-interval" => {
                let v = it.value("-x", "session expiry interval")?;
                self.session_expiry = Some(parse_session_expiry(&v)?);
            }
            "--will-topic" => {
                let v = it.value("--will-topic", "will topic")?;
                if hermod_proto::topic::validate_topic_name(&v).is_err() {
                    return Err(ParseStop::Usage(format!(
                        "Error: Invalid will topic '{v}', does it contain '+' or '#'?\n"
                    )));
                }
                self.will_topic = Some(v);
            }
            "--will-payload" => {
                self.will_payload = Some(it.value("--will-payload", "will payload")?)
            }
            "--will-qos" => {
                let v = atoi(&it.value("--will-qos", "will QoS")?);
                self.will_qos = u8::try_from(v)
                    .ok()
                    .and_then(QoS::from_u8)
                    .ok_or_else(|| ParseStop::Usage(format!("Error: Invalid will QoS {v}.\n\n")))?;
            }
            "--will-retain" => self.will_retain = true,
            "--help" => return Err(ParseStop::Help),
            _ => {
                let _ = tool;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Checks run once every flag is read (mosquitto's `client_config_load` tail).
    pub(crate) fn finish(&mut self) -> Result<(), ParseStop> {
        if self.will_payload.is_some() && self.will_topic.is_none() {
            return Err(ParseStop::Usage(
                "Error: Will payload given, but no will topic given.\n".to_owned(),
            ));
        }
        if self.will_retain && self.will_topic.is_none() {
            return Err(ParseStop::Usage(
                "Error: Will retain given, but no will topic given.\n".to_owned(),
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(ParseStop::Plain(
                "Error: Problem setting username and/or password.\n".to_owned(),
            ));
        }
        if self.version.is_v5() {
            if !self.clean_session && self.session_expiry.is_none() {
                self.session_expiry = Some(u32::MAX);
            }
            if self.session_expiry == Some(u32::MAX)
                && self.id.is_none()
                && self.id_prefix.is_none()
            {
                return Err(ParseStop::Usage(
                    "Error: You must provide a client id if you are using an infinite session expiry interval.\n"
                        .to_owned(),
                ));
            }
        }
        if !self.clean_session && (self.id_prefix.is_some() || self.id.is_none()) {
            return Err(ParseStop::Usage(
                "Error: You must provide a client id if you are using the -c option.\n".to_owned(),
            ));
        }
        if self.id.as_deref() == Some("") {
            return Err(ParseStop::Plain("Error: Invalid id.\n".to_owned()));
        }
        Ok(())
    }
}

fn parse_session_expiry(v: &str) -> Result<u32, ParseStop> {
    if v == "∞" || v == "-1" {
        return Ok(u32::MAX);
    }
    let n: i128 = v.trim().parse().map_err(|_| {
        ParseStop::Usage("Error: session-expiry-interval not a number.\n\n".to_owned())
    })?;
    u32::try_from(n).map_err(|_| {
        ParseStop::Usage("Error: session-expiry-interval out of range.\n\n".to_owned())
    })
}

/// Prints a usage error the way mosquitto does and returns the exit code (1).
pub(crate) fn report_parse_stop(stop: ParseStop, tool: Tool, usage: impl Fn()) -> u8 {
    match stop {
        ParseStop::Help => usage(),
        ParseStop::Usage(msg) => {
            eprint!("{msg}");
            eprintln!("\nUse '{} --help' to see usage.", tool.name());
        }
        ParseStop::Plain(msg) => eprint!("{msg}"),
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_matches_c() {
        assert_eq!(atoi("42"), 42);
        assert_eq!(atoi("  7x"), 7);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("-3"), -3);
        assert_eq!(atoi(""), 0);
    }

    #[test]
    fn session_expiry_values() {
        assert_eq!(parse_session_expiry("-1").ok(), Some(u32::MAX));
        assert_eq!(parse_session_expiry("∞").ok(), Some(u32::MAX));
        assert_eq!(parse_session_expiry("10").ok(), Some(10));
        assert!(parse_session_expiry("x").is_err());
        assert!(parse_session_expiry("4294967296").is_err());
    }
}
