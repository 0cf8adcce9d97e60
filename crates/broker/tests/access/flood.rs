//! Credential checks are bounded (issue 8, item 7): a flood of wrong passwords against an
//! argon2id password file neither grows the broker's memory by more than its few hashing
//! threads' working memory nor makes a good client from another address wait behind the flood;
//! repeated failures from one address block it for a while (`[auth_failures]`), right password
//! or not, and it recovers when the block ends.
//!
//! The broker runs in this process, so /proc/self/status VmRSS is the broker's memory (plus the
//! test's own small clients and whatever other tests of this binary do at the same time: the
//! bounds are wide).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// This process's resident set size, in KiB.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Samples VmRSS every 5 ms on its own thread until dropped; `peak()` is the highest seen.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let peak = Arc::new(AtomicU64::new(vm_rss_kib()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: stops when told, or after 2 minutes whatever happens.
            let end = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                p.fetch_max(vm_rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Set in the child process that runs one test alone (see [`run_alone`]).
const ALONE: &str = "HERMOD_TEST_ALONE";

/// Runs test `name` of this binary alone in a child process (so that other tests running in
/// parallel here, some of which hash argon2id passwords too, do not count in its RSS figures),
/// bounded to 3 minutes; prints its output and fails if it fails.
async fn run_alone(name: &str) {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = tempdir();
    let (code, out, err) = run(
        std::process::Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE, "1"),
        dir.path(),
        "alone",
        Duration::from_secs(180),
    )
    .await;
    println!("{out}");
    eprintln!("{err}");
    assert_eq!(code, Some(0), "{name}, run alone, failed (output above)");
    assert!(
        out.contains("1 passed"),
        "{name} did not run in the child: {out}"
    );
}

fn argon2id_line(user: &str, password: &str) -> String {
    let hash = hermod_broker::auth::hash_argon2id(password.as_bytes()).expect("argon2id hash");
    assert!(hash.starts_with("$argon2id$v=19$m=19456,"), "{hash}");
    format!("{user}:{hash}\n")
}

