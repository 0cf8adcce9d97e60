//! `hermod serve` logging: on stderr, plain text without ANSI escape codes when stderr is not a
//! terminal, and one JSON object a line with `--log-format json`.
//!
//! Each test starts its own `hermod serve --memory -p 0` in a fresh folder, waits (bounded) for
//! the start-up line, stops it with SIGTERM by PID (SIGKILL if it has not exited 10 s later) and
//! checks everything it wrote.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HERMOD: &str = env!("CARGO_BIN_EXE_hermod");
const START_WAIT: Duration = Duration::from_secs(20);
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A temp folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("hermod-serve-logging-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the child (by its PID, through the handle) if a test fails before it exited.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads a pipe to its end on a thread, sending each chunk as it arrives.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Runs `hermod serve --memory -p 0 --admin-bind 127.0.0.1:0 ARGS` until it has logged its start-up line, stops it with
/// SIGTERM, and returns (exit code, stdout, stderr).
fn serve_and_stop(tag: &str, args: &[&str]) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let dir = TempDir::new(tag);
    let mut child = Guard(
        Command::new(HERMOD)
            // The admin API on a free port: tests (and other brokers) run side by side.
            .args(["serve", "--memory", "-p", "0", "--admin-bind", "127.0.0.1:0"])
            .args(args)
            .current_dir(&dir.0)
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hermod serve"),
    );
    let out = drain(child.0.stdout.take().unwrap());
    let err = drain(child.0.stderr.take().unwrap());
    let mut stderr = Vec::new();
    let deadline = Instant::now() + START_WAIT;
    while !String::from_utf8_lossy(&stderr).contains("hermod started") {
        let left = deadline.saturating_duration_since(Instant::now());
        match err.recv_timeout(left) {
            Ok(chunk) => stderr.extend(chunk),
            Err(_) => panic!(
                "no \"hermod started\" on stderr within {START_WAIT:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&stderr)
            ),
        }
    }
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + STOP_WAIT;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "hermod (pid {pid}) still running {STOP_WAIT:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipes close with the process: drain what is left (bounded).
    let deadline = Instant::now() + STOP_WAIT;
    let collect = |rx: &mpsc::Receiver<Vec<u8>>, into: &mut Vec<u8>| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => into.extend(chunk),
            Err(_) => break,
        }
    };
    collect(&err, &mut stderr);
    let mut stdout = Vec::new();
    collect(&out, &mut stdout);
    (status.code(), stdout, stderr)
}

#[test]
fn text_logs_on_a_pipe_have_no_escape_codes() {
    let (code, stdout, stderr) = serve_and_stop("text", &[]);
    let text = String::from_utf8_lossy(&stderr);
    assert_eq!(code, Some(0), "exit status after SIGTERM; stderr:\n{text}");
    assert!(
        !stderr.contains(&0x1b),
        "ESC byte in the log although stderr is a pipe:\n{text:?}"
    );
    assert!(text.contains("INFO"), "{text}");
    assert!(text.contains("hermod stopped"), "{text}");
    assert!(
        stdout.is_empty(),
        "logs belong on stderr; stdout had:\n{}",
        String::from_utf8_lossy(&stdout)
    );
}

#[test]
fn json_logs_are_one_object_a_line() {
    let (code, stdout, stderr) = serve_and_stop("json", &["--log-format", "json"]);
    let text = String::from_utf8_lossy(&stderr);
    assert_eq!(code, Some(0), "exit status after SIGTERM; stderr:\n{text}");
    assert!(
        !stderr.contains(&0x1b),
        "ESC byte in the JSON log:\n{text:?}"
    );
    assert!(stdout.is_empty(), "{}", String::from_utf8_lossy(&stdout));
    let mut messages = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nwhole log:\n{text}"));
        assert!(v.is_object(), "{line}");
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        assert!(v["level"].is_string(), "no level: {line}");
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    for m in ["hermod started", "hermod stopped"] {
        assert!(messages.iter().any(|x| x == m), "no {m:?} in {messages:?}");
    }
}

/// A start-up error with `--log-format json` is a JSON line too (exit 1).
#[test]
fn json_start_up_error_is_a_json_line() {
    let dir = TempDir::new("json-error");
    let mut child = Guard(
        Command::new(HERMOD)
            .args(["serve", "--log-format", "json", "-c", "missing.toml"])
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hermod serve"),
    );
    let err = drain(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + STOP_WAIT;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "hermod serve -c missing.toml still running after {STOP_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = Vec::new();
    while let Ok(chunk) = err.recv_timeout(STOP_WAIT) {
        stderr.extend(chunk);
    }
    let text = String::from_utf8_lossy(&stderr);
    assert_eq!(status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "no error logged");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert_eq!(v["level"], "ERROR", "{line}");
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("missing.toml"), "{line}");
    }
}
