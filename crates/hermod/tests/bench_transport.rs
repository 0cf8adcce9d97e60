//! `hermod bench` over TLS, mutual TLS, WebSocket and WebSocket over TLS, against a broker in
//! this process (hermod-testkit's `TestBroker`, listeners on OS-chosen loopback ports, the test
//! PKI written by `Pki::write_to`). Each run is short (`-d 1`, a handful of clients), bounded by
//! a deadline after which the child is killed by its handle.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hermod_testkit::{Pki, TestBroker, tempdir};

const HERMOD: &str = env!("CARGO_BIN_EXE_hermod");
const RUN_LIMIT: Duration = Duration::from_secs(60);

const TCP: usize = 0;
const TLS: usize = 1;
const WS: usize = 2;
const WSS: usize = 3;
const MUTUAL: usize = 4;
/// TLS on 127.0.0.2: a host the server certificate does not name.
const OTHER_HOST: usize = 5;

fn config() -> String {
    let tls = "certfile = \"certs/server.pem\"\nkeyfile = \"certs/server.key\"\n";
    format!(
        "sys_interval = 0\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\ntransport = \"tls\"\n{tls}\
         [[listener]]\nbind = \"127.0.0.1:0\"\ntransport = \"ws\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\ntransport = \"wss\"\npath = \"/mqtt-tls\"\n{tls}\
         [[listener]]\nbind = \"127.0.0.1:0\"\ntransport = \"tls\"\n{tls}\
         cafile = \"certs/ca.pem\"\nrequire_certificate = true\n\
         [[listener]]\nbind = \"127.0.0.2:0\"\ntransport = \"tls\"\n{tls}"
    )
}

async fn broker() -> TestBroker {
    let dir = tempdir();
    Pki::new().write_to(dir.path());
    TestBroker::start_in(dir, &config()).await
}

/// What one `hermod bench` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "no JSON summary ({e}); exit {:?}\nstdout: {}\nstderr: {}",
                self.code, self.stdout, self.stderr
            )
        })
    }
}

