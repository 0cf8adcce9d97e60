//! `[auth.jwt]`: a signed JSON Web Token in the CONNECT password (or username).
//!
//! The token is verified with HS256 (shared `secret`) or RS256 (`public_key_file`, PEM);
//! `exp` is required and `exp`/`nbf` are validated (`leeway_secs` of clock skew, default 30).
//! Its `publish` / `subscribe` claims (arrays of topic filters, `%u` and `%c` substituted at
//! connect time) become the connection's ACL: publish to topics matching a `publish` filter,
//! subscribe to filters covered by a `subscribe` filter, receive topics matching one.
//! Filters needing a `%u`/`%c` value that contains `+`, `#` or `/` are dropped, as are invalid
//! filters (they can only ever grant, so dropping never widens access).

use super::AuthLoadError;
use super::topic::{self, Subst};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The `[auth.jwt]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret (UTF-8 bytes). Redacted in `Debug` output by [`JwtVerifier`].
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256 public key (PEM, SPKI or PKCS#1); relative to the config file's folder.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    #[serde(default = "default_publish_claim")]
    pub publish_claim: String,
    #[serde(default = "default_subscribe_claim")]
    pub subscribe_claim: String,
    /// Which CONNECT field carries the token.
    #[serde(default)]
    pub from: TokenFrom,
    /// Accepted clock skew for `exp` / `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_username_claim() -> String {
    "sub".into()
}
fn default_publish_claim() -> String {
    "publish".into()
}
fn default_subscribe_claim() -> String {
    "subscribe".into()
}
fn default_leeway() -> u64 {
    30
}

/// Supported signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
}

/// Where the token is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFrom {
    #[default]
    Password,
    Username,
}

/// Per-connection rules taken from a token's claims (already substituted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtAcl {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl JwtAcl {
    pub fn check_publish(&self, topic: &str) -> bool {
        topic::publish_dollar_allowed(topic)
            && self.publish.iter().any(|f| topic::matches(f, topic))
    }

    /// `filter` (a `$share/<group>/` prefix is stripped) must be able to match a topic some
    /// subscribe claim matches; the same rule as the ACL file's (deliveries are filtered by
    /// [`Self::check_receive`] when routed and when sent).
    pub fn check_subscribe(&self, filter: &str) -> bool {
        match topic::strip_share(filter) {
            Some(f) => self.subscribe.iter().any(|rule| topic::intersects(rule, f)),
            None => false,
        }
    }

    pub fn check_receive(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|f| topic::matches(f, topic))
    }
}

/// Why a token was refused (for logs; never contains the token).
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("claim `{0}` must be an array of strings")]
    BadClaim(String),
    /// The token names nobody: `%u` and `user` rules would see an unverified name.
    #[error("the token has no `{0}` (username) claim")]
    NoUsername(String),
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The username claim (required: a token without one is refused).
    pub username: String,
    pub acl: JwtAcl,
}

