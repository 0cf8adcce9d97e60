//! Shadow service benchmark, against a running broker (loopback only): `bench/shadow.sh` starts
//! one and runs this.
//!
//! 1. **create**: one update per thing (`reported`), for `--things` things (default 10,000);
//! 2. **updates**: `--updates` more (default 100,000), spread over the things round-robin, from
//!    `--connections` MQTT 5 clients (default 8) with `--window` requests each in flight
//!    (default 100). Each request carries a Response Topic (`bench/N`), so each client reads
//!    only its own `accepted` replies. Prints accepted updates per second;
//! 3. **latency**: one client sets `desired` at `--rate` updates per second (default 1,000) for
//!    `--samples` updates (default 10,000) on random things; another, subscribed to
//!    `$hermod/things/+/shadow/update/delta`, takes the time from publish to delta (the send
//!    time is in the document). Prints p50, p99 and max.
//!
//! Every phase is bounded by `--max-seconds` (default 60). Requests are QoS 1.
//!
//!     cargo run --release -p hermod-shadow --example shadow_bench -- --port 1883

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_client::{ConnectOptions, Connection, connect};
use hermod_proto::{
    Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS, Subscribe,
    SubscribeProperties, SubscriptionOptions,
};
use tokio::sync::Semaphore;

struct Args {
    addr: SocketAddr,
    things: u64,
    updates: u64,
    connections: u64,
    window: usize,
    rate: u64,
    samples: u64,
    max: Duration,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
        things: 10_000,
        updates: 100_000,
        connections: 8,
        window: 100,
        rate: 1_000,
        samples: 10_000,
        max: Duration::from_secs(60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = || value.parse::<u64>();
        match flag.as_str() {
            "--port" => a.addr = SocketAddr::from(([127, 0, 0, 1], value.parse::<u16>()?)),
            "--things" => a.things = n()?.max(1),
            "--updates" => a.updates = n()?,
            "--connections" => a.connections = n()?.clamp(1, 256),
            "--window" => a.window = usize::try_from(n()?.clamp(1, 10_000))?,
            "--rate" => a.rate = n()?.max(1),
            "--samples" => a.samples = n()?,
            "--max-seconds" => a.max = Duration::from_secs(n()?.max(1)),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

fn pid(n: u64) -> PacketId {
    // 1..=60000, never 0.
    PacketId::new(u16::try_from(n % 60_000 + 1).unwrap_or(1)).unwrap_or(PacketId::MIN)
}

async fn client(addr: SocketAddr, id: &str, filter: &str) -> Result<Connection, Error> {
    let opts = ConnectOptions::new(id).version(ProtocolVersion::V5);
    let (mut conn, _) = connect(addr, &opts).await?;
    conn.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(0),
        filters: vec![(
            filter.to_owned(),
            SubscriptionOptions {
                qos: QoS::AtMostOnce,
                ..SubscriptionOptions::default()
            },
        )],
        properties: SubscribeProperties::default(),
    }))
    .await?;
    loop {
        match conn.recv_timeout(Duration::from_secs(5)).await? {
            Some(Packet::SubscribeAck(_)) => return Ok(conn),
            Some(_) => {}
            None => return Err("closed before SUBACK".into()),
        }
    }
}

fn update(thing: u64, body: String, n: u64, response: Option<&str>) -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: format!("$hermod/things/bench-{thing}/shadow/update"),
        packet_id: Some(pid(n)),
        payload: Bytes::from(body),
        properties: PublishProperties {
            response_topic: response.map(str::to_owned),
            ..PublishProperties::default()
        },
        ..Publish::default()
    })
}

