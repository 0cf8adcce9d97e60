//! `/things`: device shadows read from the broker's store, as the shadow service keeps them
//! (stored here through the shadow engine, as the service does), answered as `get/accepted`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use hermod_shadow::service::{KV_NAMESPACE, store_key};
use hermod_shadow::{Engine, Limits, Models, Op, Prefix, Request, StoreChange};

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
