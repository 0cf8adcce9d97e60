//! `hermod sub`: subscribe and print messages, with the flags, output and exit codes of Debian's
//! `mosquitto_sub` 2.0.11.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use hermod_client::hermod_proto::{
    Packet, PacketId, Publish, PublishAck, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions, Unsubscribe, topic,
};
use tokio::time::Instant;

use crate::cli_common::{self, ArgIter, Common, ParseStop, Session, Tool};

/// Flags of `hermod sub`: the same as `mosquitto_sub` (`-h` is the host, `-V` the protocol
/// version; `--help` prints them). They are parsed by hand to reproduce mosquitto's messages.
#[derive(Debug, clap::Args)]
pub(crate) struct SubArgs {
    /// mosquitto_sub flags, e.g. `-t 'a/#' -v -C 10`; see `hermod sub --help`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "FLAGS")]
    args: Vec<String>,
}

#[derive(Debug)]
struct SubConfig {
    common: Common,
    topics: Vec<String>,
    unsub_topics: Vec<String>,
    filter_outs: Vec<String>,
    msg_count: u64,
    timeout: Option<u64>,
    no_retain: bool,
    retained_only: bool,
    verbose: bool,
    eol: bool,
    exit_after_sub: bool,
}

fn parse(args: Vec<String>) -> Result<SubConfig, ParseStop> {
    let mut cfg = SubConfig {
        common: Common::default(),
        topics: Vec::new(),
        unsub_topics: Vec::new(),
        filter_outs: Vec::new(),
        msg_count: 0,
        timeout: None,
        no_retain: false,
        retained_only: false,
        verbose: false,
        eol: true,
        exit_after_sub: false,
    };
    let mut it = ArgIter::new(args);
    while let Some(arg) = it.next_arg() {
        if cfg.common.parse_flag(&arg, &mut it, Tool::Sub)? {
            continue;
        }
        match arg.as_str() {
            "-t" | "--topic" => {
                let t = it.value("-t", "topic")?;
                if topic::validate_topic_filter(&t).is_err() {
                    return Err(ParseStop::Usage(format!(
                        "Error: Invalid subscription topic '{t}', are all '+' and '#' wildcards correct?\n"
                    )));
                }
                cfg.topics.push(t);
            }
            "-T" | "--filter-out" => {
                let t = it.value("-T", "topic filter")?;
                if topic::validate_topic_filter(&t).is_err() {
                    return Err(ParseStop::Usage(format!(
                        "Error: Invalid filter topic '{t}', are all '+' and '#' wildcards correct?\n"
                    )));
                }
                cfg.filter_outs.push(t);
            }
            "-U" | "--unsubscribe" => {
                let t = it.value("-U", "unsubscribe topic")?;
                if topic::validate_topic_filter(&t).is_err() {
                    return Err(ParseStop::Usage(format!(
                        "Error: Invalid unsubscribe topic '{t}', are all '+' and '#' wildcards correct?\n"
                    )));
                }
                cfg.unsub_topics.push(t);
            }
            "-C" => {
                let v = cli_common::atoi(&it.value("-C", "count")?);
                if v < 1 {
                    return Err(ParseStop::Usage(format!(
                        "Error: Invalid message count \"{v}\".\n\n"
                    )));
                }
                cfg.msg_count = u64::try_from(v).unwrap_or(u64::MAX);
            }
            "-W" => {
                let v = cli_common::atoi(&it.value("-W", "timeout")?);
                if v < 1 {
                    return Err(ParseStop::Usage(format!(
                        "Error: Invalid timeout \"{v}\".\n\n"
                    )));
                }
                cfg.timeout = Some(u64::try_from(v).unwrap_or(u64::MAX));
            }
            "-R" | "--no-retain" => cfg.no_retain = true,
            "--retained-only" => cfg.retained_only = true,
            "-v" | "--verbose" => cfg.verbose = true,
            "-N" => cfg.eol = false,
            "-E" => cfg.exit_after_sub = true,
            _ => {
                return Err(ParseStop::Usage(format!(
                    "Error: Unknown option '{arg}'.\n"
                )));
            }
        }
    }
    cfg.common.finish()?;
    if cfg.topics.is_empty() {
        return Err(ParseStop::Usage(
            "Error: You must specify a topic to subscribe to.\n".to_owned(),
        ));
    }
    Ok(cfg)
}

