//! Tests of the glue: source order, anonymous rules, combined authorization, loading.

use super::*;
use crate::auth::http::tests::{json_reply, server};
use crate::auth::jwt::tests::{hs_config, hs_token, now};

const PW: &str = include_str!("testdata/mosquitto_passwd.txt"); // alice/"correct horse", bob/"hunter2"

fn pwfile() -> PasswordFile {
    PasswordFile::parse(PW, "pw").expect("fixture")
}

fn jwt() -> JwtVerifier {
    JwtVerifier::new(hs_config("k"), Path::new(".")).expect("jwt")
}

fn token(sub: &str) -> String {
    hs_token(
        "k",
        serde_json::json!({"sub": sub, "exp": now() + 600, "publish": ["t/%u/#"], "subscribe": ["s/#"]}),
    )
}

fn connect(user: Option<&str>, password: Option<&str>) -> ConnectInfo {
    ConnectInfo {
        client_id: "cid".into(),
        username: user.map(str::to_owned),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
        peer: "127.0.0.1:5000".parse().expect("addr"),
        cert_identity: None,
    }
}

fn allowed_as(d: &AuthDecision) -> Option<Option<&str>> {
    match d {
        AuthDecision::Allow(id) => Some(id.username.as_deref()),
        AuthDecision::Deny(_) => None,
    }
}

#[tokio::test]
async fn no_sources_follow_allow_anonymous() {
    let open = Auth::from_parts(None, None, None, None, vec![], None).expect("auth");
    assert_eq!(
        allowed_as(&open.authenticate(&connect(None, None)).await),
        Some(None)
    );
    assert_eq!(
        allowed_as(&open.authenticate(&connect(Some("x"), Some("y"))).await),
        Some(Some("x"))
    );
    let closed = Auth::from_parts(None, None, None, None, vec![], Some(false)).expect("auth");
    assert_eq!(
        closed.authenticate(&connect(None, None)).await,
        AuthDecision::Deny(DenyReason::NotAuthorized)
    );
}

#[tokio::test]
async fn password_file_rules() {
    let auth = Auth::from_parts(Some(pwfile()), None, None, None, vec![], None).expect("auth");
    assert_eq!(
        auth.authenticate(&connect(None, None)).await,
        AuthDecision::Deny(DenyReason::NotAuthorized)
    );
    assert_eq!(
        allowed_as(
            &auth
                .authenticate(&connect(Some("alice"), Some("correct horse")))
                .await
        ),
        Some(Some("alice"))
    );
    for (u, p) in [
        ("alice", Some("hunter2")),
        ("alice", None),
        ("carol", Some("hunter2")),
    ] {
        assert_eq!(
            auth.authenticate(&connect(Some(u), p)).await,
            AuthDecision::Deny(DenyReason::BadCredentials),
            "{u}"
        );
    }
    let anon_ok =
        Auth::from_parts(Some(pwfile()), None, None, None, vec![], Some(true)).expect("auth");
    assert_eq!(
        allowed_as(&anon_ok.authenticate(&connect(None, None)).await),
        Some(None)
    );
    // allow_anonymous does not let a wrong password through.
    assert!(allowed_as(&anon_ok.authenticate(&connect(Some("bob"), Some("x"))).await).is_none());
}

