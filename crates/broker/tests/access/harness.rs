//! Harness for the transport and access-control tests: the shared scaffolding of hermod-testkit
//! (test PKI, broker from a TOML file in a temporary folder, raw MQTT client over TCP, TLS,
//! WebSocket or WebSocket over TLS, fake HTTP auth service), plus what only this suite needs: the
//! issue's example configuration and its users, CONNECT from a chosen source address, and
//! external programs.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use hermod_proto::decode_packet;
pub use hermod_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long "nothing arrives" is watched for (shorter than the testkit's default).
pub const QUIET: Duration = Duration::from_millis(300);

/// Sends `c` over plain TCP from the local address `src` (any 127.x.y.z works on Linux
/// loopback, so tests can play several clients' addresses) and returns the CONNACK reason as
/// sent (a 3.1.1 return code maps to the v5 code with the same meaning), or why there is none.
pub async fn connack_from(
    src: std::net::IpAddr,
    addr: SocketAddr,
    c: Connect,
    limit: Duration,
) -> Result<ReasonCode, String> {
    let version = c.protocol;
    let exchange = async {
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("bind {src}: {e}"))?;
        let mut stream = sock
            .connect(addr)
            .await
            .map_err(|e| format!("connect from {src}: {e}"))?;
        stream
            .write_all(&encode(&Packet::Connect(Box::new(c)), version))
            .await
            .map_err(|e| format!("send CONNECT: {e}"))?;
        let mut buf = BytesMut::with_capacity(64);
        loop {
            match decode_packet(&mut buf, version, usize::MAX) {
                Ok(Some(Packet::ConnectAck(a))) => return Ok(a.reason),
                Ok(Some(other)) => return Err(format!("expected CONNACK, got {other:?}")),
                Ok(None) => {}
                Err(e) => return Err(format!("undecodable answer: {e}")),
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("closed without CONNACK".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no CONNACK within {limit:?}")))
}

// ---------------------------------------------------------------------------------------------
// External programs

/// The path of `name` on PATH, or None (the caller prints a skip message).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A child process whose stdout/stderr go to files; killed on drop.
pub struct Bg {
    pub child: std::process::Child,
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Bg {
    pub fn spawn(cmd: &mut std::process::Command, dir: &Path, tag: &str) -> Bg {
        let out = dir.join(format!("{tag}.out"));
        let err = dir.join(format!("{tag}.err"));
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out file"))
            .stderr(std::fs::File::create(&err).expect("err file"))
            .spawn()
            .expect("spawn");
        Bg { child, out, err }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (bounded) for the exit code; None on timeout (the child is then killed).
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until stdout+stderr contain `needle`.
    pub async fn wait_output(&self, needle: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.stdout().contains(needle) || self.stderr().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to its end, bounded by `limit`: (exit code, None on timeout; stdout; stderr).
pub async fn run(
    cmd: &mut std::process::Command,
    dir: &Path,
    tag: &str,
    limit: Duration,
) -> (Option<i32>, String, String) {
    let mut bg = Bg::spawn(cmd, dir, tag);
    let code = bg.wait(limit).await;
    (code, bg.stdout(), bg.stderr())
}

/// Skips the calling test (returns None) with a message when `name` is not installed.
pub fn require_tool(name: &str, package: &str) -> Option<PathBuf> {
    let p = which(name);
    if p.is_none() {
        eprintln!("SKIP: {name} not found (apt-get install -y {package})");
    }
    p
}

// ---------------------------------------------------------------------------------------------
// The issue's configuration example

/// The configuration example of the issue, verbatim but for the bind addresses.
pub const EXAMPLE: &str = r#"allow_anonymous = false
password_file = "passwd"
acl_file = "acl"
[[listener]]
bind = "0.0.0.0:1883"
[[listener]]
bind = "0.0.0.0:8883"
transport = "tls"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
cafile = "certs/ca.pem"
require_certificate = true
crlfile = "certs/ca.crl"
use_identity_as_username = true
[[listener]]
bind = "0.0.0.0:8083"
transport = "ws"          # tcp | tls | ws | wss
path = "/mqtt"
"#;

/// Listener indexes of [`EXAMPLE`] (and of [`EXTRA_LISTENERS`] appended to it).
pub const TCP: usize = 0;
pub const MTLS: usize = 1;
pub const WS: usize = 2;
pub const TLS: usize = 3;
pub const WSS: usize = 4;

/// A server-certificate-only TLS listener and a WSS listener, appended to the example.
pub const EXTRA_LISTENERS: &str = r#"
[[listener]]
bind = "127.0.0.1:0"
transport = "tls"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
[[listener]]
bind = "127.0.0.1:0"
transport = "wss"
certfile = "certs/server.pem"
keyfile = "certs/server.key"
path = "/mqtt"
"#;

/// [`EXAMPLE`] on loopback ports chosen by the OS, plus `extra` appended.
pub fn example_config(extra: &str) -> String {
    let mut text = EXAMPLE
        .replace("0.0.0.0:1883", "127.0.0.1:0")
        .replace("0.0.0.0:8883", "127.0.0.1:0")
        .replace("0.0.0.0:8083", "127.0.0.1:0");
    assert_eq!(
        text.matches("127.0.0.1:0").count(),
        3,
        "the example's three listeners"
    );
    text.push_str(extra);
    text
}

/// A password file line in mosquitto_passwd's `$7$` format.
pub fn passwd_line(user: &str, password: &str) -> String {
    let hash = hermod_broker::auth::hash_mosquitto_pbkdf2(password.as_bytes()).expect("hash");
    format!("{user}:{hash}\n")
}

/// Users of the password file written by [`example_broker`]: (user, password).
pub const USERS: &[(&str, &str)] = &[
    ("root", "root-pw"),
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
    ("zed", "zed-pw"),
];

pub fn password_of(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no user {user}"))
}

/// A folder with the PKI, a password file with [`USERS`], `acl` as the ACL file, and the example
/// config plus [`EXTRA_LISTENERS`]; the broker started on it.
pub async fn example_broker(pki: &Pki, acl: &str) -> TestBroker {
    let dir = tempdir();
    pki.write_to(dir.path());
    let passwd: String = USERS.iter().map(|(u, p)| passwd_line(u, p)).collect();
    write(dir.path(), "passwd", &passwd);
    write(dir.path(), "acl", acl);
    TestBroker::start_in(dir, &example_config(EXTRA_LISTENERS)).await
}

/// A v5 CONNECT for a user of [`USERS`].
pub fn login(v: ProtocolVersion, id: &str, user: &str) -> Connect {
    connect_auth(v, id, Some(user), Some(password_of(user).as_bytes()))
}