fn print_usage() {
    print!(
        "\
hermod sub is a simple mqtt client that will subscribe to a set of topics and print all messages it receives.
Its flags, output and exit codes follow mosquitto_sub 2.0.

Usage: hermod sub {{[-h host] [-p port] [-u username] [-P password] -t topic}}
                  [-c] [-k keepalive] [-q qos] [-x session-expiry-interval]
                  [-C msg_count] [-E] [-R] [--retained-only] [-T filter_out] [-U topic ...]
                  [-W timeout_secs]
                  [--nodelay] [-i id] [-I id_prefix]
                  [-d] [-N] [--quiet] [-v] [-V protocol-version]
                  [--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]
       hermod sub --help

 -c : disable clean session/enable persistent client mode
      When this argument is used, the broker will be instructed not to clean existing sessions
      for the same client id when the client connects, and sessions will never expire when the
      client disconnects. MQTT v5 clients can change their session expiry interval with the -x
      argument.
 -C : disconnect and exit after receiving the 'msg_count' messages.
 -d : enable debug messages.
 -E : Exit once all subscriptions have been acknowledged by the broker.
 -h : mqtt host to connect to. Defaults to localhost.
 -i : id to use for this client. Defaults to an empty id: the broker assigns one.
 -I : define the client id as id_prefix appended with the process id.
 -k : keep alive in seconds for this client. Defaults to 60.
 -N : do not add an end of line character when printing the payload.
 -p : network port to connect to. Defaults to 1883.
 -P : provide a password
 -q : quality of service level to use for the subscription. Defaults to 0.
 -R : do not print stale messages (those with retain set).
 -t : mqtt topic to subscribe to. May be repeated multiple times.
 -T : topic string to filter out of results. May be repeated.
 -u : provide a username
 -U : unsubscribe from a topic. May be repeated.
 -v : print published messages verbosely.
 -V : specify the version of the MQTT protocol to use when connecting.
      Can be mqttv5, mqttv311 or mqttv31 (or 5, 311, 31). Defaults to mqttv311.
 -W : Specifies a timeout in seconds how long to process incoming MQTT messages.
 -x : Set the session-expiry-interval property on the CONNECT packet. Applies to MQTT v5
      clients only. Set to 0-4294967294 to specify the session will expire in that many
      seconds after the client disconnects, or use -1, 4294967295, or ∞ for a session
      that does not expire. Defaults to -1 if -c is also given, or 0 if -c not given.
 --help : display this message.
 --nodelay : disable Nagle's algorithm.
 --quiet : don't print error messages.
 --retained-only : only handle messages with the retained flag set, and exit when the
                   first non-retained message is received.
 --will-payload : payload for the client Will, which is sent by the broker in case of
                  unexpected disconnection. If not given and will-topic is set, a zero
                  length message will be sent.
 --will-qos : QoS level for the client Will.
 --will-retain : if given, make the client Will retained.
 --will-topic : the topic on which to publish the client Will.
"
    );
}

/// How the run ended.
enum Stop {
    /// Disconnect cleanly (reason for v5) and exit with this code.
    Disconnect(ReasonCode, u8),
    /// Already reported; exit with this code without DISCONNECT.
    Exit(u8),
}

pub(crate) async fn run(args: SubArgs) -> u8 {
    let started = Instant::now();
    let cfg = match parse(args.args) {
        Ok(c) => c,
        Err(ParseStop::Plain(m)) if m.is_empty() => return 1,
        Err(stop) => return cli_common::report_parse_stop(stop, Tool::Sub, print_usage),
    };
    if cfg.no_retain && cfg.retained_only {
        eprintln!("\nError: Combining '-R' and '--retained-only' makes no sense.");
        return 1;
    }
    let deadline = cfg.timeout.map(|s| started + Duration::from_secs(s));
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);

    let opened = match deadline {
        Some(d) => {
            match tokio::time::timeout_at(d, cli_common::open_session(&cfg.common, Tool::Sub)).await
            {
                Ok(r) => r,
                Err(_) => {
                    if !cfg.common.quiet {
                        eprintln!("Timed out");
                    }
                    return cli_common::MOSQ_ERR_TIMEOUT;
                }
            }
        }
        None => cli_common::open_session(&cfg.common, Tool::Sub).await,
    };
    let mut session = match opened {
        Ok((s, _ack)) => s,
        Err(code) => return code,
    };

    let mut state = SubState {
        cfg: &cfg,
        received: 0,
        qos2: HashMap::new(),
    };
    let stop = state.run(&mut session, deadline.unwrap_or_else(far)).await;
    match stop {
        Stop::Disconnect(reason, code) => {
            session.disconnect(reason).await;
            if code == cli_common::MOSQ_ERR_TIMEOUT && !cfg.common.quiet {
                eprintln!("Timed out");
            }
            code
        }
        Stop::Exit(code) => code,
    }
}

