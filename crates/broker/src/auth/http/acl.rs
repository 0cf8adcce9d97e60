//! The HTTP authorizer (`[auth.http] acl_url`): the question, its cache, its counters, and
//! the exchange with the service. Authentication (`url`) is in the parent module; both share
//! its client and connection pool.

use super::*;

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

pub(super) struct AclEndpoint {
    uri: Uri,
    /// Read-locked by every lookup (concurrent), write-locked to store an answer.
    cache: RwLock<HashMap<String, (Instant, HttpVerdict)>>,
    requests: AtomicU64,
    cache_hits: AtomicU64,
    errors: AtomicU64,
    /// When the last warning was logged, and how many failures were not warned about since.
    last_warn: Mutex<(Option<Instant>, u64)>,
}

impl AclEndpoint {
    pub(super) fn new(uri: Uri) -> Self {
        AclEndpoint {
            uri,
            cache: RwLock::new(HashMap::new()),
            requests: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_warn: Mutex::new((None, 0)),
        }
    }
}

impl HttpAuth {
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
