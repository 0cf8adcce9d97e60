//! `[auth.http]`: ask an HTTP service whether a client may connect and, with `acl_url`, what
//! it may publish and subscribe to (EMQX's HTTP authorizer).
//!
//! Request: `POST <url>` with JSON `{"clientid", "username", "password", "peer_address",
//! "certificate_cn"}` (`null` for absent values; the password as UTF-8, lossily converted).
//! Response, EMQX's format: a 2xx status and a JSON body `{"result": "allow" | "deny" |
//! "ignore"}`; `ignore` passes the decision to the next auth source.
//!
//! Decisions (fail closed): anything else — non-2xx status (EMQX would treat 4xx/5xx as
//! `ignore`), an empty body (also a 204), unparsable JSON, an unknown `result` — is a deny,
//! and so are timeouts, connection and TLS errors, answers that are not HTTP and bodies over
//! 64 KiB, which are logged. `timeout_ms` bounds the whole check (connecting, the TLS
//! handshake, the request and the whole answer).
//!
//! Transport: [`hermod_http::Client`], HTTP/1.1 with pooled keep-alive connections (idle ones
//! are closed after a few seconds), over TCP for `http://` and rustls for `https://`. The
//! service's certificate is checked against `cafile` (a PEM file of CA certificates, relative
//! to the configuration file's folder) if given, else against the system CA bundle. A check
//! whose connection is closed before the answer (typically a pooled connection the service
//! had just closed) is sent once more, within the same deadline: a check is a query, safe to
//! repeat.
//!
//! Results are cached for `cache_ttl_secs`, keyed by client id, username, certificate CN and a
//! keyed SHA-256 of the password (a per-process random key, so the cache never holds the
//! password nor a plain, dictionary-attackable hash of it).
//!
//! # Authorization (`acl_url`)
//!
//! Request: `POST <acl_url>` with JSON `{"clientid", "username", "peerhost", "topic",
//! "action"}`, `action` being `"publish"` or `"subscribe"` (a subscription's filter is the
//! `topic`); there is no check for receiving (EMQX's HTTP authorizer has none). Same client,
//! pool, `cafile` and `timeout_ms` as authentication, and the same answer: a 2xx status and
//! `{"result": "allow" | "deny" | "ignore"}`. `ignore` passes the decision to the rules that
//! exist without it (`acl_file`, JWT rules; allowed when there are none: see
//! [`Auth::authorize`](super::Auth::authorize)). Anything else — another status, another
//! body —, a timeout or a transport error is a deny (fail closed), logged (at most one warning
//! per [`ACL_WARN_EVERY`]) and never cached.
//!
//! Answers are cached for `acl_cache_ttl_secs` (default 60; 0: no cache), keyed by username,
//! client id, action and topic, at most `acl_cache_size` of them (default 100 000): when full,
//! expired answers are dropped and, if it is still full, the whole cache is cleared. The
//! cache is what keeps the publish path synchronous: [`HttpAuth::acl_cached`] never waits on
//! the service (a read lock held for one lookup); a connection whose answer is not cached stops
//! reading, asks with [`HttpAuth::acl_check`] (within `timeout_ms`), then goes on. Requests, cache hits and errors are counted
//! ([`HttpAuth::acl_stats`]).

use super::AuthLoadError;
use bytes::Bytes;
use hermod_http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use hermod_http::{Client, ClientOptions, HeaderName, HeaderValue, Method, Oversize, Uri};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Largest response body read from the service.
const MAX_RESPONSE: usize = 64 * 1024;

/// How long an idle connection to the service is kept: below the usual keep-alive timeouts of
/// HTTP servers (Node.js: 5 s), so that the service rarely closes one as it is reused.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Idle connections kept to the service.
const POOL_MAX_IDLE: usize = 32;

/// The `[auth.http]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// `http://host[:port]/path` or `https://host[:port]/path`.
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
    /// For `https://`: PEM file of the CA certificates that may sign the service's certificate
    /// (instead of the system bundle). Relative to the configuration file's folder when loaded
    /// by [`Auth::load`](super::Auth::load); as given (relative to the working directory) by
    /// [`HttpAuth::new`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<PathBuf>,
    /// `http://` or `https://` URL of the authorization service (publish and subscribe
    /// checks); none: no HTTP authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl_url: Option<String>,
    /// How long an ACL answer is reused; 0 disables the ACL cache.
    #[serde(default = "default_cache_ttl_secs")]
    pub acl_cache_ttl_secs: u64,
    /// Maximum cached ACL answers.
    #[serde(default = "default_acl_cache_size")]
    pub acl_cache_size: usize,
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
fn default_acl_cache_size() -> usize {
    100_000
}

