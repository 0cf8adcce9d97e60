//! Retained messages.

use crate::harness::*;

fn rh(qos: QoS, retain_handling: RetainHandling, rap: bool) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: rap,
        retain_handling,
    }
}

// [MQTT-3.3.1-5] the retained message is stored; [MQTT-3.3.1-8] (3.1.1) / [MQTT-3.3.1-9]? sent to
// new subscribers with RETAIN=1; [MQTT-3.3.1-9] (3.1.1) / [MQTT-3.3.1-12] (5.0, without Retain As
// Published) RETAIN=0 when forwarded to an existing subscription.
async fn stored_and_flagged(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut live = b.client(v, "live").await;
    live.subscribe("r/#", Q1).await;
    let mut p = b.client(v, "pub").await;
    p.publish("r/a", b"kept", Q1, true).await;
    let fwd = live.expect_publish_acked().await;
    assert_eq!(fwd.payload.as_ref(), b"kept");
    assert!(!fwd.retain, "RETAIN=0 on normal forward");
    let mut late = b.client(v, "late").await;
    late.subscribe("r/+", Q1).await;
    let got = late.expect_publish_acked().await;
    assert_eq!(got.topic, "r/a");
    assert_eq!(got.payload.as_ref(), b"kept");
    assert!(
        got.retain,
        "RETAIN=1 when sent because of a new subscription"
    );
    assert_eq!(got.qos, Q1);
    late.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(stored_and_flagged);

// [MQTT-3.3.1-5]: a new retained message replaces the previous one for the topic;
// [MQTT-3.3.1-10/11] (3.1.1) / [MQTT-3.3.1-6/7] (5.0): an empty retained payload deletes it
// (and is not itself stored).
async fn replaced_and_deleted(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut p = b.client(v, "pub").await;
    p.publish("rd/a", b"1", Q0, true).await;
    p.publish("rd/a", b"2", Q1, true).await;
    p.publish("rd/b", b"b", Q1, true).await;
    let mut s = b.client(v, "s1").await;
    s.subscribe("rd/#", Q1).await;
    let got = s.drain(QUIET).await;
    assert_eq!(
        sorted(payloads(&got)),
        ["2", "b"],
        "only the latest retained message per topic"
    );
    p.publish("rd/a", b"", Q1, true).await;
    // The deletion is forwarded to the existing subscriber as an ordinary (empty) message.
    let del = s.expect_publish_acked().await;
    assert!(del.payload.is_empty());
    let mut s2 = b.client(v, "s2").await;
    s2.subscribe("rd/#", Q1).await;
    let got = s2.drain(QUIET).await;
    assert_eq!(payloads(&got), ["b"], "rd/a deleted by the empty payload");
    b.stop().await;
}
both_versions!(replaced_and_deleted);

// [MQTT-3.8.4-8]: a retained message is delivered at min(its QoS, the subscription's QoS).
async fn retained_qos_downgraded(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut p = b.client(v, "pub").await;
    p.publish("rq/2", b"two", Q2, true).await;
    p.publish("rq/0", b"zero", Q0, true).await;
    let mut s = b.client(v, "sub").await;
    s.subscribe("rq/#", Q1).await;
    let mut got = s.drain(QUIET).await;
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(
        got.iter()
            .map(|m| (m.topic.as_str(), m.qos))
            .collect::<Vec<_>>(),
        [("rq/0", Q0), ("rq/2", Q1)]
    );
    b.stop().await;
}
both_versions!(retained_qos_downgraded);

// 5.0 [MQTT-3.3.1-12/13]: Retain As Published = 1 forwards the RETAIN flag as published; 0 clears it.
#[tokio::test]
async fn retain_as_published() {
    let b = TestBroker::start().await;
    let mut rap = b.client(V5, "rap").await;
    rap.subscribe_with(
        vec![("rp/t".into(), rh(Q1, RetainHandling::SendAtSubscribe, true))],
        Default::default(),
    )
    .await;
    let mut plain = b.client(V5, "plain").await;
    plain.subscribe("rp/t", Q1).await;
    let mut p = b.client(V5, "pub").await;
    p.publish("rp/t", b"r", Q1, true).await;
    p.publish("rp/t", b"n", Q1, false).await;
    let got = rap.collect(2).await;
    assert_eq!(
        got.iter().map(|m| m.retain).collect::<Vec<_>>(),
        [true, false],
        "retain as published"
    );
    let got = plain.collect(2).await;
    assert_eq!(
        got.iter().map(|m| m.retain).collect::<Vec<_>>(),
        [false, false]
    );
    b.stop().await;
}

// 5.0 [MQTT-3.3.1-9/10/11] Retain Handling: 0 sends retained messages on every SUBSCRIBE, 1 only
// when the subscription is new, 2 never.
#[tokio::test]
async fn retain_handling() {
    let b = TestBroker::start().await;
    let mut p = b.client(V5, "pub").await;
    p.publish("rh/t", b"ret", Q1, true).await;
    let mut s = b.client(V5, "sub").await;
    for (handling, first, again) in [
        (RetainHandling::SendAtSubscribe, 1, 1),
        (RetainHandling::SendIfNew, 1, 0),
        (RetainHandling::DoNotSend, 0, 0),
    ] {
        s.unsubscribe(&["rh/t"]).await;
        s.subscribe_with(
            vec![("rh/t".into(), rh(Q1, handling, false))],
            Default::default(),
        )
        .await;
        let got = s.drain(QUIET).await;
        assert_eq!(got.len(), first, "{handling:?}, new subscription");
        assert!(got.iter().all(|m| m.retain && m.payload.as_ref() == b"ret"));
        s.subscribe_with(
            vec![("rh/t".into(), rh(Q1, handling, false))],
            Default::default(),
        )
        .await;
        assert_eq!(
            s.drain(QUIET).await.len(),
            again,
            "{handling:?}, existing subscription"
        );
    }
    b.stop().await;
}

// 5.0 4.8.2 ("Retained messages are not sent to the Session when it first subscribes to a
// Shared Subscription"), also applied to 3.1.1 $share.
async fn not_sent_to_shared_subscriptions(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut p = b.client(v, "pub").await;
    p.publish("rs/t", b"ret", Q1, true).await;
    let mut s = b.client(v, "sub").await;
    assert_eq!(
        s.subscribe("$share/g/rs/t", Q1).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    s.expect_nothing(QUIET).await;
    // But live messages flow.
    p.publish("rs/t", b"live", Q1, false).await;
    let m = s.expect_publish_acked().await;
    assert_eq!(m.payload.as_ref(), b"live");
    assert!(!m.retain);
    b.stop().await;
}
both_versions!(not_sent_to_shared_subscriptions);

// 5.0 3.2.2.3.5 / [MQTT-3.3.1-14]?: with retain_available = false CONNACK says Retain Available 0
// and a PUBLISH with RETAIN=1 is answered with DISCONNECT 0x9A.
#[tokio::test]
async fn retain_not_available() {
    let b = TestBroker::with(|c| c.retain_available = false).await;
    let (mut c, ack) = b.connect_with(connect_packet(V5, "c")).await;
    assert_eq!(ack.properties.retain_available, Some(0));
    c.send(&Packet::Publish(publish("x", b"r", Q0, true))).await;
    c.expect_disconnect(ReasonCode::RETAIN_NOT_SUPPORTED).await;
    // Nothing was stored.
    let mut s = b.client(V5, "s").await;
    s.subscribe("x", Q0).await;
    s.expect_nothing(QUIET).await;
    b.stop().await;
}
