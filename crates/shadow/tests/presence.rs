//! Presence end to end: the retained `$hermod/things/{clientid}/presence` after a connect, a
//! clean disconnect, a keep-alive loss and a takeover, and after a restart that left a stale
//! `online: true`.

mod common;

use std::time::Duration;

use common::{app, start, wait_until};
use hermod_testkit::{Client, Packet, QoS, TestBroker, V5, V311, connect_packet, tempdir};
use serde_json::Value;

const PRESENCE: &str = "[presence]\nenabled = true\n";

/// The retained presence of `id`, if any.
fn retained(b: &TestBroker, id: &str) -> Option<Value> {
    b.handle()
        .retained(&format!("$hermod/things/{id}/presence"))
        .first()
        .and_then(|r| serde_json::from_slice(&r.payload).ok())
}

async fn wait_presence(b: &TestBroker, id: &str, online: bool, reason: &str) -> Value {
    wait_until(&format!("{id} presence {online} {reason}"), || {
        retained(b, id).is_some_and(|v| v["online"] == online && v["reason"] == reason)
    })
    .await;
    retained(b, id).unwrap_or(Value::Null)
}

/// The next presence message of `id` a watcher receives.
async fn next_presence(w: &mut Client, id: &str) -> Value {
    let topic = format!("$hermod/things/{id}/presence");
    match w
        .wait_for(
            "a presence message",
            |p| matches!(p, Packet::Publish(p) if p.topic == topic),
        )
        .await
    {
        Packet::Publish(p) => serde_json::from_slice(&p.payload).expect("json"),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_clean_disconnect() {
    let (b, shadows) = start(tempdir(), PRESENCE).await;
    let mut w = app(&b, "watcher").await;
    w.subscribe("$hermod/things/+/presence", QoS::AtMostOnce)
        .await;
    let c = b.client(V311, "sensor-1").await;
    let v = next_presence(&mut w, "sensor-1").await;
    assert_eq!(v["online"], true);
    assert_eq!(v["reason"], "connected");
    assert!(
        v["ts"].as_u64().is_some_and(|t| t > 1_600_000_000_000),
        "ms: {v}"
    );
    let retained_now = wait_presence(&b, "sensor-1", true, "connected").await;
    assert_eq!(retained_now, v);

    c.disconnect().await;
    let v = next_presence(&mut w, "sensor-1").await;
    assert_eq!(v["online"], false);
    assert_eq!(v["reason"], "disconnected");
    wait_presence(&b, "sensor-1", false, "disconnected").await;
    // A late subscriber gets the retained state.
    let mut late = app(&b, "late").await;
    late.subscribe("$hermod/things/sensor-1/presence", QoS::AtMostOnce)
        .await;
    let v = next_presence(&mut late, "sensor-1").await;
    assert_eq!(v["online"], false);
    // Internal clients (the shadow service) and the watchers' own ids: only valid names.
    assert!(retained(&b, "$hermod/shadow").is_none());
    shadows.shutdown().await;
    b.stop().await;
}

/// A client that sends CONNECT with keep alive 1 and then nothing: the broker drops it after
/// 1.5 s and presence says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_loss() {
    let (b, shadows) = start(tempdir(), PRESENCE).await;
    let mut connect = connect_packet(V311, "silent-1");
    connect.keep_alive = 1;
    let (silent, _) = b.connect_with(connect).await;
    wait_presence(&b, "silent-1", true, "connected").await;
    let v = wait_presence(&b, "silent-1", false, "keepalive_timeout").await;
    assert_eq!(v["online"], false);
    drop(silent);
    shadows.shutdown().await;
    b.stop().await;
}

/// A dropped TCP connection (no DISCONNECT): `connection_lost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost() {
    let (b, shadows) = start(tempdir(), PRESENCE).await;
    let c = b.client(V5, "flaky-1").await;
    wait_presence(&b, "flaky-1", true, "connected").await;
    c.drop_connection();
    wait_presence(&b, "flaky-1", false, "connection_lost").await;
    shadows.shutdown().await;
    b.stop().await;
}

/// The same client id connects again while its first connection is open: whatever order the
/// broker reports the two in, the retained state ends online; repeated takeovers too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_ends_online() {
    let (b, shadows) = start(tempdir(), PRESENCE).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(b.client(V5, "twin-1").await);
        wait_presence(&b, "twin-1", true, "connected").await;
    }
    // Let every event land, then check the final state has not flipped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = retained(&b, "twin-1").expect("retained presence");
    assert_eq!(v["online"], true, "{v}");
    // The last connection leaves cleanly: offline.
    let last = clients.pop().expect("a client");
    last.disconnect().await;
    wait_presence(&b, "twin-1", false, "disconnected").await;
    shadows.shutdown().await;
    b.stop().await;
}

/// A broker stopped while a client was connected and started again (the store keeps the
/// retained `online: true`): the service marks it offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_online_after_restart_is_corrected() {
    let (mut b, shadows) = start(tempdir(), PRESENCE).await;
    // What a killed broker leaves behind: the retained online, no client.
    b.handle().publish(
        "$hermod/things/ghost-1/presence",
        bytes::Bytes::from_static(br#"{"online":true,"ts":1,"reason":"connected"}"#),
        QoS::AtLeastOnce,
        true,
    );
    shadows.shutdown().await;
    let dir = b.dir.take().expect("dir");
    b.stop().await;
    let (b, shadows) = start(dir, PRESENCE).await;
    wait_presence(&b, "ghost-1", false, "server_restart").await;
    shadows.shutdown().await;
    b.stop().await;
}
