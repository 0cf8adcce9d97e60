//! Scenario → clients: who subscribes to what, who publishes where, and the fan-out.

use anyhow::{Context, bail};

use super::args::{BenchArgs, Scenario};

/// One client of the plan.
#[derive(Debug, Clone)]
pub(super) struct ClientSpec {
    pub(super) id: String,
    pub(super) subscribe: Option<String>,
    pub(super) publish: Option<String>,
    /// Index among publishers (rate schedule phase).
    pub(super) pub_index: usize,
}

/// What a scenario turns into: its clients (subscribers first) and message counts.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) clients: Vec<ClientSpec>,
    pub(super) publishers: usize,
    pub(super) subscribers: usize,
    pub(super) fanout: u32,
}

/// Topic or filter of client `i`, from the prefix and the single shared topic.
type TopicFn = fn(&str, &str, usize) -> String;

/// Builds the clients of `args.scenario` from the flags and their defaults.
pub(super) fn plan(args: &BenchArgs) -> anyhow::Result<Plan> {
    let pid = std::process::id();
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("hermod-bench/{pid}"));
    let prefix = args
        .id_prefix
        .clone()
        .unwrap_or_else(|| format!("hb{pid}-"));
    let (p, s) = match args.scenario {
        Scenario::Pairs => {
            let n = args.pubs.or(args.subs).unwrap_or(64);
            (n, n)
        }
        Scenario::Fanin => (args.pubs.unwrap_or(32), args.subs.unwrap_or(1)),
        Scenario::Fanout => (args.pubs.unwrap_or(1), args.subs.unwrap_or(64)),
        Scenario::Shared => (args.pubs.unwrap_or(32), args.subs.unwrap_or(4)),
        Scenario::Conn | Scenario::Forwarder => (0, 0),
    };
    let mut clients = Vec::new();
    // (deliveries per message, subscription filter of subscriber i, topic of publisher i)
    let one = format!("{topic}/0");
    let (fanout, sub_filter, pub_topic): (u32, TopicFn, TopicFn) = match args.scenario {
        Scenario::Pairs => (
            1,
            |t, _, i| format!("{t}/{i}"),
            |t, _, i| format!("{t}/{i}"),
        ),
        Scenario::Fanin | Scenario::Fanout => (
            u32::try_from(s).context("too many subscribers")?,
            |_, one, _| one.to_owned(),
            |_, one, _| one.to_owned(),
        ),
        Scenario::Shared => (
            1,
            |_, one, _| format!("$share/hermod-bench/{one}"),
            |_, one, _| one.to_owned(),
        ),
        Scenario::Conn | Scenario::Forwarder => {
            (0, |_, _, _| String::new(), |_, _, _| String::new())
        }
    };
    let sub_filter = |i| sub_filter(&topic, &one, i);
    let pub_topic = |i| pub_topic(&topic, &one, i);
    if args.scenario == Scenario::Conn {
        for i in 0..args.conns.unwrap_or(1000) {
            clients.push(ClientSpec {
                id: format!("{prefix}c{i}"),
                subscribe: None,
                publish: None,
                pub_index: 0,
            });
        }
    } else {
        if p == 0 || s == 0 {
            bail!("--pubs and --subs must be at least 1");
        }
        for i in 0..s {
            clients.push(ClientSpec {
                id: format!("{prefix}s{i}"),
                subscribe: Some(sub_filter(i)),
                publish: None,
                pub_index: 0,
            });
        }
        for i in 0..p {
            clients.push(ClientSpec {
                id: format!("{prefix}p{i}"),
                subscribe: None,
                publish: Some(pub_topic(i)),
                pub_index: i,
            });
        }
    }
    Ok(Plan {
        clients,
        publishers: p,
        subscribers: s,
        fanout,
    })
}
