//! `hermod bench`: a load generator for any MQTT broker.
//!
//! Scenarios: `pairs` (P publisher→subscriber pairs, one topic each), `fanin` (P publishers → S
//! subscribers of one topic, S = 1 by default), `fanout` (P = 1 publisher → S subscribers),
//! `shared` (P publishers → a `$share` group of S members) and `conn` (open C idle connections,
//! optionally at a given rate, and hold them).
//!
//! Every payload starts with the time (ns since the run's base instant) at which it was meant to
//! be sent, so end-to-end latency is measured by the subscriber with no clock sync. Under
//! `--rate` the schedule is open loop and the stamp is the *intended* send time, so a stalled
//! broker cannot hide latency (no coordinated omission). `--window` caps the messages sent but
//! not yet received across all publishers, so an unlimited run measures a sustainable rate
//! rather than a burst into socket buffers.
//!
//! Layout: [`wire`] (handshakes, PUBLISH template, in-place scanner), [`engine`] (the
//! per-connection loop, flow control, counters), [`stats`] (summary, JSON).

mod engine;
mod stats;
mod wire;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use hermod_client::ConnectOptions;
use hermod_proto::{ProtocolVersion, QoS};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use engine::{Established, Outcome, Phase, PublishRole, Role, Shared};
use stats::{ConnectStats, Latency, Summary, si};

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
    scenario: Scenario,
    /// Broker host.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// QoS of publishes and subscriptions.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes (at least 8: the timestamp).
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// Total publish rate in messages/s over all publishers, open loop (`conn`: connects/s). Default: unlimited.
    #[arg(short = 'r', long, value_name = "MSGS/S")]
    rate: Option<f64>,
    /// Cap on messages sent but not yet received, over all publishers; 0: no cap.
    #[arg(short = 'w', long, default_value_t = 1000)]
    window: u32,
    /// Seconds to publish (`conn`: to hold the connections).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait after the run for messages still in flight.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// MQTT version: 311 or 5.
    #[arg(short = 'V', long = "protocol-version", default_value = "311")]
    protocol_version: String,
    /// User name.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    password: Option<String>,
    /// Publishers (`pairs`: the number of pairs).
    #[arg(long)]
    pubs: Option<usize>,
    /// Subscribers (`shared`: members of the group).
    #[arg(long)]
    subs: Option<usize>,
    /// Connections for `conn`.
    #[arg(short = 'c', long)]
    conns: Option<usize>,
    /// Topic prefix [default: hermod-bench/<pid>].
    #[arg(short = 't', long)]
    topic: Option<String>,
    /// Client id prefix [default: hb<pid>-].
    #[arg(short = 'i', long = "id-prefix")]
    id_prefix: Option<String>,
    /// Local source addresses, comma separated, used in turn (so a connection test is not capped by ephemeral ports).
    #[arg(long, value_delimiter = ',')]
    bind: Vec<IpAddr>,
    /// Keep alive in seconds (PINGREQ at 3/4 of it).
    #[arg(short = 'k', long, default_value_t = 60)]
    keepalive: u16,
    /// Connection handshakes in flight at once (above ~100, Mosquitto's listen backlog overflows
    /// and SYN retransmits add 1 s to some connects).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// CA file for TLS: not supported yet (the hermod crate has no TLS stack of its own).
    #[arg(long, value_name = "FILE")]
    cafile: Option<std::path::PathBuf>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// One client of the plan.
#[derive(Debug, Clone)]
struct ClientSpec {
    id: String,
    subscribe: Option<String>,
    publish: Option<String>,
    /// Index among publishers (rate schedule phase).
    pub_index: usize,
}

#[derive(Debug)]
struct Plan {
    clients: Vec<ClientSpec>,
    publishers: usize,
    subscribers: usize,
    fanout: u32,
}

/// Topic or filter of client `i`, from the prefix and the single shared topic.
type TopicFn = fn(&str, &str, usize) -> String;