impl HttpAuthConfig {
    /// Checks the URL (`http://` or `https://`, with a host), the timeout, and that `cafile`
    /// goes with `https://`. Does not read `cafile`.
    pub fn validate(&self) -> Result<(), AuthLoadError> {
        self.uri()?;
        if self.timeout_ms == 0 {
            return Err(AuthLoadError::Http(
                "[auth.http] timeout_ms must be > 0".into(),
            ));
        }
        Ok(())
    }

    fn uri(&self) -> Result<Uri, AuthLoadError> {
        let uri = parse_service_url("url", &self.url)?;
        let acl = self.acl_uri()?;
        if self.cafile.is_some()
            && !hermod_http::is_https(&uri)
            && !acl.as_ref().is_some_and(hermod_http::is_https)
        {
            let url = &self.url;
            return Err(AuthLoadError::Http(format!(
                "[auth.http] url {url}: cafile is set but the URL is not https:// (cafile is only used for https)"
            )));
        }
        Ok(uri)
    }

    fn acl_uri(&self) -> Result<Option<Uri>, AuthLoadError> {
        self.acl_url
            .as_deref()
            .map(|u| parse_service_url("acl_url", u))
            .transpose()
    }
}

fn parse_service_url(key: &str, url: &str) -> Result<Uri, AuthLoadError> {
    let bad = |why: &str| AuthLoadError::Http(format!("[auth.http] {key} {url}: {why}"));
    let uri = hermod_http::parse_url(url).map_err(|e| bad(&e))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("credentials in the URL are not supported"));
    }
    Ok(uri)
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

type CacheKey = (String, Option<String>, Option<String>, [u8; 32]);

/// A configured HTTP auth source with its connection pool and cache. Built once per loaded
/// configuration, so a reload starts with an empty cache and new connections.
pub struct HttpAuth {
    config: HttpAuthConfig,
    uri: Uri,
    client: Client,
    headers: [(HeaderName, HeaderValue); 3],
    cache_key: [u8; 16],
    cache: Mutex<HashMap<CacheKey, (Instant, HttpVerdict)>>,
    /// The authorization endpoint, with `acl_url`.
    acl: Option<AclEndpoint>,
}

/// What a client asks to do, for the HTTP authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    Publish,
    Subscribe,
}

impl AclAction {
    fn as_str(self) -> &'static str {
        match self {
            AclAction::Publish => "publish",
            AclAction::Subscribe => "subscribe",
        }
    }
}

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct AclRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub peer: Option<std::net::IpAddr>,
    pub topic: &'a str,
    pub action: AclAction,
}

impl AclRequest<'_> {
    /// The cache key: username (absent and empty differ), client id, action, topic.
    fn key(&self) -> String {
        let user = self.username.unwrap_or_default();
        let mut k = String::with_capacity(user.len() + self.client_id.len() + self.topic.len() + 8);
        k.push(match (self.action, self.username.is_some()) {
            (AclAction::Publish, true) => 'P',
            (AclAction::Publish, false) => 'p',
            (AclAction::Subscribe, true) => 'S',
            (AclAction::Subscribe, false) => 's',
        });
        // Lengths first: no separator can be forged by a name holding it.
        k.push_str(&user.len().to_string());
        k.push(':');
        k.push_str(user);
        k.push_str(&self.client_id.len().to_string());
        k.push(':');
        k.push_str(self.client_id);
        k.push_str(self.topic);
        k
    }
}

/// Counters of the HTTP authorizer (see [`HttpAuth::acl_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpAclStats {
    /// Requests sent to `acl_url` (each question once, whatever its outcome).
    pub requests: u64,
    /// Answers taken from the cache.
    pub cache_hits: u64,
    /// Questions that got no usable answer (timeout, transport error): denied.
    pub errors: u64,
}

/// At most one warning about the authorization service's failures per this period (the others
/// are logged at debug level and counted).
pub const ACL_WARN_EVERY: Duration = Duration::from_secs(10);

