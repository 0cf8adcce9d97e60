//! What `hermod pub` and `hermod sub` share: the flags common to both (as in mosquitto's
//! `client_shared.c`), the CONNECT/CONNACK exchange with mosquitto's `-d` debug lines and error
//! messages, keep alive, and the strings mosquitto prints for reason codes.
//!
//! Flags are parsed by hand rather than by clap: mosquitto's error texts, its "last one wins"
//! rules and its `atoi` leniency ("-W x" is "Invalid timeout \"0\"") are part of what scripts see.

use std::io::Write;
use std::net::ToSocketAddrs;
use std::time::Duration;

use bytes::Bytes;
use hermod_client::{ClientError, ConnectOptions, Connection, v3_return_code};
use hermod_proto::{ConnectAck, Disconnect, LastWill, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::time::Instant;

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

    /// The client id put in CONNECT: `-i`, `-I` + pid, or empty (the broker assigns one), except
    /// for MQTT 3.1 which cannot ask for that: libmosquitto then makes up `mosq-` + 18 characters.
    pub(crate) fn client_id(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        if let Some(prefix) = &self.id_prefix {
            return format!("{prefix}{}", std::process::id());
        }
        if self.version == ProtocolVersion::V31 {
            return format!("mosq-{}", random_alnum(18));
        }
        String::new()
    }

    pub(crate) fn connect_options(&self, client_id: &str) -> ConnectOptions {
        let mut o = ConnectOptions::new(client_id)
            .version(self.version)
            .clean_start(self.clean_session)
            .keep_alive(self.keepalive);
        o.nodelay = self.nodelay;
        if let Some(u) = &self.username {
            o = o.credentials(
                u.clone(),
                self.password
                    .as_ref()
                    .map(|p| Bytes::from(p.clone().into_bytes())),
            );
        }
        if let Some(t) = &self.will_topic {
            o = o.will(LastWill {
                topic: t.clone(),
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default().into_bytes()),
                qos: self.will_qos,
                retain: self.will_retain,
                properties: hermod_proto::WillProperties::default(),
            });
        }
        if self.version.is_v5() {
            o.session_expiry = self.session_expiry.filter(|s| *s != 0);
        }
        o
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

/// Pseudo-random alphanumerics for a generated client id (uniqueness, not secrecy).
fn random_alnum(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::with_capacity(n);
    for i in 0..n {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let idx = usize::try_from(h.finish() % CHARS.len() as u64).unwrap_or(0);
        out.push(char::from(CHARS[idx]));
    }
    out
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

/// mosquitto's `mosquitto_connack_string` (MQTT 3.x return codes).
pub(crate) fn connack_string(code: u8) -> &'static str {
    match code {
        0 => "Connection Accepted.",
        1 => "Connection Refused: unacceptable protocol version.",
        2 => "Connection Refused: identifier rejected.",
        3 => "Connection Refused: broker unavailable.",
        4 => "Connection Refused: bad user name or password.",
        5 => "Connection Refused: not authorised.",
        _ => "Connection Refused: unknown reason.",
    }
}

/// mosquitto's `mosquitto_reason_string` (MQTT 5 reason codes).
pub(crate) fn reason_string(code: u8) -> &'static str {
    match code {
        0x00 => "Success",
        0x01 => "Granted QoS 1",
        0x02 => "Granted QoS 2",
        0x04 => "Disconnect with Will Message",
        0x10 => "No matching subscribers",
        0x11 => "No subscription existed",
        0x18 => "Continue authentication",
        0x19 => "Re-authenticate",
        0x80 => "Unspecified error",
        0x81 => "Malformed Packet",
        0x82 => "Protocol Error",
        0x83 => "Implementation specific error",
        0x84 => "Unsupported Protocol Version",
        0x85 => "Client Identifier not valid",
        0x86 => "Bad User Name or Password",
        0x87 => "Not authorized",
        0x88 => "Server unavailable",
        0x89 => "Server busy",
        0x8A => "Banned",
        0x8B => "Server shutting down",
        0x8C => "Bad authentication method",
        0x8D => "Keep Alive timeout",
        0x8E => "Session taken over",
        0x8F => "Topic Filter invalid",
        0x90 => "Topic Name invalid",
        0x91 => "Packet Identifier in use",
        0x92 => "Packet Identifier not found",
        0x93 => "Receive Maximum exceeded",
        0x94 => "Topic Alias invalid",
        0x95 => "Packet too large",
        0x96 => "Message rate too high",
        0x97 => "Quota exceeded",
        0x98 => "Administrative action",
        0x99 => "Payload format invalid",
        0x9A => "Retain not supported",
        0x9B => "QoS not supported",
        0x9C => "Use another server",
        0x9D => "Server moved",
        0x9E => "Shared Subscriptions not supported",
        0x9F => "Connection rate exceeded",
        0xA0 => "Maximum connect time",
        0xA1 => "Subscription identifiers not supported",
        0xA2 => "Wildcard Subscriptions not supported",
        _ => "Unknown reason",
    }
}