// 200 concurrent CONNECTs with a wrong password for an argon2id user (~19 MiB per check), with
// throttling off (the many-addresses case, where per-address blocking cannot help): the peak
// RSS growth stays within the hashing threads' working memory (was hundreds of MB when every
// check ran on tokio's blocking pool, and argon2's per-check allocation was never reused), and a
// good client from another address gets its CONNACK after at most one running hash, not behind
// the flood. The good user's line is `$7$` so that its own check is cheap and the figure
// measured is the delay the flood causes (a debug-build argon2id check takes most of a second).
// Runs alone in a child process so that other tests' memory does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_password_flood_is_bounded_in_memory_and_fair_to_good_clients() {
    const FLOOD: usize = 200;
    if std::env::var_os(ALONE).is_none() {
        run_alone("flood::bad_password_flood_is_bounded_in_memory_and_fair_to_good_clients").await;
        return;
    }
    let dir = tempdir();
    // One argon2id hash takes as long as one check: the unit a good client may wait for.
    let t = Instant::now();
    let victim = argon2id_line("victim", "the right one");
    let one_hash = t.elapsed();
    let passwd = format!("{victim}{}", passwd_line("good", "good-pw"));
    write(dir.path(), "passwd", &passwd);
    let b = TestBroker::start_in(
        dir,
        r#"allow_anonymous = false
password_file = "passwd"
[[listener]]
bind = "127.0.0.1:0"
[auth_failures]
max = 0
"#,
    )
    .await;
    let addr = b.addr(0);
    let good = |n: usize| connect_auth(V5, &format!("good-{n}"), Some("good"), Some(b"good-pw"));
    let limit = Duration::from_secs(30);

    // Before any hashing: the baseline, and the good client's CONNACK time with no flood.
    let rss_before = vm_rss_kib();
    let t = Instant::now();
    let r = connack_from(ip("127.0.0.2"), addr, good(0), limit).await;
    let quiet_latency = t.elapsed();
    assert_eq!(r, Ok(ReasonCode::SUCCESS), "good client, no flood");

    let sampler = RssSampler::start();
    let started = Instant::now();
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let c = connect_auth(
                V5,
                &format!("flood-{i}"),
                Some("victim"),
                Some(b"wrong password"),
            );
            tokio::spawn(connack_from(ip("127.0.0.1"), addr, c, limit))
        })
        .collect();
    // Let the flood fill the queue, then time good clients while it runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    for n in 1..=3 {
        let t = Instant::now();
        let r = connack_from(ip("127.0.0.2"), addr, good(n), limit).await;
        latencies.push(t.elapsed());
        assert_eq!(
            r,
            Ok(ReasonCode::SUCCESS),
            "good client {n} during the flood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut bad, mut busy, mut other) = (0, 0, Vec::new());
    for f in flood {
        match f.await.expect("flood task") {
            Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD) => bad += 1,
            Ok(ReasonCode::SERVER_BUSY) => busy += 1,
            r => other.push(r),
        }
    }
    let flood_time = started.elapsed();
    let peak = sampler.peak();
    drop(sampler);
    let rss_after = vm_rss_kib();
    let threads = hermod_broker::auth::hash_pool::default_threads();
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "flood of {FLOOD} bad argon2id CONNECTs ({threads} hashing threads): {bad} refused 0x86 \
         after hashing, {busy} refused 0x89 (queue full) in {flood_time:.2?}; VmRSS before \
         {} MiB, peak {} MiB (+{growth_mib} MiB), after {} MiB; good client CONNACK: \
         {quiet_latency:.1?} without flood, {latencies:.1?} during it (one argon2id hash: \
         {one_hash:.1?})",
        rss_before / 1024,
        peak / 1024,
        rss_after / 1024,
    );
    assert!(
        other.is_empty(),
        "every flood CONNECT gets 0x86 or 0x89: {other:?}"
    );
    assert!(bad > 0, "some wrong passwords were checked");
    // Each hashing thread holds one argon2id working set (19 MiB) at a time; the allocator may
    // keep one per thread afterwards. Everything else in the flood is small.
    let bound_mib = 64.max(threads as u64 * 24 + 16);
    assert!(
        growth_mib < bound_mib,
        "RSS grew by {growth_mib} MiB during the flood (bound {bound_mib} MiB)"
    );
    // A good client waits for at most one running hash (not for the flood's 200): coarse bounds,
    // so a slow debug build on a busy machine cannot fail it.
    let latency_bound = Duration::from_secs(2).max(one_hash * 3);
    assert!(
        worst < latency_bound,
        "a good client waited {worst:?} for its CONNACK during the flood (bound {latency_bound:?})"
    );
    b.stop().await;
}

const THROTTLED: &str = r#"allow_anonymous = false
password_file = "passwd"
[[listener]]
bind = "127.0.0.1:0"
[auth_failures]
max = 3
exempt_loopback = false # the test clients are on 127.x.y.z
window = "1m"
block = "2s"
"#;

