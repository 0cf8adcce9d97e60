//! A broker in the test with the shadow service of its config file started on it, and helpers
//! to send shadow requests and read replies as a device or an application would.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_shadow::{ShadowConfig, ShadowService};
use hermod_testkit::{Client, Packet, Publish, PublishProperties, QoS, TestBroker, V5, opts};
use serde_json::Value;

/// A broker with a store on disk (`dir/data`), anonymous clients, the ACL below, no admin API.
pub(crate) const STORE: &str = "allow_anonymous = true\nacl_file = \"acl\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n[store]\npath = \"data\"\n[admin]\nenabled = false\n";

/// Devices are anonymous clients named after their thing: the broker's default rule gives them
/// their own thing's topics; they may not write `secret/#`. Applications log in as `app`, which may use every thing's.
pub(crate) const ACL: &str = "topic readwrite #\ntopic deny secret/#\n\nuser app\ntopic readwrite #\ntopic readwrite $hermod/things/#\ntopic readwrite $aws/things/#\n";

/// The username of applications (see [`ACL`]).
pub(crate) const APP: &str = "app";

/// A broker on `dir` with `extra` appended to its config, and the shadow service started on it.
pub(crate) async fn start(dir: tempfile::TempDir, extra: &str) -> (TestBroker, ShadowService) {
    hermod_testkit::write(dir.path(), "acl", ACL);
    let b = TestBroker::start_in(dir, &format!("{STORE}{extra}")).await;
    let path = b.config_path.clone().expect("config path");
    let cfg = ShadowConfig::load(&path).unwrap_or_else(|e| panic!("shadow config: {e}"));
    let s = ShadowService::start(b.handle().clone(), &cfg)
        .unwrap_or_else(|e| panic!("shadow start: {e}"));
    b.handle().add_metrics_source(s.metrics_source());
    if cfg.enabled {
        let id = ShadowService::client_id();
        wait_until("the shadow service subscribed", || {
            b.handle()
                .client(&id)
                .is_some_and(|c| c.online && c.subscriptions >= 2)
        })
        .await;
    }
    (b, s)
}

pub(crate) async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A v5 application client (username [`APP`]): may use every thing's topics.
pub(crate) async fn app(b: &TestBroker, id: &str) -> Client {
    let (c, ack) = b
        .connect_with(hermod_testkit::connect_auth(V5, id, Some(APP), None))
        .await;
    assert_eq!(
        ack.reason,
        hermod_testkit::ReasonCode::SUCCESS,
        "{id}: {ack:?}"
    );
    c
}

/// A v5 client subscribed (QoS 0) to every reply topic of `thing` under `prefix`, classic and
/// named: the device itself when `id` is the thing's name, else an application.
pub(crate) async fn watcher(b: &TestBroker, id: &str, prefix: &str, thing: &str) -> Client {
    let mut c = if id == thing {
        b.client(V5, id).await
    } else {
        app(b, id).await
    };
    c.subscribe(
        &format!("{prefix}/things/{thing}/shadow/+/+"),
        QoS::AtMostOnce,
    )
    .await;
    c.subscribe(
        &format!("{prefix}/things/{thing}/shadow/name/+/+/+"),
        QoS::AtMostOnce,
    )
    .await;
    c
}

/// Publishes a request at QoS 1 (the broker's PUBACK awaited).
pub(crate) async fn send(c: &mut Client, topic: &str, payload: &str) {
    c.publish(topic, payload.as_bytes(), QoS::AtLeastOnce, false)
        .await;
}

/// The next PUBLISH on `topic` (others are kept for later reads), as JSON.
pub(crate) async fn next_on(c: &mut Client, topic: &str) -> Value {
    let p = next_publish_on(c, topic).await;
    serde_json::from_slice(&p.payload)
        .unwrap_or_else(|e| panic!("reply on {topic} is not JSON: {e}"))
}

pub(crate) async fn next_publish_on(c: &mut Client, topic: &str) -> Publish {
    let want = topic.to_owned();
    match c
        .wait_for(
            &format!("a PUBLISH on {topic}"),
            |p| matches!(p, Packet::Publish(p) if p.topic == want),
        )
        .await
    {
        Packet::Publish(p) => p,
        _ => unreachable!(),
    }
}

/// Every PUBLISH arriving within `quiet`, as (topic, JSON).
pub(crate) async fn drain(c: &mut Client, quiet: Duration) -> Vec<(String, Value)> {
    let mut v = Vec::new();
    while let Some(p) = c.recv(quiet).await {
        if let Packet::Publish(p) = p {
            let json = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
            v.push((p.topic, json));
        }
    }
    v
}

/// A request with a v5 Response Topic and Correlation Data.
pub(crate) fn with_response(
    topic: &str,
    payload: &str,
    response: &str,
    correlation: &[u8],
) -> Publish {
    let mut p = hermod_testkit::publish(topic, payload.as_bytes(), QoS::AtLeastOnce, false);
    p.properties = PublishProperties {
        response_topic: Some(response.to_owned()),
        correlation_data: Some(Bytes::copy_from_slice(correlation)),
        ..PublishProperties::default()
    };
    p
}

pub(crate) fn sub_opts(qos: QoS) -> hermod_testkit::SubscriptionOptions {
    opts(qos)
}
