//! The shadow service end to end: a broker in the test, the service of a real config file
//! started on it, and MQTT clients acting as devices and applications (AWS IoT's flows), across
//! a broker restart too.

mod common;

use common::{
    app, drain, next_on, next_publish_on, send, start, wait_until, watcher, with_response,
};
use hermod_testkit::{Packet, QUIET, QoS, V5, persistent, publish, tempdir};
use serde_json::{Value, json};

const AWS: &str = "[shadow]\naws_compat = true\n";

/// Update desired -> accepted + delta; report -> accepted v+1, no delta; get; 409; delete ->
/// get 404; the same document under `$hermod` and `$aws`; clientToken echoed everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_classic_flow() {
    let (b, shadows) = start(tempdir(), AWS).await;
    let base = "$aws/things/lamp-1/shadow";
    let mut device = watcher(&b, "lamp-1", "$aws", "lamp-1").await;
    let mut app = app(&b, "app").await;

    send(
        &mut app,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"on":true,"level":5}},"clientToken":"t1"}"#,
    )
    .await;
    let accepted = next_on(&mut device, &format!("{base}/update/accepted")).await;
    assert_eq!(accepted["version"], 1);
    assert_eq!(accepted["clientToken"], "t1");
    assert_eq!(
        accepted["state"],
        json!({"desired": {"on": true, "level": 5}})
    );
    let delta = next_on(&mut device, &format!("{base}/update/delta")).await;
    assert_eq!(delta["state"], json!({"on": true, "level": 5}));
    assert_eq!(delta["version"], 1);
    let docs = next_on(&mut device, &format!("{base}/update/documents")).await;
    assert_eq!(docs["previous"], Value::Null);
    assert_eq!(docs["current"]["version"], 1);

    // The device reports what it did: accepted at version 2, and no delta (nothing differs).
    send(
        &mut device,
        &format!("{base}/update"),
        r#"{"state":{"reported":{"on":true,"level":5}},"clientToken":"d1"}"#,
    )
    .await;
    let accepted = next_on(&mut device, &format!("{base}/update/accepted")).await;
    assert_eq!(accepted["version"], 2);
    assert_eq!(accepted["clientToken"], "d1");
    let rest = drain(&mut device, QUIET).await;
    let topics: Vec<&str> = rest.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, [format!("{base}/update/documents")], "no delta");

    // Get, on the other prefix: the same document.
    let mut hermod_side = watcher(&b, "lamp-1-h", "$hermod", "lamp-1").await;
    send(
        &mut hermod_side,
        "$hermod/things/lamp-1/shadow/get",
        r#"{"clientToken":"g1"}"#,
    )
    .await;
    let got = next_on(
        &mut hermod_side,
        "$hermod/things/lamp-1/shadow/get/accepted",
    )
    .await;
    assert_eq!(got["version"], 2);
    assert_eq!(got["clientToken"], "g1");
    assert_eq!(
        got["state"],
        json!({"desired": {"on": true, "level": 5}, "reported": {"on": true, "level": 5}})
    );
    assert!(got["metadata"]["desired"]["on"]["timestamp"].is_number());

    // A stale version: 409 with the token.
    send(
        &mut app,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"on":false}},"version":1,"clientToken":"t2"}"#,
    )
    .await;
    let rejected = next_on(&mut device, &format!("{base}/update/rejected")).await;
    assert_eq!(rejected["code"], 409);
    assert_eq!(rejected["clientToken"], "t2");

    // Delete, then get: 404.
    send(
        &mut app,
        &format!("{base}/delete"),
        r#"{"clientToken":"x"}"#,
    )
    .await;
    let deleted = next_on(&mut device, &format!("{base}/delete/accepted")).await;
    assert_eq!(deleted["version"], 2);
    assert_eq!(deleted["clientToken"], "x");
    send(&mut app, &format!("{base}/get"), "").await;
    let missing = next_on(&mut device, &format!("{base}/get/rejected")).await;
    assert_eq!(missing["code"], 404);
    assert_eq!(missing["message"], "No shadow exists with name: 'lamp-1'");

    // Re-created: the version continues.
    send(
        &mut app,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"on":true}}}"#,
    )
    .await;
    let accepted = next_on(&mut device, &format!("{base}/update/accepted")).await;
    assert_eq!(accepted["version"], 3);

    let text = shadows.prometheus_text();
    assert!(
        text.contains("hermod_shadow_requests_total{op=\"update\",result=\"accepted\"} 3"),
        "{text}"
    );
    assert!(text.contains("hermod_shadow_rejected_total{code=\"409\"} 1"));
    assert!(text.contains("hermod_shadow_rejected_total{code=\"404\"} 1"));
    assert!(text.contains("hermod_shadow_documents 1"));
    assert!(text.contains("hermod_shadow_things 1"));
    // Also in the broker's /metrics text.
    assert!(
        b.handle()
            .prometheus_text()
            .contains("hermod_shadow_requests_total")
    );
    hermod_testkit::promtool_accepts(&text);
    shadows.shutdown().await;
    b.stop().await;
}

