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

mod acl;

use super::AuthLoadError;
use acl::AclEndpoint;
pub use acl::{ACL_WARN_EVERY, AclAction, AclRequest, HttpAclStats};
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
            acl: acl_uri.map(AclEndpoint::new),
        })
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
pub(crate) mod tests;
