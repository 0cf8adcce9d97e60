//! Subscriptions, wildcards, unsubscribe, fan-out.

use crate::harness::*;

// [MQTT-4.7.1-2] `#` matches the parent and any number of levels; [MQTT-4.7.1-3] `+` matches
// exactly one level. [MQTT-3.3.2-3] the topic name is delivered unchanged.
async fn wildcards(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    assert_eq!(
        s.subscribe("a/+/c", Q0).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    assert_eq!(
        s.subscribe("x/#", Q0).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    assert_eq!(s.subscribe("+", Q0).await, vec![ReasonCode::GRANTED_QOS_0]);
    let mut p = b.client(v, "pub").await;
    for t in [
        "a/b/c",
        "a/b/d",
        "x",
        "x/y/z",
        "a/b/c/d",
        "a//c",
        "single",
        "two/levels",
        "/c",
    ] {
        p.publish(t, t.as_bytes(), Q1, false).await;
    }
    let got = s.drain(QUIET).await;
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        topics,
        ["a/b/c", "x", "x/y/z", "a//c", "single"],
        "wildcard matching"
    );
    for p in &got {
        assert_eq!(p.payload.as_ref(), p.topic.as_bytes());
    }
    b.stop().await;
}
both_versions!(wildcards);

// [MQTT-4.7.2-1]: filters starting with a wildcard do not match topics starting with `$`;
// `$foo/#` does.
async fn wildcard_does_not_match_dollar_topics(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut all = b.client(v, "all").await;
    all.subscribe("#", Q0).await;
    all.subscribe("+/x", Q0).await;
    let mut dollar = b.client(v, "dollar").await;
    dollar.subscribe("$foo/#", Q0).await;
    let mut p = b.client(v, "pub").await;
    p.publish("$foo/x", b"d", Q1, false).await;
    p.publish("foo/x", b"n", Q1, false).await;
    let got = all.drain(QUIET).await;
    // "foo/x" matches both "#" and "+/x" but is delivered once [MQTT-3.3.5-1].
    assert_eq!(payloads(&got), ["n"], "`#`/`+` must not match $-topics");
    let got = dollar.drain(QUIET).await;
    assert_eq!(payloads(&got), ["d"]);
    assert_eq!(got[0].topic, "$foo/x");
    b.stop().await;
}
both_versions!(wildcard_does_not_match_dollar_topics);

// Overlapping subscriptions: one copy, at the highest QoS of the matching subscriptions
// ([MQTT-3.3.5-1] 3.1.1, [MQTT-3.3.4-2] 5.0), carrying every matching Subscription Identifier
// (5.0 [MQTT-3.3.4-3]).
async fn overlapping_subscriptions(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    let id_props = |id| SubscribeProperties {
        subscription_identifier: if v.is_v5() { Some(id) } else { None },
        ..Default::default()
    };
    s.subscribe_with(vec![("o/#".into(), opts(Q0))], id_props(1))
        .await;
    s.subscribe_with(vec![("o/+".into(), opts(Q2))], id_props(2))
        .await;
    s.subscribe_with(vec![("+/t".into(), opts(Q1))], id_props(3))
        .await;
    let mut p = b.client(v, "pub").await;
    p.publish("o/t", b"once", Q2, false).await;
    let got = s.drain(QUIET).await;
    assert_eq!(got.len(), 1, "delivered exactly once: {got:?}");
    assert_eq!(got[0].qos, Q2, "max QoS of matching subscriptions");
    if v.is_v5() {
        let mut ids = got[0].properties.subscription_identifiers.clone();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3], "all matching subscription identifiers");
    }
    b.stop().await;
}
both_versions!(overlapping_subscriptions);

