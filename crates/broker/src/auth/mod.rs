//! Access control: who may connect (password file, HTTP service, JWT) and what they may do
//! (an HTTP authorizer — `[auth.http] acl_url` —, Mosquitto `acl_file`, JWT claims).
//!
//! An [`Auth`] is immutable. The broker keeps it in an `ArcSwap` and, on SIGHUP, builds a new
//! one with [`Auth::load`]; only if every file loads is it swapped in, so a broken file keeps
//! the old rules. Connections keep the [`ClientIdentity`] they were given at CONNECT.
//!
//! # Authentication rules
//! - "Anonymous" = no username and no password in the CONNECT.
//! - No source configured (no `password_file`, `[auth.http]`, `[auth.jwt]`): every client is
//!   accepted unless `allow_anonymous = false` (Mosquitto: with no auth plugin, the answer is
//!   `allow_anonymous`, usernames included).
//! - Some source configured: anonymous clients are refused (`NotAuthorized`) unless
//!   `allow_anonymous = true`. Others go through the sources in `order` (default: the
//!   configured ones as password_file, http, jwt); each allows, denies, or ignores:
//!   - password_file: known user → allow / deny (`BadCredentials`); unknown user → ignore;
//!   - http: the service's `allow` / `deny` / `ignore`; errors and timeouts deny;
//!   - jwt: no token (field absent or not shaped like a JWT) → ignore; bad, expired or
//!     wrongly-signed token → deny; a token without the username claim → deny; a username
//!     claim that differs from the CONNECT username (when the token is in the password) → deny.
//!     So the username that `%u` and `user` rules see is always the token's verified claim.
//! - If every source ignores, the client is refused (`BadCredentials`): as in Mosquitto, a
//!   user missing from the only password file cannot log in.
//!
//! # Authorization rules
//! See [`Auth::authorize`].

pub mod acl;
pub mod hash_pool;
pub mod http;
pub mod jwt;
pub mod password_file;
pub mod things;
pub mod throttle;
mod topic;

pub use acl::AclFile;
pub use hash_pool::HashPool;
pub use http::{AclAction, AclRequest, HttpAclStats, HttpAuth, HttpAuthConfig, HttpVerdict};
pub use jwt::{JwtAcl, JwtConfig, JwtVerifier};
pub use password_file::{PasswordFile, hash_argon2id, hash_mosquitto_pbkdf2};
pub use things::ThingAccess;
pub use throttle::{Throttle, ThrottleSettings};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A password or ACL file could not be read or parsed. The message names the file and, for
/// syntax errors, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        message: String,
    },
}

/// Building an [`Auth`] failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    #[error(transparent)]
    File(#[from] AuthFileError),
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Jwt(String),
    #[error("[auth] order: {0}")]
    Order(String),
    /// A file named by a config key could not be loaded: the message names the key.
    #[error("key `{key}`: {source}")]
    Key {
        key: &'static str,
        source: Box<AuthLoadError>,
    },
}

/// Names the config key whose file failed to load.
fn keyed(key: &'static str) -> impl FnOnce(AuthLoadError) -> AuthLoadError {
    move |e| AuthLoadError::Key {
        key,
        source: Box::new(e),
    }
}

/// A credential source, as named in `[auth] order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthSource {
    PasswordFile,
    Http,
    Jwt,
}

/// The `[auth]` table: `[auth.http]`, `[auth.jwt]` and `order = ["jwt", "password_file"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthTable {
    #[serde(default)]
    pub http: Option<HttpAuthConfig>,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub order: Option<Vec<AuthSource>>,
}

/// Everything [`Auth::load`] needs, as written in the config (paths may be relative).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    pub allow_anonymous: Option<bool>,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    pub auth: AuthTable,
    /// `[shadow] access`: whose name is a client's thing (`things`).
    pub thing_access: ThingAccess,
}

/// What the broker knows about a connecting client.
#[derive(Clone)]
pub struct ConnectInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub peer: SocketAddr,
    /// TLS client certificate identity (CN), if any.
    pub cert_identity: Option<String>,
}

impl fmt::Debug for ConnectInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectInfo")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("peer", &self.peer)
            .field("cert_identity", &self.cert_identity)
            .finish()
    }
}

