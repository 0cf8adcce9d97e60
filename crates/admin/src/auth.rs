//! Who is calling, and may they: the middleware in front of every `/api/v5` path but
//! `status` and `login`.
//!
//! - `Authorization: Bearer <token>`: a token from `POST /login` (32 random bytes, base64url),
//!   valid for `[admin] token_expiry`, kept in memory only (a restart logs everyone out) in a
//!   map bounded at [`MAX_TOKENS`]. Bearer tokens, never cookies: a browser does not attach
//!   them to a cross-site request on its own, so the API needs no CSRF defence.
//! - `Authorization: Basic base64(api_key:api_secret)`: an API key (see `accounts`). A good
//!   secret is remembered as its SHA-256 so that scripts do not pay an argon2 check per request.
//! - The Unix socket: the peer could open a mode-0600 file in the store folder, so it is the
//!   broker's owner: administrator, without credentials.
//!
//! Roles: `administrator` may do everything; `viewer` may only `GET` (and log out, and change
//! its own password). Failed logins and failed API-key checks are throttled per peer address:
//! [`MAX_FAILURES`] within [`FAILURE_WINDOW`] block that address for [`BLOCK_FOR`] (429
//! `LOGIN_THROTTLED`), which also caps how many argon2 checks one address can make us run.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::ApiError;
use crate::state::AppState;
use crate::users_store::Role;

/// Live tokens kept at most (expired ones are pruned first, then the oldest).
pub(crate) const MAX_TOKENS: usize = 10_000;
/// Failed attempts from one address that trigger a block.
pub(crate) const MAX_FAILURES: usize = 5;
/// The window those failures are counted in.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a blocked address stays blocked.
pub(crate) const BLOCK_FOR: Duration = Duration::from_secs(60);
/// Addresses tracked at most by the throttle.
const MAX_TRACKED: usize = 10_000;

/// Where a request came from (set per connection by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Tcp(SocketAddr),
    Unix,
}

impl Peer {
    pub(crate) fn ip(self) -> IpAddr {
        match self {
            Peer::Tcp(a) => a.ip(),
            Peer::Unix => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// The authenticated caller, for handlers (`Extension<Caller>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// User name, API key name, or "socket".
    pub(crate) name: String,
    pub(crate) role: Role,
    /// The bearer token used, if any (for logout).
    pub(crate) token: Option<String>,
    /// Came through the Unix socket.
    pub(crate) socket: bool,
    /// A user logged in with a password (not an API key, not the socket).
    pub(crate) is_user: bool,
}

#[derive(Debug)]
struct TokenEntry {
    username: String,
    role: Role,
    expires: Instant,
}

/// Live login tokens.
#[derive(Debug)]
pub(crate) struct Tokens {
    map: Mutex<HashMap<String, TokenEntry>>,
    ttl: Duration,
}

/// Why a bearer token was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    Unknown,
    Expired,
}

impl Tokens {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, TokenEntry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a token for `username`.
    pub(crate) fn issue(&self, username: &str, role: Role) -> Result<String, String> {
        let token = crate::users_store::random_token()?;
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_TOKENS {
            // Expired tokens are kept (to answer TOKEN_TIME_OUT) until room is needed.
            map.retain(|_, e| e.expires > now);
            if map.len() >= MAX_TOKENS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            token.clone(),
            TokenEntry {
                username: username.to_owned(),
                role,
                expires: now + self.ttl,
            },
        );
        Ok(token)
    }

    /// The user and role of a live token.
    pub(crate) fn check(&self, token: &str) -> Result<(String, Role), TokenError> {
        let mut map = self.lock();
        let Some(e) = map.get(token) else {
            return Err(TokenError::Unknown);
        };
        if e.expires <= Instant::now() {
            map.remove(token);
            return Err(TokenError::Expired);
        }
        Ok((e.username.clone(), e.role))
    }

    pub(crate) fn revoke(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Drops every token of `username` (deleted, or its role changed).
    pub(crate) fn revoke_user(&self, username: &str) {
        self.lock().retain(|_, e| e.username != username);
    }
}

#[derive(Debug)]
struct Failures {
    recent: Vec<Instant>,
    blocked_until: Option<Instant>,
}

/// Failed authentication attempts per peer address.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    map: Mutex<HashMap<IpAddr, Failures>>,
}

impl Throttle {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `ip` is blocked now.
    pub(crate) fn blocked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.lock()
            .get(&ip)
            .and_then(|f| f.blocked_until)
            .is_some_and(|until| until > now)
    }