/// `$aws` is not served without `aws_compat`; `$hermod` always is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_prefix_needs_aws_compat() {
    let (b, shadows) = start(tempdir(), "").await;
    let mut c = watcher(&b, "lamp-2", "$aws", "lamp-2").await;
    send(&mut c, "$aws/things/lamp-2/shadow/get", "").await;
    assert!(drain(&mut c, QUIET).await.is_empty());
    let mut h = watcher(&b, "lamp-2h", "$hermod", "lamp-2").await;
    send(&mut h, "$hermod/things/lamp-2/shadow/get", "").await;
    let r = next_on(&mut h, "$hermod/things/lamp-2/shadow/get/rejected").await;
    assert_eq!(r["code"], 404);
    shadows.shutdown().await;
    b.stop().await;
}

/// Named shadows are separate documents; 413 and 400 come back on `rejected` with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_shadows_and_limits() {
    let (b, shadows) = start(tempdir(), "").await;
    let base = "$hermod/things/pump-7/shadow";
    let mut c = watcher(&b, "pump-7", "$hermod", "pump-7").await;
    send(
        &mut c,
        &format!("{base}/name/config/update"),
        r#"{"state":{"desired":{"rpm":1200}},"clientToken":"n1"}"#,
    )
    .await;
    let a = next_on(&mut c, &format!("{base}/name/config/update/accepted")).await;
    assert_eq!(a["version"], 1);
    assert_eq!(a["clientToken"], "n1");
    let d = next_on(&mut c, &format!("{base}/name/config/update/delta")).await;
    assert_eq!(d["state"], json!({"rpm": 1200}));
    // The classic shadow of the same thing does not exist.
    send(&mut c, &format!("{base}/get"), "").await;
    let r = next_on(&mut c, &format!("{base}/get/rejected")).await;
    assert_eq!(r["code"], 404);
    send(&mut c, &format!("{base}/name/config/get"), "").await;
    let g = next_on(&mut c, &format!("{base}/name/config/get/accepted")).await;
    assert_eq!(g["state"]["delta"], json!({"rpm": 1200}));
    assert!(b.handle().kv("shadow").get("pump-7/name/config").is_some());

    // Too large: 413, with the token.
    let big = format!(
        r#"{{"state":{{"desired":{{"blob":"{}"}}}},"clientToken":"big"}}"#,
        "x".repeat(9000)
    );
    send(&mut c, &format!("{base}/update"), &big).await;
    let r = next_on(&mut c, &format!("{base}/update/rejected")).await;
    assert_eq!(r["code"], 413);
    assert_eq!(r["clientToken"], "big");
    // Not JSON: 400.
    send(&mut c, &format!("{base}/update"), "{nope").await;
    let r = next_on(&mut c, &format!("{base}/update/rejected")).await;
    assert_eq!(r["code"], 400);
    shadows.shutdown().await;
    b.stop().await;
}

