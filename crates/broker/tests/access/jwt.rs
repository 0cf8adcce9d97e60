//! `[auth.jwt]`: a valid, an expired and a wrongly signed token, HS256 and RS256 (with the
//! test-only keys of crates/broker/src/auth/testdata); the token's publish / subscribe claims
//! as the connection's ACL (SUBACK 0x87 for a filter that can match no topic the claims
//! allow); a token without the username claim is refused.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::harness::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

fn claims(exp_offset: i64) -> serde_json::Value {
    serde_json::json!({
        "sub": "jwt-user",
        "exp": now() + exp_offset,
        "publish": ["jwt/%u/#"],
        "subscribe": ["jwt/%u/#", "public/#"],
    })
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/auth/testdata")
        .join(name)
}

fn hs(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn rs(private: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(testdata(private)).expect("test key");
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(&pem).expect("rsa pem"),
    )
    .expect("sign")
}

async fn broker(jwt: &str) -> TestBroker {
    let dir = tempdir();
    if let Ok(key) = std::fs::read_to_string(testdata("test_rsa_public.pem")) {
        write(dir.path(), "keys/jwt.pub.pem", &key);
    }
    let config = format!(
        "allow_anonymous = false\n[auth.jwt]\n{jwt}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n"
    );
    TestBroker::start_in(dir, &config).await
}

fn with_token(v: ProtocolVersion, id: &str, token: &str) -> Connect {
    connect_auth(v, id, Some("jwt-user"), Some(token.as_bytes()))
}

/// A valid token connects and its claims are the ACL; expired and wrongly signed ones are refused.
async fn check(b: &TestBroker, valid: &str, expired: &str, bad_signature: &str, alg: &str) {
    let addr = b.addr(0);
    for (what, token) in [("expired", expired), ("wrongly signed", bad_signature)] {
        assert_eq!(
            Client::connack(addr, &Via::Tcp, with_token(V5, "x", token)).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{alg} {what}"
        );
        assert_eq!(
            Client::connack(addr, &Via::Tcp, with_token(V311, "x", token)).await,
            ReasonCode::NOT_AUTHORIZED,
            "{alg} {what}, 3.1.1"
        );
    }
    // A username differing from the token's claim is refused.
    let other_user = connect_auth(V5, "x", Some("mallory"), Some(valid.as_bytes()));
    assert_eq!(
        Client::connack(addr, &Via::Tcp, other_user).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "{alg}: username ≠ sub"
    );

    let mut c = Client::connect(addr, &Via::Tcp, with_token(V5, "jwt-client", valid)).await;
    assert_eq!(
        c.subscribe_one("jwt/jwt-user/#", Q1).await,
        ReasonCode(1),
        "{alg}: covered by a subscribe claim"
    );
    assert_eq!(
        c.subscribe_one("secret/#", Q1).await,
        ReasonCode::NOT_AUTHORIZED,
        "{alg}: SUBACK 0x87 outside the claims"
    );
    // Wider than the claims but overlapping them: granted, and only what the claims allow
    // is delivered (checked per message).
    assert_eq!(
        c.subscribe_one("#", Q1).await,
        ReasonCode(1),
        "{alg}: # overlaps the claims"
    );
    assert_eq!(
        c.subscribe_one("public/news", Q1).await,
        ReasonCode(1),
        "{alg}"
    );
    assert_ne!(
        c.publish("jwt/jwt-user/t", b"mine", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "{alg}: publish claim with %u"
    );
    assert_eq!(
        c.publish("jwt/other/t", b"no", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "{alg}: outside the publish claim"
    );
    assert_eq!(
        c.publish("public/news", b"no", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "{alg}: subscribe claim does not grant publish"
    );
    let got = got(&c.drain(QUIET).await);
    assert_eq!(
        got,
        vec![("jwt/jwt-user/t".to_owned(), "mine".to_owned())],
        "{alg}: only the allowed publish is delivered"
    );
    c.disconnect().await;
}

#[tokio::test]
async fn hs256_valid_expired_wrongly_signed() {
    let b = broker("algorithm = \"HS256\"\nsecret = \"test-only-secret\"").await;
    let valid = hs("test-only-secret", &claims(300));
    let expired = hs("test-only-secret", &claims(-3600));
    let bad = hs("another-secret", &claims(300));
    check(&b, &valid, &expired, &bad, "HS256").await;
    b.stop().await;
}

#[tokio::test]
async fn rs256_valid_expired_wrongly_signed() {
    if !testdata("test_rsa_private.pem").is_file()
        || !testdata("test_rsa_other_private.pem").is_file()
    {
        eprintln!("SKIP: RS256 test keys not in crates/broker/src/auth/testdata");
        return;
    }
    // public_key_file relative to the config file's folder.
    let b = broker("algorithm = \"RS256\"\npublic_key_file = \"keys/jwt.pub.pem\"").await;
    let valid = rs("test_rsa_private.pem", &claims(300));
    let expired = rs("test_rsa_private.pem", &claims(-3600));
    let bad = rs("test_rsa_other_private.pem", &claims(300));
    check(&b, &valid, &expired, &bad, "RS256").await;
    b.stop().await;
}

/// A valid token without the username claim is refused: otherwise `%u` and `user` rules would
/// apply to whatever username the CONNECT carries, a name nobody verified.
#[tokio::test]
async fn token_without_a_username_claim_is_refused() {
    let b = broker("algorithm = \"HS256\"\nsecret = \"test-only-secret\"").await;
    let mut no_sub = claims(300);
    if let Some(m) = no_sub.as_object_mut() {
        m.remove("sub");
    }
    let token = hs("test-only-secret", &no_sub);
    for (v, refused) in [
        (V5, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (V311, ReasonCode::NOT_AUTHORIZED),
    ] {
        // With the CONNECT username the ACL would have used (and another user's name).
        for user in ["jwt-user", "alice"] {
            let c = connect_auth(v, "nosub", Some(user), Some(token.as_bytes()));
            assert_eq!(
                Client::connack(b.addr(0), &Via::Tcp, c).await,
                refused,
                "{v:?} as {user}"
            );
        }
    }
    // The same claims with the username claim connect.
    let ok = hs("test-only-secret", &claims(300));
    Client::connect(b.addr(0), &Via::Tcp, with_token(V5, "withsub", &ok))
        .await
        .disconnect()
        .await;
    b.stop().await;
}
