//! `hermod pub`: publish one message, a file, stdin, or stdin line by line, with the flags,
//! output and exit codes of Debian's `mosquitto_pub` 2.0.11.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::time::Duration;

use bytes::Bytes;
use hermod_client::hermod_proto::{
    Packet, PacketId, Publish, PublishAck, PublishProperties, QoS, ReasonCode,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli_common::{self, ArgIter, Common, ParseStop, Session, Tool};

/// Flags of `hermod pub`: the same as `mosquitto_pub` (`-h` is the host, `-V` the protocol
/// version; `--help` prints them). They are parsed by hand to reproduce mosquitto's messages.
#[derive(Debug, clap::Args)]
pub(crate) struct PubArgs {
    /// mosquitto_pub flags, e.g. `-t topic -m message -q 1`; see `hermod pub --help`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "FLAGS")]
    args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    None,
    /// `-m`, `-f`, `-s` and `-n`: one payload (sent `--repeat` times).
    Single(Bytes),
    /// `-l`: one message per line of stdin.
    Lines,
}

#[derive(Debug)]
struct PubConfig {
    common: Common,
    topic: Option<String>,
    mode: Mode,
    retain: bool,
    repeat: u32,
    repeat_delay: Duration,
    max_inflight: u16,
}

fn ensure_no_mode(cfg: &PubConfig) -> Result<(), ParseStop> {
    if cfg.mode == Mode::None {
        Ok(())
    } else {
        Err(ParseStop::Usage(
            "Error: Only one type of message can be sent at once.\n\n".to_owned(),
        ))
    }
}

fn set_mode(cfg: &mut PubConfig, mode: Mode) -> Result<(), ParseStop> {
    ensure_no_mode(cfg)?;
    cfg.mode = mode;
    Ok(())
}

fn parse(args: Vec<String>) -> Result<PubConfig, ParseStop> {
    let mut cfg = PubConfig {
        common: Common::default(),
        topic: None,
        mode: Mode::None,
        retain: false,
        repeat: 1,
        repeat_delay: Duration::ZERO,
        max_inflight: 20,
    };
    let mut it = ArgIter::new(args);
    while let Some(arg) = it.next_arg() {
        if cfg.common.parse_flag(&arg, &mut it, Tool::Pub)? {
            continue;
        }
        match arg.as_str() {
            "-t" | "--topic" => {
                let t = it.value("-t", "topic")?;
                if hermod_proto_topic_invalid(&t) {
                    return Err(ParseStop::Usage(format!(
                        "Error: Invalid publish topic '{t}', does it contain '+' or '#'?\n"
                    )));
                }
                cfg.topic = Some(t);
            }
            "-m" | "--message" => {
                let m = it.value("-m", "message")?;
                set_mode(&mut cfg, Mode::Single(Bytes::from(m.into_bytes())))?;
            }
            "-f" | "--file" => {
                let path = it.value("-f", "file")?;
                ensure_no_mode(&cfg)?;
                match std::fs::read(&path) {
                    Ok(data) => cfg.mode = Mode::Single(Bytes::from(data)),
                    Err(_) => {
                        return Err(ParseStop::Plain(format!(
                            "Error: Unable to open file \"{path}\".\nError loading input file \"{path}\".\n"
                        )));
                    }
                }
            }
            "-s" | "--stdin-file" => {
                ensure_no_mode(&cfg)?;
                let mut data = Vec::new();
                if std::io::stdin().lock().read_to_end(&mut data).is_err() {
                    return Err(ParseStop::Plain(
                        "Error loading input from stdin.\n".to_owned(),
                    ));
                }
                if data.is_empty() {
                    return Err(ParseStop::Plain(
                        "Error: Zero length input.\nError loading input from stdin.\n".to_owned(),
                    ));
                }
                cfg.mode = Mode::Single(Bytes::from(data));
            }
            "-l" | "--stdin-line" => set_mode(&mut cfg, Mode::Lines)?,
            "-n" | "--null-message" => set_mode(&mut cfg, Mode::Single(Bytes::new()))?,
            "-r" | "--retain" => cfg.retain = true,
            "--repeat" => {
                let v = cli_common::atoi(&it.value("--repeat", "count")?);
                if v < 1 {
                    return Err(ParseStop::Usage(
                        "Error: --repeat argument must be >0.\n\n".to_owned(),
                    ));
                }
                cfg.repeat = u32::try_from(v).unwrap_or(u32::MAX);
            }
            "--repeat-delay" => {
                let v = it.value("--repeat-delay", "time")?;
                let secs: f64 = v.trim().parse().unwrap_or(0.0);
                if !(secs >= 0.0 && secs.is_finite()) {
                    return Err(ParseStop::Usage(
                        "Error: --repeat-delay argument must be >=0.0.\n\n".to_owned(),
                    ));
                }
                cfg.repeat_delay = Duration::from_secs_f64(secs.min(1e9));
            }
            "-M" => {
                let v = cli_common::atoi(&it.value("-M", "max_inflight")?);
                if v < 1 {
                    return Err(ParseStop::Usage(
                        "Error: Maximum inflight messages must be greater than 0.\n\n".to_owned(),
                    ));
                }
                cfg.max_inflight = u16::try_from(v).unwrap_or(u16::MAX);
            }
            _ => {
                return Err(ParseStop::Usage(format!(
                    "Error: Unknown option '{arg}'.\n"
                )));
            }
        }
    }
    cfg.common.finish()?;
    Ok(cfg)
}

fn hermod_proto_topic_invalid(t: &str) -> bool {
    hermod_client::hermod_proto::topic::validate_topic_name(t).is_err()
        || t.len() > usize::from(u16::MAX)
}

fn print_usage() {
    print!(
        "\
hermod pub is a simple mqtt client that will publish a message on a single topic and exit.
Its flags, output and exit codes follow mosquitto_pub 2.0.

Usage: hermod pub {{[-h host] [-p port] [-u username] [-P password] -t topic}}
                  {{-f file | -l | -n | -m message | -s}}
                  [-c] [-k keepalive] [-q qos] [-r] [--repeat N] [--repeat-delay time] [-x session-expiry]
                  [--nodelay] [-i id] [-I id_prefix] [-d] [--quiet] [-M max_inflight]
                  [-V protocol-version]
                  [--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]
       hermod pub --help

 -d : enable debug messages.
 -c : disable clean session/enable persistent client mode
      When this argument is used, the broker will be instructed not to clean existing sessions
      for the same client id when the client connects, and sessions will never expire when the
      client disconnects. MQTT v5 clients can change their session expiry interval with the -x
      argument.
 -f : send the contents of a file as the message.
 -h : mqtt host to connect to. Defaults to localhost.
 -i : id to use for this client. Defaults to an empty id: the broker assigns one.
 -I : define the client id as id_prefix appended with the process id.
 -k : keep alive in seconds for this client. Defaults to 60.
 -l : read messages from stdin, sending a separate message for each line.
 -m : message payload to send.
 -M : the maximum inflight messages for QoS 1/2. Defaults to 20.
 -n : send a null (zero length) message.
 -p : network port to connect to. Defaults to 1883.
 -P : provide a password
 -q : quality of service level to use for all messages. Defaults to 0.
 -r : message should be retained.
 -s : read message from stdin, sending the entire input as a message.
 -t : mqtt topic to publish to.
 -u : provide a username
 -V : specify the version of the MQTT protocol to use when connecting.
      Can be mqttv5, mqttv311 or mqttv31 (or 5, 311, 31). Defaults to mqttv311.
 -x : Set the session-expiry-interval property on the CONNECT packet. Applies to MQTT v5
      clients only. Set to 0-4294967294 to specify the session will expire in that many
      seconds after the client disconnects, or use -1, 4294967295, or ∞ for a session
      that does not expire. Defaults to -1 if -c is also given, or 0 if -c not given.
 --help : display this message.
 --nodelay : disable Nagle's algorithm.
 --quiet : don't print error messages.
 --repeat : if publish mode is -f, -m, or -s, then repeat the publish N times.
 --repeat-delay : if using --repeat, wait time seconds between publishes. Defaults to 0.
 --will-payload : payload for the client Will, which is sent by the broker in case of
                  unexpected disconnection. If not given and will-topic is set, a zero
                  length message will be sent.
 --will-qos : QoS level for the client Will.
 --will-retain : if given, make the client Will retained.
 --will-topic : the topic on which to publish the client Will.
"
    );
}

pub(crate) async fn run(args: PubArgs) -> u8 {
    let cfg = match parse(args.args) {
        Ok(c) => c,
        Err(stop) => return cli_common::report_parse_stop(stop, Tool::Pub, print_usage),
    };
    let Some(topic) = cfg.topic.clone() else {
        eprintln!("Error: Both topic and message must be supplied.");
        print_usage();
        return 1;
    };
    if cfg.mode == Mode::None {
        eprintln!("Error: Both topic and message must be supplied.");
        print_usage();
        return 1;
    }
    let (mut session, ack) = match cli_common::open_session(&cfg.common, Tool::Pub).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut max_inflight = usize::from(cfg.max_inflight);
    if let Some(rm) = ack.properties.receive_maximum {
        max_inflight = max_inflight.min(usize::from(rm.max(1)));
    }
    let mut publisher = Publisher {
        topic,
        qos: cfg.common.qos,
        retain: cfg.retain,
        next_mid: 1,
        inflight: HashMap::new(),
    };
    let code = match &cfg.mode {
        Mode::Lines => publisher.run_lines(&mut session, max_inflight).await,
        Mode::Single(payload) => {
            publisher
                .run_repeat(&mut session, payload.clone(), cfg.repeat, cfg.repeat_delay)
                .await
        }
        Mode::None => Ok(()),
    };
    match code {
        Ok(()) => {
            session.disconnect(ReasonCode::NORMAL_DISCONNECTION).await;
            0
        }
        Err(code) => code,
    }
}

/// Where a QoS 1/2 message we sent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Ack,
    Rec,
    Comp,
}