/// Any client may create its own thing's shadows, so their number is bounded: a device that
/// makes named shadow after named shadow is refused (400) past `max_shadows_per_thing`, and
/// things past `max_shadows` in all; updating an existing shadow is still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_counts_are_bounded() {
    let (b, shadows) = start(
        tempdir(),
        "[shadow]\nmax_shadows_per_thing = 3\nmax_shadows = 4\n",
    )
    .await;
    let base = "$hermod/things/greedy/shadow";
    let mut c = watcher(&b, "greedy", "$hermod", "greedy").await;
    let doc = r#"{"state":{"reported":{"x":1}}}"#;
    // The classic shadow and two named ones: 3, the limit.
    send(&mut c, &format!("{base}/update"), doc).await;
    next_on(&mut c, &format!("{base}/update/accepted")).await;
    for n in ["a", "b"] {
        send(&mut c, &format!("{base}/name/{n}/update"), doc).await;
        next_on(&mut c, &format!("{base}/name/{n}/update/accepted")).await;
    }
    send(&mut c, &format!("{base}/name/c/update"), doc).await;
    let r = next_on(&mut c, &format!("{base}/name/c/update/rejected")).await;
    assert_eq!(r["code"], 400, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit 3"),
        "{r}"
    );
    assert!(b.handle().kv("shadow").get("greedy/name/c").is_none());
    // An existing one still takes updates.
    send(&mut c, &format!("{base}/name/a/update"), doc).await;
    let a = next_on(&mut c, &format!("{base}/name/a/update/accepted")).await;
    assert_eq!(a["version"], 2);

    // In all: a fourth thing's shadow fits, a fifth does not.
    let mut other = watcher(&b, "other", "$hermod", "other").await;
    let obase = "$hermod/things/other/shadow";
    send(&mut other, &format!("{obase}/update"), doc).await;
    next_on(&mut other, &format!("{obase}/update/accepted")).await;
    send(&mut other, &format!("{obase}/name/z/update"), doc).await;
    let r = next_on(&mut other, &format!("{obase}/name/z/update/rejected")).await;
    assert_eq!(r["code"], 400, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit 4"),
        "{r}"
    );
    assert_eq!(b.handle().kv("shadow").len(), 4);
    shadows.shutdown().await;
    b.stop().await;
}

/// The device was away while the application changed `desired`: on its return it gets the
/// shadow (with the delta), reports, and the delta is gone. A device with a persistent session
/// also gets the delta queued while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_device_catches_up() {
    let (b, shadows) = start(tempdir(), "").await;
    let base = "$hermod/things/heater-3/shadow";
    // The device subscribed with a persistent session, then went away.
    let (mut device, _) = b.connect_with(persistent(V5, "heater-3")).await;
    device
        .subscribe(&format!("{base}/update/delta"), QoS::AtLeastOnce)
        .await;
    device.disconnect().await;

    let mut app = app(&b, "app").await;
    send(
        &mut app,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"target":21}}}"#,
    )
    .await;
    send(
        &mut app,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"mode":"eco"}}}"#,
    )
    .await;

    // Back: the queued deltas arrive, then get shows the delta, then the device reports.
    let (mut device, ack) = b.connect_with(persistent(V5, "heater-3")).await;
    assert!(ack.session_present);
    let d1 = device.expect_publish_acked().await;
    let d2 = device.expect_publish_acked().await;
    assert_eq!(d1.topic, format!("{base}/update/delta"));
    let d2: Value = serde_json::from_slice(&d2.payload).expect("json");
    assert_eq!(d2["state"], json!({"target": 21, "mode": "eco"}));
    assert_eq!(d2["version"], 2);

    device
        .subscribe(&format!("{base}/get/accepted"), QoS::AtMostOnce)
        .await;
    device
        .subscribe(&format!("{base}/update/accepted"), QoS::AtMostOnce)
        .await;
    send(&mut device, &format!("{base}/get"), "{}").await;
    let g = next_on(&mut device, &format!("{base}/get/accepted")).await;
    assert_eq!(g["state"]["delta"], json!({"target": 21, "mode": "eco"}));
    send(
        &mut device,
        &format!("{base}/update"),
        r#"{"state":{"reported":{"target":21,"mode":"eco"}}}"#,
    )
    .await;
    let a = next_on(&mut device, &format!("{base}/update/accepted")).await;
    assert_eq!(a["version"], 3);
    send(&mut device, &format!("{base}/get"), "{}").await;
    let g = next_on(&mut device, &format!("{base}/get/accepted")).await;
    assert_eq!(g["version"], 3);
    assert!(g["state"].get("delta").is_none(), "delta gone: {g}");
    // No delta for a report.
    let rest = drain(&mut device, QUIET).await;
    assert!(rest.iter().all(|(t, _)| !t.ends_with("/delta")), "{rest:?}");
    shadows.shutdown().await;
    b.stop().await;
}

