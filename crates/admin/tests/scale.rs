//! `GET /clients` with 20,000 sessions: paging stays correct and the response time is printed
//! (measured, not asserted: run with `--nocapture` to see it).
//!
//! The sessions come from raw MQTT 3.1.1 CONNECTs over TCP (a few bytes each, no client
//! library), all kept connected: that takes two sockets each (both ends are in this process),
//! so the test raises its open-files limit (possible as root, as on this project's machines).
//! Where it cannot, the clients it has no room for connect with clean session 0 and leave, and
//! stay as offline sessions (slower: they are written to the store).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOTAL: usize = 20_000;
const BATCH: usize = 200;

/// Raises the open-files limit as far as allowed (up to what 20,000 connections need) and
/// returns how many clients can stay connected.
fn room_for_connections() -> usize {
    let want: u64 = 2 * TOTAL as u64 + 2_000;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            } else {
                lim.rlim_cur = lim.rlim_max;
                let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
    let files = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    (files.saturating_sub(2_000) / 2).min(TOTAL)
}

/// A 3.1.1 CONNECT without keep-alive.
fn connect_bytes(id: &str, clean: bool) -> Vec<u8> {
    let mut v = vec![0x10, 0];
    v.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, if clean { 0x02 } else { 0x00 }, 0, 0]);
    v.extend_from_slice(&u16::try_from(id.len()).expect("short id").to_be_bytes());
    v.extend_from_slice(id.as_bytes());
    v[1] = u8::try_from(v.len() - 2).expect("short packet");
    v
}

async fn open(addr: std::net::SocketAddr, id: String, clean: bool) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&connect_bytes(&id, clean)).await.expect("send CONNECT");
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut ack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK success for {id}");
    if !clean {
        s.write_all(&[0xE0, 0]).await.expect("DISCONNECT");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_20k_sessions_pages_correctly() {
    let connected = room_for_connections();
    let env = Env::start_with(|c| {
        c.max_connections = 50_000;
    })
    .await;
    let t0 = Instant::now();
    let mut live = Vec::with_capacity(connected);
    let total = TOTAL;
    for start in (0..total).step_by(BATCH) {
        let mut set = tokio::task::JoinSet::new();
        for i in start..(start + BATCH).min(total) {
            let clean = i < connected;
            set.spawn(open(env.mqtt, format!("dev-{i:05}"), clean));
        }
        if start == connected / BATCH * BATCH {
            println!("{start} clients connected after {:?}", t0.elapsed());
        }
        while let Some(r) = set.join_next().await {
            let s = r.expect("task");
            if live.len() < connected {
                live.push(s);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.handle.stats().sessions < total {
        assert!(Instant::now() < deadline, "sessions: {}", env.handle.stats().sessions);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{total} sessions ({connected} connected) set up in {:?}", t0.elapsed());

    let token = env.token.clone();
    for page in [1usize, 100, 200] {
        let t = Instant::now();
        let r = env
            .request(
                "GET",
                &format!("/api/v5/clients?page={page}&limit=100"),
                Some(&format!("Bearer {token}")),
                None,
            )
            .await;
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        let j = r.json();
        assert_eq!(j["meta"]["count"], total);
        assert_eq!(j["data"].as_array().map(Vec::len), Some(100));
        assert_eq!(j["meta"]["hasnext"], page < 200);
        let first = format!("dev-{:05}", (page - 1) * 100);
        assert_eq!(j["data"][0]["clientid"], first.as_str());
        println!("GET /api/v5/clients?page={page}&limit=100 with {total} sessions: {took:?}");
    }
    let t = Instant::now();
    let r = env
        .request(
            "GET",
            "/api/v5/clients?clientid=dev-19999&clientid=dev-00001",
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
    println!("GET /api/v5/clients?clientid=..&clientid=.. (look-ups): {:?}", t.elapsed());
    assert_eq!(r.json()["meta"]["count"], 2);
    drop(live);
    env.stop().await;
}