// K = 3 failures from one address block it for 2 s: then even the right password is refused
// with 0x8A (3.1.1: 5) without being checked, while other addresses are unaffected; successful
// logins are not counted; after the block the address logs in again and counts afresh.
#[tokio::test]
async fn throttling_blocks_after_k_failures_and_recovers() {
    let dir = tempdir();
    write(dir.path(), "passwd", &passwd_line("alice", "alice-pw"));
    let b = TestBroker::start_in(dir, THROTTLED).await;
    let addr = b.addr(0);
    let limit = WAIT;
    let (x, y) = (ip("127.0.0.3"), ip("127.0.0.4"));
    let login = |v, id: &str, pw: &str| connect_auth(v, id, Some("alice"), Some(pw.as_bytes()));
    let try_ = |src, c| connack_from(src, addr, c, limit);

    for i in 0..2 {
        assert_eq!(
            try_(x, login(V5, "a", "wrong")).await,
            Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            "failure {i}"
        );
    }
    // Success in between: allowed, not counted, does not reset the count.
    assert_eq!(
        try_(x, login(V5, "a", "alice-pw")).await,
        Ok(ReasonCode::SUCCESS)
    );
    assert_eq!(
        try_(x, login(V5, "a", "wrong")).await,
        Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        "the third failure is still checked (and blocks)"
    );
    let blocked_at = Instant::now();
    assert_eq!(
        try_(x, login(V5, "a", "wrong")).await,
        Ok(ReasonCode::BANNED),
        "blocked"
    );
    assert_eq!(
        try_(x, login(V5, "a", "alice-pw")).await,
        Ok(ReasonCode::BANNED),
        "the right password is refused too while blocked"
    );
    // 3.1.1: return code 5 "not authorised".
    assert_eq!(
        try_(x, login(V311, "a", "alice-pw")).await,
        Ok(ReasonCode::NOT_AUTHORIZED),
        "3.1.1 while blocked: return code 5"
    );
    assert_eq!(
        try_(y, login(V5, "b", "alice-pw")).await,
        Ok(ReasonCode::SUCCESS),
        "another address is not blocked"
    );

    // The block ends after 2 s.
    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(blocked_at.elapsed())).await;
    assert_eq!(
        try_(x, login(V5, "a", "alice-pw")).await,
        Ok(ReasonCode::SUCCESS),
        "recovered after the block"
    );
    // Counting starts afresh: two more failures do not block.
    for _ in 0..2 {
        assert_eq!(
            try_(x, login(V5, "a", "wrong")).await,
            Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
    }
    assert_eq!(
        try_(x, login(V5, "a", "alice-pw")).await,
        Ok(ReasonCode::SUCCESS)
    );
    b.stop().await;
}

// With throttling on, a concurrent flood from one address is cut short: once K failures are
// counted, the rest (queued or arriving) are refused 0x8A without hashing; a good client from
// another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_sheds_a_concurrent_flood() {
    const FLOOD: usize = 60;
    let dir = tempdir();
    write(
        dir.path(),
        "passwd",
        &format!(
            "{}{}",
            passwd_line("alice", "alice-pw"),
            passwd_line("good", "good-pw")
        ),
    );
    let b = TestBroker::start_in(dir, THROTTLED).await;
    let addr = b.addr(0);
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let c = connect_auth(V5, &format!("f{i}"), Some("alice"), Some(b"wrong"));
            tokio::spawn(connack_from(
                ip("127.0.0.5"),
                addr,
                c,
                Duration::from_secs(20),
            ))
        })
        .collect();
    let (mut bad, mut banned, mut other) = (0, 0, Vec::new());
    for f in flood {
        match f.await.expect("flood task") {
            Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD) => bad += 1,
            Ok(ReasonCode::BANNED) => banned += 1,
            r => other.push(r),
        }
    }
    println!("throttled flood of {FLOOD}: {bad} checked (0x86), {banned} refused unchecked (0x8A)");
    assert!(other.is_empty(), "{other:?}");
    assert!(bad >= 3, "K failures are checked before the block: {bad}");
    assert!(
        banned >= FLOOD / 2,
        "most of the flood is refused unchecked: {banned}"
    );
    let good = connect_auth(V5, "good", Some("good"), Some(b"good-pw"));
    assert_eq!(
        connack_from(ip("127.0.0.6"), addr, good, WAIT).await,
        Ok(ReasonCode::SUCCESS)
    );
    b.stop().await;
}

// An unreachable HTTP auth service denies (0x86) but does not count as the clients' failed
// logins: an outage of the service must not get every client's address blocked.
#[tokio::test]
async fn auth_service_errors_are_not_counted_as_failures() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let b = TestBroker::start_in(
        tempdir(),
        &format!(
            "allow_anonymous = false\n[auth.http]\nurl = \"http://127.0.0.1:{port}/auth\"\ntimeout_ms = 500\n\
             [[listener]]\nbind = \"127.0.0.1:0\"\n[auth_failures]\nexempt_loopback = false\nmax = 2\nwindow = \"1m\"\nblock = \"1m\"\n"
        ),
    )
    .await;
    for i in 0..4 {
        let c = connect_auth(V5, &format!("h{i}"), Some("u"), Some(b"p"));
        assert_eq!(
            connack_from(ip("127.0.0.7"), b.addr(0), c, WAIT).await,
            Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            "attempt {i}: denied, never blocked"
        );
    }
    b.stop().await;
}