// [MQTT-3.10.4-1] UNSUBSCRIBE stops delivery; [MQTT-3.10.4-4/5] UNSUBACK with the same packet id;
// 5.0 3.11.3: reason 0x00 (success) / 0x11 (no subscription existed), one per filter.
async fn unsubscribe(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    s.subscribe("u/1", Q1).await;
    s.subscribe("u/2", Q1).await;
    let ack = s.unsubscribe(&["u/1", "never"]).await;
    if v.is_v5() {
        assert_eq!(
            ack.reasons,
            [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        );
    } else {
        assert!(ack.reasons.is_empty(), "3.1.1 UNSUBACK has no payload");
    }
    let ack = s.unsubscribe(&["u/1"]).await;
    if v.is_v5() {
        assert_eq!(
            ack.reasons,
            [ReasonCode::NO_SUBSCRIPTION_EXISTED],
            "second unsubscribe"
        );
    }
    let mut p = b.client(v, "pub").await;
    p.publish("u/1", b"gone", Q1, false).await;
    p.publish("u/2", b"kept", Q1, false).await;
    assert_eq!(payloads(&s.drain(QUIET).await), ["kept"]);
    b.stop().await;
}
both_versions!(unsubscribe);

// Invalid topic filters [MQTT-4.7.1-1..3]: 5.0 SUBACK 0x8F for that filter only (the others are
// granted); 3.1.1 has no such code: the broker closes the connection (as Mosquitto does).
async fn invalid_filter(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    let filters: Vec<(String, SubscriptionOptions)> = vec![
        ("ok/+".into(), opts(Q1)),
        ("bad/#/x".into(), opts(Q1)),
        ("a+/b".into(), opts(Q0)),
        ("$share/g".into(), opts(Q0)),
    ];
    if v.is_v5() {
        let ack = s
            .subscribe_with(filters, SubscribeProperties::default())
            .await;
        assert_eq!(
            ack.reasons,
            [
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::TOPIC_FILTER_INVALID,
                ReasonCode::TOPIC_FILTER_INVALID,
                ReasonCode::TOPIC_FILTER_INVALID
            ]
        );
        let mut p = b.client(v, "pub").await;
        p.publish("ok/1", b"fine", Q1, false).await;
        assert_eq!(s.expect_publish_acked().await.payload.as_ref(), b"fine");
    } else {
        let id = s.next_packet_id();
        s.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            filters: vec![("bad/#/x".into(), opts(Q1))],
            properties: Default::default(),
        }))
        .await;
        s.expect_closed(WAIT).await;
    }
    b.stop().await;
}
both_versions!(invalid_filter);

// [MQTT-3.8.4-5/6]: SUBACK has one return code per filter, in order; granted QoS as requested
// (the broker supports QoS 2).
async fn suback_per_filter(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    let ack = s
        .subscribe_with(
            vec![
                ("s/0".into(), opts(Q0)),
                ("s/1".into(), opts(Q1)),
                ("s/2".into(), opts(Q2)),
            ],
            Default::default(),
        )
        .await;
    assert_eq!(
        ack.reasons,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2
        ]
    );
    // [MQTT-3.8.4-3]: re-subscribing replaces the subscription (new QoS applies), no duplicate.
    s.subscribe("s/0", Q2).await;
    let mut p = b.client(v, "pub").await;
    p.publish("s/0", b"x", Q2, false).await;
    let got = s.drain(QUIET).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, Q2);
    b.stop().await;
}
both_versions!(suback_per_filter);

// Fan-out: every subscriber gets its own copy; payload bytes (including a 200 KB one and an empty
// one) arrive unchanged.
async fn fan_out_and_payloads(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut subs = Vec::new();
    for i in 0..3 {
        let mut s = b.client(v, &format!("s{i}")).await;
        s.subscribe("f/t", Q1).await;
        subs.push(s);
    }
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut p = b.client(v, "pub").await;
    p.publish("f/t", &big, Q1, false).await;
    p.publish("f/t", b"", Q1, false).await;
    for s in &mut subs {
        let a = s.expect_publish_acked().await;
        assert_eq!(a.payload.as_ref(), &big[..]);
        let e = s.expect_publish_acked().await;
        assert!(e.payload.is_empty());
        s.expect_nothing(QUIET / 2).await;
    }
    b.stop().await;
}
both_versions!(fan_out_and_payloads);

// Without No Local, a client receives its own publications (3.1.1 has no way to opt out).
async fn receives_own_messages(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut c = b.client(v, "self").await;
    c.subscribe("me/t", Q1).await;
    c.publish("me/t", b"echo", Q1, false).await;
    assert_eq!(c.expect_publish_acked().await.payload.as_ref(), b"echo");
    b.stop().await;
}
both_versions!(receives_own_messages);