/// MQTT 5 request/response: the accepted/rejected reply goes to the Response Topic with the
/// Correlation Data (not to the standard topic); delta still goes to the standard topic. A
/// Response Topic under `$` is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_response_topic_and_correlation_data() {
    let (b, shadows) = start(tempdir(), "").await;
    let base = "$hermod/things/fan-1/shadow";
    let mut device = watcher(&b, "fan-1", "$hermod", "fan-1").await;
    let mut app = app(&b, "app").await;
    app.subscribe("app/replies/#", QoS::AtMostOnce).await;
    app.publish_packet(with_response(
        &format!("{base}/update"),
        r#"{"state":{"desired":{"speed":3}}}"#,
        "app/replies/1",
        b"corr-1",
    ))
    .await;
    let reply = next_publish_on(&mut app, "app/replies/1").await;
    assert_eq!(
        reply.properties.correlation_data.as_deref(),
        Some(&b"corr-1"[..])
    );
    let doc: Value = serde_json::from_slice(&reply.payload).expect("json");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["state"]["desired"]["speed"], 3);
    // The device sees the delta and the documents, not the accepted reply.
    let seen = drain(&mut device, QUIET).await;
    let topics: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            format!("{base}/update/delta"),
            format!("{base}/update/documents")
        ]
    );

    // A rejection goes to the Response Topic too.
    app.publish_packet(with_response(
        &format!("{base}/update"),
        r#"{"state":{"desired":{"speed":4}},"version":7}"#,
        "app/replies/2",
        b"corr-2",
    ))
    .await;
    let reply = next_publish_on(&mut app, "app/replies/2").await;
    assert_eq!(
        reply.properties.correlation_data.as_deref(),
        Some(&b"corr-2"[..])
    );
    let doc: Value = serde_json::from_slice(&reply.payload).expect("json");
    assert_eq!(doc["code"], 409);

    // `$...` Response Topics are ignored: the standard topic is used.
    app.publish_packet(with_response(
        &format!("{base}/get"),
        "{}",
        "$SYS/evil",
        b"c",
    ))
    .await;
    let g = next_on(&mut device, &format!("{base}/get/accepted")).await;
    assert_eq!(g["version"], 1);

    // A device may not publish to `secret/#`: its request's Response Topic there is not used
    // (the service publishes past the ACL, so it checks the requester's right), and the reply
    // goes to the standard topic.
    app.subscribe("secret/#", QoS::AtMostOnce).await;
    device
        .publish_packet(with_response(
            &format!("{base}/get"),
            "{}",
            "secret/x",
            b"c",
        ))
        .await;
    let g = next_on(&mut device, &format!("{base}/get/accepted")).await;
    assert_eq!(g["version"], 1);
    app.expect_nothing(QUIET).await;
    shadows.shutdown().await;
    b.stop().await;
}

/// More requests for one thing than `max_pending_per_thing` at once: the excess is refused
/// with 429 (and its token); every request is answered once; the accepted ones are applied in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pending_requests_get_429() {
    let dir = tempdir();
    // Slow commits, so that requests do pile up behind the first one whatever the disk.
    hermod_broker::store::fault_switch(&dir.path().join("data").join("hermod.redb"))
        .set_commit_delay(Some(std::time::Duration::from_millis(50)));
    let (b, shadows) = start(dir, "[shadow]\nmax_pending_per_thing = 2\n").await;
    let base = "$hermod/things/busy-1/shadow";
    let mut w = watcher(&b, "busy-w", "$hermod", "busy-1").await;
    let mut c = b.client(V5, "busy-1").await;
    let n = 60u16;
    for i in 0..n {
        let mut p = publish(
            &format!("{base}/update"),
            format!(r#"{{"state":{{"reported":{{"i":{i}}}}},"clientToken":"c{i}"}}"#).as_bytes(),
            QoS::AtLeastOnce,
            false,
        );
        p.packet_id = Some(hermod_testkit::pid(i + 1));
        c.send(&Packet::Publish(p)).await;
    }
    let mut accepted = Vec::new();
    let mut throttled = 0;
    wait_until("every request answered", || {
        shadows.requests_answered() == u64::from(n)
    })
    .await;
    for (topic, doc) in drain(&mut w, QUIET).await {
        if topic.ends_with("/update/accepted") {
            accepted.push(doc["version"].as_u64().expect("version"));
        } else if topic.ends_with("/update/rejected") {
            assert_eq!(doc["code"], 429, "{doc}");
            assert!(doc["clientToken"].is_string());
            throttled += 1;
        }
    }
    assert_eq!(accepted.len() + throttled, usize::from(n));
    assert!(throttled > 0, "no 429 among {n} requests sent at once");
    let expected: Vec<u64> = (1..=accepted.len() as u64).collect();
    assert_eq!(accepted, expected, "versions in order, none skipped");
    shadows.shutdown().await;
    b.stop().await;
}

