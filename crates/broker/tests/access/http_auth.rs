//! `[auth.http]` against a small HTTP service running in the test: `{"result":"allow"}`,
//! `deny` and `ignore` (the next source decides; with none left the client is refused), an
//! error status, a service that never answers (timeout → deny), and the request's fields.

use crate::harness::*;

fn decide(req: &serde_json::Value) -> Option<(u16, String)> {
    let user = req["username"].as_str().unwrap_or_default();
    let result = |r: &str| Some((200, format!(r#"{{"result":"{r}"}}"#)));
    match user {
        "allow-me" => result("allow"),
        "deny-me" => result("deny"),
        "500" => Some((500, r#"{"result":"allow"}"#.into())),
        "garbage" => Some((200, "not json".into())),
        "slow" => None,
        _ => result("ignore"),
    }
}

async fn broker(server: &AuthServer, extra: &str) -> TestBroker {
    let dir = tempdir();
    write(dir.path(), "passwd", &passwd_line("ignored-by-http", "pw"));
    let config = format!(
        "allow_anonymous = false\n{extra}\n[auth.http]\nurl = \"{}\"\ntimeout_ms = 500\ncache_ttl_secs = 0\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
        server.url
    );
    TestBroker::start_in(dir, &config).await
}

async fn connack(b: &TestBroker, v: ProtocolVersion, user: &str, pw: &str) -> ReasonCode {
    Client::connack(
        b.addr(0),
        &Via::Tcp,
        connect_auth(v, &format!("id-{user}"), Some(user), Some(pw.as_bytes())),
    )
    .await
}

#[tokio::test]
async fn allow_deny_ignore_and_failures() {
    let server = AuthServer::start(decide).await;
    let b = broker(&server, "").await;
    assert_eq!(
        connack(&b, V5, "allow-me", "pw1").await,
        ReasonCode::SUCCESS,
        "allow"
    );
    assert_eq!(
        connack(&b, V311, "allow-me", "pw1").await,
        ReasonCode::SUCCESS,
        "allow, 3.1.1"
    );
    assert_eq!(
        connack(&b, V5, "deny-me", "pw").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "deny"
    );
    assert_eq!(
        connack(&b, V311, "deny-me", "pw").await,
        ReasonCode::NOT_AUTHORIZED,
        "deny, 3.1.1 (code 5)"
    );
    assert_eq!(
        connack(&b, V5, "someone", "pw").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "ignore with no other source"
    );
    assert_eq!(
        connack(&b, V5, "500", "pw").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "HTTP 500 denies"
    );
    assert_eq!(
        connack(&b, V5, "garbage", "pw").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "unparsable body denies"
    );
    let t = std::time::Instant::now();
    assert_eq!(
        connack(&b, V5, "slow", "pw").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "timeout denies"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_millis(2500),
        "timeout_ms = 500 bounds the wait: {:?}",
        t.elapsed()
    );
    // Anonymous clients never reach the service.
    let before = server.requests().len();
    let anon = connect_auth(V5, "anon", None, None);
    assert_eq!(
        Client::connack(b.addr(0), &Via::Tcp, anon).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        server.requests().len(),
        before,
        "no request for an anonymous client"
    );
    // The request carries client id, username, password and the peer address.
    let first = &server.requests()[0];
    assert_eq!(first["clientid"], "id-allow-me", "{first}");
    assert_eq!(first["username"], "allow-me", "{first}");
    assert_eq!(first["password"], "pw1", "{first}");
    assert!(
        first["peer_address"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{first}"
    );
    b.stop().await;
}

// order = ["http", "password_file"]: "ignore" passes the decision on to the password file.
#[tokio::test]
async fn ignore_falls_through_to_the_password_file() {
    let server = AuthServer::start(decide).await;
    let dir_extra = "password_file = \"passwd\"\n[auth]\norder = [\"http\", \"password_file\"]";
    let b = broker(&server, dir_extra).await;
    assert_eq!(
        connack(&b, V5, "ignored-by-http", "pw").await,
        ReasonCode::SUCCESS,
        "ignored, then the file allows"
    );
    assert_eq!(
        connack(&b, V5, "ignored-by-http", "bad").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "ignored, then the file denies"
    );
    assert_eq!(
        connack(&b, V5, "allow-me", "x").await,
        ReasonCode::SUCCESS,
        "http allows first"
    );
    assert_eq!(
        connack(&b, V5, "deny-me", "x").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "http denies first"
    );
    b.stop().await;
}