struct SubState<'a> {
    cfg: &'a SubConfig,
    received: u64,
    /// QoS 2 messages received (PUBREC sent), delivered on PUBREL as libmosquitto does.
    qos2: HashMap<u16, Publish>,
}

impl SubState<'_> {
    async fn run(&mut self, session: &mut Session, deadline: Instant) -> Stop {
        let sub_opts = SubscriptionOptions {
            qos: self.cfg.common.qos,
            ..SubscriptionOptions::default()
        };
        let subscribe = Subscribe {
            packet_id: PacketId::MIN,
            filters: self
                .cfg
                .topics
                .iter()
                .map(|t| (t.clone(), sub_opts))
                .collect(),
            properties: SubscribeProperties::default(),
        };
        if let Err(e) = session.send(&Packet::Subscribe(subscribe)).await {
            return Stop::Exit(session.report_io(&e));
        }
        for (i, t) in self.cfg.unsub_topics.iter().enumerate() {
            let id = u16::try_from(i + 2)
                .ok()
                .and_then(PacketId::new)
                .unwrap_or(PacketId::MIN);
            let u = Unsubscribe {
                packet_id: id,
                filters: vec![t.clone()],
                user_properties: Vec::new(),
            };
            if let Err(e) = session.send(&Packet::Unsubscribe(u)).await {
                return Stop::Exit(session.report_io(&e));
            }
        }

        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let will_reason = if session.version.is_v5() {
            ReasonCode::DISCONNECT_WITH_WILL
        } else {
            ReasonCode::NORMAL_DISCONNECTION
        };
        loop {
            let ping_at = session.next_ping();
            tokio::select! {
                p = session.conn.recv() => {
                    let p = match p {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            session.err(format_args!("Error: {}", cli_common::mosq_strerror(cli_common::MOSQ_ERR_CONN_LOST)));
                            return Stop::Exit(cli_common::MOSQ_ERR_CONN_LOST);
                        }
                        Err(e) => return Stop::Exit(session.report_io(&e)),
                    };
                    if let Some(stop) = self.on_packet(session, p).await {
                        return stop;
                    }
                }
                () = tokio::time::sleep_until(ping_at) => {
                    if let Err(code) = session.on_ping_timer().await {
                        return Stop::Exit(code);
                    }
                }
                // -W, like mosquitto's alarm(): v5 disconnects "with will message".
                () = tokio::time::sleep_until(deadline) => {
                    return Stop::Disconnect(will_reason, cli_common::MOSQ_ERR_TIMEOUT);
                }
                _ = tokio::signal::ctrl_c() => return Stop::Disconnect(will_reason, 0),
                Some(()) = recv_signal(&mut sigterm) => return Stop::Disconnect(will_reason, 0),
            }
        }
    }

    /// One packet from the broker; `Some` to stop.
    async fn on_packet(&mut self, session: &mut Session, packet: Packet) -> Option<Stop> {
        session.debug_received(&packet);
        if session.on_pingresp(&packet) {
            return None;
        }
        match packet {
            Packet::Publish(p) => match (p.qos, p.packet_id) {
                (QoS::AtMostOnce, _) | (_, None) => self.deliver(&p),
                (QoS::AtLeastOnce, Some(id)) => {
                    if let Err(e) = session.send(&Packet::PublishAck(PublishAck::new(id))).await {
                        return Some(Stop::Exit(session.report_io(&e)));
                    }
                    self.deliver(&p)
                }
                (QoS::ExactlyOnce, Some(id)) => {
                    if let Err(e) = session
                        .send(&Packet::PublishReceived(PublishAck::new(id)))
                        .await
                    {
                        return Some(Stop::Exit(session.report_io(&e)));
                    }
                    self.qos2.insert(id.get(), p);
                    None
                }
            },
            Packet::PublishRelease(a) => {
                if let Err(e) = session
                    .send(&Packet::PublishComplete(PublishAck::new(a.packet_id)))
                    .await
                {
                    return Some(Stop::Exit(session.report_io(&e)));
                }
                let p = self.qos2.remove(&a.packet_id.get())?;
                self.deliver(&p)
            }
            Packet::SubscribeAck(s) => {
                if session.debug && !session.quiet {
                    let codes: Vec<String> = s.reasons.iter().map(|r| r.0.to_string()).collect();
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(
                        out,
                        "Subscribed (mid: {}): {}",
                        s.packet_id,
                        codes.join(", ")
                    );
                    let _ = out.flush();
                }
                if !s.reasons.iter().any(|r| r.0 < 0x80) {
                    session.err(format_args!("All subscription requests were denied."));
                    return Some(Stop::Disconnect(ReasonCode::NORMAL_DISCONNECTION, 0));
                }
                if self.cfg.exit_after_sub {
                    return Some(Stop::Disconnect(ReasonCode::NORMAL_DISCONNECTION, 0));
                }
                None
            }
            Packet::Disconnect(d) => Some(Stop::Exit(session.report_server_disconnect(&d))),
            _ => None,
        }
    }

    /// mosquitto_sub's message callback: filters, printing, `-C` counting.
    fn deliver(&mut self, p: &Publish) -> Option<Stop> {
        let cfg = self.cfg;
        if cfg.retained_only && !p.retain {
            return Some(Stop::Disconnect(ReasonCode::NORMAL_DISCONNECTION, 0));
        }
        if p.retain && cfg.no_retain {
            return None;
        }
        if cfg.filter_outs.iter().any(|f| topic::matches(f, &p.topic)) {
            return None;
        }
        print_message(cfg, p);
        if cfg.msg_count > 0 {
            self.received += 1;
            if self.received >= cfg.msg_count {
                return Some(Stop::Disconnect(ReasonCode::NORMAL_DISCONNECTION, 0));
            }
        }
        None
    }
}