#[derive(Debug)]
struct Publisher {
    topic: String,
    qos: QoS,
    retain: bool,
    next_mid: u16,
    inflight: HashMap<u16, Awaiting>,
}

impl Publisher {
    fn take_mid(&mut self) -> u16 {
        let mut mid = self.next_mid;
        // Skip ids still in flight (only possible after 65535 messages with a slow broker).
        while self.inflight.contains_key(&mid) {
            mid = mid.checked_add(1).unwrap_or(1);
        }
        self.next_mid = mid.checked_add(1).unwrap_or(1);
        mid
    }

    async fn publish(&mut self, session: &mut Session, payload: Bytes) -> Result<(), u8> {
        let mid = self.take_mid();
        let packet_id = if self.qos == QoS::AtMostOnce {
            None
        } else {
            PacketId::new(mid)
        };
        let p = Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id,
            payload,
            properties: PublishProperties::default(),
        };
        session
            .send_mid(&Packet::Publish(p), Some(mid))
            .await
            .map_err(|e| session.report_io(&e))?;
        match self.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.inflight.insert(mid, Awaiting::Ack);
            }
            QoS::ExactlyOnce => {
                self.inflight.insert(mid, Awaiting::Rec);
            }
        }
        Ok(())
    }

    /// Handles one packet from the broker. `Err(exit code)` to stop.
    async fn on_packet(&mut self, session: &mut Session, packet: Option<Packet>) -> Result<(), u8> {
        let Some(packet) = packet else {
            session.err(format_args!(
                "Error: {}",
                cli_common::mosq_strerror(cli_common::MOSQ_ERR_CONN_LOST)
            ));
            return Err(cli_common::MOSQ_ERR_CONN_LOST);
        };
        session.debug_received(&packet);
        if session.on_pingresp(&packet) {
            return Ok(());
        }
        match packet {
            Packet::PublishAck(a)
                if self.inflight.get(&a.packet_id.get()) == Some(&Awaiting::Ack) =>
            {
                self.inflight.remove(&a.packet_id.get());
                warn_failed(session, &a);
            }
            Packet::PublishReceived(a) => {
                let id = a.packet_id.get();
                if a.reason.is_error() {
                    self.inflight.remove(&id);
                    warn_failed(session, &a);
                } else {
                    if self.inflight.contains_key(&id) {
                        self.inflight.insert(id, Awaiting::Comp);
                    }
                    let rel = Packet::PublishRelease(PublishAck::new(a.packet_id));
                    session
                        .send(&rel)
                        .await
                        .map_err(|e| session.report_io(&e))?;
                }
            }
            Packet::PublishComplete(a)
                if self.inflight.get(&a.packet_id.get()) == Some(&Awaiting::Comp) =>
            {
                self.inflight.remove(&a.packet_id.get());
                warn_failed(session, &a);
            }
            Packet::Publish(p) => {
                // Not subscribed, but a broker may still send (e.g. a resumed session): ack it.
                if let Some(id) = p.packet_id {
                    let ack = match p.qos {
                        QoS::ExactlyOnce => Packet::PublishReceived(PublishAck::new(id)),
                        _ => Packet::PublishAck(PublishAck::new(id)),
                    };
                    session
                        .send(&ack)
                        .await
                        .map_err(|e| session.report_io(&e))?;
                }
            }
            Packet::PublishRelease(a) => {
                let comp = Packet::PublishComplete(PublishAck::new(a.packet_id));
                session
                    .send(&comp)
                    .await
                    .map_err(|e| session.report_io(&e))?;
            }
            Packet::Disconnect(d) => return Err(session.report_server_disconnect(&d)),
            _ => {}
        }
        Ok(())
    }

    /// Waits for broker traffic (acks, ping) until `until` returns true; pings on keep alive.
    async fn pump_until(
        &mut self,
        session: &mut Session,
        until: impl Fn(&Self) -> bool,
    ) -> Result<(), u8> {
        while !until(self) {
            let ping_at = session.next_ping();
            tokio::select! {
                p = session.conn.recv() => {
                    let p = p.map_err(|e| session.report_io(&e))?;
                    self.on_packet(session, p).await?;
                }
                () = tokio::time::sleep_until(ping_at) => session.on_ping_timer().await?,
            }
        }
        Ok(())
    }

    /// `-m`/`-f`/`-s`/`-n`: publish, wait for the flow to complete, repeat.
    async fn run_repeat(
        &mut self,
        session: &mut Session,
        payload: Bytes,
        repeat: u32,
        delay: Duration,
    ) -> Result<(), u8> {
        for i in 0..repeat {
            if i > 0 && !delay.is_zero() {
                let at = Instant::now() + delay;
                loop {
                    let ping_at = session.next_ping();
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => break,
                        p = session.conn.recv() => {
                            let p = p.map_err(|e| session.report_io(&e))?;
                            self.on_packet(session, p).await?;
                        }
                        () = tokio::time::sleep_until(ping_at) => session.on_ping_timer().await?,
                    }
                }
            }
            self.publish(session, payload.clone()).await?;
            self.pump_until(session, |s| s.inflight.is_empty()).await?;
        }
        Ok(())
    }

    /// `-l`: one message per stdin line, up to `max_inflight` unacknowledged at once.
    async fn run_lines(&mut self, session: &mut Session, max_inflight: usize) -> Result<(), u8> {
        let mut lines = spawn_stdin_lines();
        let mut stdin_done = false;
        while !stdin_done {
            let room = self.inflight.len() < max_inflight;
            let ping_at = session.next_ping();
            tokio::select! {
                line = lines.recv(), if room => match line {
                    Some(l) => self.publish(session, l).await?,
                    None => stdin_done = true,
                },
                p = session.conn.recv() => {
                    let p = p.map_err(|e| session.report_io(&e))?;
                    self.on_packet(session, p).await?;
                }
                () = tokio::time::sleep_until(ping_at) => session.on_ping_timer().await?,
            }
        }
        self.pump_until(session, |s| s.inflight.is_empty()).await
    }
}