/// libmosquitto error numbers used as exit codes, and their `mosquitto_strerror` texts.
pub(crate) const MOSQ_ERR_PROTOCOL: u8 = 2;
pub(crate) const MOSQ_ERR_CONN_LOST: u8 = 7;
pub(crate) const MOSQ_ERR_TIMEOUT: u8 = 27;

pub(crate) fn mosq_strerror(code: u8) -> &'static str {
    match code {
        2 => "A network protocol error occurred when communicating with the broker.",
        5 => "The connection was refused.",
        7 => "The connection was lost.",
        27 => "Timed out.",
        _ => "Unknown error.",
    }
}

/// An I/O error the way C's `strerror` prints it ("Connection refused", without Rust's
/// " (os error 111)" suffix).
pub(crate) fn io_strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The connected client as the tools see it: connection, the id shown in debug lines, and state.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) conn: Connection,
    pub(crate) debug_id: String,
    pub(crate) debug: bool,
    pub(crate) quiet: bool,
    pub(crate) version: ProtocolVersion,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) last_out: Instant,
    pub(crate) ping_sent: Option<Instant>,
}

impl Session {
    /// A `-d` line on stdout ("Client <id> <text>").
    pub(crate) fn dbg(&self, text: std::fmt::Arguments<'_>) {
        if self.debug && !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "Client {} {}", self.debug_id, text);
            let _ = out.flush();
        }
    }

    /// An error message on stderr unless `--quiet`.
    pub(crate) fn err(&self, text: std::fmt::Arguments<'_>) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Queues a packet (printing its debug line first) and flushes.
    pub(crate) async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.send_mid(packet, None).await
    }

    /// As `send`; `mid` is the message id shown for a QoS 0 PUBLISH (libmosquitto numbers every
    /// message, though only QoS 1/2 carry the id on the wire).
    pub(crate) async fn send_mid(
        &mut self,
        packet: &Packet,
        mid: Option<u16>,
    ) -> Result<(), ClientError> {
        self.debug_sending(packet, mid);
        self.conn.send(packet).await?;
        self.last_out = Instant::now();
        Ok(())
    }

    fn debug_sending(&self, packet: &Packet, mid: Option<u16>) {
        if !self.debug || self.quiet {
            return;
        }
        match packet {
            Packet::Publish(p) => self.dbg(format_args!(
                "sending PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                p.packet_id.map_or(mid.unwrap_or(0), |id| id.get()),
                p.topic,
                p.payload.len()
            )),
            Packet::PublishAck(a) => self.dbg(format_args!(
                "sending PUBACK (m{}, rc{})",
                a.packet_id, a.reason.0
            )),
            Packet::PublishReceived(a) => {
                self.dbg(format_args!(
                    "sending PUBREC (m{}, rc{})",
                    a.packet_id, a.reason.0
                ));
            }
            Packet::PublishRelease(a) => {
                self.dbg(format_args!("sending PUBREL (m{})", a.packet_id))
            }
            Packet::PublishComplete(a) => {
                self.dbg(format_args!("sending PUBCOMP (m{})", a.packet_id))
            }
            Packet::Subscribe(s) => {
                for (filter, opts) in &s.filters {
                    let options = u8::from(opts.no_local) << 2
                        | u8::from(opts.retain_as_published) << 3
                        | (opts.retain_handling as u8) << 4;
                    self.dbg(format_args!(
                        "sending SUBSCRIBE (Mid: {}, Topic: {}, QoS: {}, Options: 0x{:02x})",
                        s.packet_id, filter, opts.qos as u8, options
                    ));
                }
            }
            Packet::Unsubscribe(u) => {
                for f in &u.filters {
                    self.dbg(format_args!(
                        "sending UNSUBSCRIBE (Mid: {}, Topic: {})",
                        u.packet_id, f
                    ));
                }
            }
            Packet::PingRequest => self.dbg(format_args!("sending PINGREQ")),
            Packet::PingResponse => self.dbg(format_args!("sending PINGRESP")),
            Packet::Disconnect(_) => self.dbg(format_args!("sending DISCONNECT")),
            Packet::Connect(_) => self.dbg(format_args!("sending CONNECT")),
            other => self.dbg(format_args!(
                "sending {}",
                hermod_client::packet_name(other)
            )),
        }
    }

    /// Prints the `-d` line for a received packet.
    pub(crate) fn debug_received(&self, packet: &Packet) {
        if !self.debug || self.quiet {
            return;
        }
        match packet {
            Packet::Publish(p) => self.dbg(format_args!(
                "received PUBLISH (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
                u8::from(p.dup),
                p.qos as u8,
                u8::from(p.retain),
                p.packet_id.map_or(0, |id| id.get()),
                p.topic,
                p.payload.len()
            )),
            Packet::PublishAck(a) => {
                self.dbg(format_args!(
                    "received PUBACK (Mid: {}, RC:{})",
                    a.packet_id, a.reason.0
                ));
            }
            Packet::PublishComplete(a) => {
                self.dbg(format_args!(
                    "received PUBCOMP (Mid: {}, RC:{})",
                    a.packet_id, a.reason.0
                ));
            }
            Packet::PublishReceived(a) => {
                self.dbg(format_args!("received PUBREC (Mid: {})", a.packet_id))
            }
            Packet::PublishRelease(a) => {
                self.dbg(format_args!("received PUBREL (Mid: {})", a.packet_id))
            }
            Packet::Disconnect(_) => {}
            other => self.dbg(format_args!(
                "received {}",
                hermod_client::packet_name(other)
            )),
        }
    }

    /// When the next PINGREQ is due (far future when keep alive is off).
    pub(crate) fn next_ping(&self) -> Instant {
        match self.keepalive {
            Some(k) => match self.ping_sent {
                // A ping is out: the connection is declared lost one keep alive later.
                Some(t) => t + k,
                None => self.last_out + k,
            },
            None => Instant::now() + Duration::from_secs(86_400),
        }
    }

    /// Called when `next_ping` passes: sends PINGREQ, or reports the connection lost when the
    /// previous one went unanswered. `Err(exit code)` to stop.
    pub(crate) async fn on_ping_timer(&mut self) -> Result<(), u8> {
        if self.keepalive.is_none() {
            return Ok(());
        }
        if self.ping_sent.is_some() {
            self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
            return Err(MOSQ_ERR_CONN_LOST);
        }
        if let Err(e) = self.send(&Packet::PingRequest).await {
            return Err(self.report_io(&e));
        }
        self.ping_sent = Some(Instant::now());
        Ok(())
    }

    /// Handles PINGRESP bookkeeping; true when the packet was one.
    pub(crate) fn on_pingresp(&mut self, packet: &Packet) -> bool {
        if matches!(packet, Packet::PingResponse) {
            self.ping_sent = None;
            true
        } else {
            false
        }
    }

    /// Reports a failure on an established connection and returns the exit code.
    pub(crate) fn report_io(&self, e: &ClientError) -> u8 {
        match e {
            ClientError::Decode(_) | ClientError::Protocol(_) | ClientError::Encode(_) => {
                self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_PROTOCOL)));
                MOSQ_ERR_PROTOCOL
            }
            _ => {
                self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
                MOSQ_ERR_CONN_LOST
            }
        }
    }

    /// Reports a DISCONNECT sent by the server (v5 carries a reason) and returns the exit code.
    pub(crate) fn report_server_disconnect(&self, d: &Disconnect) -> u8 {
        if self.version.is_v5() && d.reason != ReasonCode::NORMAL_DISCONNECTION {
            self.err(format_args!("Error: {}", reason_string(d.reason.0)));
            return d.reason.0;
        }
        self.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
        MOSQ_ERR_CONN_LOST
    }

    /// Sends DISCONNECT (with `reason` in v5) and closes; errors are ignored, as at exit.
    pub(crate) async fn disconnect(&mut self, reason: ReasonCode) {
        let d = Disconnect {
            reason,
            ..Disconnect::default()
        };
        self.dbg(format_args!("sending DISCONNECT"));
        if self.conn.disconnect_with(d).await.is_err() {
            return;
        }
        // Let the broker read the DISCONNECT before the socket closes: drain until it closes
        // its side (bounded).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(Some(_)) = self.conn.recv().await {}
        })
        .await;
    }
}

