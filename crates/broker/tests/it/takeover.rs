//! Client id takeover [MQTT-3.1.4-3].

use std::time::Duration;

use bytes::Bytes;

use crate::harness::*;

// [MQTT-3.1.4-3] (3.1.1: [MQTT-3.1.4-2]): a second connection with the same client id closes the
// first; 5.0 sends it DISCONNECT 0x8E (Session taken over) first.
async fn second_connection_closes_first(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut first = b.client(v, "same").await;
    let mut second = b.client(v, "same").await;
    first
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    second.ping().await;
    b.stop().await;
}
both_versions!(second_connection_closes_first);

// The session (subscriptions, unacknowledged and queued messages) passes to the new connection
// when it does not ask for a clean start [MQTT-3.2.2-2]; the unacknowledged message is re-sent
// with DUP=1 [MQTT-4.4.0-1].
async fn session_passes_to_new_connection(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut first, _) = b.connect_with(persistent(v, "tk")).await;
    first.subscribe("tk/#", Q1).await;
    let mut p = b.client(v, "pub").await;
    p.publish("tk/1", b"inflight", Q1, false).await;
    let m = first.expect_publish().await; // not acked
    let (mut second, ack) = b.connect_with(persistent(v, "tk")).await;
    assert!(ack.session_present, "session present after takeover");
    first
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    let again = second.expect_publish_acked().await;
    assert_eq!(again.payload.as_ref(), b"inflight");
    assert!(again.dup);
    assert_eq!(again.packet_id, m.packet_id);
    p.publish("tk/2", b"after", Q1, false).await;
    assert_eq!(
        second.expect_publish_acked().await.payload.as_ref(),
        b"after",
        "subscription taken over"
    );
    second.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(session_passes_to_new_connection);

// The displaced connection must not clobber the session the new connection holds: after several
// quick takeovers, the last connection still owns a working session, which stays persistent.
async fn displaced_does_not_clobber(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut c, _) = b.connect_with(persistent(v, "clob")).await;
    c.subscribe("cl/t", Q1).await;
    let mut olds = vec![c];
    for _ in 0..4 {
        let (c, ack) = b.connect_with(persistent(v, "clob")).await;
        assert!(ack.session_present);
        olds.push(c);
    }
    let mut last = olds.pop().expect("last");
    for mut o in olds {
        assert!(
            o.is_closed_within(WAIT).await,
            "displaced connection closed"
        );
    }
    let mut p = b.client(v, "pub").await;
    p.publish("cl/t", b"1", Q1, false).await;
    assert_eq!(last.expect_publish_acked().await.payload.as_ref(), b"1");
    last.drop_connection();
    // Offline: queued.
    p.publish("cl/t", b"2", Q1, false).await;
    let (mut again, ack) = b.connect_with(persistent(v, "clob")).await;
    assert!(ack.session_present, "session survived the takeovers");
    assert_eq!(again.expect_publish_acked().await.payload.as_ref(), b"2");
    b.stop().await;
}
both_versions!(displaced_does_not_clobber);

// Takeover with clean start: the old session is discarded [MQTT-3.1.2-4] (3.1.1 [MQTT-3.1.2-6]).
async fn clean_takeover_discards(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut first, _) = b.connect_with(persistent(v, "ct")).await;
    first.subscribe("ct/t", Q1).await;
    let (mut second, ack) = b.connect_with(connect_packet(v, "ct")).await;
    assert!(!ack.session_present);
    assert!(first.is_closed_within(WAIT).await);
    let mut p = b.client(v, "pub").await;
    p.publish("ct/t", b"x", Q1, false).await;
    second.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(clean_takeover_discards);

// 5.0: on takeover the old connection's will is published (no DISCONNECT 0x00 was received,
// 3.1.2.5) unless it has a Will Delay, which the new connection cancels [MQTT-3.1.3-9].
#[tokio::test]
async fn takeover_will_v5() {
    let b = TestBroker::start().await;
    let mut o = b.client(V5, "obs").await;
    o.subscribe("tw/#", Q1).await;
    for (id, delay) in [("nodelay", 0u32), ("delay", 1)] {
        let mut c = persistent(V5, id);
        c.will = Some(LastWill {
            topic: format!("tw/{id}"),
            payload: Bytes::from_static(b"w"),
            qos: Q1,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(delay),
                ..Default::default()
            },
        });
        let (_first, _) = b.connect_with(c).await;
        let (_second, _) = b.connect_with(persistent(V5, id)).await;
    }
    let got = o.drain(Duration::from_millis(1500)).await;
    assert_eq!(
        got.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(),
        ["tw/nodelay"]
    );
    b.stop().await;
}