async fn recv_signal(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// mosquitto_sub's default output: `payload` or, with `-v`, `topic payload`; an empty payload
/// prints nothing, or `topic (null)` with `-v`; `-N` drops the newline.
fn print_message(cfg: &SubConfig, p: &Publish) {
    let mut out = std::io::stdout().lock();
    let r = (|| -> std::io::Result<()> {
        if cfg.verbose {
            if p.payload.is_empty() {
                if cfg.eol {
                    writeln!(out, "{} (null)", p.topic)?;
                }
            } else {
                write!(out, "{} ", p.topic)?;
                out.write_all(&p.payload)?;
                if cfg.eol {
                    out.write_all(b"\n")?;
                }
            }
        } else if !p.payload.is_empty() {
            out.write_all(&p.payload)?;
            if cfg.eol {
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    })();
    // A closed stdout (e.g. `| head`) is not worth an error message, as with printf.
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn msg(r: Result<SubConfig, ParseStop>) -> String {
        match r {
            Err(ParseStop::Usage(m) | ParseStop::Plain(m)) => m,
            Err(ParseStop::Help) => "HELP".to_owned(),
            Ok(_) => "OK".to_owned(),
        }
    }

    #[test]
    fn errors_match_mosquitto() {
        assert_eq!(
            msg(parse(args(""))),
            "Error: You must specify a topic to subscribe to.\n"
        );
        assert_eq!(
            msg(parse(args("-t a -W 0"))),
            "Error: Invalid timeout \"0\".\n\n"
        );
        assert_eq!(
            msg(parse(args("-t a -W x"))),
            "Error: Invalid timeout \"0\".\n\n"
        );
        assert_eq!(
            msg(parse(args("-t a -C 0"))),
            "Error: Invalid message count \"0\".\n\n"
        );
        assert_eq!(
            msg(parse(args("-t a -q 3"))),
            "Error: Invalid QoS given: 3\n"
        );
        assert_eq!(
            msg(parse(args("-t a/#/b"))),
            "Error: Invalid subscription topic 'a/#/b', are all '+' and '#' wildcards correct?\n"
        );
        assert_eq!(
            msg(parse(args("-t a -c"))),
            "Error: You must provide a client id if you are using the -c option.\n"
        );
        assert_eq!(msg(parse(args("-t a -i x -c"))), "OK");
    }

    #[test]
    fn repeatable_topics() {
        let cfg = parse(args("-t a -t b/# -v -C 3 -W 2 -R -N")).ok();
        let cfg = cfg.as_ref();
        assert_eq!(cfg.map(|c| c.topics.len()), Some(2));
        assert_eq!(
            cfg.map(|c| (c.verbose, c.eol, c.no_retain, c.msg_count, c.timeout)),
            Some((true, false, true, 3, Some(2)))
        );
    }
}