/// Runs `hermod bench ARGS` on a blocking thread (the broker runs on this runtime meanwhile).
async fn bench(args: Vec<String>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(HERMOD)
            .arg("bench")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hermod bench");
        let deadline = Instant::now() + RUN_LIMIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn args(list: &[&str], b: &TestBroker, listener: usize, extra: &[String]) -> Vec<String> {
    let addr = b.addr(listener);
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.extend([
        "-h".into(),
        addr.ip().to_string(),
        "-p".into(),
        addr.port().to_string(),
        "-d".into(),
        "1".into(),
        "--drain".into(),
        "3".into(),
        "--json".into(),
        "--quiet".into(),
    ]);
    v.extend_from_slice(extra);
    v
}

fn certs(b: &TestBroker, name: &str) -> String {
    b.path()
        .join("certs")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn assert_traffic(run: &Run, transport: &str) {
    let s = run.json();
    assert_eq!(run.code, Some(0), "exit code; stderr: {}", run.stderr);
    assert_eq!(s["transport"], transport, "{s}");
    assert!(s["received"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(
        s["acked"], s["sent"],
        "every QoS 1 publish acknowledged: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_qos1_over_tls_websocket_and_wss() {
    let b = broker().await;
    let ca = certs(&b, "ca.pem");
    let pairs = ["pairs", "--pubs", "4", "--qos", "1"];
    let tls = vec!["--cafile".to_owned(), ca.clone()];
    let run = bench(args(&pairs, &b, TLS, &tls)).await;
    assert_traffic(&run, "tls");

    let run = bench(args(&pairs, &b, WS, &["--ws".into()])).await;
    assert_traffic(&run, "ws");

    let wss = vec![
        "--ws".to_owned(),
        "--ws-path".into(),
        "/mqtt-tls".into(),
        "--cafile".into(),
        ca.clone(),
    ];
    let run = bench(args(&pairs, &b, WSS, &wss)).await;
    assert_traffic(&run, "wss");

    // Mutual TLS: the client certificate of --cert/--key.
    let mutual = vec![
        "--cafile".to_owned(),
        ca,
        "--cert".into(),
        certs(&b, "client.pem"),
        "--key".into(),
        certs(&b, "client.key"),
    ];
    let run = bench(args(&pairs, &b, MUTUAL, &mutual)).await;
    assert_traffic(&run, "tls");

    // The plain TCP path is unchanged.
    let run = bench(args(&pairs, &b, TCP, &[])).await;
    assert_traffic(&run, "tcp");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_over_tls_reports_handshakes() {
    let b = broker().await;
    let ca = certs(&b, "ca.pem");
    let run = bench(args(
        &["conn", "-c", "20"],
        &b,
        TLS,
        &["--cafile".into(), ca],
    ))
    .await;
    let s = run.json();
    assert_eq!(run.code, Some(0), "exit code; stderr: {}", run.stderr);
    assert_eq!(s["transport"], "tls", "{s}");
    let c = &s["connect"];
    assert_eq!(c["established"], 20, "{s}");
    assert_eq!(c["failed"], 0, "{s}");
    assert_eq!(c["held"], 20, "{s}");
    assert!(c["per_sec"].as_f64().unwrap() > 0.0, "{s}");

    // The text summary names what a handshake is.
    let run = bench(
        args(&["conn", "-c", "5"], &b, WS, &["--ws".into()])
            .into_iter()
            .filter(|a| a != "--json")
            .collect(),
    )
    .await;
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stdout
            .contains("handshakes/s: TCP + WebSocket upgrade + MQTT CONNECT"),
        "{}",
        run.stdout
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skips_only_the_host_name_check() {
    let b = broker().await;
    let ca = certs(&b, "ca.pem");
    let pairs = ["pairs", "--pubs", "2", "--qos", "1"];
    // 127.0.0.2 is not in the certificate: refused, with a one-line reason.
    let run = bench(args(
        &pairs,
        &b,
        OTHER_HOST,
        &["--cafile".into(), ca.clone()],
    ))
    .await;
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("TLS handshake with 127.0.0.2")
            && run.stderr.contains("not valid for name"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let run = bench(args(
        &pairs,
        &b,
        OTHER_HOST,
        &["--cafile".into(), ca, "--insecure".into()],
    ))
    .await;
    assert_traffic(&run, "tls");

    // --insecure still verifies the chain: a CA that did not sign the server certificate fails.
    let other = b.write("certs/other.pem", &Pki::new().ca_pem);
    let run = bench(args(
        &pairs,
        &b,
        OTHER_HOST,
        &[
            "--cafile".into(),
            other.to_str().unwrap().to_owned(),
            "--insecure".into(),
        ],
    ))
    .await;
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("invalid peer certificate") && !run.stderr.contains("for name"),
        "{}",
        run.stderr
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_are_one_line_errors() {
    let dir = tempdir();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let show = |p: &Path| p.to_str().unwrap().to_owned();
    for (extra, want) in [
        (vec!["--cafile".to_owned(), show(&missing)], show(&missing)),
        (
            vec!["--cafile".to_owned(), show(&garbage)],
            "no PEM certificate".to_owned(),
        ),
        (
            vec![
                "--cafile".to_owned(),
                show(&garbage),
                "--cert".into(),
                show(&garbage),
            ],
            "--cert needs --key".to_owned(),
        ),
    ] {
        let mut a: Vec<String> = ["pairs", "-p", "1", "-d", "1", "--quiet"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        a.extend(extra.iter().cloned());
        let run = bench(a).await;
        assert_eq!(run.code, Some(1), "{extra:?}: stderr {}", run.stderr);
        let err = run.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{extra:?}: one line: {err}");
        assert!(err.starts_with("Error: "), "{extra:?}: {err}");
        assert!(err.contains(&want), "{extra:?}: wants {want}: {err}");
        assert!(run.stdout.is_empty(), "{extra:?}: {}", run.stdout);
    }
    // The CA file must name the file and the flag.
    let run = bench(
        ["pairs", "-p", "1", "--cafile", &show(&missing)]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    )
    .await;
    assert!(run.stderr.contains("--cafile"), "{}", run.stderr);
}