#[tokio::test]
async fn order_and_ignore() {
    // Default order: password_file first (unknown user ignored), then jwt.
    let auth =
        Auth::from_parts(Some(pwfile()), None, None, Some(jwt()), vec![], None).expect("auth");
    let d = auth
        .authenticate(&connect(Some("dave"), Some(&token("dave"))))
        .await;
    assert_eq!(allowed_as(&d), Some(Some("dave")));
    // A plain password is not a token: jwt ignores it and the password file decides.
    let jwt_first = Auth::from_parts(
        Some(pwfile()),
        None,
        None,
        Some(jwt()),
        vec![AuthSource::Jwt, AuthSource::PasswordFile],
        None,
    )
    .expect("auth");
    assert!(
        allowed_as(
            &jwt_first
                .authenticate(&connect(Some("bob"), Some("hunter2")))
                .await
        )
        .is_some()
    );
    // Expired or forged token: denied, not passed on.
    let expired = hs_token("k", serde_json::json!({"sub": "bob", "exp": now() - 600}));
    assert_eq!(
        jwt_first
            .authenticate(&connect(Some("bob"), Some(&expired)))
            .await,
        AuthDecision::Deny(DenyReason::BadCredentials)
    );
    // The token's username must match the CONNECT username.
    assert!(
        allowed_as(
            &jwt_first
                .authenticate(&connect(Some("bob"), Some(&token("alice"))))
                .await
        )
        .is_none()
    );
    // Token with no username in the CONNECT (MQTT 5 allows a password alone).
    let d = jwt_first
        .authenticate(&connect(None, Some(&token("erin"))))
        .await;
    assert_eq!(allowed_as(&d), Some(Some("erin")));
}

#[tokio::test]
async fn http_in_the_chain() {
    let (url, _server) = server(|body| {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let result = match v["username"].as_str()? {
            "alice" => "deny",
            "web" => "allow",
            _ => "ignore",
        };
        Some(json_reply(200, &format!("{{\"result\":\"{result}\"}}")))
    })
    .await;
    let cfg = HttpAuthConfig {
        url,
        timeout_ms: 1000,
        cache_ttl_secs: 0,
        cache_size: 10,
        cafile: None,
        acl_url: None,
        acl_cache_ttl_secs: 60,
        acl_cache_size: 100,
    };
    let auth = Auth::from_parts(
        Some(pwfile()),
        None,
        Some(cfg),
        None,
        vec![AuthSource::Http, AuthSource::PasswordFile],
        None,
    )
    .expect("auth");
    // http says deny: the password file is never asked.
    assert!(
        allowed_as(
            &auth
                .authenticate(&connect(Some("alice"), Some("correct horse")))
                .await
        )
        .is_none()
    );
    assert!(allowed_as(&auth.authenticate(&connect(Some("web"), Some("x"))).await).is_some());
    // ignore: the password file decides.
    assert!(
        allowed_as(
            &auth
                .authenticate(&connect(Some("bob"), Some("hunter2")))
                .await
        )
        .is_some()
    );
    assert!(allowed_as(&auth.authenticate(&connect(Some("bob"), Some("nope"))).await).is_none());
}

#[test]
fn order_validation() {
    let e = Auth::from_parts(
        Some(pwfile()),
        None,
        None,
        None,
        vec![AuthSource::Jwt],
        None,
    )
    .expect_err("jwt");
    assert!(e.to_string().contains("not configured"));
    let e = Auth::from_parts(
        Some(pwfile()),
        None,
        None,
        Some(jwt()),
        vec![AuthSource::Jwt],
        None,
    )
    .expect_err("missing");
    assert!(e.to_string().contains("not listed"));
    let twice = vec![AuthSource::PasswordFile, AuthSource::PasswordFile];
    assert!(Auth::from_parts(Some(pwfile()), None, None, None, twice, None).is_err());
    let t: AuthTable =
        toml::from_str("order = [\"jwt\", \"password_file\", \"http\"]").expect("toml");
    assert_eq!(
        t.order,
        Some(vec![
            AuthSource::Jwt,
            AuthSource::PasswordFile,
            AuthSource::Http
        ])
    );
    let ftp = HttpAuthConfig {
        url: "ftp://x/".into(),
        timeout_ms: 1,
        cache_ttl_secs: 1,
        cache_size: 1,
        cafile: None,
        acl_url: None,
        acl_cache_ttl_secs: 60,
        acl_cache_size: 100,
    };
    assert!(Auth::from_parts(None, None, Some(ftp), None, vec![], None).is_err());
}

