//! `/things`: device shadows read from the broker's store, as the shadow service keeps them
//! (stored here through the shadow engine, as the service does), answered as `get/accepted`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use hermod_shadow::service::{KV_NAMESPACE, store_key};
use hermod_shadow::{Engine, Limits, Models, Op, Prefix, Request, StoreChange};
use hermod_testkit::{Client, QoS, V5};
use serde_json::json;

/// Applies an update to the stored shadow, as the shadow service would.
async fn update(env: &Env, thing: &str, name: Option<&str>, body: &str) {
    let kv = env.handle.kv(KV_NAMESPACE);
    let req = Request::new(Prefix::Hermod, thing, name, Op::Update).expect("valid names");
    let key = store_key(&req);
    let current = kv
        .get(&key)
        .map(|b| hermod_shadow::Shadow::from_bytes(&b).expect("stored shadow"));
    let outcome = Engine::new(Limits::default(), Models::none()).handle(
        &req,
        body.as_bytes(),
        current.as_ref(),
        1_800_000_000,
    );
    let Some(StoreChange::Put(shadow)) = outcome.store else {
        panic!("update refused: {:?}", outcome.replies)
    };
    kv.put(&key, shadow.to_bytes().into())
        .await
        .expect("stored");
}

#[tokio::test]
async fn shadows_are_listed_and_read_as_get_answers() {
    let env = Env::start().await;
    update(&env, "lamp-1", None, r#"{"state":{"desired":{"on":true}}}"#).await;
    update(
        &env,
        "lamp-1",
        None,
        r#"{"state":{"reported":{"on":false}}}"#,
    )
    .await;
    update(
        &env,
        "lamp-1",
        Some("cfg"),
        r#"{"state":{"desired":{"hz":50}}}"#,
    )
    .await;
    update(&env, "fan-2", None, r#"{"state":{"reported":{"speed":1}}}"#).await;

    let list = env.get("/api/v5/things").await.json();
    let things: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["thing"].as_str().expect("thing"))
        .collect();
    assert_eq!(things, ["fan-2", "lamp-1"]);
    let lamp = &list["data"][1]["shadows"];
    assert_eq!(lamp[0]["name"], serde_json::Value::Null);
    assert_eq!(lamp[0]["version"], 2);
    assert_eq!(lamp[1]["name"], "cfg");

    let doc = env.get("/api/v5/things/lamp-1/shadow").await.json();
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["state"]["desired"]["on"], true);
    assert_eq!(doc["state"]["reported"]["on"], false);
    assert_eq!(
        doc["state"]["delta"]["on"], true,
        "desired differs from reported"
    );
    let named = env
        .get("/api/v5/things/lamp-1/shadow?name=cfg")
        .await
        .json();
    assert_eq!(named["state"]["desired"]["hz"], 50);

    let missing = env.get("/api/v5/things/lamp-9/shadow").await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "NOT_FOUND".to_owned())
    );
    let bad = env.get("/api/v5/things/a%2Bb/shadow").await;
    assert_eq!(bad.status, 400, "`+` is not in a thing name");
    env.stop().await;
}

/// `PUT` and `DELETE` go through the shadow service: the update is committed and answered as
/// `update/accepted`, the device gets the delta over MQTT, a stale `version` is 409, a delete
/// is followed by 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_delete_go_through_the_shadow_service() {
    let env = Env::start_with_shadows().await;
    // The device, subscribed to its own delta (the broker's things rule lets it).
    let mut device = Client::connect_id(env.mqtt, V5, "lamp-1").await;
    device
        .subscribe(
            "$hermod/things/lamp-1/shadow/update/delta",
            QoS::AtLeastOnce,
        )
        .await;
    // The service subscribes when it has connected: retry until it answers.
    let path = "/api/v5/things/lamp-1/shadow";
    let body = json!({"state": {"desired": {"on": true}}, "clientToken": "t1"});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let r = loop {
        let r = env.put(path, body.clone()).await;
        if r.status != 503 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert_eq!(
        (doc["version"].clone(), doc["clientToken"].clone()),
        (json!(1), json!("t1"))
    );
    let delta = device.expect_publish_acked().await;
    assert_eq!(delta.topic, "$hermod/things/lamp-1/shadow/update/delta");
    assert_eq!(env.get(path).await.json()["state"]["desired"]["on"], true);

    let stale = env
        .put(
            path,
            json!({"state": {"desired": {"on": false}}, "version": 7}),
        )
        .await;
    assert_eq!(
        (stale.status, stale.code()),
        (409, "VERSION_CONFLICT".to_owned())
    );
    let bad = env.put(path, json!({"desired": {}})).await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    let r = env.delete(path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 1);
    assert_eq!(env.get(path).await.status, 404);
    assert_eq!(env.delete(path).await.status, 404);
    env.stop().await;
}

/// Without the shadow service, `PUT` says so (503) instead of writing behind its back.
#[tokio::test]
async fn put_without_the_service_is_503() {
    let env = Env::start().await;
    let r = env
        .put(
            "/api/v5/things/x/shadow",
            json!({"state": {"desired": {"a": 1}}}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (503, "SERVICE_UNAVAILABLE".to_owned())
    );
    env.stop().await;
}
