//! Crash test of the durability contract: once Hermod has acknowledged a QoS 1/2 message for a
//! persistent session, it survives `kill -9`.
//!
//! The broker runs as a separate process (`hermod serve -c`, `[store] sync = "batch"`). A
//! persistent subscriber subscribes and goes offline; a publisher sends 10,000 messages (QoS 1,
//! and separately QoS 2) with up to 200 in flight; after a pseudo-random number of
//! acknowledgements the broker gets SIGKILL. It restarts on the same data directory, the
//! subscriber reconnects, and must receive every message whose acknowledgement (PUBACK, or
//! PUBREC for QoS 2) the publisher got: zero lost, and no duplicate at QoS 2. Five kill points per
//! QoS. The seed is printed, and `HERMOD_CRASH_SEED` replays a run.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_client::{ConnectOptions, Connection, connect};
use hermod_proto::{
    Packet, PacketId, ProtocolVersion, Publish, PublishAck, QoS, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};

const MESSAGES: usize = 10_000;
const WINDOW: usize = 200;
const TOPIC: &str = "crash/t";

/// A scratch directory removed on drop (no tempfile dependency for this one test).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("hermod-crash-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Broker {
    child: Child,
}

impl Broker {
    fn start(config: &Path, addr: SocketAddr) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_hermod"))
            .args(["serve", "-c"])
            .arg(config)
            // Logs are on stderr (inherited): keep the test output to start-up errors.
            .env("RUST_LOG", "off")
            // Slow commits (fault injection through the store's test backend, compiled in by
            // hermod-broker's `test-faults` feature, which naming the constant here guarantees
            // this binary has): an ack sent before its commit would be lost.
            .env(hermod_broker::store::COMMIT_DELAY_ENV, "20")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hermod starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "hermod did not listen on {addr} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child }
    }

    fn kill9(mut self) {
        // Child::kill sends SIGKILL on Unix.
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn opts(id: &str) -> ConnectOptions {
    ConnectOptions::new(id)
        .version(ProtocolVersion::V311)
        .clean_start(false)
        .keep_alive(60)
}

fn packet_id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// Publishes MESSAGES messages until `kill_after` have been acknowledged, then kills the broker.
/// Returns the acknowledged message numbers.
async fn publish_until_killed(
    addr: SocketAddr,
    qos: QoS,
    kill_after: usize,
    broker: Broker,
) -> HashSet<usize> {
    let (mut conn, _) = connect(addr, &opts("crash-pub"))
        .await
        .expect("publisher connects");
    let mut broker = Some(broker);
    let mut acked = HashSet::new();
    let mut inflight: HashMap<u16, usize> = HashMap::new();
    let mut free: Vec<u16> = (1..=WINDOW as u16).rev().collect();
    let mut next = 0usize;
    loop {
        while next < MESSAGES
            && let Some(id) = free.pop()
        {
            let p = Publish {
                qos,
                topic: TOPIC.into(),
                packet_id: Some(packet_id(id)),
                payload: Bytes::from(format!("{next}")),
                ..Publish::default()
            };
            conn.queue(&Packet::Publish(p)).expect("encode");
            inflight.insert(id, next);
            next += 1;
        }
        if conn.flush().await.is_err() {
            break;
        }
        if next == MESSAGES && inflight.is_empty() {
            break;
        }
        match conn.recv_timeout(Duration::from_secs(5)).await {
            Ok(Some(Packet::PublishAck(a))) if qos == QoS::AtLeastOnce => {
                if let Some(n) = inflight.remove(&a.packet_id.get()) {
                    acked.insert(n);
                    free.push(a.packet_id.get());
                }
            }
            Ok(Some(Packet::PublishReceived(a))) if qos == QoS::ExactlyOnce => {
                // PUBREC: the broker has taken responsibility for the message.
                if let Some(&n) = inflight.get(&a.packet_id.get()) {
                    acked.insert(n);
                }
                let _ = conn.queue(&Packet::PublishRelease(PublishAck::new(a.packet_id)));
            }
            Ok(Some(Packet::PublishComplete(a))) => {
                if inflight.remove(&a.packet_id.get()).is_some() {
                    free.push(a.packet_id.get());
                }
            }
            Ok(Some(other)) => panic!("publisher got {other:?}"),
            Ok(None) | Err(_) => break, // the broker is gone
        }
        if acked.len() >= kill_after
            && let Some(b) = broker.take()
        {
            b.kill9();
        }
    }
    if let Some(b) = broker.take() {
        b.kill9();
    }
    acked
}

/// Collects every message of the persistent subscriber until 3 s pass without one; counts
/// duplicates (the same message number delivered twice as a new message).
async fn drain_subscriber(conn: &mut Connection, qos: QoS) -> (HashSet<usize>, usize) {
    let mut got = HashSet::new();
    let mut dups = 0;
    loop {
        match conn.recv_timeout(Duration::from_secs(3)).await {
            Ok(Some(Packet::Publish(p))) => {
                let n: usize = std::str::from_utf8(&p.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("payload is a number");
                // A QoS 2 re-send with DUP of a packet id we have not completed is the same delivery.
                if !(got.insert(n) || p.dup && qos == QoS::ExactlyOnce) {
                    dups += 1;
                }
                let id = p.packet_id.expect("QoS > 0");
                let ack = if p.qos == QoS::ExactlyOnce {
                    Packet::PublishReceived(PublishAck::new(id))
                } else {
                    Packet::PublishAck(PublishAck::new(id))
                };
                conn.send(&ack).await.expect("ack");
            }
            Ok(Some(Packet::PublishRelease(r))) => {
                conn.send(&Packet::PublishComplete(PublishAck::new(r.packet_id)))
                    .await
                    .expect("comp");
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    (got, dups)
}

async fn crash_run(qos: QoS, kill_after: usize) {
    let dir = TempDir::new();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let config = dir.path().join("hermod.toml");
    std::fs::write(
        &config,
        format!(
            "max_queued_messages = 20000\nmax_inflight_messages = 200\n\n[[listener]]\nbind = \"{addr}\"\n\n[store]\npath = \"data\"\nsync = \"batch\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n"
        ),
    )
    .expect("config");

    let broker = Broker::start(&config, addr);
    let (mut sub, _) = connect(addr, &opts("crash-sub"))
        .await
        .expect("subscriber connects");
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: packet_id(1),
        filters: vec![(
            TOPIC.into(),
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        )],
        properties: SubscribeProperties::default(),
    }))
    .await
    .expect("subscribe");
    match sub.recv_timeout(Duration::from_secs(5)).await {
        Ok(Some(Packet::SubscribeAck(_))) => {}
        other => panic!("no SUBACK: {other:?}"),
    }
    sub.disconnect().await.expect("disconnect");
    drop(sub);

    let acked = publish_until_killed(addr, qos, kill_after, broker).await;
    assert!(
        acked.len() >= kill_after.min(MESSAGES),
        "the publisher got {} acks before the kill",
        acked.len()
    );

    let broker = Broker::start(&config, addr);
    let (mut sub, ack) = connect(addr, &opts("crash-sub"))
        .await
        .expect("subscriber reconnects");
    assert!(
        ack.session_present,
        "the persistent session survived kill -9"
    );
    let (got, dups) = drain_subscriber(&mut sub, qos).await;
    let lost: Vec<usize> = {
        let mut v: Vec<usize> = acked.difference(&got).copied().collect();
        v.sort_unstable();
        v
    };
    eprintln!(
        "{qos:?} kill after {kill_after} acks: acked {}, received {}, lost {}, duplicates {dups}",
        acked.len(),
        got.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but lost after kill -9: {} messages, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    if qos == QoS::ExactlyOnce {
        assert_eq!(dups, 0, "QoS 2 delivered a message twice");
    }
    drop(broker);
}

fn kill_points() -> Vec<usize> {
    let seed: u64 = std::env::var("HERMOD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("crash test seed {seed} (HERMOD_CRASH_SEED={seed} replays it)");
    let mut x = seed | 1;
    (0..5)
        .map(|i| {
            // xorshift; one kill point in each fifth of the run, so early and late kills are both covered
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let fifth = MESSAGES / 5;
            i * fifth + 1 + (x as usize % (fifth - 1))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_qos1_messages_survive_kill_9() {
    for k in kill_points() {
        crash_run(QoS::AtLeastOnce, k).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_qos2_messages_survive_kill_9_exactly_once() {
    for k in kill_points() {
        crash_run(QoS::ExactlyOnce, k).await;
    }
}