/// Verifies tokens for one `[auth.jwt]` configuration.
pub struct JwtVerifier {
    config: JwtConfig,
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.config.algorithm)
            .field("secret", &self.config.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_file", &self.config.public_key_file)
            .field("from", &self.config.from)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds a verifier, reading the RS256 key relative to `base_dir`.
    pub fn new(config: JwtConfig, base_dir: &Path) -> Result<Self, AuthLoadError> {
        let bad = |m: String| AuthLoadError::Jwt(m);
        let (key, alg) = match config.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = config
                    .secret
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| bad("[auth.jwt] HS256 needs a non-empty `secret`".into()))?;
                if config.public_key_file.is_some() {
                    return Err(bad(
                        "[auth.jwt] HS256 takes `secret`, not `public_key_file`".into(),
                    ));
                }
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            JwtAlgorithm::RS256 => {
                let file = config
                    .public_key_file
                    .as_ref()
                    .ok_or_else(|| bad("[auth.jwt] RS256 needs `public_key_file`".into()))?;
                if config.secret.is_some() {
                    return Err(bad(
                        "[auth.jwt] RS256 takes `public_key_file`, not `secret`".into(),
                    ));
                }
                let path = base_dir.join(file);
                let pem = std::fs::read(&path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                    bad(format!(
                        "{}: not an RSA public key PEM: {e}",
                        path.display()
                    ))
                })?;
                (key, Algorithm::RS256)
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // No audience is configured; a token's `aud` is not checked.
        validation.validate_aud = false;
        Ok(JwtVerifier {
            config,
            key,
            validation,
        })
    }

    /// Which CONNECT field carries the token.
    pub fn token_from(&self) -> TokenFrom {
        self.config.from
    }

    /// Verifies `token` and builds the per-connection ACL, with `%u` from the token's username
    /// claim. A token without that claim is refused: the username the ACL sees is always one
    /// the token's signer vouched for, never the CONNECT's unverified one.
    pub fn verify(&self, token: &str, client_id: &str) -> Result<VerifiedToken, JwtError> {
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )?;
        let claims = data.claims;
        let username = claims
            .get(&self.config.username_claim)
            .and_then(|v| v.as_str())
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| JwtError::NoUsername(self.config.username_claim.clone()))?;
        let acl_user = Some(username.as_str());
        let filters = |name: &str| -> Result<Vec<String>, JwtError> {
            let Some(value) = claims.get(name) else {
                return Ok(Vec::new());
            };
            let arr = value
                .as_array()
                .ok_or_else(|| JwtError::BadClaim(name.to_owned()))?;
            let mut out = Vec::new();
            for item in arr {
                let f = item
                    .as_str()
                    .ok_or_else(|| JwtError::BadClaim(name.to_owned()))?;
                match topic::substitute(f, acl_user, client_id) {
                    Subst::Filter(s) if topic::valid_filter(&s) => out.push(s),
                    _ => tracing::debug!(claim = name, filter = f, "JWT topic filter dropped"),
                }
            }
            Ok(out)
        };
        let acl = JwtAcl {
            publish: filters(&self.config.publish_claim)?,
            subscribe: filters(&self.config.subscribe_claim)?,
        };
        Ok(VerifiedToken { username, acl })
    }
}