struct AclEndpoint {
    uri: Uri,
    /// Read-locked by every lookup (concurrent), write-locked to store an answer.
    cache: RwLock<HashMap<String, (Instant, HttpVerdict)>>,
    requests: AtomicU64,
    cache_hits: AtomicU64,
    errors: AtomicU64,
    /// When the last warning was logged, and how many failures were not warned about since.
    last_warn: Mutex<(Option<Instant>, u64)>,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// Validates `config`, reads the CA certificates for `https://` (`cafile` as given, else
    /// the system bundle) and builds the source. Connects lazily: a service that is down is
    /// not an error here. Needs no runtime; checks run on the caller's.
    pub fn new(config: HttpAuthConfig) -> Result<Self, AuthLoadError> {
        config.validate()?;
        let uri = config.uri()?;
        let options = ClientOptions {
            pool_idle_timeout: POOL_IDLE,
            pool_max_idle_per_host: POOL_MAX_IDLE,
            max_body: MAX_RESPONSE,
            oversize: Oversize::Fail,
        };
        let acl_uri = config.acl_uri()?;
        // One client (one pool) for both endpoints, with TLS if either is https://.
        let tls =
            if hermod_http::is_https(&uri) || acl_uri.as_ref().is_some_and(hermod_http::is_https) {
                Some(
                    hermod_http::tls_connector(config.cafile.as_deref()).map_err(|e| {
                        let key = if config.cafile.is_some() {
                            " cafile"
                        } else {
                            ""
                        };
                        AuthLoadError::Http(format!("[auth.http]{key}: {e}"))
                    })?,
                )
            } else {
                None
            };
        let client = Client::new(tls, &options);
        let json = HeaderValue::from_static("application/json");
        let headers = [
            (CONTENT_TYPE, json.clone()),
            (ACCEPT, json),
            (USER_AGENT, HeaderValue::from_static("hermod")),
        ];
        let cache_key = argon2::password_hash::try_generate_salt()
            .map_err(|e| AuthLoadError::Http(format!("cannot get random bytes: {e}")))?;
        Ok(HttpAuth {
            config,
            uri,
            client,
            headers,
            cache_key,
            cache: Mutex::new(HashMap::new()),
            acl: acl_uri.map(|uri| AclEndpoint {
                uri,
                cache: RwLock::new(HashMap::new()),
                requests: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                last_warn: Mutex::new((None, 0)),
            }),
        })
    }

    /// Whether `acl_url` is configured.
    pub fn has_acl(&self) -> bool {
        self.acl.is_some()
    }

    /// The HTTP authorizer's counters (zero without `acl_url`).
    pub fn acl_stats(&self) -> HttpAclStats {
        self.acl
            .as_ref()
            .map(|a| HttpAclStats {
                requests: a.requests.load(Ordering::Relaxed),
                cache_hits: a.cache_hits.load(Ordering::Relaxed),
                errors: a.errors.load(Ordering::Relaxed),
            })
            .unwrap_or_default()
    }