/// `total` reported updates over `things` from `a.connections` clients; returns (accepted,
/// rejected, elapsed).
async fn run_updates(a: &Args, total: u64, phase: &str) -> Result<(u64, u64, Duration), Error> {
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + a.max;
    let mut tasks = Vec::new();
    for k in 0..a.connections {
        let share = total / a.connections + u64::from(k < total % a.connections);
        let reply = format!("bench/{phase}/{k}");
        let conn = client(a.addr, &format!("bench-{phase}-{k}"), &reply).await?;
        let (mut reader, mut writer) = conn.split();
        let window = Arc::new(Semaphore::new(a.window));
        let (acc, rej, win) = (accepted.clone(), rejected.clone(), window.clone());
        let read = tokio::spawn(async move {
            let mut got = 0;
            while got < share {
                match tokio::time::timeout_at(deadline.into(), reader.recv()).await {
                    Ok(Ok(Some(Packet::Publish(p)))) => {
                        got += 1;
                        if p.payload.starts_with(b"{\"code\"") {
                            rej.fetch_add(1, Ordering::Relaxed);
                        } else {
                            acc.fetch_add(1, Ordering::Relaxed);
                        }
                        win.add_permits(1);
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => return,
                }
            }
        });
        let (things, connections) = (a.things, a.connections);
        let write = tokio::spawn(async move {
            for i in 0..share {
                let Ok(Ok(permit)) =
                    tokio::time::timeout_at(deadline.into(), window.acquire()).await
                else {
                    return;
                };
                permit.forget();
                let n = i * connections + k;
                let body = format!(r#"{{"state":{{"reported":{{"n":{n},"ok":true}}}}}}"#);
                if writer
                    .send(&update(n % things, body, n, Some(&reply)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        tasks.push(read);
        tasks.push(write);
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok((
        accepted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        start.elapsed(),
    ))
}

/// update -> delta latencies in microseconds.
async fn run_latency(a: &Args) -> Result<Vec<u64>, Error> {
    let watcher = client(
        a.addr,
        "bench-delta-watch",
        "$hermod/things/+/shadow/update/delta",
    )
    .await?;
    let app = client(a.addr, "bench-app", "bench/none").await?;
    let origin = Instant::now();
    let deadline = origin + a.max;
    let samples = a.samples;
    let (mut reader, _w) = watcher.split();
    let read = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(usize::try_from(samples).unwrap_or(0));
        while (lat.len() as u64) < samples {
            match tokio::time::timeout_at(deadline.into(), reader.recv()).await {
                Ok(Ok(Some(Packet::Publish(p)))) => {
                    let now = origin.elapsed().as_micros();
                    let sent = serde_json::from_slice::<serde_json::Value>(&p.payload)
                        .ok()
                        .and_then(|v| v["state"]["t"].as_u64());
                    if let Some(sent) = sent {
                        lat.push(u64::try_from(now).unwrap_or(u64::MAX).saturating_sub(sent));
                    }
                }
                Ok(Ok(Some(_))) => {}
                _ => break,
            }
        }
        lat
    });
    let (_r, mut writer) = app.split();
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..samples {
        tick.tick().await;
        if Instant::now() > deadline {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let t = origin.elapsed().as_micros();
        let body = format!(r#"{{"state":{{"desired":{{"t":{t},"i":{i}}}}}}}"#);
        writer.send(&update(seed % a.things, body, i, None)).await?;
    }
    Ok(read.await?)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = parse_args()?;
    if !a.addr.ip().is_loopback() {
        return Err("loopback only".into());
    }
    let (ok, rej, t) = run_updates(&a, a.things, "create").await?;
    println!(
        "create:  {ok} things created ({rej} rejected) in {:.2} s: {:.0} updates/s",
        t.as_secs_f64(),
        ok as f64 / t.as_secs_f64()
    );
    let (ok, rej, t) = run_updates(&a, a.updates, "update").await?;
    println!(
        "updates: {ok} accepted ({rej} rejected) over {} things, {} connections x window {}, in {:.2} s: {:.0} updates/s",
        a.things,
        a.connections,
        a.window,
        t.as_secs_f64(),
        ok as f64 / t.as_secs_f64()
    );
    let mut lat = run_latency(&a).await?;
    lat.sort_unstable();
    println!(
        "latency: update -> delta at {}/s, {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        a.rate,
        lat.len(),
        percentile(&lat, 0.50) as f64 / 1000.0,
        percentile(&lat, 0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    Ok(())
}
