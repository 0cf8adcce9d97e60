//! Sessions: clean vs persistent, offline queueing, v5 session expiry.

use std::time::Duration;

use crate::harness::*;

// [MQTT-3.1.2-6] (3.1.1) / [MQTT-3.1.2-4] (5.0): a clean session starts empty: subscriptions of a
// previous clean session are gone [MQTT-3.2.2-1].
async fn clean_session_drops_subscriptions(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut c = b.client(v, "cs").await;
    c.subscribe("cs/t", Q1).await;
    c.disconnect().await;
    let (mut c, ack) = b.connect_with(connect_packet(v, "cs")).await;
    assert!(!ack.session_present);
    let mut p = b.client(v, "pub").await;
    p.publish("cs/t", b"x", Q1, false).await;
    c.expect_nothing(QUIET).await;
    // A persistent reconnect after a clean session finds no session [MQTT-3.2.2-3].
    c.disconnect().await;
    let (_c, ack) = b.connect_with(persistent(v, "cs")).await;
    assert!(!ack.session_present);
    b.stop().await;
}
both_versions!(clean_session_drops_subscriptions);

// [MQTT-3.1.2-4/5] (3.1.1) / 3.1.2.4 (5.0): a persistent session keeps its subscriptions and
// queues QoS 1 and 2 messages while offline ([MQTT-3.1.2-5]), not QoS 0 (by default, like
// Mosquitto's queue_qos0_messages false); session present = 1 on resumption [MQTT-3.2.2-2].
async fn persistent_session_queues(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut c, ack) = b.connect_with(persistent(v, "ps")).await;
    assert!(!ack.session_present);
    c.subscribe("ps/#", Q2).await;
    c.disconnect().await;
    let mut p = b.client(v, "pub").await;
    p.publish("ps/0", b"q0", Q0, false).await;
    p.publish("ps/1", b"q1", Q1, false).await;
    p.publish("ps/2", b"q2", Q2, false).await;
    let (mut c, ack) = b.connect_with(persistent(v, "ps")).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    let got = c.drain(QUIET).await;
    assert_eq!(
        payloads(&got),
        ["q1", "q2"],
        "QoS 1/2 queued in order, QoS 0 not"
    );
    assert_eq!(got.iter().map(|m| m.qos).collect::<Vec<_>>(), [Q1, Q2]);
    // The subscription is still active.
    p.publish("ps/live", b"live", Q1, false).await;
    assert_eq!(c.expect_publish_acked().await.payload.as_ref(), b"live");
    b.stop().await;
}
both_versions!(persistent_session_queues);

// queue_qos0_messages = true (Mosquitto's option): QoS 0 is queued for offline sessions too.
async fn queue_qos0_when_enabled(v: ProtocolVersion) {
    let b = TestBroker::with(|c| c.queue_qos0_messages = true).await;
    let (mut c, _) = b.connect_with(persistent(v, "q0")).await;
    c.subscribe("q0/#", Q1).await;
    c.disconnect().await;
    let mut p = b.client(v, "pub").await;
    p.publish("q0/a", b"zero", Q0, false).await;
    let (mut c, _) = b.connect_with(persistent(v, "q0")).await;
    let got = c.drain(QUIET).await;
    assert_eq!(payloads(&got), ["zero"]);
    assert_eq!(got[0].qos, Q0);
    b.stop().await;
}
both_versions!(queue_qos0_when_enabled);

fn v5_expiry(id: &str, expiry: Option<u32>, clean: bool) -> Connect {
    let mut c = connect_packet(V5, id);
    c.clean_start = clean;
    c.properties.session_expiry_interval = expiry;
    c
}

// 5.0 3.1.2.11.2 [MQTT-3.1.2-23]: the session is kept for Session Expiry Interval seconds after the
// connection closes, then discarded.
#[tokio::test]
async fn v5_session_expires() {
    let b = TestBroker::start().await;
    let (mut c, _) = b.connect_with(v5_expiry("se", Some(1), false)).await;
    c.subscribe("se/t", Q1).await;
    c.drop_connection();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (c, ack) = b.connect_with(v5_expiry("se", Some(1), false)).await;
    assert!(ack.session_present, "within the expiry interval");
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (mut c, ack) = b.connect_with(v5_expiry("se", Some(1), false)).await;
    assert!(!ack.session_present, "expired after 1 s");
    let mut p = b.client(V5, "pub").await;
    p.publish("se/t", b"x", Q1, false).await;
    c.expect_nothing(QUIET).await;
    b.stop().await;
}

// 5.0 3.1.2.11.2: no Session Expiry Interval (0) → the session ends with the connection, even
// with clean start 0.
#[tokio::test]
async fn v5_session_expiry_absent_means_zero() {
    let b = TestBroker::start().await;
    let (mut c, _) = b.connect_with(v5_expiry("z", None, false)).await;
    c.subscribe("z/t", Q1).await;
    c.disconnect().await;
    let (_c, ack) = b.connect_with(v5_expiry("z", None, false)).await;
    assert!(!ack.session_present);
    b.stop().await;
}

// 5.0 [MQTT-3.1.2-4]: clean start 1 discards an existing session.
#[tokio::test]
async fn v5_clean_start_discards() {
    let b = TestBroker::start().await;
    let (mut c, _) = b.connect_with(v5_expiry("cs5", Some(60), false)).await;
    c.subscribe("cs5/t", Q1).await;
    c.disconnect().await;
    let mut p = b.client(V5, "pub").await;
    p.publish("cs5/t", b"queued", Q1, false).await;
    let (mut c, ack) = b.connect_with(v5_expiry("cs5", Some(60), true)).await;
    assert!(!ack.session_present);
    c.expect_nothing(QUIET).await;
    p.publish("cs5/t", b"x", Q1, false).await;
    c.expect_nothing(QUIET).await;
    b.stop().await;
}

// 5.0 [MQTT-3.14.2-2]: DISCONNECT may not set a non-zero Session Expiry Interval when CONNECT had
// 0 (or none): protocol error → DISCONNECT 0x82.
#[tokio::test]
async fn disconnect_sets_expiry_after_zero() {
    let b = TestBroker::start().await;
    let (mut c, _) = b.connect_with(v5_expiry("d", None, true)).await;
    c.send(&Packet::Disconnect(Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(30),
            ..Default::default()
        },
    }))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    b.stop().await;
}

// 5.0 3.14.2.2.2: DISCONNECT can shorten the session expiry to 0, ending the session.
#[tokio::test]
async fn disconnect_changes_expiry() {
    let b = TestBroker::start().await;
    let (mut c, _) = b.connect_with(v5_expiry("dc", Some(60), false)).await;
    c.subscribe("dc/t", Q1).await;
    c.send(&Packet::Disconnect(Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    }))
    .await;
    assert!(c.is_closed_within(WAIT).await);
    let (_c, ack) = b.connect_with(v5_expiry("dc", Some(60), false)).await;
    assert!(!ack.session_present, "session ended by DISCONNECT expiry 0");
    b.stop().await;
}
