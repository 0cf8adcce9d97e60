//! Driving a run: checking the flags, connecting, and the traffic scenarios' run, drain and report.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use hermod_client::ConnectOptions;
use hermod_proto::QoS;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::args::{BenchArgs, Scenario, version_of};
use super::conn::run_conn;
use super::engine::{self, Established, Outcome, Phase, PublishRole, Role, Shared};
use super::plan::{ClientSpec, Plan, plan};
use super::stats::{Latency, Summary, si};
use super::transport::{Connector, Target};
use super::wire;

/// Time allowed for a TCP connect, and for each of CONNACK and SUBACK.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection of a run shares, once the flags are checked.
#[derive(Debug)]
pub(super) struct Ctx {
    /// Where publishers (and `conn`'s connections) connect.
    pub(super) target: Target,
    /// Where subscribers connect (`--sub-host`/`--sub-port`; `target` by default).
    pub(super) sub_target: Target,
    /// TCP, TLS, WebSocket or WebSocket over TLS.
    pub(super) connector: Connector,
    /// CONNECT options; the client id is set per connection.
    pub(super) opts: ConnectOptions,
    pub(super) shared: Arc<Shared>,
    pub(super) phase_tx: watch::Sender<Phase>,
    pub(super) phase_rx: watch::Receiver<Phase>,
    pub(super) keep_alive: Duration,
}

/// Runs `hermod bench`; returns the exit code.
pub(crate) async fn run(args: BenchArgs) -> u8 {
    if args.scenario == super::args::Scenario::Forwarder {
        if args.cafile.is_some() || args.ws {
            eprintln!("Error: the forwarder serves plain TCP only (no --cafile, no --ws)");
            return 1;
        }
        // On a thread of its own, off this runtime: the forwarder is single-threaded.
        let (host, port) = (args.host.clone(), args.port);
        let served =
            tokio::task::spawn_blocking(move || super::forwarder::serve(&host, port)).await;
        return match served {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                eprintln!("Error: {e:#}");
                1
            }
            Err(e) => {
                eprintln!("Error: the forwarder stopped: {e}");
                1
            }
        };
    }
    match run_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

/// The transport the flags ask for; the TLS files are read here, once.
fn connector(args: &BenchArgs) -> anyhow::Result<Connector> {
    let tls = match &args.cafile {
        None => None,
        Some(cafile) => Some(
            crate::tls::client_config(&crate::tls::ClientTls {
                cafile: Some(cafile),
                ca_flag: "--cafile",
                identity: args.cert.as_deref().zip(args.key.as_deref()),
                insecure: args.insecure,
            })
            .map_err(anyhow::Error::msg)?,
        ),
    };
    let ws_path = args.ws.then(|| {
        args.ws_path
            .clone()
            .unwrap_or_else(|| hermod_broker::transport::DEFAULT_WS_PATH.to_owned())
    });
    Ok(Connector::new(tls, ws_path))
}

async fn run_inner(args: BenchArgs) -> anyhow::Result<u8> {
    args.check()?;
    let version = version_of(&args.protocol_version)?;
    let qos = QoS::from_u8(args.qos).context("QoS must be 0, 1 or 2")?;
    let addr = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("resolving {}", args.host))?
        .next()
        .with_context(|| format!("{} has no address", args.host))?;
    let sub_host = args.sub_host.as_deref().unwrap_or(args.host.as_str());
    let sub_port = args.sub_port.unwrap_or(args.port);
    let sub_addr = tokio::net::lookup_host((sub_host, sub_port))
        .await
        .with_context(|| format!("resolving {sub_host}"))?
        .next()
        .with_context(|| format!("{sub_host} has no address"))?;
    let plan = plan(&args)?;
    let connector = connector(&args)?;
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
    let ctx = Ctx {
        target: Target {
            addr,
            host: args.host.clone(),
        },
        sub_target: Target {
            addr: sub_addr,
            host: sub_host.to_owned(),
        },
        connector,
        opts,
        shared,
        phase_tx,
        phase_rx,
        keep_alive: Duration::from_secs(u64::from(args.keepalive)),
    };

    if args.scenario == Scenario::Conn {
        return run_conn(&args, plan, ctx).await;
    }

    let established = connect_all(&args, &plan, &ctx, qos).await?;
    let tasks = spawn_clients(&args, &plan, &ctx, established);
    let measured = timed_run(&args, &plan, &ctx).await;
    let latency = drain(&args, &plan, &ctx, tasks).await;
    let summary = traffic_summary(&args, &plan, &ctx, &measured, &latency);
    output(&args, &summary)?;
    Ok(u8::from(
        summary.errors > 0 || (args.qos > 0 && summary.lost > 0),
    ))
}