/// Whether `s` has the shape of a compact JWS (three base64url parts), so a JWT source can
/// pass plain passwords on to the next source instead of rejecting them.
pub(crate) fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    /// TEST-ONLY key pairs (see testdata/README.md): never use them for anything else.
    pub(crate) const RSA_PRIVATE: &str = include_str!("testdata/test_rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/test_rsa_public.pem");
    const RSA_OTHER_PRIVATE: &str = include_str!("testdata/test_rsa_other_private.pem");

    pub(crate) fn now() -> i64 {
        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX)
    }

    pub(crate) fn hs_config(secret: &str) -> JwtConfig {
        JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(secret.into()),
            public_key_file: None,
            username_claim: default_username_claim(),
            publish_claim: default_publish_claim(),
            subscribe_claim: default_subscribe_claim(),
            from: TokenFrom::Password,
            leeway_secs: 0,
        }
    }

    pub(crate) fn hs_token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap_or_default()
    }

    fn rs_token(private_pem: &str, claims: serde_json::Value) -> String {
        let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("test key");
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("encode")
    }

    fn rs_verifier() -> (JwtVerifier, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pub.pem"), RSA_PUBLIC).expect("write");
        let cfg = JwtConfig {
            algorithm: JwtAlgorithm::RS256,
            secret: None,
            public_key_file: Some("pub.pem".into()),
            ..hs_config("x")
        };
        (JwtVerifier::new(cfg, dir.path()).expect("verifier"), dir)
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        serde_json::json!({
            "sub": "alice",
            "exp": now() + exp_offset,
            "publish": ["devices/%u/%c/#", "shared/+"],
            "subscribe": ["cmd/%u/#", "news"],
        })
    }

    #[test]
    fn hs256_valid_expired_bad_signature() {
        let v = JwtVerifier::new(hs_config("s3cret"), Path::new(".")).expect("verifier");
        let ok = v
            .verify(&hs_token("s3cret", claims(600)), "c1")
            .expect("valid");
        assert_eq!(ok.username, "alice");
        assert!(ok.acl.check_publish("devices/alice/c1/temp"));
        assert!(!ok.acl.check_publish("devices/bob/c1/temp"));
        assert!(ok.acl.check_publish("shared/x"));
        assert!(ok.acl.check_subscribe("cmd/alice/+"));
        assert!(ok.acl.check_subscribe("$share/g/cmd/alice/x"));
        // Overlapping filters are granted (deliveries are filtered), unreachable ones are not.
        assert!(ok.acl.check_subscribe("cmd/#"));
        assert!(ok.acl.check_subscribe("#"));
        assert!(!ok.acl.check_subscribe("cmd/bob/#"));
        assert!(!ok.acl.check_subscribe("$SYS/#"));
        assert!(ok.acl.check_receive("cmd/alice/reboot"));
        assert!(!ok.acl.check_receive("news/x"));
        assert!(v.verify(&hs_token("s3cret", claims(-600)), "c1").is_err());
        assert!(v.verify(&hs_token("other", claims(600)), "c1").is_err());
        let no_exp = hs_token("s3cret", serde_json::json!({"sub": "a"}));
        assert!(v.verify(&no_exp, "c1").is_err());
        let not_yet = hs_token(
            "s3cret",
            serde_json::json!({"exp": now() + 600, "nbf": now() + 300}),
        );
        assert!(v.verify(&not_yet, "c1").is_err());
        // An RS256 token must not be accepted by an HS256 verifier (algorithm confusion).
        assert!(v.verify(&rs_token(RSA_PRIVATE, claims(600)), "c1").is_err());
    }

    #[test]
    fn rs256_valid_expired_bad_signature() {
        let (v, _dir) = rs_verifier();
        let ok = v
            .verify(&rs_token(RSA_PRIVATE, claims(600)), "c2")
            .expect("valid");
        assert!(ok.acl.check_publish("devices/alice/c2/x"));
        assert!(
            v.verify(&rs_token(RSA_PRIVATE, claims(-600)), "c2")
                .is_err()
        );
        assert!(
            v.verify(&rs_token(RSA_OTHER_PRIVATE, claims(600)), "c2")
                .is_err()
        );
        assert!(v.verify(&hs_token("x", claims(600)), "c2").is_err());
    }

    #[test]
    fn unsafe_substitution_and_bad_claims() {
        let v = JwtVerifier::new(hs_config("k"), Path::new(".")).expect("verifier");
        let t = hs_token(
            "k",
            serde_json::json!({"sub": "a/b", "exp": now() + 60,
            "publish": ["devices/%u/#", "ok/#", "bad/#/x"]}),
        );
        let ok = v.verify(&t, "c").expect("valid");
        assert_eq!(ok.acl.publish, ["ok/#"]);
        assert!(!ok.acl.check_publish("$SYS/x"));
        let t = hs_token(
            "k",
            serde_json::json!({"sub": "a", "exp": now() + 60, "publish": "a/#"}),
        );
        assert!(matches!(v.verify(&t, "c"), Err(JwtError::BadClaim(_))));
        // No username claim: refused, so `%u` never sees an unverified name.
        let t = hs_token(
            "k",
            serde_json::json!({"exp": now() + 60, "publish": ["u/%u"]}),
        );
        assert!(matches!(v.verify(&t, "c"), Err(JwtError::NoUsername(_))));
        let t = hs_token(
            "k",
            serde_json::json!({"sub": "", "exp": now() + 60, "publish": ["u/%u"]}),
        );
        assert!(matches!(v.verify(&t, "c"), Err(JwtError::NoUsername(_))));
    }

    #[test]
    fn config_errors_and_shape() {
        assert!(JwtVerifier::new(hs_config(""), Path::new(".")).is_err());
        let cfg = JwtConfig {
            algorithm: JwtAlgorithm::RS256,
            secret: None,
            ..hs_config("x")
        };
        assert!(JwtVerifier::new(cfg.clone(), Path::new(".")).is_err());
        let missing = JwtConfig {
            public_key_file: Some("/nonexistent.pem".into()),
            ..cfg
        };
        let e = JwtVerifier::new(missing, Path::new(".")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent.pem"));
        let v = JwtVerifier::new(hs_config("topsecret"), Path::new(".")).expect("verifier");
        assert!(!format!("{v:?}").contains("topsecret"));
        let c: JwtConfig =
            toml::from_str("algorithm = \"HS256\"\nsecret = \"k\"\nfrom = \"username\"")
                .expect("toml");
        assert_eq!(
            (c.from, c.username_claim.as_str()),
            (TokenFrom::Username, "sub")
        );
        assert!(looks_like_jwt(&hs_token("k", claims(1))));
        assert!(!looks_like_jwt("hunter2"));
        assert!(!looks_like_jwt("a.b"));
    }
}
