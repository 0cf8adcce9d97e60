//! Will messages.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::harness::*;

fn with_will(v: ProtocolVersion, id: &str, topic: &str, qos: QoS, retain: bool) -> Connect {
    let mut c = connect_packet(v, id);
    c.will = Some(LastWill {
        topic: topic.into(),
        payload: Bytes::from_static(b"bye"),
        qos,
        retain,
        properties: Default::default(),
    });
    c
}

async fn observer(b: &TestBroker, v: ProtocolVersion, qos: QoS) -> Client {
    let mut o = b.client(v, "observer").await;
    o.subscribe("will/#", qos).await;
    o
}

// [MQTT-3.1.2-8]: the will is published when the network connection closes without DISCONNECT.
async fn on_socket_close(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut o = observer(&b, v, Q1).await;
    let (c, _) = b.connect_with(with_will(v, "w", "will/w", Q1, false)).await;
    o.expect_nothing(Duration::from_millis(100)).await;
    c.drop_connection();
    let m = o.expect_publish_acked().await;
    assert_eq!(m.topic, "will/w");
    assert_eq!(m.payload.as_ref(), b"bye");
    assert!(!m.retain);
    o.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(on_socket_close);

// [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-10] (5.0): DISCONNECT (0x00) deletes the will.
async fn not_on_normal_disconnect(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut o = observer(&b, v, Q1).await;
    let (c, _) = b.connect_with(with_will(v, "w", "will/w", Q1, false)).await;
    c.disconnect().await;
    o.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(not_on_normal_disconnect);

// 5.0 3.14.2.1: DISCONNECT 0x04 (Disconnect with Will Message) publishes the will.
#[tokio::test]
async fn on_disconnect_with_will_v5() {
    let b = TestBroker::start().await;
    let mut o = observer(&b, V5, Q1).await;
    let (mut c, _) = b
        .connect_with(with_will(V5, "w", "will/w", Q1, false))
        .await;
    c.send(&Packet::Disconnect(Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        properties: Default::default(),
    }))
    .await;
    assert_eq!(o.expect_publish_acked().await.payload.as_ref(), b"bye");
    assert!(c.is_closed_within(WAIT).await);
    b.stop().await;
}

// [MQTT-3.1.2-8] + [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): keep-alive timeout publishes the will.
async fn on_keepalive_timeout(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut o = observer(&b, v, Q1).await;
    let mut p = with_will(v, "w", "will/ka", Q1, false);
    p.keep_alive = 1;
    let (_c, _) = b.connect_with(p).await;
    let t0 = Instant::now();
    let m = o.expect_publish_acked().await;
    assert_eq!(m.topic, "will/ka");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "not before 1.5 × keep alive: {:?}",
        t0.elapsed()
    );
    b.stop().await;
}
both_versions!(on_keepalive_timeout);

// [MQTT-3.1.2-8]: a protocol violation that closes the connection publishes the will.
async fn on_protocol_violation(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut o = observer(&b, v, Q1).await;
    let (mut c, _) = b
        .connect_with(with_will(v, "w", "will/pv", Q1, false))
        .await;
    c.send_raw(&[0x00, 0x00]).await; // packet type 0
    c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
    assert_eq!(o.expect_publish_acked().await.topic, "will/pv");
    b.stop().await;
}
both_versions!(on_protocol_violation);

// [MQTT-3.1.2-17] (3.1.1) / [MQTT-3.1.2-15]? (5.0): Will Retain = 1 publishes the will as a
// retained message; [MQTT-3.1.2-16]: Will Retain = 0 does not retain it.
async fn will_retain(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (c, _) = b
        .connect_with(with_will(v, "w1", "will/ret", Q1, true))
        .await;
    c.drop_connection();
    let (c, _) = b
        .connect_with(with_will(v, "w2", "will/noret", Q1, false))
        .await;
    c.drop_connection();
    // Wait for both wills to have been published.
    b.wait_metric("two wills published", |m| m.messages_received >= 2)
        .await;
    let mut s = b.client(v, "late").await;
    s.subscribe("will/#", Q1).await;
    let got = s.drain(QUIET).await;
    assert_eq!(got.len(), 1, "only the retained will: {got:?}");
    assert_eq!(got[0].topic, "will/ret");
    assert!(got[0].retain);
    b.stop().await;
}
both_versions!(will_retain);