/// Connects, printing mosquitto's debug lines and error messages. `Err(exit code)` on failure.
pub(crate) async fn open_session(common: &Common, tool: Tool) -> Result<(Session, ConnectAck), u8> {
    let client_id = common.client_id();
    let opts = common.connect_options(&client_id);
    let mut session_debug_id = if client_id.is_empty() {
        "(null)".to_owned()
    } else {
        client_id.clone()
    };

    let addrs: Vec<std::net::SocketAddr> =
        match (common.host.as_str(), common.port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(_) => {
                if !common.quiet {
                    eprintln!("Error: Lookup error.");
                }
                return Err(1);
            }
        };
    let mut conn = None;
    let mut last_err = None;
    for a in &addrs {
        match Connection::open(a, common.version).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(ClientError::Io(e)) => last_err = Some(e),
            Err(e) => last_err = Some(std::io::Error::other(e.to_string())),
        }
    }
    let Some(conn) = conn else {
        if !common.quiet {
            let msg = last_err.map_or_else(|| "Lookup error.".to_owned(), |e| io_strerror(&e));
            eprintln!("Error: {msg}");
        }
        return Err(1);
    };
    if common.nodelay {
        let _ = conn.stream().set_nodelay(true);
    }

    let mut session = Session {
        conn,
        debug_id: session_debug_id.clone(),
        debug: common.debug,
        quiet: common.quiet,
        version: common.version,
        keepalive: (common.keepalive > 0).then(|| Duration::from_secs(u64::from(common.keepalive))),
        last_out: Instant::now(),
        ping_sent: None,
    };
    session.dbg(format_args!("sending CONNECT"));
    let result = session.conn.handshake(&opts).await;
    session.last_out = Instant::now();
    match result {
        Ok(ack) => {
            if let Some(assigned) = &ack.properties.assigned_client_identifier {
                session_debug_id.clone_from(assigned);
                session.debug_id = session_debug_id;
            }
            session.dbg(format_args!("received CONNACK (0)"));
            if let Some(k) = ack.properties.server_keep_alive {
                session.keepalive = (k > 0).then(|| Duration::from_secs(u64::from(k)));
            }
            Ok((session, ack))
        }
        Err(ClientError::ConnectionRefused { ack }) => {
            let code = if common.version.is_v5() {
                ack.reason.0
            } else {
                v3_return_code(ack.reason)
            };
            session.dbg(format_args!("received CONNACK ({code})"));
            if common.version.is_v5() {
                if ack.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
                    session.err(format_args!(
                        "Connection error: {}. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode.",
                        reason_string(code)
                    ));
                } else {
                    session.err(format_args!("Connection error: {}", reason_string(code)));
                }
            } else {
                session.err(format_args!("Connection error: {}", connack_string(code)));
            }
            if tool == Tool::Pub {
                let follow = if common.version.is_v5() {
                    MOSQ_ERR_PROTOCOL
                } else {
                    5
                };
                session.err(format_args!("Error: {}", mosq_strerror(follow)));
            }
            Err(code)
        }
        Err(ClientError::Timeout) => {
            session.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_TIMEOUT)));
            Err(MOSQ_ERR_TIMEOUT)
        }
        Err(ClientError::Io(e)) => {
            session.err(format_args!("Error: {}", io_strerror(&e)));
            Err(1)
        }
        Err(ClientError::Closed) => {
            session.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
            Err(MOSQ_ERR_CONN_LOST)
        }
        Err(_) => {
            session.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_PROTOCOL)));
            Err(MOSQ_ERR_PROTOCOL)
        }
    }
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

    #[test]
    fn v31_generates_an_id() {
        let c = Common {
            version: ProtocolVersion::V31,
            ..Common::default()
        };
        let id = c.client_id();
        assert!(id.starts_with("mosq-") && id.len() == 23, "{id}");
        let c = Common::default();
        assert_eq!(c.client_id(), "");
    }
}
