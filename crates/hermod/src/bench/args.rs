//! The flags of `hermod bench` (clap) and the scenario names.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::bail;

use super::transport;
use hermod_proto::ProtocolVersion;

/// Which load to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// P publisher→subscriber pairs, one topic per pair (default P = 64).
    Pairs,
    /// P publishers → S subscribers on one topic (default 32 → 1).
    Fanin,
    /// P publishers → S subscribers on one topic (default 1 → 64).
    Fanout,
    /// P publishers → a $share group of S members (default 32 → 4).
    Shared,
    /// Open C idle connections (default 1000), at --rate connects/s if given, and hold them for --duration.
    Conn,
    /// Not a load: serve a bare single-threaded MQTT forwarder on --host:--port until
    /// interrupted, the ceiling any broker on this machine can be compared with.
    Forwarder,
}

/// Flags of `hermod bench`.
#[derive(Debug, clap::Args)]
#[command(
    disable_help_flag = true,
    after_help = "Examples:\n  hermod bench pairs --qos 1\n  hermod bench fanin --pubs 32 --rate 20000\n  \
                  hermod bench fanout --subs 64 --json\n  hermod bench conn -c 19000 --bind 127.0.0.2,127.0.0.3\n  \
                  hermod bench conn -c 2000 -p 8883 --cafile ca.pem        (TLS handshakes/s)\n  \
                  hermod bench pairs --qos 1 -p 8883 --cafile ca.pem --cert me.pem --key me.key\n  \
                  hermod bench pairs -p 8080 --ws --ws-path /mqtt          (wss: add --cafile)"
)]
pub(crate) struct BenchArgs {
    /// Scenario to run.
    #[arg(value_enum)]
    pub(super) scenario: Scenario,
    /// Broker host.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub(super) host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub(super) port: u16,
    /// Subscribers' broker host, when they are to connect elsewhere than the publishers (a
    /// cluster's other node) [default: --host].
    #[arg(long)]
    pub(super) sub_host: Option<String>,
    /// Subscribers' broker port [default: --port].
    #[arg(long)]
    pub(super) sub_port: Option<u16>,
    /// QoS of publishes and subscriptions.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub(super) qos: u8,
    /// Payload size in bytes (at least 8: the timestamp).
    #[arg(short = 's', long, default_value_t = 64)]
    pub(super) size: usize,
    /// Total publish rate in messages/s over all publishers, open loop (`conn`: connects/s). Default: unlimited.
    #[arg(short = 'r', long, value_name = "MSGS/S")]
    pub(super) rate: Option<f64>,
    /// Cap on messages sent but not yet received, over all publishers; 0: no cap.
    #[arg(short = 'w', long, default_value_t = 1000)]
    pub(super) window: u32,
    /// Seconds to publish (`conn`: to hold the connections).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub(super) duration: f64,
    /// Seconds to wait after the run for messages still in flight.
    #[arg(long, default_value_t = 3.0)]
    pub(super) drain: f64,
    /// MQTT version: 311 or 5.
    #[arg(short = 'V', long = "protocol-version", default_value = "311")]
    pub(super) protocol_version: String,
    /// User name.
    #[arg(short = 'u', long)]
    pub(super) username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    pub(super) password: Option<String>,
    /// Publishers (`pairs`: the number of pairs).
    #[arg(long)]
    pub(super) pubs: Option<usize>,
    /// Subscribers (`shared`: members of the group).
    #[arg(long)]
    pub(super) subs: Option<usize>,
    /// Connections for `conn`.
    #[arg(short = 'c', long)]
    pub(super) conns: Option<usize>,
    /// Topic prefix [default: hermod-bench/<pid>].
    #[arg(short = 't', long)]
    pub(super) topic: Option<String>,
    /// Client id prefix [default: hb<pid>-].
    #[arg(short = 'i', long = "id-prefix")]
    pub(super) id_prefix: Option<String>,
    /// Local source addresses, comma separated, used in turn (so a connection test is not capped by ephemeral ports).
    #[arg(long, value_delimiter = ',')]
    pub(super) bind: Vec<IpAddr>,
    /// Keep alive in seconds (PINGREQ at 3/4 of it).
    #[arg(short = 'k', long, default_value_t = 60)]
    pub(super) keepalive: u16,
    /// Connection handshakes in flight at once (above ~100, Mosquitto's listen backlog overflows
    /// and SYN retransmits add 1 s to some connects).
    #[arg(long, default_value_t = 64)]
    pub(super) concurrency: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub(super) json: bool,
    /// No progress lines.
    #[arg(long)]
    pub(super) quiet: bool,
    /// Connect over TLS, trusting the CA certificate(s) in FILE (PEM), as mosquitto_pub does.
    #[arg(long, value_name = "FILE", help_heading = "TLS and WebSocket")]
    pub(super) cafile: Option<PathBuf>,
    /// Client certificate (PEM) for TLS, with --key.
    #[arg(long, value_name = "FILE", help_heading = "TLS and WebSocket")]
    pub(super) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", help_heading = "TLS and WebSocket")]
    pub(super) key: Option<PathBuf>,
    /// Do not check that the server certificate names the host (its chain is still verified).
    #[arg(long, help_heading = "TLS and WebSocket")]
    pub(super) insecure: bool,
    /// MQTT over WebSocket (binary frames, subprotocol "mqtt"); over TLS (wss) with --cafile.
    #[arg(long, help_heading = "TLS and WebSocket")]
    pub(super) ws: bool,
    /// WebSocket path, with --ws [default: /mqtt].
    #[arg(long, value_name = "PATH", help_heading = "TLS and WebSocket")]
    pub(super) ws_path: Option<String>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub(super) help: Option<bool>,
}