fn plan(args: &BenchArgs) -> anyhow::Result<Plan> {
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
        Scenario::Conn => (0, 0),
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
        Scenario::Conn => (0, |_, _, _| String::new(), |_, _, _| String::new()),
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

/// Runs `hermod bench`; returns the exit code.
pub(crate) async fn run(args: BenchArgs) -> u8 {
    match run_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn version_of(s: &str) -> anyhow::Result<ProtocolVersion> {
    Ok(match s {
        "311" | "mqttv311" | "3.1.1" | "4" => ProtocolVersion::V311,
        "5" | "mqttv5" | "50" | "5.0" => ProtocolVersion::V5,
        "31" | "mqttv31" | "3" => ProtocolVersion::V31,
        _ => bail!("unknown protocol version {s:?}: use 311 or 5"),
    })
}

#[allow(clippy::too_many_lines)]
async fn run_inner(args: BenchArgs) -> anyhow::Result<u8> {
    if args.cafile.is_some() {
        bail!(
            "--cafile: TLS is not supported by hermod bench yet (the hermod crate links no TLS stack); use a plain TCP listener"
        );
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if let Some(r) = args.rate
        && !(r > 0.0 && r.is_finite())
    {
        bail!("--rate must be positive");
    }
    let version = version_of(&args.protocol_version)?;
    let qos = QoS::from_u8(args.qos).context("QoS must be 0, 1 or 2")?;
    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("resolving {}", args.host))?
        .next()
        .with_context(|| format!("{} has no address", args.host))?;
    let plan = plan(&args)?;
    let mut opts = ConnectOptions::new("")
        .version(version)
        .keep_alive(args.keepalive);
    if let Some(u) = &args.username {
        opts = opts.credentials(
            u.clone(),
            args.password
                .as_ref()
                .map(|p| Bytes::from(p.clone().into_bytes())),
        );
    }
    let connect_timeout = Duration::from_secs(30);

    let window = (args.window > 0 && plan.fanout > 0)
        .then(|| Semaphore::new(args.window as usize * plan.fanout as usize));
    let shared = Arc::new(Shared {
        base: Instant::now(),
        run_start_ns: Default::default(),
        counters: Default::default(),
        window,
        fanout: plan.fanout.max(1),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let keep_alive = Duration::from_secs(u64::from(args.keepalive));
    let quiet = args.quiet;

    if args.scenario == Scenario::Conn {
        return run_conn(
            &args, addr, plan, opts, shared, phase_tx, phase_rx, keep_alive,
        )
        .await;
    }

    // Setup: subscribers first (and their SUBACKs), then publishers.
    let setup_start = Instant::now();
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut set = JoinSet::new();
    for (idx, spec) in plan.clients.iter().enumerate() {
        let (opts, limit, spec, bind) = (
            opts.clone(),
            limit.clone(),
            spec.clone(),
            pick_bind(&args.bind, idx),
        );
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let r = establish(addr, bind, &opts, &spec, qos, connect_timeout).await;
            (idx, r)
        });
    }
    let mut established: Vec<Option<Established>> = (0..plan.clients.len()).map(|_| None).collect();
    while let Some(j) = set.join_next().await {
        let (idx, r) = j.context("setup task")?;
        let conn = r.with_context(|| format!("client {}", plan.clients[idx].id))?;
        established[idx] = Some(conn);
    }
    if !quiet {
        eprintln!(
            "{} subscriber(s) and {} publisher(s) connected to {addr} in {:.2} s",
            plan.subscribers,
            plan.publishers,
            setup_start.elapsed().as_secs_f64()
        );
    }

    // Roles and tasks.
    let v5 = version.is_v5();
    let per_pub_rate = args.rate.map(|r| r / plan.publishers as f64);
    let mut tasks = Vec::with_capacity(plan.clients.len());
    for (spec, conn) in plan.clients.iter().zip(established) {
        let Some(conn) = conn else { continue };
        let role = Role {
            subscriber: spec.subscribe.is_some(),
            track_gaps: spec.subscribe.is_some() && args.scenario != Scenario::Shared,
            publish: spec.publish.as_ref().map(|topic| PublishRole {
                template: wire::PublishTemplate::new(
                    topic,
                    args.qos,
                    version,
                    args.size,
                    spec.pub_index as u32,
                ),
                qos: args.qos,
                schedule: per_pub_rate.map(|r| {
                    let interval = 1e9 / r;
                    (
                        interval,
                        interval * spec.pub_index as f64 / plan.publishers as f64,
                    )
                }),
            }),
        };
        shared.counters.connected.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(engine::drive(
            conn,
            v5,
            role,
            shared.clone(),
            phase_rx.clone(),
            keep_alive,
        )));
    }

    // Run.
    let c = &shared.counters;
    let run_start = Instant::now();
    shared
        .run_start_ns
        .store(shared.now_ns(), Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Run);
    let duration = Duration::from_secs_f64(args.duration);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut last_sent, mut last_recv, mut last_print) = (0u64, 0u64, Instant::now());
    let (mut progress_at, mut last_progress_recv) = (Instant::now(), 0u64);
    let (sent_at_end, recv_at_end);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (sent, recv) = (
            c.sent.load(Ordering::Relaxed),
            c.received.load(Ordering::Relaxed),
        );
        // A message lost at the tail of a stream (no later one reveals the gap) would leak its
        // window credits: after a stall with deliveries outstanding (300 ms at QoS 0, 1 s
        // above), write the outstanding ones off.
        let stall = Duration::from_millis(if args.qos == 0 { 300 } else { 1000 });
        if recv != last_progress_recv {
            (progress_at, last_progress_recv) = (now, recv);
        } else if now - progress_at > stall {
            if let Some(sem) = &shared.window {
                let expected = sent * u64::from(plan.fanout);
                let settled =
                    recv + c.gaps.load(Ordering::Relaxed) + c.written_off.load(Ordering::Relaxed);
                let outstanding = expected.saturating_sub(settled);
                if outstanding > 0 {
                    sem.add_permits(outstanding as usize);
                    c.written_off.fetch_add(outstanding, Ordering::Relaxed);
                }
            }
            progress_at = now;
        }
        if now - run_start >= duration {
            (sent_at_end, recv_at_end) = (sent, recv);
            break;
        }
        if !quiet && now - last_print >= Duration::from_secs(1) {
            let dt = (now - last_print).as_secs_f64();
            eprintln!(
                "[{:>4.0}s] sent {} ({}/s)  received {} ({}/s)  in flight {}  connections {}{}",
                (now - run_start).as_secs_f64(),
                sent,
                si((sent - last_sent) as f64 / dt),
                recv,
                si((recv - last_recv) as f64 / dt),
                (sent * u64::from(plan.fanout))
                    .saturating_sub(recv + c.gaps.load(Ordering::Relaxed))
                    / u64::from(plan.fanout.max(1)),
                c.connected.load(Ordering::Relaxed),
                match c.errors.load(Ordering::Relaxed) {
                    0 => String::new(),
                    e => format!("  errors {e}"),
                }
            );
            (last_sent, last_recv, last_print) = (sent, recv, now);
        }
    }
    let elapsed = run_start.elapsed().as_secs_f64();

    // Drain: wait for what is in flight.
    let _ = phase_tx.send(Phase::Drain);
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    loop {
        let sent = c.sent.load(Ordering::Relaxed);
        let settled = c.received.load(Ordering::Relaxed) + c.gaps.load(Ordering::Relaxed);
        let all_in = settled >= sent * u64::from(plan.fanout)
            && (args.qos == 0
                || c.acked.load(Ordering::Relaxed) + c.nacked.load(Ordering::Relaxed) >= sent);
        if all_in || Instant::now() >= drain_until || c.connected.load(Ordering::Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = phase_tx.send(Phase::Stop);
    let mut latency = engine::new_histogram();
    let mut first_error = None;
    for t in tasks {
        if let Ok(Ok(Outcome { latency: l, error })) =
            tokio::time::timeout(Duration::from_secs(5), t).await
        {
            if let Some(l) = l {
                let _ = latency.add(&l);
            }
            if first_error.is_none() {
                first_error = error;
            }
        }
    }
    if let Some(e) = &first_error {
        eprintln!("first connection error: {e}");
    }

    let sent = c.sent.load(Ordering::Relaxed);
    let received = c.received.load(Ordering::Relaxed);
    let expected = sent * u64::from(plan.fanout);
    let summary = Summary {
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        broker: addr.to_string(),
        protocol: if v5 { "5".into() } else { "3.1.1".into() },
        qos: args.qos,
        size: args.size.max(wire::STAMP),
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        fanout: plan.fanout,
        window: args.window,
        rate: args.rate,
        duration_s: round2(elapsed),
        sent,
        received,
        expected,
        lost: expected.saturating_sub(received),
        gaps: c.gaps.load(Ordering::Relaxed),
        reordered: c.reordered.load(Ordering::Relaxed),
        acked: c.acked.load(Ordering::Relaxed),
        nacked: c.nacked.load(Ordering::Relaxed),
        sent_per_sec: (sent_at_end as f64 / elapsed).round(),
        received_per_sec: (recv_at_end as f64 / elapsed).round(),
        errors: c.errors.load(Ordering::Relaxed),
        latency_ms: Latency::from_ns(&latency),
        connect: None,
    };
    output(&args, &summary)?;
    Ok(u8::from(
        summary.errors > 0 || (args.qos > 0 && summary.lost > 0),
    ))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn output(args: &BenchArgs, summary: &Summary) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, summary)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", summary.text())?;
    }
    Ok(())
}

