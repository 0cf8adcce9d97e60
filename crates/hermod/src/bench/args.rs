//! The flags of `hermod bench` (clap) and the scenario names.

use std::net::IpAddr;

use anyhow::bail;
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
                  hermod bench fanout --subs 64 --json\n  hermod bench conn -c 19000 --bind 127.0.0.2,127.0.0.3"
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
    /// CA file for TLS: not supported yet (the hermod crate has no TLS stack of its own).
    #[arg(long, value_name = "FILE")]
    pub(super) cafile: Option<std::path::PathBuf>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub(super) help: Option<bool>,
}

pub(super) fn version_of(s: &str) -> anyhow::Result<ProtocolVersion> {
    Ok(match s {
        "311" | "mqttv311" | "3.1.1" | "4" => ProtocolVersion::V311,
        "5" | "mqttv5" | "50" | "5.0" => ProtocolVersion::V5,
        "31" | "mqttv31" | "3" => ProtocolVersion::V31,
        _ => bail!("unknown protocol version {s:?}: use 311 or 5"),
    })
}