    /// Records a failure; true when it blocks the address.
    pub(crate) fn fail(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, f| {
                f.blocked_until.is_some_and(|u| u > now)
                    || f.recent.iter().any(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
            if map.len() >= MAX_TRACKED {
                // Still full of live entries: forget one rather than grow without bound.
                if let Some(k) = map.keys().next().copied() {
                    map.remove(&k);
                }
            }
        }
        let f = map.entry(ip).or_insert(Failures {
            recent: Vec::new(),
            blocked_until: None,
        });
        f.recent
            .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        f.recent.push(now);
        if f.recent.len() >= MAX_FAILURES {
            f.recent.clear();
            f.blocked_until = Some(now + BLOCK_FOR);
            tracing::warn!(peer = %ip, "admin API: too many failed logins, address blocked for {BLOCK_FOR:?}");
            return true;
        }
        false
    }

    /// Forgets the failures of `ip` (after a success).
    pub(crate) fn succeed(&self, ip: IpAddr) {
        let mut map = self.lock();
        if map.get(&ip).is_some_and(|f| f.blocked_until.is_none()) {
            map.remove(&ip);
        }
    }
}

pub(crate) fn throttled() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "LOGIN_THROTTLED",
        format!(
            "too many failed attempts from this address; try again in {} s",
            BLOCK_FOR.as_secs()
        ),
    )
}

/// The middleware: authenticates, applies the viewer rule, hands [`Caller`] to the handler.
pub(crate) async fn require_auth(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<Peer>()
        .copied()
        .unwrap_or(Peer::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))));
    let caller = if peer == Peer::Unix {
        Caller {
            name: "socket".into(),
            role: Role::Administrator,
            token: None,
            socket: true,
            is_user: false,
        }
    } else {
        match authenticate(&state, req.headers(), peer.ip()).await {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        }
    };
    if caller.role == Role::Viewer
        && !matches!(*req.method(), Method::GET | Method::HEAD)
        && !self_service(req.uri().path(), &caller)
    {
        return ApiError::forbidden("the viewer role may only read (GET)").into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// What any logged-in user may do to itself: log out, change its own password.
fn self_service(path: &str, caller: &Caller) -> bool {
    path == "/api/v5/logout"
        || (caller.is_user && path == format!("/api/v5/users/{}/change_pwd", caller.name))
}

async fn authenticate(state: &AppState, headers: &HeaderMap, ip: IpAddr) -> Result<Caller, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("BAD_TOKEN", "credentials required: Authorization: Bearer <token> (POST /api/v5/login) or Basic <api_key:api_secret>"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return match state.tokens.check(rest) {
            Ok((name, role)) => Ok(Caller {
                name,
                role,
                token: Some(rest.to_owned()),
                socket: false,
                is_user: true,
            }),
            Err(TokenError::Expired) => Err(ApiError::unauthorized(
                "TOKEN_TIME_OUT",
                "token expired: log in again",
            )),
            Err(TokenError::Unknown) => Err(ApiError::unauthorized("BAD_TOKEN", "unknown token")),
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if state.throttle.blocked(ip) {
            return Err(throttled());
        }
        let bad = || ApiError::unauthorized("BAD_API_KEY_OR_SECRET", "bad API key or secret");
        let decoded = STANDARD.decode(rest).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (key, secret) = text.split_once(':').ok_or_else(bad)?;
        return match state.accounts.check_api_key(key, secret).await {
            Some((name, role)) => {
                state.throttle.succeed(ip);
                Ok(Caller {
                    name,
                    role,
                    token: None,
                    socket: false,
                    is_user: false,
                })
            }
            None => {
                state.throttle.fail(ip);
                Err(bad())
            }
        };
    }
    Err(ApiError::unauthorized(
        "BAD_TOKEN",
        "unsupported Authorization scheme (Bearer or Basic)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_are_bounded() {
        let t = Tokens::new(Duration::from_millis(0));
        let tok = t.issue("u", Role::Viewer).expect("rng");
        assert_eq!(t.check(&tok), Err(TokenError::Expired));
        assert_eq!(t.check(&tok), Err(TokenError::Unknown));
        let t = Tokens::new(Duration::from_secs(60));
        let tok = t.issue("u", Role::Administrator).expect("rng");
        assert_eq!(t.check(&tok), Ok(("u".into(), Role::Administrator)));
        t.revoke_user("u");
        assert_eq!(t.check(&tok), Err(TokenError::Unknown));
        for _ in 0..MAX_TOKENS + 5 {
            t.issue("v", Role::Viewer).expect("rng");
        }
        assert!(t.lock().len() <= MAX_TOKENS);
    }

    #[test]
    fn throttle_blocks_after_five_failures() {
        let th = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..MAX_FAILURES - 1 {
            assert!(!th.fail(ip));
        }
        assert!(!th.blocked(ip));
        assert!(th.fail(ip));
        assert!(th.blocked(ip));
        assert!(!th.blocked("10.0.0.2".parse().expect("ip")));
    }
}