impl BenchArgs {
    /// Flag checks that clap does not do.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        let args = self;
        if args.cafile.is_none() {
            for (given, flag) in [
                (args.cert.is_some(), "--cert"),
                (args.key.is_some(), "--key"),
                (args.insecure, "--insecure"),
            ] {
                if given {
                    bail!("{flag} needs --cafile (TLS is on when --cafile is given)");
                }
            }
        }
        match (&args.cert, &args.key) {
            (Some(_), None) => bail!("--cert needs --key (the client certificate's private key)"),
            (None, Some(_)) => bail!("--key needs --cert"),
            _ => {}
        }
        if let Some(path) = &args.ws_path {
            if !args.ws {
                bail!("--ws-path needs --ws");
            }
            transport::check_ws_path(path)?;
        }
        if !(args.duration > 0.0 && args.duration.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
        if let Some(r) = args.rate
            && !(r > 0.0 && r.is_finite())
        {
            bail!("--rate must be positive");
        }
        Ok(())
    }
}

pub(super) fn version_of(s: &str) -> anyhow::Result<ProtocolVersion> {
    Ok(match s {
        "311" | "mqttv311" | "3.1.1" | "4" => ProtocolVersion::V311,
        "5" | "mqttv5" | "50" | "5.0" => ProtocolVersion::V5,
        "31" | "mqttv31" | "3" => ProtocolVersion::V31,
        _ => bail!("unknown protocol version {s:?}: use 311 or 5"),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &str) -> BenchArgs {
        let argv = std::iter::once("bench").chain(args.split_whitespace());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.bench,
            Err(e) => panic!("{args}: {e}"),
        }
    }

    fn refused(args: &str) -> String {
        match parse(args).check() {
            Ok(()) => panic!("{args}: accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tls_and_websocket_flags() {
        let a = parse("pairs --cafile ca.pem --cert c.pem --key c.key --insecure");
        assert!(a.check().is_ok());
        assert_eq!(a.cafile.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert_eq!(a.cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(a.key.as_deref(), Some(std::path::Path::new("c.key")));
        assert!(a.insecure && !a.ws);
        let a = parse("conn --ws --ws-path /ws");
        assert!(a.check().is_ok());
        assert!(a.ws);
        assert_eq!(a.ws_path.as_deref(), Some("/ws"));
        assert!(parse("pairs --ws --cafile ca.pem").check().is_ok());
        assert!(parse("pairs").check().is_ok());
    }

    #[test]
    fn tls_and_websocket_flags_refused() {
        for (args, want) in [
            ("pairs --cert c.pem --key c.key", "--cert needs --cafile"),
            ("pairs --key c.key", "--key needs --cafile"),
            ("pairs --insecure", "--insecure needs --cafile"),
            ("pairs --cafile ca.pem --cert c.pem", "--cert needs --key"),
            ("pairs --cafile ca.pem --key c.key", "--key needs --cert"),
            ("pairs --ws-path /mqtt", "--ws-path needs --ws"),
            ("pairs --ws --ws-path mqtt", "expected an absolute path"),
        ] {
            let e = refused(args);
            assert!(e.contains(want), "{args}: {e}");
        }
    }
}