fn identity(user: Option<&str>, jwt_acl: Option<JwtAcl>) -> ClientIdentity {
    ClientIdentity {
        username: user.map(Arc::from),
        client_id: Arc::from("cid"),
        jwt_acl: jwt_acl.map(Arc::new),
        internal: false,
    }
}

#[test]
fn authorize_combinations() {
    let open = Auth::from_parts(None, None, None, None, vec![], None).expect("auth");
    let anyone = identity(None, None);
    assert!(open.authorize(&anyone, Action::Publish("a/b")));
    assert!(open.authorize(&anyone, Action::Receive("$SYS/x")));
    assert!(!open.authorize(&anyone, Action::Publish("$SYS/x")));

    let acl =
        AclFile::parse("user u\ntopic readwrite a/#\ntopic deny a/secret\n", "acl").expect("acl");
    let auth = Auth::from_parts(None, Some(acl), None, Some(jwt()), vec![], None).expect("auth");
    let u = identity(Some("u"), None);
    assert!(auth.authorize(&u, Action::Publish("a/x")));
    assert!(!auth.authorize(&u, Action::Publish("b/x")));
    assert!(auth.authorize(&u, Action::Subscribe("#")));
    assert!(!auth.authorize(&u, Action::Receive("b/x")));

    let claims = JwtAcl {
        publish: vec!["b/#".into(), "a/#".into()],
        subscribe: vec!["b/#".into()],
    };
    let tok = identity(Some("u"), Some(claims.clone()));
    assert!(auth.authorize(&tok, Action::Publish("b/x")), "token grants");
    assert!(auth.authorize(&tok, Action::Publish("a/x")), "file grants");
    assert!(
        !auth.authorize(&tok, Action::Publish("a/secret")),
        "file deny vetoes the token"
    );
    assert!(auth.authorize(&tok, Action::Receive("b/y")));
    assert!(!auth.authorize(&tok, Action::Receive("c/y")));

    let jwt_only = Auth::from_parts(None, None, None, Some(jwt()), vec![], None).expect("auth");
    let tok = identity(Some("v"), Some(claims));
    assert!(jwt_only.authorize(&tok, Action::Subscribe("b/+")));
    // Overlaps b/#: granted, deliveries filtered; c/# can match nothing readable: refused.
    assert!(jwt_only.authorize(&tok, Action::Subscribe("#")));
    assert!(!jwt_only.authorize(&tok, Action::Subscribe("c/#")));
    assert!(!jwt_only.authorize(&tok, Action::Publish("c")));
    // A password-file client on a JWT-enabled broker without acl_file: no rules apply.
    assert!(jwt_only.authorize(&identity(Some("w"), None), Action::Publish("c")));
}

#[test]
fn load_resolves_paths_and_reports_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pw"), PW).expect("write");
    std::fs::write(dir.path().join("acl"), "user alice\ntopic read x/#\n").expect("write");
    let settings = AuthSettings {
        allow_anonymous: Some(false),
        password_file: Some("pw".into()),
        acl_file: Some("acl".into()),
        auth: AuthTable::default(),
        thing_access: ThingAccess::default(),
    };
    let auth = Auth::load(&settings, dir.path()).expect("load");
    assert!(auth.has_acl_file());
    assert!(auth.authorize(&identity(Some("alice"), None), Action::Receive("x/1")));

    std::fs::write(dir.path().join("acl"), "user alice\ntopic reed x/#\n").expect("write");
    let e = Auth::load(&settings, dir.path()).expect_err("bad acl");
    let msg = e.to_string();
    assert!(msg.contains("acl:2:") && msg.contains("reed"), "{msg}");

    let missing = AuthSettings {
        password_file: Some("nope".into()),
        ..settings
    };
    assert!(
        Auth::load(&missing, dir.path())
            .expect_err("missing")
            .to_string()
            .contains("nope")
    );
}

