//! End-to-end tests of `hermod pub` / `hermod sub` against a real broker on loopback.
//!
//! By default each test starts Debian's `mosquitto` on a free 127.0.0.1 port (and kills exactly
//! that child when done); the tests are skipped with a message when `mosquitto` is not installed.
//! Set `HERMOD_CLI_TEST_PORT=<port>` to run them against a broker already listening on
//! 127.0.0.1:<port> instead (e.g. `hermod serve`); tests that need a special broker
//! configuration (refusing anonymous clients) are skipped then.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HERMOD: &str = env!("CARGO_BIN_EXE_hermod");
const STEP: Duration = Duration::from_secs(10);

/// A broker for one test: a mosquitto child we started, or an external one.
struct Broker {
    port: u16,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn mosquitto_installed() -> bool {
    Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "hermod-cli-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

/// Starts a broker, or returns `None` (after saying why) when the test must be skipped.
/// `allow_anonymous = false` needs our own mosquitto.
fn broker(allow_anonymous: bool) -> Option<Broker> {
    if let Ok(p) = std::env::var("HERMOD_CLI_TEST_PORT") {
        if !allow_anonymous {
            eprintln!(
                "skipped: needs a mosquitto with allow_anonymous false (HERMOD_CLI_TEST_PORT is set)"
            );
            return None;
        }
        return Some(Broker {
            port: p.parse().unwrap(),
            child: None,
            dir: None,
        });
    }
    if !mosquitto_installed() {
        eprintln!("skipped: `mosquitto` is not installed (apt-get install mosquitto)");
        return None;
    }
    for _attempt in 0..5 {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("broker"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous {allow_anonymous}\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut b = Broker {
            port,
            child: Some(child),
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(b);
            }
            if let Some(c) = b.child.as_mut()
                && c.try_wait().unwrap().is_some()
            {
                break; // port taken meanwhile: try another
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("could not start mosquitto");
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `hermod <args>` to completion (killed after `limit`), feeding `stdin`.
/// Runs with a `-p` are pointed at 127.0.0.1 explicitly (not `localhost`, which may be `::1`).
fn run(args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut args: Vec<&str> = args.to_vec();
    if args.contains(&"-p") {
        args.splice(1..1, ["-h", "127.0.0.1"]);
    }
    let mut child = Command::new(HERMOD)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin);
    }
    wait_output(child, limit)
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `hermod sub -d ...` whose stdout is read line by line.
struct Sub {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Sub {
    /// Starts `hermod sub -d <args>` and waits for its SUBACK.
    fn start(port: u16, args: &[&str]) -> Sub {
        let port = port.to_string();
        let mut all = vec!["sub", "-h", "127.0.0.1", "-p", port.as_str(), "-d"];
        all.extend_from_slice(args);
        let mut child = Command::new(HERMOD)
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Sub {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        };
        s.wait_line(|l| l.starts_with("Subscribed (mid: 1)"));
        s
    }

    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    let hit = pred(&l);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("expected line not seen; got {:#?}", self.seen);
    }

    /// Waits for the process to exit; returns exit code, all stdout lines, stderr.
    fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>, String) {
        let child = self.child.take().unwrap();
        let out = wait_output(child, limit);
        let mut lines = std::mem::take(&mut self.seen);
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        (out.code, lines, out.stderr)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn publish(port: u16, args: &[&str]) -> Output {
    let port = port.to_string();
    let mut all = vec!["pub", "-p", port.as_str()];
    all.extend_from_slice(args);
    run(&all, b"", STEP)
}

#[test]
fn qos_0_1_2_round_trip() {
    let Some(b) = broker(true) else { return };
    for qos in ["0", "1", "2"] {
        let topic = unique(&format!("qos{qos}"));
        let sub = Sub::start(b.port, &["-t", &topic, "-q", qos, "-C", "1", "-v"]);
        let out = publish(
            b.port,
            &["-t", &topic, "-m", "hello world", "-q", qos, "-d"],
        );
        assert_eq!(out.code, Some(0), "pub: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(&format!(
            "sending PUBLISH (d0, q{qos}, r0, m1, '{topic}', ... (11 bytes))"
        )));
        match qos {
            "1" => assert!(
                out.stdout.contains("received PUBACK (Mid: 1, RC:0)"),
                "{}",
                out.stdout
            ),
            "2" => {
                assert!(
                    out.stdout.contains("received PUBREC (Mid: 1)"),
                    "{}",
                    out.stdout
                );
                assert!(out.stdout.contains("sending PUBREL (m1)"), "{}", out.stdout);
                assert!(
                    out.stdout.contains("received PUBCOMP (Mid: 1, RC:0)"),
                    "{}",
                    out.stdout
                );
            }
            _ => {}
        }
        assert!(
            out.stdout.trim_end().ends_with("sending DISCONNECT"),
            "{}",
            out.stdout
        );
        let (code, lines, err) = sub.finish(STEP);
        assert_eq!(code, Some(0), "sub stderr: {err}");
        assert!(
            lines.contains(&format!("{topic} hello world")),
            "{lines:#?}"
        );
        if qos == "2" {
            assert!(
                lines.iter().any(|l| l.ends_with("sending PUBCOMP (m1)")),
                "{lines:#?}"
            );
        }
        if qos == "1" {
            assert!(
                lines
                    .iter()
                    .any(|l| l.ends_with("sending PUBACK (m1, rc0)")),
                "{lines:#?}"
            );
        }
        assert_eq!(
            lines.last().map(|l| l.ends_with("sending DISCONNECT")),
            Some(true),
            "{lines:#?}"
        );
    }
}

#[test]
fn retained_messages_and_dash_r_filter() {
    let Some(b) = broker(true) else { return };
    let topic = unique("retained");
    let out = publish(b.port, &["-t", &topic, "-m", "kept", "-r", "-q", "1"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    let port = b.port.to_string();
    let out = run(
        &["sub", "-p", &port, "-t", &topic, "-C", "1", "-v", "-d"],
        b"",
        STEP,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "received PUBLISH (d0, q0, r1, m0, '{topic}', ... (4 bytes))"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{topic} kept\n")),
        "{}",
        out.stdout
    );

    // -R skips it; -W then ends the run with mosquitto's timeout exit code.
    let out = run(
        &["sub", "-p", &port, "-t", &topic, "-R", "-W", "1"],
        b"",
        STEP,
    );
    assert_eq!(out.code, Some(27));
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "Timed out\n");

    // Clear it.
    let out = publish(b.port, &["-t", &topic, "-r", "-n"]);
    assert_eq!(out.code, Some(0));
    let out = run(&["sub", "-p", &port, "-t", &topic, "-W", "1"], b"", STEP);
    assert_eq!((out.code, out.stdout.as_str()), (Some(27), ""));
}

#[test]
fn timeout_exit_code_and_count() {
    let Some(b) = broker(true) else { return };
    let port = b.port.to_string();
    let topic = unique("count");
    let started = Instant::now();
    let out = run(&["sub", "-p", &port, "-t", &topic, "-W", "1"], b"", STEP);
    assert_eq!(out.code, Some(27), "{}", out.stderr);
    assert_eq!(out.stderr, "Timed out\n");
    assert!(started.elapsed() < Duration::from_secs(5));

    // -C 3 with three stdin lines (-l), -N without newlines, plain (non -v) output.
    let sub = Sub::start(b.port, &["-t", &topic, "-C", "3", "-N", "-q", "1"]);
    let out = run(
        &["pub", "-p", &port, "-t", &topic, "-l", "-q", "1"],
        b"one\ntwo\nthree\nfour\n",
        STEP,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let (code, lines, _) = sub.finish(STEP);
    assert_eq!(code, Some(0));
    // With -N the payloads run into the next -d line: keep what precedes each "Client ".
    let printed: String = lines
        .iter()
        .filter(|l| !l.starts_with("Subscribed"))
        .map(|l| l.split("Client ").next().unwrap_or(""))
        .collect();
    assert_eq!(printed, "onetwothree", "{lines:#?}");
    assert!(!printed.contains("four"), "{lines:#?}");
}

#[test]
fn protocol_versions_5_and_31() {
    let Some(b) = broker(true) else { return };
    for v in ["5", "mqttv5", "31", "mqttv31", "311"] {
        let topic = unique(&format!("v{v}"));
        let sub = Sub::start(b.port, &["-t", &topic, "-V", v, "-q", "2", "-C", "1", "-v"]);
        let out = publish(b.port, &["-t", &topic, "-m", "payload", "-V", v, "-q", "2"]);
        assert_eq!(out.code, Some(0), "-V {v}: {}", out.stderr);
        let (code, lines, err) = sub.finish(STEP);
        assert_eq!(code, Some(0), "-V {v}: {err}");
        assert!(
            lines.contains(&format!("{topic} payload")),
            "-V {v}: {lines:#?}"
        );
        if v.ends_with("31") {
            // MQTT 3.1 cannot ask the broker for an id: one is generated, as libmosquitto does.
            assert!(lines[0].starts_with("Client mosq-"), "{lines:#?}");
        }
    }
}

#[test]
fn v5_timeout_publishes_the_will() {
    let Some(b) = broker(true) else { return };
    let port = b.port.to_string();
    let topic = unique("will");
    let sub = Sub::start(b.port, &["-t", &topic, "-C", "1", "-v", "-V", "5"]);
    let out = run(
        &[
            "sub",
            "-p",
            &port,
            "-t",
            &unique("nothing"),
            "-V",
            "5",
            "--will-topic",
            &topic,
            "--will-payload",
            "gone",
            "-W",
            "1",
        ],
        b"",
        STEP,
    );
    assert_eq!(out.code, Some(27));
    let (code, lines, _) = sub.finish(STEP);
    assert_eq!(code, Some(0));
    assert!(lines.contains(&format!("{topic} gone")), "{lines:#?}");
}

#[test]
fn empty_payload_output() {
    let Some(b) = broker(true) else { return };
    let topic = unique("empty");
    let sub = Sub::start(b.port, &["-t", &topic, "-C", "2", "-v"]);
    assert_eq!(publish(b.port, &["-t", &topic, "-n"]).code, Some(0));
    assert_eq!(publish(b.port, &["-t", &topic, "-m", "x y"]).code, Some(0));
    let (code, lines, _) = sub.finish(STEP);
    assert_eq!(code, Some(0));
    let printed: Vec<&String> = lines.iter().filter(|l| !l.starts_with("Client ")).collect();
    assert!(printed.contains(&&format!("{topic} (null)")), "{lines:#?}");
    assert!(printed.contains(&&format!("{topic} x y")), "{lines:#?}");
}

#[test]
fn refused_connections_match_mosquitto() {
    let Some(b) = broker(false) else { return };
    let port = b.port.to_string();
    let out = run(&["pub", "-p", &port, "-t", "a", "-m", "x", "-d"], b"", STEP);
    assert_eq!(out.code, Some(5));
    assert_eq!(
        out.stdout,
        "Client (null) sending CONNECT\nClient (null) received CONNACK (5)\n"
    );
    assert_eq!(
        out.stderr,
        "Connection error: Connection Refused: not authorised.\nError: The connection was refused.\n"
    );

    let out = run(
        &["pub", "-p", &port, "-t", "a", "-m", "x", "-V", "5"],
        b"",
        STEP,
    );
    assert_eq!(out.code, Some(135));
    assert_eq!(
        out.stderr,
        "Connection error: Not authorized\nError: A network protocol error occurred when communicating with the broker.\n"
    );

    let out = run(&["sub", "-p", &port, "-t", "a"], b"", STEP);
    assert_eq!(out.code, Some(5));
    assert_eq!(
        out.stderr,
        "Connection error: Connection Refused: not authorised.\n"
    );

    let out = run(&["sub", "-p", &port, "-t", "a", "-V", "mqttv5"], b"", STEP);
    assert_eq!(out.code, Some(135));
    assert_eq!(out.stderr, "Connection error: Not authorized\n");
}

#[test]
fn usage_errors_need_no_broker() {
    let out = run(&["pub", "-t", "a", "-m", "x", "-c"], b"", STEP);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "Error: You must provide a client id if you are using the -c option.\n\nUse 'hermod pub --help' to see usage.\n"
    );
    let out = run(&["sub"], b"", STEP);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "Error: You must specify a topic to subscribe to.\n\nUse 'hermod sub --help' to see usage.\n"
    );
    let out = run(&["pub", "-t", "a"], b"", STEP);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .starts_with("Error: Both topic and message must be supplied.\n")
    );
    assert!(out.stdout.contains("Usage: hermod pub"));
    let out = run(&["sub", "--help"], b"", STEP);
    assert_eq!(out.code, Some(1));
    assert!(out.stdout.contains("Usage: hermod sub"));
    // Nothing listens on this port: the OS error, exit code 1.
    let port = free_port().to_string();
    let out = run(&["pub", "-p", &port, "-t", "a", "-m", "x"], b"", STEP);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (Some(1), "Error: Connection refused\n")
    );
}