    /// The cached answer to `req`, if any: never waits on the service (a read lock held for one lookup). `None`
    /// without `acl_url` too. Never [`HttpVerdict::Error`] (errors are not cached).
    pub fn acl_cached(&self, req: &AclRequest<'_>) -> Option<HttpVerdict> {
        let acl = self.acl.as_ref()?;
        if self.config.acl_cache_ttl_secs == 0 {
            return None;
        }
        let ttl = Duration::from_secs(self.config.acl_cache_ttl_secs);
        let key = req.key();
        let hit = {
            let cache = acl.cache.read().ok()?;
            cache
                .get(&key)
                .filter(|(at, _)| at.elapsed() < ttl)
                .map(|(_, v)| *v)
        };
        if hit.is_some() {
            acl.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Asks the authorization service (the cache first), within `timeout_ms`; caches the
    /// answer. [`HttpVerdict::Error`] (logged, not cached) when it could not answer;
    /// [`HttpVerdict::Ignore`] without `acl_url`.
    pub async fn acl_check(&self, req: &AclRequest<'_>) -> HttpVerdict {
        let Some(acl) = &self.acl else {
            return HttpVerdict::Ignore;
        };
        if let Some(v) = self.acl_cached(req) {
            return v;
        }
        acl.requests.fetch_add(1, Ordering::Relaxed);
        let deadline = Duration::from_millis(self.config.timeout_ms);
        let failure =
            match tokio::time::timeout(deadline, self.acl_exchange(acl, req, deadline)).await {
                Ok(Ok(v)) => {
                    self.acl_store(acl, req.key(), v);
                    return v;
                }
                Ok(Err(AclFailure::Answer(why))) => why,
                Ok(Err(AclFailure::Http(hermod_http::Error::Timeout(_)))) | Err(_) => {
                    format!("timed out after {} ms", self.config.timeout_ms)
                }
                Ok(Err(AclFailure::Http(e))) => e.to_string(),
            };
        acl.errors.fetch_add(1, Ordering::Relaxed);
        let warn = acl.last_warn.lock().ok().and_then(|mut w| {
            let due = w.0.is_none_or(|at| at.elapsed() >= ACL_WARN_EVERY);
            if due {
                let skipped = w.1;
                *w = (Some(Instant::now()), 0);
                Some(skipped)
            } else {
                w.1 += 1;
                None
            }
        });
        let url = self.config.acl_url.as_deref().unwrap_or_default();
        match warn {
            Some(skipped) => tracing::warn!(
                url,
                client_id = req.client_id,
                topic = req.topic,
                "HTTP authorization failed, denying: {failure} ({skipped} more failures not logged since the last warning)"
            ),
            None => tracing::debug!(
                url,
                client_id = req.client_id,
                topic = req.topic,
                "HTTP authorization failed, denying: {failure}"
            ),
        }
        HttpVerdict::Error
    }

    fn acl_store(&self, acl: &AclEndpoint, key: String, verdict: HttpVerdict) {
        let (ttl, size) = (self.config.acl_cache_ttl_secs, self.config.acl_cache_size);
        if ttl == 0 || size == 0 || verdict == HttpVerdict::Error {
            return;
        }
        let ttl = Duration::from_secs(ttl);
        let Ok(mut cache) = acl.cache.write() else {
            return;
        };
        if cache.len() >= size && !cache.contains_key(&key) {
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= size {
                // Still full of fresh answers: start over rather than track recency.
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), verdict));
    }

    async fn acl_exchange(
        &self,
        acl: &AclEndpoint,
        req: &AclRequest<'_>,
        deadline: Duration,
    ) -> Result<HttpVerdict, AclFailure> {
        let body = Bytes::from(
            serde_json::json!({
                "clientid": req.client_id,
                "username": req.username,
                "peerhost": req.peer.map(|ip| ip.to_string()),
                "topic": req.topic,
                "action": req.action.as_str(),
            })
            .to_string(),
        );
        let send = || {
            self.client.request(
                Method::POST,
                &acl.uri,
                &self.headers,
                body.clone(),
                deadline,
            )
        };
        let response = match send().await {
            Err(hermod_http::Error::Closed(e)) => {
                tracing::debug!(url = ?self.config.acl_url, "HTTP authorization: connection closed ({e}), asking again");
                send().await.map_err(AclFailure::Http)?
            }
            other => other.map_err(AclFailure::Http)?,
        };
        acl_verdict(response.status.as_u16(), &response.body).map_err(AclFailure::Answer)
    }

    /// Asks the service (or the cache). Never returns `Allow` on an error.
    pub async fn check(&self, req: &HttpAuthRequest<'_>) -> HttpVerdict {
        let key = self.key(req);
        if let Some(v) = self.cached(&key) {
            return v;
        }
        let deadline = Duration::from_millis(self.config.timeout_ms);
        let verdict = match tokio::time::timeout(deadline, self.exchange(req, deadline)).await {
            Ok(Ok(v)) => v,
            Ok(Err(hermod_http::Error::Timeout(_))) | Err(_) => {
                tracing::warn!(url = %self.config.url, client_id = req.client_id, "HTTP auth timed out after {} ms, denying", self.config.timeout_ms);
                return HttpVerdict::Error;
            }
            Ok(Err(e)) => {
                tracing::warn!(url = %self.config.url, client_id = req.client_id, "HTTP auth failed, denying: {e}");
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

    /// One check: the request, sent once more if the connection closes before the answer.
    async fn exchange(
        &self,
        req: &HttpAuthRequest<'_>,
        deadline: Duration,
    ) -> Result<HttpVerdict, hermod_http::Error> {
        let body = Bytes::from(
            serde_json::json!({
                "clientid": req.client_id,
                "username": req.username,
                "password": req.password.map(|p| String::from_utf8_lossy(p).into_owned()),
                "peer_address": req.peer.to_string(),
                "certificate_cn": req.certificate_cn,
            })
            .to_string(),
        );
        let send = || {
            self.client.request(
                Method::POST,
                &self.uri,
                &self.headers,
                body.clone(),
                deadline,
            )
        };
        let response = match send().await {
            Err(hermod_http::Error::Closed(e)) => {
                tracing::debug!(url = %self.config.url, "HTTP auth: connection closed ({e}), asking again");
                send().await?
            }
            other => other?,
        };
        Ok(verdict(response.status.as_u16(), &response.body))
    }
}

/// Why the authorization service gave no usable answer.
enum AclFailure {
    Http(hermod_http::Error),
    /// An answer, but not a 2xx with `{"result": "allow" | "deny" | "ignore"}`.
    Answer(String),
}

/// The authorization service's answer: only a 2xx with a known `result` is one (anything else
/// denies as a failure: logged, not cached).
fn acl_verdict(status: u16, body: &[u8]) -> Result<HttpVerdict, String> {
    if !(200..300).contains(&status) {
        return Err(format!("status {status}"));
    }
    #[derive(Deserialize)]
    struct Reply {
        result: String,
    }
    match serde_json::from_slice::<Reply>(body) {
        Ok(r) => match r.result.as_str() {
            "allow" => Ok(HttpVerdict::Allow),
            "deny" => Ok(HttpVerdict::Deny),
            "ignore" => Ok(HttpVerdict::Ignore),
            other => Err(format!("unknown result {other:?}")),
        },
        Err(e) => Err(format!("answer is not {{\"result\": ...}}: {e}")),
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
}
