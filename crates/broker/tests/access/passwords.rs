//! Password files written by Debian's `mosquitto_passwd -c -b` and by `hermod passwd -b`:
//! the right password connects, a wrong one gets CONNACK 0x05 (3.1.1) / 0x86 (5.0); anonymous
//! clients are refused with 0x05 / 0x87 once a password file is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const CONFIG: &str = r#"allow_anonymous = false
password_file = "passwd"
[[listener]]
bind = "127.0.0.1:0"
"#;

/// The raw CONNACK bytes the broker answers to `c` (so the 3.1.1 return code is checked as sent,
/// not as decoded).
async fn raw_connack(addr: std::net::SocketAddr, c: Connect) -> Vec<u8> {
    let mut client = Client::open(addr, &Via::Tcp, c.protocol)
        .await
        .expect("tcp");
    client.send(&Packet::Connect(Box::new(c))).await;
    let mut out = Vec::new();
    match client.read(WAIT).await {
        Recv::Packet(Packet::ConnectAck(a)) => {
            out.extend(encode(&Packet::ConnectAck(a), client.version));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    out
}

/// Checks a broker whose password file has `user`/`password` (and nothing for "nobody").
async fn check_password_file(addr: std::net::SocketAddr, user: &str, password: &str, origin: &str) {
    let c = |v, pw: Option<&str>| {
        connect_auth(v, &format!("pw-{v:?}"), Some(user), pw.map(str::as_bytes))
    };
    for v in [V311, V5] {
        assert_eq!(
            Client::connack(addr, &Via::Tcp, c(v, Some(password))).await,
            ReasonCode::SUCCESS,
            "{origin}: right password, {v:?}"
        );
    }
    // 3.1.1: return code 5 "not authorised" (as Mosquitto answers), exactly these bytes.
    assert_eq!(
        raw_connack(addr, c(V311, Some("wrong"))).await,
        vec![0x20, 0x02, 0x00, 0x05],
        "{origin}: wrong password, 3.1.1"
    );
    assert_eq!(
        Client::connack(addr, &Via::Tcp, c(V5, Some("wrong"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "{origin}: wrong password, 5.0"
    );
    assert_eq!(
        Client::connack(addr, &Via::Tcp, c(V5, None)).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "{origin}: known user without password, 5.0"
    );
    let nobody = connect_auth(V5, "nobody", Some("nobody"), Some(password.as_bytes()));
    assert_eq!(
        Client::connack(addr, &Via::Tcp, nobody).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "{origin}: user not in the file, 5.0"
    );
    // Anonymous: refused, 0x05 / 0x87.
    assert_eq!(
        raw_connack(addr, connect_auth(V311, "anon", None, None)).await,
        vec![0x20, 0x02, 0x00, 0x05],
        "{origin}: anonymous, 3.1.1"
    );
    assert_eq!(
        Client::connack(addr, &Via::Tcp, connect_auth(V5, "anon", None, None)).await,
        ReasonCode::NOT_AUTHORIZED,
        "{origin}: anonymous, 5.0"
    );
}

async fn run_ok(cmd: &mut Command, dir: &Path, tag: &str) {
    let (code, out, err) = run(cmd, dir, tag, Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "{tag}: {out} {err}");
}

// A file written by Debian's `mosquitto_passwd -c -b` (then `-b` to add a second user).
#[tokio::test]
async fn mosquitto_passwd_file() {
    let Some(tool) = require_tool("mosquitto_passwd", "mosquitto") else {
        return;
    };
    let dir = tempdir();
    let file = dir.path().join("passwd");
    run_ok(
        Command::new(&tool)
            .arg("-c")
            .arg("-b")
            .arg(&file)
            .args(["alice", "correct horse"]),
        dir.path(),
        "mp-c",
    )
    .await;
    run_ok(
        Command::new(&tool)
            .arg("-b")
            .arg(&file)
            .args(["bob", "hunter2"]),
        dir.path(),
        "mp-b",
    )
    .await;
    let text = std::fs::read_to_string(&file).expect("passwd");
    assert!(
        text.lines().all(|l| l.contains(":$7$")),
        "mosquitto_passwd 2.x writes $7$ lines: {text}"
    );
    let b = TestBroker::start_in(dir, CONFIG).await;
    check_password_file(b.addr(0), "alice", "correct horse", "mosquitto_passwd").await;
    check_password_file(b.addr(0), "bob", "hunter2", "mosquitto_passwd").await;
    b.stop().await;
}

/// The `hermod` binary: $HERMOD_BIN, else target/{debug,release}/hermod beside this test binary.
fn hermod_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HERMOD_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?; // target/debug/deps/access-… → target/debug
    let target = profile_dir.parent()?;
    [
        profile_dir.join("hermod"),
        target.join("debug/hermod"),
        target.join("release/hermod"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

// A file written by `hermod passwd -c -b` (argon2id) and extended with `hermod passwd -b
// --mosquitto` ($7$ lines): both kinds of line authenticate.
#[tokio::test]
async fn hermod_passwd_file() {
    let Some(hermod) = hermod_bin() else {
        eprintln!("SKIP: no hermod binary (cargo build -p hermod, or set HERMOD_BIN)");
        return;
    };
    let dir = tempdir();
    let file = dir.path().join("passwd");
    run_ok(
        Command::new(&hermod)
            .args(["passwd", "-c", "-b"])
            .arg(&file)
            .args(["carol", "s3cret pass"]),
        dir.path(),
        "hp-c",
    )
    .await;
    run_ok(
        Command::new(&hermod)
            .args(["passwd", "-b", "--mosquitto"])
            .arg(&file)
            .args(["dave", "pa:ss"]),
        dir.path(),
        "hp-m",
    )
    .await;
    let text = std::fs::read_to_string(&file).expect("passwd");
    assert!(
        text.contains("carol:$argon2id$") && text.contains("dave:$7$"),
        "{text}"
    );
    let b = TestBroker::start_in(dir, CONFIG).await;
    check_password_file(b.addr(0), "carol", "s3cret pass", "hermod passwd").await;
    check_password_file(b.addr(0), "dave", "pa:ss", "hermod passwd --mosquitto").await;
    b.stop().await;
}

// The fixture written by mosquitto_passwd 2.0.11 (crates/broker/src/auth/testdata), copied into
// the folder: works without the Debian tool installed.
#[tokio::test]
async fn committed_mosquitto_fixture() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/auth/testdata/mosquitto_passwd.txt");
    let dir = tempdir();
    std::fs::copy(&fixture, dir.path().join("passwd")).expect("copy fixture");
    let b = TestBroker::start_in(dir, CONFIG).await;
    check_password_file(b.addr(0), "alice", "correct horse", "fixture").await;
    b.stop().await;
}
