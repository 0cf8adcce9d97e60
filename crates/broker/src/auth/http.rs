//! `[auth.http]`: ask an HTTP service whether a client may connect.
//!
//! Request: `POST <url>` with JSON `{"clientid", "username", "password", "peer_address",
//! "certificate_cn"}` (`null` for absent values; the password as UTF-8, lossily converted).
//! Response, EMQX's format: a 2xx status and a JSON body `{"result": "allow" | "deny" |
//! "ignore"}`; `ignore` passes the decision to the next auth source.
//!
//! Decisions (fail closed): anything else — non-2xx status (EMQX would treat 4xx/5xx as
//! `ignore`), an empty body (also a 204), unparsable JSON, an unknown `result` — is a deny,
//! and so are timeouts and connection errors, which are logged. Only plain `http://` is
//! supported (a hand-written HTTP/1.1 client, no TLS): `https://` is refused when the
//! configuration is validated, so put the service on localhost or a trusted network.
//!
//! Results are cached for `cache_ttl_secs`, keyed by client id, username, certificate CN and a
//! keyed SHA-256 of the password (a per-process random key, so the cache never holds the
//! password nor a plain, dictionary-attackable hash of it).

use super::AuthLoadError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response (headers + body) read from the service.
const MAX_RESPONSE: usize = 64 * 1024;

/// The `[auth.http]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// `http://host[:port]/path`.
    pub url: String,
    /// Whole request/response deadline.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long an allow/deny/ignore answer is reused; 0 disables the cache.
    #[serde(default = "default_cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// Maximum cached answers.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_cache_ttl_secs() -> u64 {
    60
}
fn default_cache_size() -> usize {
    10_000
}