#[test]
fn debug_redacts_secrets() {
    let c = connect(Some("u"), Some("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));
    let auth =
        Auth::from_parts(Some(pwfile()), None, None, Some(jwt()), vec![], None).expect("auth");
    let dump = format!("{auth:?}");
    assert!(!dump.contains("$7$") && !dump.contains("\"k\""), "{dump}");
}

/// `[auth.http] cafile` is relative to the config file's folder, as the other files.
#[tokio::test]
async fn load_https_with_a_relative_cafile() {
    let pki = hermod_testkit::Pki::new();
    let server = hermod_testkit::AuthServer::raw_tls(&pki.server, |_| {
        Some(json_reply(200, r#"{"result":"allow"}"#))
    })
    .await;
    let dir = hermod_testkit::tempdir();
    pki.write_to(dir.path());
    let settings = |cafile: &str| AuthSettings {
        auth: toml::from_str(&format!(
            "[http]\nurl = \"{}\"\ncafile = \"{cafile}\"",
            server.url
        ))
        .expect("toml"),
        ..AuthSettings::default()
    };
    let auth = Auth::load(&settings("certs/ca.pem"), dir.path()).expect("load");
    assert!(allowed_as(&auth.authenticate(&connect(Some("u"), Some("p"))).await).is_some());
    assert_eq!(server.requests().len(), 1);
    // A missing cafile: refused when loading, naming the file.
    let e = Auth::load(&settings("certs/nope.pem"), dir.path()).expect_err("missing cafile");
    assert!(e.to_string().contains("certs/nope.pem"), "{e}");
}

/// An `Auth` with `[auth.http] acl_url` on a fake service that answers by topic prefix
/// (`allow/`, `deny/`, `ignore/`; `slow/` never answers), and an `acl_file` letting `u` write
/// `ignore/open/#`.
async fn http_acl_auth(ttl: u64, size: usize) -> (Auth, hermod_testkit::AuthServer) {
    let (url, server) = server(|body| {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let result = match v["topic"].as_str()?.split('/').next()? {
            "allow" => "allow",
            "deny" => "deny",
            "ignore" => "ignore",
            "slow" => return None,
            _ => "bogus",
        };
        Some(json_reply(200, &format!("{{\"result\":\"{result}\"}}")))
    })
    .await;
    let cfg = HttpAuthConfig {
        url: url.clone(),
        timeout_ms: 300,
        cache_ttl_secs: 0,
        cache_size: 10,
        cafile: None,
        acl_url: Some(url),
        acl_cache_ttl_secs: ttl,
        acl_cache_size: size,
    };
    let acl = AclFile::parse("user u\ntopic write ignore/open/#\n", "acl").expect("acl");
    let auth = Auth::from_parts(None, Some(acl), Some(cfg), None, vec![], None).expect("auth");
    (auth, server)
}

#[tokio::test]
async fn http_acl_lookup_then_ask() {
    let (auth, server) = http_acl_auth(60, 100).await;
    let u = identity(Some("u"), None);
    let ip = Some("192.0.2.7".parse().expect("ip"));
    // Not cached: unknown without waiting; then asked, then cached.
    assert_eq!(auth.authorize_now(&u, Action::Publish("allow/a")), None);
    assert!(
        auth.authorize_async(&u, ip, Action::Publish("allow/a"))
            .await
    );
    assert_eq!(
        auth.authorize_now(&u, Action::Publish("allow/a")),
        Some(true)
    );
    assert!(
        !auth
            .authorize_async(&u, ip, Action::Publish("deny/a"))
            .await
    );
    assert_eq!(
        auth.authorize_now(&u, Action::Publish("deny/a")),
        Some(false)
    );
    assert!(
        !auth
            .authorize_async(&u, ip, Action::Subscribe("deny/#"))
            .await
    );
    // `ignore`: the acl_file decides.
    assert!(
        auth.authorize_async(&u, ip, Action::Publish("ignore/open/x"))
            .await
    );
    assert!(
        !auth
            .authorize_async(&u, ip, Action::Publish("ignore/closed/x"))
            .await
    );
    // An unknown result, a timeout: denied, not cached.
    assert!(
        !auth
            .authorize_async(&u, ip, Action::Publish("bogus/x"))
            .await
    );
    assert_eq!(auth.authorize_now(&u, Action::Publish("bogus/x")), None);
    assert!(
        !auth
            .authorize_async(&u, ip, Action::Publish("slow/x"))
            .await
    );
    assert_eq!(auth.authorize_now(&u, Action::Publish("slow/x")), None);
    // Never asked: receiving, internal connections, `$SYS` publishes (refused first).
    assert!(
        !auth
            .authorize_async(&u, ip, Action::Receive("deny/a"))
            .await
    );
    let internal = ClientIdentity {
        internal: true,
        ..identity(Some("u"), None)
    };
    assert!(
        auth.authorize_async(&internal, ip, Action::Publish("deny/a"))
            .await
    );
    assert_eq!(
        auth.authorize_now(&u, Action::Publish("$SYS/x")),
        Some(false)
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 7, "{requests:?}");
    assert!(requests.iter().all(|r| r["action"] != "receive"));
    assert!(requests.iter().all(|r| r["topic"] != "$SYS/x"));
    let r = &requests[0];
    assert_eq!(
        (
            &r["clientid"],
            &r["username"],
            &r["peerhost"],
            &r["topic"],
            &r["action"]
        ),
        (
            &serde_json::json!("cid"),
            &serde_json::json!("u"),
            &serde_json::json!("192.0.2.7"),
            &serde_json::json!("allow/a"),
            &serde_json::json!("publish")
        )
    );
    let stats = auth.http_acl_stats().expect("acl_url");
    assert_eq!((stats.requests, stats.errors), (7, 2));
    assert!(stats.cache_hits >= 2, "{stats:?}");
    // `authorize` (never waits): the cached answer, else the other rules.
    assert!(!auth.authorize(&u, Action::Publish("deny/a")));
    assert!(!auth.authorize(&u, Action::Publish("allow/never-asked")));
    assert!(auth.authorize(&u, Action::Publish("ignore/open/never-asked")));
}

#[tokio::test]
async fn http_acl_cache_key_and_bound() {
    let (auth, server) = http_acl_auth(60, 2).await;
    let (u, v) = (identity(Some("u"), None), identity(Some("v"), None));
    let anon = identity(None, None);
    for who in [&u, &v, &anon, &u] {
        assert!(
            auth.authorize_async(who, None, Action::Publish("allow/a"))
                .await
        );
    }
    // Three keys in a cache of two: cleared when full, so the fourth (u again) was asked again.
    assert_eq!(server.requests().len(), 4);
    // Publish and subscribe are different keys.
    assert!(
        auth.authorize_async(&u, None, Action::Subscribe("allow/a"))
            .await
    );
    assert_eq!(server.requests().len(), 5);
    assert!(server.requests()[2]["username"].is_null());
    assert!(server.requests()[2]["peerhost"].is_null());
}

#[test]
fn http_acl_config() {
    let c: HttpAuthConfig = toml::from_str("url = \"http://h/\"").expect("toml");
    assert_eq!(
        (c.acl_url, c.acl_cache_ttl_secs, c.acl_cache_size),
        (None, 60, 100_000)
    );
    let c: HttpAuthConfig = toml::from_str(
        "url = \"http://h/auth\"\nacl_url = \"https://h/acl\"\ncafile = \"ca.pem\"\nacl_cache_ttl_secs = 5\nacl_cache_size = 7",
    )
    .expect("toml");
    assert_eq!(c.acl_url.as_deref(), Some("https://h/acl"));
    assert_eq!((c.acl_cache_ttl_secs, c.acl_cache_size), (5, 7));
    c.validate().expect("cafile goes with an https acl_url");
    for bad in ["ftp://h/", "http://u:p@h/", "nope"] {
        let c = HttpAuthConfig {
            acl_url: Some(bad.into()),
            ..toml::from_str("url = \"http://h/\"").expect("toml")
        };
        let e = c.validate().expect_err(bad).to_string();
        assert!(e.contains("acl_url"), "{e}");
    }
}

/// Things' topics (`things`): with no ACL file a client uses its own thing's shadow only; an
/// ACL rule naming `$hermod/things/...` grants an application the others; nobody publishes a
/// reply, whatever the file says.
#[test]
fn things_topics_own_by_default_others_by_grant_replies_never() {
    let device = |id: &str| ClientIdentity {
        username: Some(Arc::from("devices")),
        client_id: Arc::from(id),
        jwt_acl: None,
        internal: false,
    };
    let open = Auth::from_parts(None, None, None, None, vec![], None).expect("auth");
    let lamp = device("lamp-1");
    assert!(open.authorize(
        &lamp,
        Action::Publish("$hermod/things/lamp-1/shadow/update")
    ));
    assert!(open.authorize(&lamp, Action::Subscribe("$hermod/things/lamp-1/shadow/#")));
    assert!(
        open.authorize(&lamp, Action::Publish("anything/else")),
        "other topics stay open"
    );
    assert!(!open.authorize(
        &lamp,
        Action::Publish("$hermod/things/lamp-2/shadow/update")
    ));
    assert!(!open.authorize(&lamp, Action::Subscribe("$hermod/things/lamp-2/shadow/#")));
    assert!(!open.authorize(&lamp, Action::Subscribe("$hermod/things/+/presence")));
    assert!(!open.authorize(&lamp, Action::Subscribe("$hermod/#")));
    assert!(!open.authorize(&lamp, Action::Receive("$hermod/things/lamp-2/presence")));
    assert!(
        !open.authorize(
            &lamp,
            Action::Publish("$hermod/things/lamp-1/shadow/update/accepted")
        ),
        "replies are the broker's alone"
    );
    assert!(!open.authorize(&lamp, Action::Publish("$hermod/things/lamp-1/presence")));

    let acl = AclFile::parse(
        "user app\ntopic readwrite $hermod/things/#\ntopic readwrite #\nuser devices\ntopic readwrite #\n",
        "acl",
    )
    .expect("acl");
    let with_file = Auth::from_parts(None, Some(acl), None, None, vec![], None).expect("auth");
    let app = ClientIdentity {
        username: Some(Arc::from("app")),
        client_id: Arc::from("dashboard"),
        jwt_acl: None,
        internal: false,
    };
    assert!(with_file.authorize(&app, Action::Subscribe("$hermod/things/+/shadow/#")));
    assert!(with_file.authorize(&app, Action::Publish("$hermod/things/lamp-2/shadow/update")));
    assert!(with_file.authorize(&app, Action::Receive("$hermod/things/lamp-2/presence")));
    assert!(!with_file.authorize(
        &app,
        Action::Publish("$hermod/things/lamp-2/shadow/update/delta")
    ));
    // `#` in the devices' rule does not reach `$` topics: their own thing only.
    assert!(with_file.authorize(&lamp, Action::Publish("$hermod/things/lamp-1/shadow/get")));
    assert!(!with_file.authorize(&lamp, Action::Subscribe("$hermod/things/lamp-2/shadow/#")));

    // `[shadow] access = "username"`: the thing is the username.
    let by_user = Auth::from_parts(None, None, None, None, vec![], None)
        .expect("auth")
        .with_thing_access(ThingAccess::Username);
    assert!(by_user.authorize(
        &lamp,
        Action::Publish("$hermod/things/devices/shadow/update")
    ));
    assert!(!by_user.authorize(
        &lamp,
        Action::Publish("$hermod/things/lamp-1/shadow/update")
    ));
}