fn warn_failed(session: &Session, a: &PublishAck) {
    if a.reason.is_error() {
        session.err(format_args!(
            "Warning: Publish {} failed: {}.",
            a.packet_id,
            cli_common::reason_string(a.reason.0)
        ));
        if let Some(r) = &a.properties.reason_string {
            session.err(format_args!("{r}"));
        }
    }
}

/// Reads stdin on a plain thread (not the runtime's blocking pool, which would hold the process
/// open at exit while the read blocks) and hands over lines without their `\n`.
fn spawn_stdin_lines() -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let spawned = std::thread::Builder::new()
        .name("stdin-lines".to_owned())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match input.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        if tx.blocking_send(Bytes::copy_from_slice(&buf)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    if spawned.is_err() {
        eprintln!("Error loading input from stdin.");
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn usage_text(r: Result<PubConfig, ParseStop>) -> String {
        match r {
            Err(ParseStop::Usage(m) | ParseStop::Plain(m)) => m,
            Err(ParseStop::Help) => "HELP".to_owned(),
            Ok(_) => "OK".to_owned(),
        }
    }

    #[test]
    fn errors_match_mosquitto() {
        assert_eq!(
            usage_text(parse(args("-t a -m x -q 3"))),
            "Error: Invalid QoS given: 3\n"
        );
        assert_eq!(
            usage_text(parse(args("-t a/# -m x"))),
            "Error: Invalid publish topic 'a/#', does it contain '+' or '#'?\n"
        );
        assert_eq!(
            usage_text(parse(args("-t a -m x -m y"))),
            "Error: Only one type of message can be sent at once.\n\n"
        );
        assert_eq!(
            usage_text(parse(args("-t a -m x -c"))),
            "Error: You must provide a client id if you are using the -c option.\n"
        );
        assert_eq!(
            usage_text(parse(args("-t a -m x --bogus"))),
            "Error: Unknown option '--bogus'.\n"
        );
        assert_eq!(
            usage_text(parse(args("-t a -m x -p"))),
            "Error: -p argument given but no port specified.\n\n"
        );
        assert_eq!(
            usage_text(parse(args("-t a -m x -k 4"))),
            "Error: Invalid keepalive given, it must be between 5 and 65535 inclusive.\n\n"
        );
        assert_eq!(
            usage_text(parse(args("-t a -m x -V 4"))),
            "Error: Invalid protocol version argument given.\n\n"
        );
        assert_eq!(usage_text(parse(args("--help"))), "HELP");
    }

    #[test]
    fn accepts_all_version_spellings() {
        for (v, want) in [
            ("31", hermod_client::hermod_proto::ProtocolVersion::V31),
            ("mqttv31", hermod_client::hermod_proto::ProtocolVersion::V31),
            ("311", hermod_client::hermod_proto::ProtocolVersion::V311),
            (
                "mqttv311",
                hermod_client::hermod_proto::ProtocolVersion::V311,
            ),
            ("5", hermod_client::hermod_proto::ProtocolVersion::V5),
            ("mqttv5", hermod_client::hermod_proto::ProtocolVersion::V5),
        ] {
            let cfg = parse(args(&format!("-t a -m x -V {v}"))).ok();
            assert_eq!(cfg.map(|c| c.common.version), Some(want), "{v}");
        }
    }
}
