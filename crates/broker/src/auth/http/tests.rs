//! Tests of `[auth.http]` authentication against hermod-testkit's fake HTTP service.

use super::*;

pub(crate) use hermod_testkit::json_response as json_reply;

/// hermod-testkit's fake HTTP service: `reply(request_body)` gives the raw response, or
/// `None` to hang. Returns its URL and the server (which stops when dropped; it counts
/// connections).
pub(crate) async fn server(
    reply: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> (String, hermod_testkit::AuthServer) {
    let server = hermod_testkit::AuthServer::raw(reply).await;
    (server.url.clone(), server)
}

fn cfg(url: &str) -> HttpAuthConfig {
    HttpAuthConfig {
        url: url.into(),
        timeout_ms: 300,
        cache_ttl_secs: 60,
        cache_size: 100,
        cafile: None,
        acl_url: None,
        acl_cache_ttl_secs: 60,
        acl_cache_size: 100,
    }
}

fn req<'a>(user: &'a str, pw: &'a [u8]) -> HttpAuthRequest<'a> {
    HttpAuthRequest {
        client_id: "c1",
        username: Some(user),
        password: Some(pw),
        peer: "192.0.2.1:1234".parse().expect("addr"),
        certificate_cn: None,
    }
}

#[tokio::test]
async fn allow_deny_ignore_and_request_shape() {
    let (url, _server) = server(|body| {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        assert_eq!(v["clientid"], "c1");
        assert_eq!(v["peer_address"], "192.0.2.1:1234");
        assert!(v["certificate_cn"].is_null());
        let result = match (v["username"].as_str()?, v["password"].as_str()?) {
            ("a", "good") => "allow",
            ("i", _) => "ignore",
            _ => "deny",
        };
        Some(json_reply(200, &format!("{{\"result\":\"{result}\"}}")))
    })
    .await;
    let h = HttpAuth::new(cfg(&url)).expect("config");
    assert_eq!(h.check(&req("a", b"good")).await, HttpVerdict::Allow);
    assert_eq!(h.check(&req("a", b"bad")).await, HttpVerdict::Deny);
    assert_eq!(h.check(&req("i", b"x")).await, HttpVerdict::Ignore);
}

#[tokio::test]
async fn non_2xx_garbage_empty_and_chunked() {
    let (url, _server) = server(|body| {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        Some(match v["username"].as_str()? {
            "500" => json_reply(500, r#"{"result":"allow"}"#),
            "garbage" => json_reply(200, "<html>allow</html>"),
            "empty" => "HTTP/1.1 204 No Content\r\n\r\n".into(),
            "weird" => json_reply(200, r#"{"result":"maybe"}"#),
            "notHttp" => "SSH-2.0-nope\r\n\r\n".into(),
            _ => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\n{\"res\r\n\
                  d\r\nult\":\"allow\"}\r\n0\r\n\r\n"
                .into(),
        })
    })
    .await;
    let h = HttpAuth::new(cfg(&url)).expect("config");
    for user in ["500", "garbage", "empty", "weird"] {
        assert_eq!(h.check(&req(user, b"p")).await, HttpVerdict::Deny, "{user}");
    }
    // Not HTTP at all: the service is broken, not saying no (denied, not counted).
    assert_eq!(h.check(&req("notHttp", b"p")).await, HttpVerdict::Error);
    assert_eq!(h.check(&req("chunked", b"p")).await, HttpVerdict::Allow);
}

#[tokio::test]
async fn timeout_and_refused_connection_deny() {
    let (url, _server) = server(|_| None).await;
    let h = HttpAuth::new(cfg(&url)).expect("config");
    let started = Instant::now();
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Error);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let h = HttpAuth::new(cfg(&format!("http://127.0.0.1:{port}/x"))).expect("config");
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Error);
}

#[tokio::test]
async fn cache_by_password_hash() {
    let (url, server) = server(|_| Some(json_reply(200, r#"{"result":"allow"}"#))).await;
    let h = HttpAuth::new(cfg(&url)).expect("config");
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Allow);
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Allow);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(h.check(&req("a", b"other")).await, HttpVerdict::Allow);
    assert_eq!(server.requests().len(), 2);
    let cache = h.cache.lock().expect("lock");
    let dump = format!("{:?}", cache.keys().collect::<Vec<_>>());
    assert!(!dump.contains("other"));
}

#[test]
fn url_validation() {
    let err = |c: HttpAuthConfig| c.validate().expect_err("invalid").to_string();
    assert!(err(cfg("ftp://x")).contains("must start with http:// or https://"));
    assert!(err(cfg("x/y")).contains("[auth.http] url x/y"));
    assert!(err(cfg("http://:80/")).contains("url http://:80/"));
    assert!(err(cfg("http://u:p@h/")).contains("credentials"));
    let mut http_with_ca = cfg("http://h/");
    http_with_ca.cafile = Some("ca.pem".into());
    assert!(err(http_with_ca).contains("cafile"));
    assert!(
        err(HttpAuthConfig {
            timeout_ms: 0,
            ..cfg("http://h/")
        })
        .contains("timeout_ms")
    );
    for url in [
        "http://[::1]:8080/a?b=c",
        "http://auth.local",
        "https://auth.local:8443/auth",
    ] {
        cfg(url).validate().expect(url);
    }
    // Built outside any runtime (as when a configuration is checked).
    HttpAuth::new(cfg("http://h/")).expect("no runtime needed");
    let mut https_with_ca = cfg("https://h/");
    https_with_ca.cafile = Some("ca.pem".into());
    https_with_ca.validate().expect("https with cafile");
    // A CA file that cannot be read: refused when the source is built, naming the file.
    let e = HttpAuth::new(https_with_ca).expect_err("no such CA file");
    assert!(
        e.to_string().contains("cafile") && e.to_string().contains("ca.pem"),
        "{e}"
    );

    let c: HttpAuthConfig = toml::from_str("url = \"http://h/\"").expect("toml");
    assert_eq!(
        (c.timeout_ms, c.cache_ttl_secs, c.cache_size, c.cafile),
        (2000, 60, 10_000, None)
    );
    let c: HttpAuthConfig =
        toml::from_str("url = \"https://h/\"\ncafile = \"certs/ca.pem\"").expect("toml");
    assert_eq!(c.cafile, Some("certs/ca.pem".into()));
    assert!(toml::from_str::<HttpAuthConfig>("url = \"http://h/\"\nbogus = 1").is_err());
}

/// Several checks (not cached) over one keep-alive connection.
#[tokio::test]
async fn checks_reuse_one_pooled_connection() {
    let server = hermod_testkit::AuthServer::raw_keep_alive(|_| {
        Some(json_reply(200, r#"{"result":"allow"}"#))
    })
    .await;
    let h = HttpAuth::new(HttpAuthConfig {
        cache_ttl_secs: 0,
        ..cfg(&server.url)
    })
    .expect("config");
    for i in 0..5 {
        let user = format!("u{i}");
        assert_eq!(h.check(&req(&user, b"p")).await, HttpVerdict::Allow);
    }
    assert_eq!(server.requests().len(), 5);
    assert_eq!(
        server.connections(),
        1,
        "one pooled connection for five checks"
    );
}

/// A service that closes every connection after its answer (no keep-alive): each check
/// gets its answer, whether or not it finds the previous connection closed already.
#[tokio::test]
async fn service_closing_connections() {
    let (url, server) = server(|_| Some(json_reply(200, r#"{"result":"allow"}"#))).await;
    let h = HttpAuth::new(HttpAuthConfig {
        cache_ttl_secs: 0,
        ..cfg(&url)
    })
    .expect("config");
    for i in 0..20 {
        let user = format!("u{i}");
        assert_eq!(h.check(&req(&user, b"p")).await, HttpVerdict::Allow, "{i}");
    }
    assert!(server.requests().len() >= 20);
}

/// A connection closed before the answer: the check is sent once more, no more.
#[tokio::test]
async fn resent_once_when_the_connection_closes_early() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let (url, server) = server(move |body| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // An empty reply: the server hangs up without answering.
        Some(if n == 0 || body.contains("always") {
            String::new()
        } else {
            json_reply(200, r#"{"result":"allow"}"#)
        })
    })
    .await;
    let h = HttpAuth::new(cfg(&url)).expect("config");
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Allow);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(h.check(&req("always", b"p")).await, HttpVerdict::Error);
    assert_eq!(server.requests().len(), 4);
}

fn write_ca(dir: &std::path::Path, pem: &str) -> std::path::PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).expect("write CA file");
    path
}

#[tokio::test]
async fn https_service_with_cafile() {
    let pki = hermod_testkit::Pki::new();
    let server = hermod_testkit::AuthServer::raw_tls(&pki.server, |body| {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let result = if v["username"] == "a" {
            "allow"
        } else {
            "deny"
        };
        Some(json_reply(200, &format!("{{\"result\":\"{result}\"}}")))
    })
    .await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let dir = hermod_testkit::tempdir();
    let ca = write_ca(dir.path(), &pki.ca_pem);
    let h = HttpAuth::new(HttpAuthConfig {
        cafile: Some(ca),
        cache_ttl_secs: 0,
        ..cfg(&server.url)
    })
    .expect("config");
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Allow);
    assert_eq!(h.check(&req("b", b"p")).await, HttpVerdict::Deny);
    assert_eq!(h.check(&req("a", b"q")).await, HttpVerdict::Allow);
    assert_eq!(server.requests().len(), 3);
    assert_eq!(server.connections(), 1, "one TLS connection, kept alive");
}

/// Collects what is logged on this thread while the guard lives.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

/// A certificate not signed by `cafile`'s CA: denied as a service error, logged, and the
/// service never gets the credentials.
#[tokio::test]
async fn https_service_with_an_untrusted_certificate_denies() {
    let pki = hermod_testkit::Pki::new();
    let server = hermod_testkit::AuthServer::raw_tls(&pki.other_server, |_| {
        Some(json_reply(200, r#"{"result":"allow"}"#))
    })
    .await;
    let dir = hermod_testkit::tempdir();
    let ca = write_ca(dir.path(), &pki.ca_pem);
    let h = HttpAuth::new(HttpAuthConfig {
        cafile: Some(ca),
        ..cfg(&server.url)
    })
    .expect("config");
    let logs = Logs::default();
    let guard = logs.capture();
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Error);
    // Not cached: asked again (and refused again).
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Error);
    drop(guard);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(server.connections(), 2);
    let text = logs.text();
    assert!(text.contains("HTTP auth failed, denying"), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains(&server.url), "{text}");
}

#[tokio::test]
async fn oversized_answer_is_an_error() {
    let big = format!(
        r#"{{"result":"allow","pad":"{}"}}"#,
        "x".repeat(MAX_RESPONSE)
    );
    let (url, _server) = server(move |_| Some(json_reply(200, &big))).await;
    let h = HttpAuth::new(cfg(&url)).expect("config");
    assert_eq!(h.check(&req("a", b"p")).await, HttpVerdict::Error);
}