/// An accepted update is in the store: a broker stopped and started again on the same folder
/// answers get with the same version and document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_updates_survive_a_restart() {
    let (mut b, shadows) = start(tempdir(), "").await;
    let base = "$hermod/things/door-9/shadow";
    let mut c = watcher(&b, "door-9", "$hermod", "door-9").await;
    for i in 0..5 {
        send(
            &mut c,
            &format!("{base}/update"),
            &format!(r#"{{"state":{{"reported":{{"open":{}}}}}}}"#, i % 2 == 0),
        )
        .await;
        next_on(&mut c, &format!("{base}/update/accepted")).await;
    }
    send(
        &mut c,
        &format!("{base}/name/lock/update"),
        r#"{"state":{"desired":{"locked":true}}}"#,
    )
    .await;
    next_on(&mut c, &format!("{base}/name/lock/update/accepted")).await;
    shadows.shutdown().await;
    let dir = b.dir.take().expect("dir");
    drop(c);
    b.stop().await;

    let (b, shadows) = start(dir, "").await;
    let mut c = watcher(&b, "door-9", "$hermod", "door-9").await;
    send(&mut c, &format!("{base}/get"), "").await;
    let g = next_on(&mut c, &format!("{base}/get/accepted")).await;
    assert_eq!(g["version"], 5);
    assert_eq!(g["state"]["reported"], json!({"open": true}));
    send(&mut c, &format!("{base}/name/lock/get"), "").await;
    let g = next_on(&mut c, &format!("{base}/name/lock/get/accepted")).await;
    assert_eq!(g["version"], 1);
    assert_eq!(g["state"]["delta"], json!({"locked": true}));
    shadows.shutdown().await;
    b.stop().await;
}

/// A thing model: an update that breaks the schema is refused with 400 naming the path; other
/// things are not checked; a valid update passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thing_model_rejections_name_the_path() {
    let dir = tempdir();
    hermod_testkit::write(
        dir.path(),
        "thermostat.schema.json",
        r#"{"type":"object","properties":{"temperature":{"type":"number","maximum":100},"mode":{"enum":["heat","cool"]}}}"#,
    );
    let (b, shadows) = start(
        dir,
        "[[thing_type]]\nname = \"thermostat\"\nschema = \"thermostat.schema.json\"\nthings = [\"thermo-*\"]\n",
    )
    .await;
    let base = "$hermod/things/thermo-1/shadow";
    let mut c = watcher(&b, "thermo-1", "$hermod", "thermo-1").await;
    send(
        &mut c,
        &format!("{base}/update"),
        r#"{"state":{"reported":{"temperature":150}},"clientToken":"m1"}"#,
    )
    .await;
    let r = next_on(&mut c, &format!("{base}/update/rejected")).await;
    assert_eq!(r["code"], 400);
    assert_eq!(r["clientToken"], "m1");
    let message = r["message"].as_str().expect("message");
    assert!(message.contains("state.reported.temperature"), "{message}");
    send(
        &mut c,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"mode":"dry"}}}"#,
    )
    .await;
    let r = next_on(&mut c, &format!("{base}/update/rejected")).await;
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("state.desired.mode")),
        "{r}"
    );
    send(
        &mut c,
        &format!("{base}/update"),
        r#"{"state":{"reported":{"temperature":20},"desired":{"mode":"heat"}}}"#,
    )
    .await;
    let a = next_on(&mut c, &format!("{base}/update/accepted")).await;
    assert_eq!(a["version"], 1);
    // Not a thermostat: not checked.
    let mut l = watcher(&b, "lamp-9", "$hermod", "lamp-9").await;
    send(
        &mut l,
        "$hermod/things/lamp-9/shadow/update",
        r#"{"state":{"reported":{"temperature":150}}}"#,
    )
    .await;
    next_on(&mut l, "$hermod/things/lamp-9/shadow/update/accepted").await;
    shadows.shutdown().await;
    b.stop().await;
}

