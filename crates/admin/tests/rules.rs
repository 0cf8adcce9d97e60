//! `/rules` and `/bridges` against real rules (hermod-rules, started on the test broker from a
//! TOML string): counters after real publishes, 404 for an unknown rule, a viewer may read,
//! and empty lists without rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Env;
use hermod_proto::QoS;
use hermod_testkit::{Client, V5};
use serde_json::{Value, json};

/// A rule that republishes the `v` of JSON payloads above 1, and a bridge to a loopback port
/// nothing listens on (so it stays disconnected and counts failed connects).
fn rules_toml(bridge_port: u16) -> String {
    format!(
        r#"
[[rule]]
name = "relay"
buffer = "memory"
sql = 'SELECT clientid, payload.v AS v FROM "t/#" WHERE v > 1'
[[rule.action]]
republish = "alerts/${{clientid}}"
payload = "v=${{v}}"
qos = 1

[[bridge]]
name = "nowhere"
address = "127.0.0.1:{bridge_port}"
topic = ["out/# out 1 local/ remote/", "cmd/# in 1"]
"#
    )
}

/// A loopback port with nothing listening (bound, read, released).
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls `path` until `done` holds for its JSON (at most 20 s).
async fn wait_for(env: &Env, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let j = env.get(path).await.json();
        if done(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_bridges_show_their_counters() {
    let env = Env::start_with_rules(&rules_toml(refused_port())).await;
    // The rule's session subscribes in the background: wait until it is there.
    let deadline = Instant::now() + Duration::from_secs(20);
    let subscribed = || {
        env.handle
            .client("$hermod/rule/relay")
            .is_some_and(|c| c.subscriptions > 0)
    };
    while !subscribed() {
        assert!(Instant::now() < deadline, "the rule never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The SUBACK: the subscription is in place once the session lists it.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut sub = Client::connect_id(env.mqtt, V5, "watcher").await;
    sub.subscribe("alerts/#", QoS::AtLeastOnce).await;
    let mut dev = Client::connect_id(env.mqtt, V5, "dev1").await;
    for v in 0..4 {
        dev.publish(
            "t/x",
            format!(r#"{{"v": {v}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    for want in ["v=2", "v=3"] {
        let m = sub.expect_publish_acked().await;
        assert_eq!(String::from_utf8_lossy(&m.payload), want);
    }

    let list = wait_for(&env, "/api/v5/rules", |j| {
        j["data"][0]["metrics"]["acked"] == 4
    })
    .await;
    assert_eq!(
        list["meta"],
        json!({"count": 1, "limit": 100, "page": 1, "hasnext": false})
    );
    let r = &list["data"][0];
    assert_eq!(r["id"], "relay");
    assert_eq!(r["name"], "relay");
    assert_eq!(r["enable"], true);
    assert_eq!(
        r["sql"],
        r#"SELECT clientid, payload.v AS v FROM "t/#" WHERE v > 1"#
    );
    assert_eq!(r["from"], json!(["t/#"]));
    assert_eq!(r["actions"], json!(["republish"]));
    let m = &r["metrics"];
    for (key, want) in [
        ("matched", 4),
        ("passed", 2),
        ("no_result", 2),
        ("failed", 0),
        ("acked", 4),
        ("buffered", 0),
        ("dropped", 0),
        ("failed.no_result", 2),
        ("actions.success", 2),
        ("actions.failed", 0),
        ("actions.total", 2),
    ] {
        assert_eq!(m[key], want, "metrics.{key} in {m}");
    }
    assert_eq!(
        m["actions"],
        json!([{"target": "republish", "succeeded": 2, "failed": 0, "retried": 0, "pending": 0}])
    );

    // One rule by its id: the same object.
    let one = env.get("/api/v5/rules/relay").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["metrics"]["matched"], 4);
    let missing = env.get("/api/v5/rules/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "NOT_FOUND");

    // The bridge: configured address and lines, down, counting its failed attempts.
    let bridges = wait_for(&env, "/api/v5/bridges", |j| {
        j[0]["metrics"]["failed_connects"].as_u64() >= Some(1)
    })
    .await;
    let b = &bridges[0];
    assert_eq!(bridges.as_array().map(Vec::len), Some(1));
    assert_eq!(b["id"], "mqtt:nowhere");
    assert_eq!(b["type"], "mqtt");
    assert_eq!(b["name"], "nowhere");
    assert_eq!(b["status"], "disconnected");
    assert_eq!(b["connected"], false);
    assert!(
        b["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:"))
    );
    assert_eq!(
        b["topics"],
        json!(["out/# out 1 local/ remote/", "cmd/# in 1"])
    );
    assert_eq!(b["metrics"]["messages_out"], 0);
    assert_eq!(b["metrics"]["reconnects"], 0);
    env.stop().await;
}

#[tokio::test]
async fn a_viewer_may_read_rules_but_not_without_credentials() {
    let env = Env::start_with_rules(&rules_toml(refused_port())).await;
    let r = env
        .post(
            "/api/v5/users",
            json!({"username": "watcher", "password": "watcher pass", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = env.login("watcher", "watcher pass").await;
    let auth = format!("Bearer {token}");
    for path in ["/api/v5/rules", "/api/v5/rules/relay", "/api/v5/bridges"] {
        let r = env.request("GET", path, Some(&auth), None).await;
        assert_eq!(r.status, 200, "viewer GET {path}: {}", r.body);
        let r = env.request("GET", path, None, None).await;
        assert_eq!(r.status, 401, "anonymous GET {path}");
    }
    let r = env
        .request("GET", "/api/v5/rules/relay", Some(&auth), None)
        .await;
    assert_eq!(r.json()["name"], "relay");
    env.stop().await;
}

#[tokio::test]
async fn without_rules_the_lists_are_empty() {
    let env = Env::start().await;
    let r = env.get("/api/v5/rules").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"data": [], "meta": {"count": 0, "limit": 100, "page": 1, "hasnext": false}})
    );
    let r = env.get("/api/v5/bridges").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    assert_eq!(env.get("/api/v5/rules/any").await.status, 404);
    assert_eq!(env.get("/api/v5/rules?page=0").await.status, 400);
    env.stop().await;
}
