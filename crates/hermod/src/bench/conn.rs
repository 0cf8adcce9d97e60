//! The `conn` scenario: open C idle connections, hold them, report connect rate and CONNACK times.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use hermod_proto::QoS;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::args::BenchArgs;
use super::engine::{self, Counters, Outcome, Phase, Role};
use super::plan::{ClientSpec, Plan};
use super::run::{CONNECT_TIMEOUT, Ctx, establish, output, pick_bind, round2};
use super::stats::{ConnectStats, Latency, Summary, si};

/// What the connection tasks record while connecting.
#[derive(Debug, Clone)]
struct Records {
    /// CONNACK times (ns).
    hist: Arc<Mutex<Histogram<u64>>>,
    first_error: Arc<Mutex<Option<String>>>,
    /// When the last connection was established.
    last_connected: Arc<Mutex<Instant>>,
}

/// What the connect phase leaves behind.
#[derive(Debug)]
struct Opened {
    start: Instant,
    tasks: Vec<JoinHandle<Outcome>>,
    records: Records,
}

/// The connection test: open C connections (at --rate/s if given, --concurrency handshakes at a
/// time), hold them for --duration, report the connect rate and CONNACK times.
pub(super) async fn run_conn(args: &BenchArgs, plan: Plan, ctx: Ctx) -> anyhow::Result<u8> {
    let total = plan.clients.len();
    let c = &ctx.shared.counters;
    let opened = open_all(args, plan, &ctx).await?;
    let established = c.connected.load(Ordering::Relaxed) + c.errors.load(Ordering::Relaxed);
    let failed = c.connect_failed.load(Ordering::Relaxed);
    let connect_secs = opened
        .records
        .last_connected
        .lock()
        .map(|l| (*l - opened.start).as_secs_f64())
        .unwrap_or_default();
    if !args.quiet {
        eprintln!(
            "{established} of {total} connections established in {connect_secs:.2} s ({failed} failed); holding for {} s",
            args.duration
        );
    }
    hold(args, c, opened.start).await;
    let held = c.connected.load(Ordering::Relaxed);
    let _ = ctx.phase_tx.send(Phase::Stop);
    for t in opened.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let records = &opened.records;
    let connect = ConnectStats {
        attempted: total as u64,
        established,
        failed,
        seconds: round2(connect_secs),
        per_sec: if connect_secs > 0.0 {
            (established as f64 / connect_secs).round()
        } else {
            0.0
        },
        latency_ms: records.hist.lock().ok().and_then(|h| Latency::from_ns(&h)),
        held,
        first_error: records.first_error.lock().ok().and_then(|f| f.clone()),
    };
    output(args, &conn_summary(args, &ctx, connect))?;
    Ok(u8::from(failed > 0 || held < established))
}

/// Connect phase: opens the connections, printing progress each second, then waits for the last
/// handshakes.
async fn open_all(args: &BenchArgs, plan: Plan, ctx: &Ctx) -> anyhow::Result<Opened> {
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let c = &ctx.shared.counters;
    let _ = ctx.phase_tx.send(Phase::Run);
    let start = Instant::now();
    let records = Records {
        hist: Arc::new(Mutex::new(engine::new_histogram())),
        first_error: Arc::default(),
        last_connected: Arc::new(Mutex::new(start)),
    };
    let mut tasks = Vec::with_capacity(plan.clients.len());
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let (mut last_print, mut last_count) = (Instant::now(), 0u64);
    for (i, spec) in plan.clients.into_iter().enumerate() {
        if let Some(iv) = interval {
            tokio::time::sleep_until((start + iv.mul_f64(i as f64)).into()).await;
        }
        let permit = limit.clone().acquire_owned().await.context("semaphore")?;
        tasks.push(spawn_one(
            ctx,
            spec,
            pick_bind(&args.bind, i),
            permit,
            &records,
        ));
        if !args.quiet && last_print.elapsed() >= Duration::from_secs(1) {
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
        CONNECT_TIMEOUT + Duration::from_secs(5),
        limit.acquire_many(args.concurrency.max(1) as u32),
    )
    .await;
    Ok(Opened {
        start,
        tasks,
        records,
    })
}

/// One connection's task: connects (recording the time or the error, then releasing `permit`)
/// and holds the connection idle until the run stops.
fn spawn_one(
    ctx: &Ctx,
    spec: ClientSpec,
    bind: Option<std::net::IpAddr>,
    permit: OwnedSemaphorePermit,
    records: &Records,
) -> JoinHandle<Outcome> {
    let (connector, target, opts, shared, rx, keep_alive, records) = (
        ctx.connector.clone(),
        ctx.target.clone(),
        ctx.opts.clone(),
        ctx.shared.clone(),
        ctx.phase_rx.clone(),
        ctx.keep_alive,
        records.clone(),
    );
    let v5 = opts.version.is_v5();
    tokio::spawn(async move {
        let t0 = Instant::now();
        let r = establish(&connector, &target, bind, &opts, &spec, QoS::AtMostOnce).await;
        match r {
            Ok(conn) => {
                let now = Instant::now();
                if let Ok(mut h) = records.hist.lock() {
                    h.saturating_record(u64::try_from((now - t0).as_nanos()).unwrap_or(u64::MAX));
                }
                if let Ok(mut l) = records.last_connected.lock() {
                    *l = (*l).max(now);
                }
                shared.counters.connected.fetch_add(1, Ordering::Relaxed);
                drop(permit);
                let role = Role {
                    publish: None,
                    subscriber: false,
                    track_gaps: false,
                };
                engine::drive(conn, v5, role, shared, rx, keep_alive).await
            }
            Err(e) => {
                shared
                    .counters
                    .connect_failed
                    .fetch_add(1, Ordering::Relaxed);
                drop(permit);
                if let Ok(mut f) = records.first_error.lock()
                    && f.is_none()
                {
                    *f = Some(format!("{e:#}"));
                }
                Outcome::default()
            }
        }
    })
}

/// Hold: keeps the connections open for `--duration`, printing how many are still up.
async fn hold(args: &BenchArgs, c: &Counters, start: Instant) {
    let hold_until = Instant::now() + Duration::from_secs_f64(args.duration);
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_secs(1).min(hold_until - Instant::now())).await;
        if !args.quiet {
            eprintln!(
                "[{:>4.0}s] connections {}  broken {}",
                start.elapsed().as_secs_f64(),
                c.connected.load(Ordering::Relaxed),
                c.errors.load(Ordering::Relaxed)
            );
        }
    }
}

fn conn_summary(args: &BenchArgs, ctx: &Ctx, connect: ConnectStats) -> Summary {
    Summary {
        scenario: "conn".into(),
        broker: ctx.target.addr.to_string(),
        transport: ctx.connector.name().into(),
        protocol: if ctx.opts.version.is_v5() {
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
        errors: ctx.shared.counters.errors.load(Ordering::Relaxed),
        latency_ms: None,
        connect: Some(connect),
    }
}