/// `[shadow] enabled = false`: nobody answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_service_answers_nothing() {
    let (b, shadows) = start(tempdir(), "[shadow]\nenabled = false\n").await;
    let mut c = watcher(&b, "lamp-0", "$hermod", "lamp-0").await;
    send(&mut c, "$hermod/things/lamp-0/shadow/get", "").await;
    assert!(drain(&mut c, QUIET).await.is_empty());
    assert!(
        b.handle()
            .client(&hermod_shadow::ShadowService::client_id())
            .is_none()
    );
    shadows.shutdown().await;
    b.stop().await;
}

/// Tombstones of shadows deleted more than 48 hours ago are removed when the service starts;
/// recent ones stay (they keep the version of a shadow re-created within 48 hours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tombstones_are_purged_at_start() {
    let (mut b, shadows) = start(tempdir(), "[shadow]\nenabled = false\n").await;
    let kv = b.handle().kv("shadow");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let tomb = |age: i64| hermod_shadow::Shadow {
        version: 4,
        deleted: true,
        timestamp: now - age,
        ..hermod_shadow::Shadow::default()
    };
    let old = bytes::Bytes::from(tomb(49 * 3600).to_bytes());
    let recent = bytes::Bytes::from(tomb(3600).to_bytes());
    kv.put("old-1", old).await.expect("put");
    kv.put("recent-1", recent).await.expect("put");
    shadows.shutdown().await;
    let dir = b.dir.take().expect("dir");
    b.stop().await;

    let (b, shadows) = start(dir, "").await;
    let kv = b.handle().kv("shadow");
    assert!(kv.get("old-1").is_none(), "expired tombstone purged");
    assert!(kv.get("recent-1").is_some(), "recent tombstone kept");
    let mut c = watcher(&b, "recent-1", "$hermod", "recent-1").await;
    send(
        &mut c,
        "$hermod/things/recent-1/shadow/update",
        r#"{"state":{"reported":{"x":1}}}"#,
    )
    .await;
    let a = next_on(&mut c, "$hermod/things/recent-1/shadow/update/accepted").await;
    assert_eq!(
        a["version"], 5,
        "the version continues after a recent delete"
    );
    shadows.shutdown().await;
    b.stop().await;
}

/// The disk fails: an update is answered 500 (never `accepted`, no delta), the service keeps
/// going, and once the disk works updates are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_is_a_500_not_accepted() {
    let dir = tempdir();
    let fault = hermod_broker::store::fault_switch(&dir.path().join("data").join("hermod.redb"));
    let (b, shadows) = start(dir, "").await;
    let base = "$hermod/things/disk-1/shadow";
    let mut c = watcher(&b, "disk-1", "$hermod", "disk-1").await;
    send(
        &mut c,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"a":1}}}"#,
    )
    .await;
    next_on(&mut c, &format!("{base}/update/accepted")).await;
    drain(&mut c, QUIET).await;

    fault.set_failing(true);
    send(
        &mut c,
        &format!("{base}/update"),
        r#"{"state":{"desired":{"a":2}},"clientToken":"f"}"#,
    )
    .await;
    let r = next_on(&mut c, &format!("{base}/update/rejected")).await;
    assert_eq!(r["code"], 500);
    assert_eq!(r["clientToken"], "f");
    let rest = drain(&mut c, QUIET).await;
    assert!(rest.is_empty(), "nothing but the rejection: {rest:?}");
    assert!(
        shadows
            .prometheus_text()
            .contains("hermod_shadow_store_failures_total 1")
    );

    // The store retries with a backoff: 500s until it has written again, then accepted.
    fault.set_failing(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        send(
            &mut c,
            &format!("{base}/update"),
            r#"{"state":{"desired":{"a":3}}}"#,
        )
        .await;
        let (topic, doc) = loop {
            if let Some(first) = drain(&mut c, QUIET).await.into_iter().next() {
                break first;
            }
            assert!(std::time::Instant::now() < deadline, "no answer");
        };
        if topic.ends_with("/accepted") {
            assert!(doc["version"].as_u64().is_some_and(|v| v >= 2), "{doc}");
            break;
        }
        assert_eq!(doc["code"], 500, "{doc}");
        assert!(std::time::Instant::now() < deadline, "still 500 after 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    shadows.shutdown().await;
    b.stop().await;
}