// [MQTT-3.1.2-14..]: the will is published at its Will QoS (then min with the subscription's QoS).
async fn will_qos(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut o2 = b.client(v, "o2").await;
    o2.subscribe("will/#", Q2).await;
    let mut o1 = b.client(v, "o1").await;
    o1.subscribe("will/#", Q1).await;
    let (c, _) = b.connect_with(with_will(v, "w", "will/q", Q2, false)).await;
    c.drop_connection();
    assert_eq!(o2.expect_publish_acked().await.qos, Q2);
    assert_eq!(o1.expect_publish_acked().await.qos, Q1);
    b.stop().await;
}
both_versions!(will_qos);

fn delayed(id: &str, delay: u32, expiry: u32) -> Connect {
    let mut c = with_will(V5, id, "will/d", Q1, false);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    if let Some(w) = c.will.as_mut() {
        w.properties.will_delay_interval = Some(delay);
    }
    c
}

// 5.0 [MQTT-3.1.3-9]: with a Will Delay Interval the will is not published if the client
// reconnects before the delay passes.
#[tokio::test]
async fn will_delay_cancelled_by_reconnect() {
    let b = TestBroker::start().await;
    let mut o = observer(&b, V5, Q1).await;
    let (c, _) = b.connect_with(delayed("wd", 1, 60)).await;
    c.drop_connection();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut c, ack) = b.connect_with(persistent(V5, "wd")).await;
    assert!(ack.session_present);
    o.expect_nothing(Duration::from_millis(1300)).await;
    c.ping().await;
    b.stop().await;
}

// 5.0 3.1.3.2.2: the will is published once the Will Delay Interval has passed, not before.
#[tokio::test]
async fn will_delay_published_after_delay() {
    let b = TestBroker::start().await;
    let mut o = observer(&b, V5, Q1).await;
    let (c, _) = b.connect_with(delayed("wd", 1, 60)).await;
    c.drop_connection();
    let t0 = Instant::now();
    let m = o.expect_publish_acked().await;
    assert_eq!(m.topic, "will/d");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "published after {:?}, before the 1 s delay",
        t0.elapsed()
    );
    b.stop().await;
}

// 5.0 3.1.3.2.2 / [MQTT-3.1.2-8]: the will is published when the session ends, if that is before
// the will delay (delay 30 s, session expiry 1 s → published after about 1 s).
#[tokio::test]
async fn will_delay_capped_by_session_expiry() {
    let b = TestBroker::start().await;
    let mut o = observer(&b, V5, Q1).await;
    let (c, _) = b.connect_with(delayed("wd", 30, 1)).await;
    c.drop_connection();
    let t0 = Instant::now();
    let m = o.expect_publish_acked().await;
    assert_eq!(m.topic, "will/d");
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );
    b.stop().await;
}

// 5.0 3.1.3.2: will properties (content type, response topic, correlation data, user properties,
// payload format) are forwarded with the will message.
#[tokio::test]
async fn will_properties_forwarded() {
    let b = TestBroker::start().await;
    let mut o = observer(&b, V5, Q1).await;
    let mut p = with_will(V5, "w", "will/props", Q1, false);
    if let Some(w) = p.will.as_mut() {
        w.properties.content_type = Some("text/plain".into());
        w.properties.response_topic = Some("resp/t".into());
        w.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
        w.properties.payload_format_indicator = Some(1);
        w.properties.user_properties = vec![("k".into(), "v1".into()), ("k".into(), "v2".into())];
    }
    let (c, _) = b.connect_with(p).await;
    c.drop_connection();
    let m = o.expect_publish_acked().await;
    assert_eq!(m.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(m.properties.response_topic.as_deref(), Some("resp/t"));
    assert_eq!(
        m.properties.correlation_data.as_deref(),
        Some(&b"\x01\x02"[..])
    );
    assert_eq!(m.properties.payload_format_indicator, Some(1));
    assert_eq!(
        m.properties.user_properties,
        [
            ("k".to_string(), "v1".to_string()),
            ("k".to_string(), "v2".to_string())
        ]
    );
    b.stop().await;
}