/// Setup: subscribers first (and their SUBACKs), then publishers.
async fn connect_all(
    args: &BenchArgs,
    plan: &Plan,
    ctx: &Ctx,
    qos: QoS,
) -> anyhow::Result<Vec<Option<Established>>> {
    let setup_start = Instant::now();
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut set = JoinSet::new();
    for (idx, spec) in plan.clients.iter().enumerate() {
        let (opts, limit, spec, bind) = (
            ctx.opts.clone(),
            limit.clone(),
            spec.clone(),
            pick_bind(&args.bind, idx),
        );
        let target = if spec.subscribe.is_some() {
            ctx.sub_target.clone()
        } else {
            ctx.target.clone()
        };
        let connector = ctx.connector.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let r = establish(&connector, &target, bind, &opts, &spec, qos).await;
            (idx, r)
        });
    }
    let mut established: Vec<Option<Established>> = (0..plan.clients.len()).map(|_| None).collect();
    while let Some(j) = set.join_next().await {
        let (idx, r) = j.context("setup task")?;
        let conn = r.with_context(|| format!("client {}", plan.clients[idx].id))?;
        established[idx] = Some(conn);
    }
    if !args.quiet {
        eprintln!(
            "{} subscriber(s) connected to {} and {} publisher(s) to {} over {} in {:.2} s",
            plan.subscribers,
            ctx.sub_target.addr,
            plan.publishers,
            ctx.target.addr,
            ctx.connector.name(),
            setup_start.elapsed().as_secs_f64()
        );
    }
    Ok(established)
}

/// Roles and tasks: one engine task per connection.
fn spawn_clients(
    args: &BenchArgs,
    plan: &Plan,
    ctx: &Ctx,
    established: Vec<Option<Established>>,
) -> Vec<JoinHandle<Outcome>> {
    let version = ctx.opts.version;
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
        ctx.shared
            .counters
            .connected
            .fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(engine::drive(
            conn,
            v5,
            role,
            ctx.shared.clone(),
            ctx.phase_rx.clone(),
            ctx.keep_alive,
        )));
    }
    tasks
}

/// What the timed run measured.
#[derive(Debug)]
struct Measured {
    /// Seconds from the start of the run to the end of the loop.
    elapsed: f64,
    /// Messages sent when `--duration` was reached.
    sent_at_end: u64,
    /// Messages received when `--duration` was reached.
    recv_at_end: u64,
}

/// Run: lets the publishers go for `--duration`, printing progress each second.
async fn timed_run(args: &BenchArgs, plan: &Plan, ctx: &Ctx) -> Measured {
    let shared = &ctx.shared;
    let c = &shared.counters;
    let run_start = Instant::now();
    shared
        .run_start_ns
        .store(shared.now_ns(), Ordering::Relaxed);
    let _ = ctx.phase_tx.send(Phase::Run);
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
        if !args.quiet && now - last_print >= Duration::from_secs(1) {
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
    Measured {
        elapsed: run_start.elapsed().as_secs_f64(),
        sent_at_end,
        recv_at_end,
    }
}

/// Drain: waits for what is in flight (at most `--drain` s), stops the tasks and merges their
/// latency histograms.
async fn drain(
    args: &BenchArgs,
    plan: &Plan,
    ctx: &Ctx,
    tasks: Vec<JoinHandle<Outcome>>,
) -> Histogram<u64> {
    let c = &ctx.shared.counters;
    let _ = ctx.phase_tx.send(Phase::Drain);
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
    let _ = ctx.phase_tx.send(Phase::Stop);
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
    latency
}

fn traffic_summary(
    args: &BenchArgs,
    plan: &Plan,
    ctx: &Ctx,
    measured: &Measured,
    latency: &Histogram<u64>,
) -> Summary {
    let c = &ctx.shared.counters;
    let elapsed = measured.elapsed;
    let sent = c.sent.load(Ordering::Relaxed);
    let received = c.received.load(Ordering::Relaxed);
    let expected = sent * u64::from(plan.fanout);
    Summary {
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        broker: ctx.target.addr.to_string(),
        transport: ctx.connector.name().into(),
        protocol: if ctx.opts.version.is_v5() {
            "5".into()
        } else {
            "3.1.1".into()
        },
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
        sent_per_sec: (measured.sent_at_end as f64 / elapsed).round(),
        received_per_sec: (measured.recv_at_end as f64 / elapsed).round(),
        errors: c.errors.load(Ordering::Relaxed),
        latency_ms: Latency::from_ns(latency),
        connect: None,
    }
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Prints the summary, as text or (`--json`) as one JSON line.
pub(super) fn output(args: &BenchArgs, summary: &Summary) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, summary)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", summary.text())?;
    }
    Ok(())
}

/// The `--bind` address for connection `i`, if any: the list is used in turn.
pub(super) fn pick_bind(binds: &[IpAddr], i: usize) -> Option<IpAddr> {
    (!binds.is_empty()).then(|| binds[i % binds.len()])
}

/// Opens one connection: TCP connect (TLS, WebSocket), CONNECT/CONNACK and, for a subscriber,
/// SUBSCRIBE/SUBACK; each step within [`CONNECT_TIMEOUT`].
pub(super) async fn establish(
    connector: &Connector,
    target: &Target,
    bind: Option<IpAddr>,
    opts: &ConnectOptions,
    spec: &ClientSpec,
    qos: QoS,
) -> anyhow::Result<Established> {
    let timeout = CONNECT_TIMEOUT;
    let mut stream = connector.connect(target, bind, timeout).await?;
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
