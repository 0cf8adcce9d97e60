//! Authentication and roles of the admin API (docs/admin-api.md, "Authentication"): the
//! generated first password, bearer tokens and their expiry, API keys, the viewer role, login
//! throttling, the Unix socket, and the public endpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, basic, http};
use serde_json::json;

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_creates_admin_with_a_random_password_in_a_0600_file() {
    let env = Env::start().await;
    let file = env.store().join("initial-admin-password");
    let password = env.initial_password().expect("initial-admin-password written");
    assert!(password.len() >= 16, "password too short: {password:?}");
    #[cfg(unix)]
    {
        assert_eq!(mode(&file), 0o600, "initial-admin-password mode");
        assert_eq!(mode(&env.store().join("admin-users.json")), 0o600, "users file mode");
    }
    let users = std::fs::read_to_string(env.store().join("admin-users.json")).expect("users file");
    assert!(users.contains("$argon2id$"), "argon2id hash stored");
    assert!(!users.contains(&password), "no password in the clear");

    // The generated password works, and says it must be changed.
    let r = env
        .request(
            "POST",
            "/api/v5/login",
            None,
            Some(&json!({"username": "admin", "password": password}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["role"], "administrator");
    assert_eq!(j["password_change_required"], true);
    assert!(j["version"].is_string());
    assert!(env.get("/api/v5/clients").await.status == 200, "the API works meanwhile");

    // Changing it clears the flag and removes the file.
    let r = env
        .post(
            "/api/v5/users/admin/change_pwd",
            json!({"old_pwd": password, "new_pwd": "a much better password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!file.exists(), "initial-admin-password removed once changed");
    let r = env
        .request(
            "POST",
            "/api/v5/login",
            None,
            Some(&json!({"username": "admin", "password": "a much better password"}).to_string()),
        )
        .await;
    assert_eq!(r.json()["password_change_required"], false);
    // Wrong old password.
    let r = env
        .post(
            "/api/v5/users/admin/change_pwd",
            json!({"old_pwd": "nope", "new_pwd": "another password"}),
        )
        .await;
    assert_eq!(r.status, 400);
    env.stop().await;
}

#[tokio::test]
async fn users_survive_a_restart_and_no_second_admin_is_made() {
    let outer = tempfile::tempdir().expect("tempdir");
    let store = outer.path().join("data");
    let env = Env::start_with(|c| c.store.path = store.clone()).await;
    let r = env
        .post(
            "/api/v5/users",
            json!({"username": "ops", "password": "ops password 1", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    env.stop().await;
    std::fs::remove_file(store.join("initial-admin-password")).expect("was written");
    let env2 = Env::start_with(|c| c.store.path = store.clone()).await;
    assert!(
        !store.join("initial-admin-password").exists(),
        "no new admin password"
    );
    let token = env2.login("ops", "ops password 1").await;
    let r = env2
        .request("GET", "/api/v5/users", Some(&format!("Bearer {token}")), None)
        .await;
    assert_eq!(r.status, 403, "viewer may not list users");
    env2.stop().await;
}

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let env = Env::start().await;
    let r = env.request("GET", "/api/v5/clients", None, None).await;
    assert_eq!((r.status, r.code().as_str()), (401, "BAD_TOKEN"));
    let r = env
        .request("GET", "/api/v5/clients", Some("Bearer not-a-token"), None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (401, "BAD_TOKEN"));
    let r = env
        .request("GET", "/api/v5/clients", Some(&basic("nokey", "nosecret")), None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (401, "BAD_API_KEY_OR_SECRET"));

    // Logout: the token stops working.
    let password = env.initial_password().expect("password");
    let token = env.login("admin", &password).await;
    let auth = format!("Bearer {token}");
    let r = env
        .request("POST", "/api/v5/logout", Some(&auth), Some(r#"{"username":"admin"}"#))
        .await;
    assert_eq!(r.status, 204);
    let r = env.request("GET", "/api/v5/clients", Some(&auth), None).await;
    assert_eq!(r.status, 401);
    env.stop().await;
}

#[tokio::test]
async fn expired_token_is_token_time_out() {
    let env = Env::start_with(|c| c.admin.token_expiry = "1s".into()).await;
    assert_eq!(env.get("/api/v5/stats").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = env.get("/api/v5/stats").await;
    assert_eq!((r.status, r.code().as_str()), (401, "TOKEN_TIME_OUT"));
    env.stop().await;
}

#[tokio::test]
async fn viewer_may_only_read() {
    let env = Env::start().await;
    let r = env
        .post(
            "/api/v5/users",
            json!({"username": "watcher", "password": "watcher pass", "role": "viewer", "description": "d"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["role"], "viewer");
    let r = env
        .post("/api/v5/users", json!({"username": "watcher", "password": "watcher pass"}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "ALREADY_EXISTS"));

    let token = env.login("watcher", "watcher pass").await;
    let auth = format!("Bearer {token}");
    assert_eq!(env.request("GET", "/api/v5/clients", Some(&auth), None).await.status, 200);
    let r = env
        .request(
            "POST",
            "/api/v5/publish",
            Some(&auth),
            Some(r#"{"topic":"t","payload":"x"}"#),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
    let r = env.request("DELETE", "/api/v5/clients/x", Some(&auth), None).await;
    assert_eq!(r.status, 403);
    // Its own password, though, it may change.
    let r = env
        .request(
            "POST",
            "/api/v5/users/watcher/change_pwd",
            Some(&auth),
            Some(r#"{"old_pwd":"watcher pass","new_pwd":"watcher pass 2"}"#),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);

    // Users: list, change, delete; the last administrator stays.
    let r = env.get("/api/v5/users").await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
    let r = env
        .call("PUT", "/api/v5/users/watcher", Some(json!({"description": "new"})))
        .await;
    assert_eq!(r.json()["description"], "new");
    let r = env
        .call("PUT", "/api/v5/users/admin", Some(json!({"role": "viewer"})))
        .await;
    assert_eq!(r.status, 400, "last administrator cannot be demoted");
    assert_eq!(env.delete("/api/v5/users/watcher").await.status, 204);
    assert_eq!(env.delete("/api/v5/users/watcher").await.status, 404);
    assert_eq!(env.delete("/api/v5/users/admin").await.status, 400);
    env.stop().await;
}

#[tokio::test]
async fn api_keys_authenticate_with_basic_and_can_be_disabled() {
    let env = Env::start().await;
    let r = env
        .post("/api/v5/api_key", json!({"name": "ci", "desc": "for CI", "role": "viewer"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let (key, secret) = (
        j["api_key"].as_str().expect("key").to_owned(),
        j["api_secret"].as_str().expect("secret").to_owned(),
    );
    assert_eq!(j["enable"], true);
    // The secret is shown once.
    let r = env.get("/api/v5/api_key/ci").await;
    assert!(r.json().get("api_secret").is_none());
    assert_eq!(env.get("/api/v5/api_key").await.json().as_array().map(Vec::len), Some(1));
    let stored = std::fs::read_to_string(env.store().join("admin-users.json")).expect("file");
    assert!(!stored.contains(&secret), "secret stored hashed");

    let auth = basic(&key, &secret);
    for _ in 0..2 {
        // The second time comes from the verified-secret cache.
        assert_eq!(env.request("GET", "/api/v5/stats", Some(&auth), None).await.status, 200);
    }
    let r = env.request("POST", "/api/v5/publish", Some(&auth), Some(r#"{"topic":"t"}"#)).await;
    assert_eq!(r.status, 403, "viewer key");
    let r = env
        .request("GET", "/api/v5/stats", Some(&basic(&key, "wrong")), None)
        .await;
    assert_eq!((r.status, r.code().as_str()), (401, "BAD_API_KEY_OR_SECRET"));

    let r = env.call("PUT", "/api/v5/api_key/ci", Some(json!({"enable": false}))).await;
    assert_eq!(r.json()["enable"], false);
    assert_eq!(env.request("GET", "/api/v5/stats", Some(&auth), None).await.status, 401);
    assert_eq!(env.delete("/api/v5/api_key/ci").await.status, 204);
    assert_eq!(env.get("/api/v5/api_key/ci").await.status, 404);
    env.stop().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let env = Env::start().await;
    let wrong = json!({"username": "admin", "password": "wrong password"}).to_string();
    for i in 0..5 {
        let r = env.request("POST", "/api/v5/login", None, Some(&wrong)).await;
        assert_eq!((r.status, r.code().as_str()), (401, "BAD_USERNAME_OR_PWD"), "attempt {i}");
    }
    let r = env.request("POST", "/api/v5/login", None, Some(&wrong)).await;
    assert_eq!((r.status, r.code().as_str()), (429, "LOGIN_THROTTLED"));
    // Even the right password, from this address, for a minute.
    let right = json!({"username": "admin", "password": env.initial_password().expect("pw")});
    let r = env.request("POST", "/api/v5/login", None, Some(&right.to_string())).await;
    assert_eq!(r.status, 429);
    // Tokens already issued keep working.
    assert_eq!(env.get("/api/v5/stats").await.status, 200);
    env.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_serves_without_credentials() {
    let env = Env::start().await;
    let path = env.server().socket_path().expect("socket served").to_owned();
    assert_eq!(path, env.store().join("hermod.sock"));
    assert_eq!(mode(&path), 0o600, "socket mode");
    let s = tokio::net::UnixStream::connect(&path).await.expect("connect socket");
    let r = http(s, "GET", "/api/v5/clients", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = tokio::net::UnixStream::connect(&path).await.expect("connect socket");
    let r = http(s, "POST", "/api/v5/publish", &[], Some(r#"{"topic":"a/b","payload":"x"}"#)).await;
    assert_eq!(r.status, 200, "administrator on the socket: {}", r.body);
    env.stop().await;
    assert!(!path.exists(), "socket removed at shutdown");
}

#[cfg(unix)]
#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::store_dir(dir.path());
    std::fs::create_dir_all(&store).expect("mkdir");
    // A socket file left by a crashed process: bound, then the listener dropped.
    drop(std::os::unix::net::UnixListener::bind(store.join("hermod.sock")).expect("bind"));
    let env = Env::start_with(|c| c.store.path = store.clone()).await;
    let s = tokio::net::UnixStream::connect(store.join("hermod.sock"))
        .await
        .expect("connect the new socket");
    assert_eq!(http(s, "GET", "/api/v5/stats", &[], None).await.status, 200);
    env.stop().await;
}

#[tokio::test]
async fn memory_store_keeps_accounts_in_memory_only() {
    let env = Env::start_with(|c| {
        c.store.sync = hermod_broker::config::SyncSetting::Memory;
    })
    .await;
    assert!(env.initial_password().is_none(), "nothing written with a memory store");
    assert!(!env.store().join("admin-users.json").exists());
    assert!(env.server().socket_path().is_none(), "no socket without a store folder");
    let r = env.request("GET", "/api/v5/clients", None, None).await;
    assert_eq!(r.status, 401, "credentials still required");
    env.stop().await;
}

#[tokio::test]
async fn public_endpoints_need_no_credentials() {
    let env = Env::start().await;
    let r = env.request("GET", "/api/v5/status", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("hermod ") && r.body.ends_with(" is running"), "{}", r.body);
    let r = env.request("GET", "/api/v5/status?format=json", None, None).await;
    assert_eq!(r.json()["status"], "running");
    assert!(r.json()["uptime"].is_u64());
    let r = env.request("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(r.body.contains("hermod_connections"), "{}", r.body);
    let r = env.request("GET", "/api-docs/swagger.json", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["paths"]["/api/v5/clients"].is_object());
    let r = env.request("GET", "/api/v5/no/such/thing", None, None).await;
    assert_eq!((r.status, r.code().as_str()), (404, "NOT_FOUND"));
    env.stop().await;
}

#[tokio::test]
async fn metrics_listener_serves_only_metrics() {
    let env = Env::start_with(|c| c.metrics.bind = Some("127.0.0.1:0".into())).await;
    let addr = env.server().metrics_addr().expect("metrics listener");
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let r = http(s, "GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("# TYPE"));
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    assert_eq!(http(s, "GET", "/api/v5/status", &[], None).await.status, 404);
    env.stop().await;
}

#[tokio::test]
async fn admin_bind_failure_names_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut config = hermod_broker::Config::for_tests();
    config.store.sync = hermod_broker::config::SyncSetting::Memory;
    config.admin.enabled = true;
    config.admin.bind = addr.to_string();
    let broker = hermod_broker::Broker::bind(config.clone()).await.expect("broker");
    let err = hermod_admin::start(broker.handle(), &config)
        .await
        .expect_err("port taken");
    let text = err.to_string();
    assert!(text.starts_with("admin.bind"), "{text}");
    assert!(!text.contains('\n'));
}