impl HttpAuthConfig {
    /// Checks the URL (only `http://`) and the timeout.
    pub fn validate(&self) -> Result<(), AuthLoadError> {
        Url::parse(&self.url).map_err(AuthLoadError::Http)?;
        if self.timeout_ms == 0 {
            return Err(AuthLoadError::Http(
                "[auth.http] timeout_ms must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// What the service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVerdict {
    Allow,
    Deny,
    Ignore,
    /// The service could not be reached or did not answer in time: the client is denied, but
    /// this is not its failed login (`[auth_failures]` does not count it). Never cached.
    Error,
}

/// The request fields (borrowed from the CONNECT).
#[derive(Clone, Copy)]
pub struct HttpAuthRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub peer: SocketAddr,
    pub certificate_cn: Option<&'a str>,
}

impl std::fmt::Debug for HttpAuthRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthRequest")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    host: String,
    port: u16,
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        if url.starts_with("https://") {
            return Err(format!(
                "[auth.http] url {url}: https is not supported (Hermod's HTTP auth client is \
                 plain HTTP/1.1); use http:// to a local or trusted service"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("[auth.http] url {url}: must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let bad = || format!("[auth.http] url {url}: invalid host or port");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), 80),
            }
        };
        if host.is_empty() || host.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
            return Err(bad());
        }
        Ok(Url {
            host,
            port,
            path: path.to_owned(),
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

type CacheKey = (String, Option<String>, Option<String>, [u8; 32]);

/// A configured HTTP auth source with its cache. Built once per loaded configuration, so a
/// reload starts with an empty cache.
pub struct HttpAuth {
    config: HttpAuthConfig,
    url: Url,
    cache_key: [u8; 16],
    cache: Mutex<HashMap<CacheKey, (Instant, HttpVerdict)>>,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// Validates `config` and builds the source.
    pub fn new(config: HttpAuthConfig) -> Result<Self, AuthLoadError> {
        config.validate()?;
        let url = Url::parse(&config.url).map_err(AuthLoadError::Http)?;
        let cache_key = argon2::password_hash::try_generate_salt()
            .map_err(|e| AuthLoadError::Http(format!("cannot get random bytes: {e}")))?;
        Ok(HttpAuth {
            config,
            url,
            cache_key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Asks the service (or the cache). Never returns `Allow` on an error.
    pub async fn check(&self, req: &HttpAuthRequest<'_>) -> HttpVerdict {
        let key = self.key(req);
        if let Some(v) = self.cached(&key) {
            return v;
        }
        let deadline = Duration::from_millis(self.config.timeout_ms);
        let verdict = match tokio::time::timeout(deadline, self.exchange(req)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(url = %self.config.url, client_id = req.client_id, "HTTP auth failed, denying: {e}");
                return HttpVerdict::Error;
            }
            Err(_) => {
                tracing::warn!(url = %self.config.url, client_id = req.client_id, "HTTP auth timed out after {} ms, denying", self.config.timeout_ms);
                return HttpVerdict::Error;
            }
        };
        self.store(key, verdict);
        verdict
    }

    fn key(&self, req: &HttpAuthRequest<'_>) -> CacheKey {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        match req.password {
            Some(p) => {
                h.update([1]);
                h.update(p);
            }
            None => h.update([0]),
        }
        (
            req.client_id.to_owned(),
            req.username.map(str::to_owned),
            req.certificate_cn.map(str::to_owned),
            h.finalize().into(),
        )
    }

    fn cached(&self, key: &CacheKey) -> Option<HttpVerdict> {
        if self.config.cache_ttl_secs == 0 {
            return None;
        }
        let ttl = Duration::from_secs(self.config.cache_ttl_secs);
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, v)| *v)
    }

    fn store(&self, key: CacheKey, verdict: HttpVerdict) {
        if self.config.cache_ttl_secs == 0 || self.config.cache_size == 0 {
            return;
        }
        let ttl = Duration::from_secs(self.config.cache_ttl_secs);
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= self.config.cache_size {
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= self.config.cache_size {
                // Still full of fresh answers: start over rather than track recency.
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), verdict));
    }

    async fn exchange(&self, req: &HttpAuthRequest<'_>) -> Result<HttpVerdict, String> {
        let body = serde_json::json!({
            "clientid": req.client_id,
            "username": req.username,
            "password": req.password.map(|p| String::from_utf8_lossy(p).into_owned()),
            "peer_address": req.peer.to_string(),
            "certificate_cn": req.certificate_cn,
        })
        .to_string();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nUser-Agent: hermod\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.url.path,
            self.url.host_header(),
            body.len()
        );
        let mut stream = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        stream
            .write_all(body.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if buf.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        let (status, body) = parse_response(&buf)?;
        Ok(verdict(status, &body))
    }
}

/// Status code and (de-chunked) body of an HTTP/1.x response read to EOF.
fn parse_response(buf: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete response headers")?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "non-UTF-8 response headers")?;
    let rest = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = content_length {
        rest.get(..n)
            .ok_or("body shorter than Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
    }
}

fn verdict(status: u16, body: &[u8]) -> HttpVerdict {
    if !(200..300).contains(&status) {
        return HttpVerdict::Deny;
    }
    #[derive(Deserialize)]
    struct Reply {
        result: String,
    }
    match serde_json::from_slice::<Reply>(body) {
        Ok(r) => match r.result.as_str() {
            "allow" => HttpVerdict::Allow,
            "ignore" => HttpVerdict::Ignore,
            _ => HttpVerdict::Deny,
        },
        Err(_) => HttpVerdict::Deny,
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        assert_eq!(server.connections(), 1);
        assert_eq!(h.check(&req("a", b"other")).await, HttpVerdict::Allow);
        assert_eq!(server.connections(), 2);
        let cache = h.cache.lock().expect("lock");
        let dump = format!("{:?}", cache.keys().collect::<Vec<_>>());
        assert!(!dump.contains("other"));
    }

    #[test]
    fn url_validation() {
        assert!(
            HttpAuthConfig {
                url: "https://x/y".into(),
                ..cfg("")
            }
            .validate()
            .expect_err("https")
            .to_string()
            .contains("https is not supported")
        );
        assert!(cfg("ftp://x").validate().is_err());
        assert!(cfg("http://:80/").validate().is_err());
        assert_eq!(
            Url::parse("http://[::1]:8080/a?b=c"),
            Ok(Url {
                host: "::1".into(),
                port: 8080,
                path: "/a?b=c".into()
            })
        );
        assert_eq!(
            Url::parse("http://auth.local"),
            Ok(Url {
                host: "auth.local".into(),
                port: 80,
                path: "/".into()
            })
        );
        let c: HttpAuthConfig = toml::from_str("url = \"http://h/\"").expect("toml");
        assert_eq!(
            (c.timeout_ms, c.cache_ttl_secs, c.cache_size),
            (2000, 60, 10_000)
        );
        assert!(toml::from_str::<HttpAuthConfig>("url = \"http://h/\"\nbogus = 1").is_err());
    }
}
