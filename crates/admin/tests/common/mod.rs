//! A broker on 127.0.0.1:0 with the admin server on port 0 and its store in a temporary folder,
//! and a tiny HTTP/1.1 client (one request per connection, `Connection: close`) over TCP or the
//! Unix socket. Every wait is bounded.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use hermod_admin::AdminServer;
use hermod_broker::api::BrokerHandle;
use hermod_broker::config::SyncSetting;
use hermod_broker::{Broker, Config};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest wait for one HTTP exchange.
pub const HTTP_WAIT: Duration = Duration::from_secs(20);

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `code` of an error answer.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// A broker, its admin server, and the folder holding the store.
pub struct Env {
    pub mqtt: SocketAddr,
    pub admin: Option<AdminServer>,
    pub handle: BrokerHandle,
    pub dir: tempfile::TempDir,
    /// A bearer token of `admin` (logged in with the generated password).
    pub token: String,
    /// The rules started by [`Env::start_with_rules`].
    pub rules: Option<hermod_rules::Rules>,
    /// The shadow service started by [`Env::start_with_shadows`].
    pub shadows: Option<hermod_shadow::ShadowService>,
    store: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The store folder used by [`Env::start_with`].
pub fn store_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

impl Env {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Config::for_tests`] with the admin listener on 127.0.0.1:0 and an on-disk store
    /// (`sync = "os"`) in a temporary folder, changed by `f`.
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(f, None, false).await
    }

    /// [`Env::start`] with the shadow service (default `[shadow]`) started on the broker and
    /// given to the admin API.
    pub async fn start_with_shadows() -> Self {
        Self::start_full(|_| {}, None, true).await
    }

    /// [`Env::start`] with the `[[connector]]`, `[[rule]]` and `[[bridge]]` tables of
    /// `rules_toml` started on the broker and given to the admin API (`Services`).
    pub async fn start_with_rules(rules_toml: &str) -> Self {
        Self::start_full(|_| {}, Some(rules_toml), false).await
    }

    async fn start_full(
        f: impl FnOnce(&mut Config),
        rules_toml: Option<&str>,
        with_shadows: bool,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hermod-admin-test-")
            .tempdir()
            .expect("tempdir");
        let mut config = Config::for_tests();
        config.store.path = store_dir(dir.path());
        config.store.sync = SyncSetting::Os;
        config.admin.enabled = true;
        config.admin.bind = "127.0.0.1:0".into();
        f(&mut config);
        let store = config.store.path.clone();
        let broker = Broker::bind(config.clone()).await.expect("broker binds");
        let mqtt = broker.local_addr();
        let handle = broker.handle();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(broker.run(async move {
            rx.await.ok();
        }));
        let rules = match rules_toml {
            Some(text) => {
                let cfg = hermod_rules::RulesConfig::parse(text, &dir.path().join("hermod.toml"))
                    .unwrap_or_else(|e| panic!("rules config: {e}"));
                let rules = hermod_rules::Rules::start(handle.clone(), &cfg)
                    .await
                    .unwrap_or_else(|e| panic!("rules start: {e}"));
                Some(rules)
            }
            None => None,
        };
        let shadows = with_shadows.then(|| {
            hermod_shadow::ShadowService::start(
                handle.clone(),
                &hermod_shadow::ShadowConfig::default(),
            )
            .expect("shadow service starts")
        });
        let services = hermod_admin::Services {
            rules: rules.as_ref().map(hermod_rules::Rules::view),
            shadows: shadows
                .as_ref()
                .and_then(hermod_shadow::ShadowService::client),
            cluster: None,
        };
        let admin = hermod_admin::start_with(handle.clone(), &config, services)
            .await
            .expect("admin server starts");
        let mut env = Env {
            mqtt,
            admin: Some(admin),
            handle,
            dir,
            token: String::new(),
            rules,
            shadows,
            store,
            stop: Some(tx),
            task: Some(task),
        };
        if let Some(password) = env.initial_password() {
            env.token = env.login("admin", &password).await;
        }
        env
    }

    pub fn store(&self) -> PathBuf {
        self.store.clone()
    }

    /// The generated password from `initial-admin-password`, if the file exists.
    pub fn initial_password(&self) -> Option<String> {
        std::fs::read_to_string(self.store().join("initial-admin-password"))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    pub fn server(&self) -> &AdminServer {
        self.admin.as_ref().expect("admin server running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.server().local_addr().expect("admin listener")
    }

    /// Logs in; panics unless 200.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .request(
                "POST",
                "/api/v5/login",
                None,
                Some(&serde_json::json!({"username": user, "password": password}).to_string()),
            )
            .await;
        assert_eq!(r.status, 200, "login {user}: {}", r.body);
        r.json()["token"].as_str().expect("token").to_owned()
    }

    /// A request with optional `Authorization` value.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        let mut headers = Vec::new();
        if let Some(a) = auth {
            headers.push(("Authorization".to_owned(), a.to_owned()));
        }
        let stream = tokio::net::TcpStream::connect(self.addr())
            .await
            .expect("connect admin");
        http(stream, method, path, &headers, body).await
    }

    /// A request as `admin` (bearer token).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string());
        self.request(method, path, Some(&auth), body.as_deref())
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call("PUT", path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None).await
    }

    /// Stops the admin server and the broker (bounded).
    pub async fn stop(mut self) {
        if let Some(shadows) = self.shadows.take() {
            tokio::time::timeout(Duration::from_secs(15), shadows.shutdown())
                .await
                .expect("shadow service stops in time");
        }
        if let Some(rules) = self.rules.take() {
            tokio::time::timeout(Duration::from_secs(15), rules.shutdown())
                .await
                .expect("rules stop in time");
        }
        if let Some(admin) = self.admin.take() {
            tokio::time::timeout(Duration::from_secs(15), admin.shutdown())
                .await
                .expect("admin stops in time");
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(15), t).await;
            assert!(
                matches!(r, Ok(Ok(()))),
                "broker stops in time without panic"
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// `Basic base64(user:secret)`.
pub fn basic(user: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

/// Percent-encodes a path segment.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One HTTP/1.1 exchange on `stream` (bounded by [`HTTP_WAIT`]).
pub async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    let exchange = async {
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        raw
    };
    let raw = tokio::time::timeout(HTTP_WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {path} within {HTTP_WAIT:?}"));
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}