/// Who an accepted client is, for the lifetime of its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The username ACLs see (a JWT's username claim when it has one).
    pub username: Option<Arc<str>>,
    pub client_id: Arc<str>,
    /// Rules from the client's JWT, if it logged in with one.
    pub jwt_acl: Option<Arc<JwtAcl>>,
    /// One of the broker's own services (a rule, a bridge) on an internal connection
    /// ([`crate::api::BrokerHandle::connect_internal`]): allowed every topic, as the broker is.
    pub internal: bool,
}

/// Why a CONNECT was refused; the broker maps it to a CONNACK code (Mosquitto answers
/// "not authorised" — 0x05 / 0x87 — for the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// Wrong password, unknown user, bad token, HTTP service said no.
    BadCredentials,
    /// Anonymous client where anonymous access is off.
    NotAuthorized,
    /// The password could not be checked in time: the hashing queue stayed full (see
    /// [`hash_pool`]). Not a failed login.
    Busy,
    /// The client's address was blocked by the failed-login [`Throttle`] while its check waited.
    Blocked,
    /// A credential source could not answer (HTTP auth service unreachable or too slow): refused
    /// like bad credentials, but not the client's failed login, so an outage of the service does
    /// not get every client's address blocked.
    SourceError,
}

/// Result of [`Auth::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Allow(ClientIdentity),
    Deny(DenyReason),
}

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Publish(&'a str),
    Subscribe(&'a str),
    /// Delivery of a message (live or retained) on this topic.
    Receive(&'a str),
}

enum Verdict {
    Allow(ClientIdentity),
    Deny(DenyReason),
    Ignore,
}

/// The loaded access-control configuration.
pub struct Auth {
    password_file: Option<Arc<PasswordFile>>,
    /// Where password hashes are checked; [`HashPool::fallback`] when not set.
    hash_pool: Option<Arc<HashPool>>,
    acl: Option<AclFile>,
    http: Option<HttpAuth>,
    jwt: Option<JwtVerifier>,
    order: Vec<AuthSource>,
    allow_anonymous: Option<bool>,
    thing_access: ThingAccess,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("password_file", &self.password_file)
            .field("acl", &self.acl.is_some())
            .field("http", &self.http)
            .field("jwt", &self.jwt)
            .field("order", &self.order)
            .field("allow_anonymous", &self.allow_anonymous)
            .finish()
    }
}

impl Auth {
    /// Loads every file named in `settings` (relative paths against `base_dir`, the config
    /// file's folder) and builds an `Auth`. Fails, naming the file and line, if anything fails.
    pub fn load(settings: &AuthSettings, base_dir: &Path) -> Result<Auth, AuthLoadError> {
        let password_file = settings
            .password_file
            .as_ref()
            .map(|p| PasswordFile::load(&base_dir.join(p)))
            .transpose()
            .map_err(|e| keyed("password_file")(e.into()))?;
        let acl = settings
            .acl_file
            .as_ref()
            .map(|p| AclFile::load(&base_dir.join(p)))
            .transpose()
            .map_err(|e| keyed("acl_file")(e.into()))?;
        let jwt = settings
            .auth
            .jwt
            .clone()
            .map(|c| JwtVerifier::new(c, base_dir))
            .transpose()
            .map_err(keyed("auth.jwt"))?;
        // `cafile` is relative to the config file's folder, as the other files.
        let http = settings.auth.http.clone().map(|mut http| {
            http.cafile = http.cafile.map(|ca| base_dir.join(ca));
            http
        });
        Auth::from_parts(
            password_file,
            acl,
            http,
            jwt,
            settings.auth.order.clone().unwrap_or_default(),
            settings.allow_anonymous,
        )
        .map(|a| a.with_thing_access(settings.thing_access))
    }

    /// Sets whose name is a client's thing ([`things`]).
    #[must_use]
    pub fn with_thing_access(mut self, access: ThingAccess) -> Self {
        self.thing_access = access;
        self
    }

    /// Assembles already-loaded parts. An empty `order` means "the configured sources, as
    /// password_file, http, jwt"; a non-empty one must name each configured source once.
    pub fn from_parts(
        password_file: Option<PasswordFile>,
        acl: Option<AclFile>,
        http: Option<HttpAuthConfig>,
        jwt: Option<JwtVerifier>,
        order: Vec<AuthSource>,
        allow_anonymous: Option<bool>,
    ) -> Result<Auth, AuthLoadError> {
        let http = http.map(HttpAuth::new).transpose()?;
        let configured: Vec<AuthSource> = [
            (AuthSource::PasswordFile, password_file.is_some()),
            (AuthSource::Http, http.is_some()),
            (AuthSource::Jwt, jwt.is_some()),
        ]
        .into_iter()
        .filter_map(|(s, on)| on.then_some(s))
        .collect();
        let order = if order.is_empty() {
            configured
        } else {
            for (i, s) in order.iter().enumerate() {
                if !configured.contains(s) {
                    return Err(AuthLoadError::Order(format!(
                        "{s:?} is listed but not configured"
                    )));
                }
                if order[..i].contains(s) {
                    return Err(AuthLoadError::Order(format!("{s:?} is listed twice")));
                }
            }
            if let Some(s) = configured.iter().find(|s| !order.contains(s)) {
                return Err(AuthLoadError::Order(format!(
                    "{s:?} is configured but not listed"
                )));
            }
            order
        };
        Ok(Auth {
            password_file: password_file.map(Arc::new),
            hash_pool: None,
            acl,
            http,
            jwt,
            order,
            allow_anonymous,
            thing_access: ThingAccess::default(),
        })
    }

    /// Checks passwords on `pool` (the broker's, kept across reloads) instead of the
    /// process-wide [`HashPool::fallback`].
    #[must_use]
    pub fn with_hash_pool(mut self, pool: Arc<HashPool>) -> Self {
        self.hash_pool = Some(pool);
        self
    }

    /// Decides whether a CONNECT is accepted (see the module docs for the rules).
    pub async fn authenticate(&self, req: &ConnectInfo) -> AuthDecision {
        let plain = || ClientIdentity {
            username: req.username.as_deref().map(Arc::from),
            client_id: Arc::from(req.client_id.as_str()),
            jwt_acl: None,
            internal: false,
        };
        if self.order.is_empty() {
            return if self.allow_anonymous == Some(false) {
                AuthDecision::Deny(DenyReason::NotAuthorized)
            } else {
                AuthDecision::Allow(plain())
            };
        }
        if req.username.is_none() && req.password.is_none() {
            return if self.allow_anonymous == Some(true) {
                AuthDecision::Allow(plain())
            } else {
                AuthDecision::Deny(DenyReason::NotAuthorized)
            };
        }
        for source in &self.order {
            let verdict = match source {
                AuthSource::PasswordFile => self.check_password_file(req, plain()).await,
                AuthSource::Http => self.check_http(req, plain()).await,
                AuthSource::Jwt => self.check_jwt(req),
            };
            match verdict {
                Verdict::Allow(identity) => return AuthDecision::Allow(identity),
                Verdict::Deny(reason) => return AuthDecision::Deny(reason),
                Verdict::Ignore => {}
            }
        }
        AuthDecision::Deny(DenyReason::BadCredentials)
    }

    async fn check_password_file(&self, req: &ConnectInfo, identity: ClientIdentity) -> Verdict {
        let (Some(file), Some(user)) = (&self.password_file, &req.username) else {
            return Verdict::Ignore;
        };
        let known = file.contains(user);
        let Some(password) = req.password.clone() else {
            return if known {
                Verdict::Deny(DenyReason::BadCredentials)
            } else {
                Verdict::Ignore
            };
        };
        // Hashing is deliberately slow (argon2id: ~20 MiB, tens of ms): it runs on the bounded
        // hashing pool, never on the async workers nor tokio's unbounded blocking pool. Unknown
        // users are hashed too, so timing does not reveal them.
        let (file, user_owned) = (file.clone(), user.clone());
        let pool: &HashPool = match &self.hash_pool {
            Some(p) => p,
            None => HashPool::fallback(),
        };
        let ok = pool
            .run(req.peer.ip(), move || file.verify(&user_owned, &password))
            .await;
        match (known, ok) {
            (_, Err(hash_pool::PoolError::Busy)) => Verdict::Deny(DenyReason::Busy),
            (_, Err(hash_pool::PoolError::Blocked)) => Verdict::Deny(DenyReason::Blocked),
            (true, Ok(true)) => Verdict::Allow(identity),
            (true, _) => Verdict::Deny(DenyReason::BadCredentials),
            (false, _) => Verdict::Ignore,
        }
    }

    async fn check_http(&self, req: &ConnectInfo, identity: ClientIdentity) -> Verdict {
        let Some(http) = &self.http else {
            return Verdict::Ignore;
        };
        let request = http::HttpAuthRequest {
            client_id: &req.client_id,
            username: req.username.as_deref(),
            password: req.password.as_deref(),
            peer: req.peer,
            certificate_cn: req.cert_identity.as_deref(),
        };
        match http.check(&request).await {
            http::HttpVerdict::Allow => Verdict::Allow(identity),
            http::HttpVerdict::Deny => Verdict::Deny(DenyReason::BadCredentials),
            http::HttpVerdict::Ignore => Verdict::Ignore,
            http::HttpVerdict::Error => Verdict::Deny(DenyReason::SourceError),
        }
    }

    fn check_jwt(&self, req: &ConnectInfo) -> Verdict {
        let Some(jwt) = &self.jwt else {
            return Verdict::Ignore;
        };
        let from_username = jwt.token_from() == jwt::TokenFrom::Username;
        let token = if from_username {
            req.username.clone()
        } else {
            req.password
                .as_ref()
                .and_then(|p| std::str::from_utf8(p).ok().map(str::to_owned))
        };
        let Some(token) = token.filter(|t| jwt::looks_like_jwt(t)) else {
            return Verdict::Ignore;
        };
        let connect_user = if from_username {
            None
        } else {
            req.username.as_deref()
        };
        match jwt.verify(&token, &req.client_id) {
            Ok(verified) => {
                if connect_user.is_some_and(|given| given != verified.username) {
                    tracing::info!(client_id = %req.client_id, "JWT username claim differs from CONNECT username");
                    return Verdict::Deny(DenyReason::BadCredentials);
                }
                Verdict::Allow(ClientIdentity {
                    username: Some(Arc::from(verified.username.as_str())),
                    client_id: Arc::from(req.client_id.as_str()),
                    jwt_acl: Some(Arc::new(verified.acl)),
                    internal: false,
                })
            }
            Err(e) => {
                tracing::info!(client_id = %req.client_id, "JWT refused: {e}");
                Verdict::Deny(DenyReason::BadCredentials)
            }
        }
    }

    /// May `who` do `action`?
    ///
    /// - Publishing into `$SYS` (except a bridge's `$SYS/broker/connection/<id>/state`) or to
    ///   `$share/...` is always refused, as Mosquitto does before consulting any ACL. A will is
    ///   a publish: the same check applies to it at CONNECT and when it is published.
    /// - No `acl_file` and no JWT rules for this client: everything else is allowed.
    /// - Only one of them: it decides.
    /// - Both: allowed if either allows, except that an `acl_file` `deny` rule also vetoes
    ///   what the token grants.
    ///
    /// `Subscribe` is granted when the filter can match some topic the client may read (see
    /// [`acl`]); a filter overlapping allowed and denied topics is granted, so the broker checks
    /// `Receive` for every message it routes to a session and again when it sends one, retained
    /// messages included.
    ///
    /// With `[auth.http] acl_url`, the HTTP authorizer is asked first for `Publish` and
    /// `Subscribe` (after the `$` rule above; never for internal connections nor for `Receive`):
    /// its `allow` / `deny` decide, its `ignore` leaves the decision to the rules above, and a
    /// service that cannot answer denies. This function never waits: it uses the cached answer
    /// and, when none is cached, the rules above (as for `ignore`). Connections (and wills, at
    /// CONNECT and when published) use [`Auth::authorize_now`] and [`Auth::authorize_async`]
    /// instead, which ask the service when needed; this one is for callers that cannot wait.
    pub fn authorize(&self, who: &ClientIdentity, action: Action<'_>) -> bool {
        self.authorize_now(who, action)
            .unwrap_or_else(|| self.authorize_static(who, action))
    }

    /// The decision of [`Auth::authorize`] if it can be made without waiting; `None` when the
    /// HTTP authorizer must be asked first ([`Auth::authorize_async`]). Never blocks.
    pub fn authorize_now(&self, who: &ClientIdentity, action: Action<'_>) -> Option<bool> {
        if who.internal {
            return Some(true);
        }
        if let Action::Publish(t) = action
            && !topic::publish_dollar_allowed(t)
        {
            return Some(false);
        }
        match self.thing_scope(who, action) {
            things::Scope::BrokerOnly => return Some(false),
            things::Scope::Own => return Some(true),
            things::Scope::Others | things::Scope::Unrelated => {}
        }
        if let Some((http, req)) = self.http_acl_request(who, None, action) {
            match http.acl_cached(&req)? {
                HttpVerdict::Allow => return Some(true),
                HttpVerdict::Deny | HttpVerdict::Error => return Some(false),
                HttpVerdict::Ignore => {}
            }
        }
        Some(self.authorize_static(who, action))
    }

    /// The whole decision, asking the HTTP authorizer (within its timeout) when its answer is
    /// not cached. `peer` is the client's address (`peerhost`). Holds no lock while waiting.
    pub async fn authorize_async(
        &self,
        who: &ClientIdentity,
        peer: Option<std::net::IpAddr>,
        action: Action<'_>,
    ) -> bool {
        if let Some(decided) = self.authorize_now(who, action) {
            return decided;
        }
        let Some((http, req)) = self.http_acl_request(who, peer, action) else {
            return self.authorize_static(who, action);
        };
        match http.acl_check(&req).await {
            HttpVerdict::Allow => true,
            HttpVerdict::Deny | HttpVerdict::Error => false,
            HttpVerdict::Ignore => self.authorize_static(who, action),
        }
    }

    /// The HTTP authorizer's counters, if `acl_url` is configured.
    pub fn http_acl_stats(&self) -> Option<HttpAclStats> {
        self.http
            .as_ref()
            .filter(|h| h.has_acl())
            .map(HttpAuth::acl_stats)
    }

    /// The question for the HTTP authorizer, if it has one for `action`.
    fn http_acl_request<'a>(
        &'a self,
        who: &'a ClientIdentity,
        peer: Option<std::net::IpAddr>,
        action: Action<'a>,
    ) -> Option<(&'a HttpAuth, AclRequest<'a>)> {
        let http = self.http.as_ref().filter(|h| h.has_acl())?;
        if who.internal {
            return None;
        }
        let (action, topic) = match action {
            Action::Publish(t) => (AclAction::Publish, t),
            Action::Subscribe(f) => (AclAction::Subscribe, f),
            Action::Receive(_) => return None,
        };
        Some((
            http,
            AclRequest {
                client_id: &who.client_id,
                username: who.username.as_deref(),
                peer,
                topic,
                action,
            },
        ))
    }

    /// The rules without the HTTP authorizer.
    fn authorize_static(&self, who: &ClientIdentity, action: Action<'_>) -> bool {
        if who.internal {
            return true;
        }
        if let Action::Publish(t) = action
            && !topic::publish_dollar_allowed(t)
        {
            return false;
        }
        let explicit_only = match self.thing_scope(who, action) {
            things::Scope::BrokerOnly => return false,
            things::Scope::Own => return true,
            things::Scope::Others => true,
            things::Scope::Unrelated => false,
        };
        let user = who.username.as_deref();
        let cid = &*who.client_id;
        let file = self.acl.as_ref().map(|acl| match action {
            Action::Publish(t) => acl.check_publish(user, cid, t),
            Action::Subscribe(f) => acl.check_subscribe(user, cid, f),
            Action::Receive(t) => acl.check_receive(user, cid, t),
        });
        let token = who.jwt_acl.as_ref().map(|j| match action {
            Action::Publish(t) => j.check_publish(t),
            Action::Subscribe(f) => j.check_subscribe(f),
            Action::Receive(t) => j.check_receive(t),
        });
        match (file, token) {
            // Another thing's topics are never open by default.
            (None, None) => !explicit_only,
            (Some(f), None) => f,
            (None, Some(t)) => t,
            (Some(f), Some(t)) => {
                f || (t
                    && match (action, &self.acl) {
                        (Action::Publish(x) | Action::Receive(x), Some(acl)) => {
                            !acl.explicitly_denied(user, cid, x)
                        }
                        _ => true,
                    })
            }
        }
    }

    /// Where `action` falls under the things rule ([`things`]).
    fn thing_scope(&self, who: &ClientIdentity, action: Action<'_>) -> things::Scope {
        match action {
            Action::Publish(t) => things::publish_scope(who, self.thing_access, t),
            Action::Subscribe(f) => things::read_scope(who, self.thing_access, f),
            Action::Receive(t) => things::read_scope(who, self.thing_access, t),
        }
    }

    /// Whether an `acl_file` is loaded (the broker may skip per-delivery checks otherwise,
    /// unless the client carries JWT rules).
    pub fn has_acl_file(&self) -> bool {
        self.acl.is_some()
    }

    /// Whether `Receive` can ever be refused (an `acl_file` or JWT rules are in use): without
    /// either, routing skips the per-subscriber check.
    pub fn filters_receive(&self) -> bool {
        self.acl.is_some() || self.jwt.is_some()
    }
}

#[cfg(test)]
mod tests;