fn pick_bind(binds: &[IpAddr], i: usize) -> Option<IpAddr> {
    (!binds.is_empty()).then(|| binds[i % binds.len()])
}

async fn establish(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    opts: &ConnectOptions,
    spec: &ClientSpec,
    qos: QoS,
    timeout: Duration,
) -> anyhow::Result<Established> {
    let mut stream = tokio::time::timeout(timeout, wire::open(addr, bind))
        .await
        .map_err(|_| anyhow::anyhow!("TCP connect timed out"))?
        .with_context(|| match bind {
            Some(b) => format!("connecting to {addr} from {b}"),
            None => format!("connecting to {addr}"),
        })?;
    let mut opts = opts.clone();
    opts.client_id.clone_from(&spec.id);
    let mut leftover = BytesMut::with_capacity(256);
    let ack = wire::handshake(&mut stream, &opts, &mut leftover, timeout).await?;
    if let Some(filter) = &spec.subscribe {
        wire::subscribe(
            &mut stream,
            &mut leftover,
            opts.version,
            filter,
            qos,
            timeout,
        )
        .await?;
    }
    Ok(Established {
        stream,
        leftover,
        receive_maximum: ack.properties.receive_maximum.unwrap_or(u16::MAX).max(1),
    })
}

/// The connection test: open C connections (at --rate/s if given, --concurrency handshakes at a
/// time), hold them for --duration, report the connect rate and CONNACK times.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
async fn run_conn(
    args: &BenchArgs,
    addr: SocketAddr,
    plan: Plan,
    opts: ConnectOptions,
    shared: Arc<Shared>,
    phase_tx: watch::Sender<Phase>,
    phase_rx: watch::Receiver<Phase>,
    keep_alive: Duration,
) -> anyhow::Result<u8> {
    let quiet = args.quiet;
    let total = plan.clients.len();
    let hist = Arc::new(Mutex::new(engine::new_histogram()));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let c = &shared.counters;
    let _ = phase_tx.send(Phase::Run);
    let start = Instant::now();
    let last_connected = Arc::new(Mutex::new(start));
    let mut tasks = Vec::with_capacity(total);
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let timeout = Duration::from_secs(30);
    let v5 = opts.version.is_v5();
    let (mut last_print, mut last_count) = (Instant::now(), 0u64);
    for (i, spec) in plan.clients.into_iter().enumerate() {
        if let Some(iv) = interval {
            tokio::time::sleep_until((start + iv.mul_f64(i as f64)).into()).await;
        }
        let permit = limit.clone().acquire_owned().await.context("semaphore")?;
        let (opts, bind, shared2, rx) = (
            opts.clone(),
            pick_bind(&args.bind, i),
            shared.clone(),
            phase_rx.clone(),
        );
        let (hist, first_error, last_connected) =
            (hist.clone(), first_error.clone(), last_connected.clone());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = establish(addr, bind, &opts, &spec, QoS::AtMostOnce, timeout).await;
            match r {
                Ok(conn) => {
                    let now = Instant::now();
                    if let Ok(mut h) = hist.lock() {
                        h.saturating_record(
                            u64::try_from((now - t0).as_nanos()).unwrap_or(u64::MAX),
                        );
                    }
                    if let Ok(mut l) = last_connected.lock() {
                        *l = (*l).max(now);
                    }
                    shared2.counters.connected.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    let role = Role {
                        publish: None,
                        subscriber: false,
                        track_gaps: false,
                    };
                    engine::drive(conn, v5, role, shared2, rx, keep_alive).await
                }
                Err(e) => {
                    shared2
                        .counters
                        .connect_failed
                        .fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    if let Ok(mut f) = first_error.lock()
                        && f.is_none()
                    {
                        *f = Some(format!("{e:#}"));
                    }
                    Outcome::default()
                }
            }
        }));
        if !quiet && last_print.elapsed() >= Duration::from_secs(1) {
            let n = c.connected.load(Ordering::Relaxed);
            eprintln!(
                "[{:>4.0}s] connections {} (+{}/s)  failed {}",
                start.elapsed().as_secs_f64(),
                n,
                si((n.saturating_sub(last_count)) as f64 / last_print.elapsed().as_secs_f64()),
                c.connect_failed.load(Ordering::Relaxed)
            );
            (last_print, last_count) = (Instant::now(), n);
        }
    }
    // Wait for the last handshakes.
    let _ = tokio::time::timeout(
        timeout + Duration::from_secs(5),
        limit.acquire_many(args.concurrency.max(1) as u32),
    )
    .await;
    let established = c.connected.load(Ordering::Relaxed) + c.errors.load(Ordering::Relaxed);
    let failed = c.connect_failed.load(Ordering::Relaxed);
    let connect_secs = last_connected
        .lock()
        .map(|l| (*l - start).as_secs_f64())
        .unwrap_or_default();
    if !quiet {
        eprintln!(
            "{established} of {total} connections established in {connect_secs:.2} s ({failed} failed); holding for {} s",
            args.duration
        );
    }
    // Hold.
    let hold_until = Instant::now() + Duration::from_secs_f64(args.duration);
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_secs(1).min(hold_until - Instant::now())).await;
        if !quiet {
            eprintln!(
                "[{:>4.0}s] connections {}  broken {}",
                start.elapsed().as_secs_f64(),
                c.connected.load(Ordering::Relaxed),
                c.errors.load(Ordering::Relaxed)
            );
        }
    }
    let held = c.connected.load(Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Stop);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let connect_latency = hist.lock().ok().and_then(|h| Latency::from_ns(&h));
    let summary = Summary {
        scenario: "conn".into(),
        broker: addr.to_string(),
        protocol: if opts.version.is_v5() {
            "5".into()
        } else {
            "3.1.1".into()
        },
        qos: 0,
        size: 0,
        publishers: 0,
        subscribers: 0,
        fanout: 0,
        window: 0,
        rate: args.rate,
        duration_s: args.duration,
        sent: 0,
        received: 0,
        expected: 0,
        lost: 0,
        gaps: 0,
        reordered: 0,
        acked: 0,
        nacked: 0,
        sent_per_sec: 0.0,
        received_per_sec: 0.0,
        errors: c.errors.load(Ordering::Relaxed),
        latency_ms: None,
        connect: Some(ConnectStats {
            attempted: total as u64,
            established,
            failed,
            seconds: round2(connect_secs),
            per_sec: if connect_secs > 0.0 {
                (established as f64 / connect_secs).round()
            } else {
                0.0
            },
            latency_ms: connect_latency,
            held,
            first_error: first_error.lock().ok().and_then(|f| f.clone()),
        }),
    };
    output(args, &summary)?;
    Ok(u8::from(failed > 0 || held < established))
}
