//! MQTT 5.0 properties and features.

use std::time::Duration;

use bytes::Bytes;

use crate::harness::*;

fn users(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// 5.0 [MQTT-3.3.2-4] payload format indicator, [MQTT-3.3.2-15] response topic, [MQTT-3.3.2-16]
// correlation data, [MQTT-3.3.2-17/18] user properties (order kept), [MQTT-3.3.2-20] content type:
// forwarded unchanged to subscribers.
#[tokio::test]
async fn properties_forwarded_unchanged() {
    let b = TestBroker::start().await;
    let mut s = b.client(V5, "sub").await;
    s.subscribe("pr/t", Q1).await;
    let mut p = b.client(V5, "pub").await;
    let mut m = publish("pr/t", b"{}", Q1, false);
    m.properties = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("pr/reply".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 255])),
        user_properties: users(&[("b", "2"), ("a", "1"), ("b", "1"), ("", "empty key")]),
        ..Default::default()
    };
    let sent = m.properties.clone();
    p.publish_packet(m).await;
    let got = s.expect_publish_acked().await;
    assert_eq!(
        got.properties.payload_format_indicator,
        sent.payload_format_indicator
    );
    assert_eq!(got.properties.content_type, sent.content_type);
    assert_eq!(got.properties.response_topic, sent.response_topic);
    assert_eq!(got.properties.correlation_data, sent.correlation_data);
    assert_eq!(
        got.properties.user_properties, sent.user_properties,
        "user properties in order"
    );
    assert_eq!(got.properties.topic_alias, None);
    assert_eq!(got.properties.message_expiry_interval, None);
    // A 3.1.1 subscriber gets the same message without properties.
    b.stop().await;
}

// 5.0 [MQTT-3.3.2-6]: the Message Expiry Interval sent on is the received value minus the time
// the message waited in the broker.
#[tokio::test]
async fn message_expiry_decremented() {
    let b = TestBroker::start().await;
    let (mut s, _) = b.connect_with(persistent(V5, "sub")).await;
    s.subscribe("ex/t", Q1).await;
    s.disconnect().await;
    let mut p = b.client(V5, "pub").await;
    let mut m = publish("ex/t", b"x", Q1, false);
    m.properties.message_expiry_interval = Some(10);
    p.publish_packet(m).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (mut s, _) = b.connect_with(persistent(V5, "sub")).await;
    let got = s.expect_publish_acked().await;
    let left = got
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!(
        (1..=9).contains(&left),
        "expiry decremented by the time spent queued: {left}"
    );
    b.stop().await;
}

// 5.0 [MQTT-3.3.2-5]: a message whose expiry passed is not delivered: queued for an offline
// persistent session (expiry 1 s, reconnect after 2 s), or retained (not sent to new subscribers).
#[tokio::test]
async fn expired_messages_not_delivered() {
    let b = TestBroker::start().await;
    let (mut s, _) = b.connect_with(persistent(V5, "sub")).await;
    s.subscribe("exp/q", Q1).await;
    s.disconnect().await;
    let mut p = b.client(V5, "pub").await;
    let mut m = publish("exp/q", b"stale", Q1, false);
    m.properties.message_expiry_interval = Some(1);
    p.publish_packet(m).await;
    let mut r = publish("exp/r", b"stale-retained", Q1, true);
    r.properties.message_expiry_interval = Some(1);
    p.publish_packet(r).await;
    p.publish("exp/q", b"fresh", Q1, false).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (mut s, _) = b.connect_with(persistent(V5, "sub")).await;
    assert_eq!(
        payloads(&s.drain(QUIET).await),
        ["fresh"],
        "expired message not delivered"
    );
    let mut n = b.client(V5, "new").await;
    n.subscribe("exp/#", Q1).await;
    n.expect_nothing(QUIET).await;
    assert!(b.metric(|m| m.messages_expired) >= 1);
    b.stop().await;
}

// 5.0 3.3.2.3.4 [MQTT-3.3.2-12]: a Topic Alias set with a topic name, then used with an empty
// topic name, resolves to that topic; remapping an alias works. Subscribers see the real topic
// and no alias (aliases are per connection).
#[tokio::test]
async fn topic_alias_inbound() {
    let b = TestBroker::start().await;
    let mut s = b.client(V5, "sub").await;
    s.subscribe("ta/#", Q1).await;
    let mut p = b.client(V5, "pub").await;
    let with_alias = |topic: &str, payload: &[u8], alias| {
        let mut m = publish(topic, payload, Q1, false);
        m.properties.topic_alias = Some(alias);
        m
    };
    p.publish_packet(with_alias("ta/x", b"1", 1)).await;
    p.publish_packet(with_alias("", b"2", 1)).await;
    p.publish_packet(with_alias("ta/y", b"3", 1)).await;
    p.publish_packet(with_alias("", b"4", 1)).await;
    let got = s.collect(4).await;
    assert_eq!(
        got.iter()
            .map(|m| (
                m.topic.as_str(),
                String::from_utf8_lossy(&m.payload).into_owned()
            ))
            .collect::<Vec<_>>(),
        [
            ("ta/x", "1".into()),
            ("ta/x", "2".into()),
            ("ta/y", "3".into()),
            ("ta/y", "4".into())
        ]
    );
    assert!(got.iter().all(|m| m.properties.topic_alias.is_none()));
    // Aliases do not leak to another connection: an unmapped alias there is a protocol error.
    let mut other = b.client(V5, "other").await;
    other.send(&Packet::Publish(with_alias("", b"5", 1))).await;
    other.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    b.stop().await;
}

// 5.0 [MQTT-3.3.2-8]: Topic Alias 0 → DISCONNECT 0x94; [MQTT-3.3.2-9]: above the Topic Alias
// Maximum the server sent → DISCONNECT 0x94.
#[tokio::test]
async fn topic_alias_invalid() {
    let b = TestBroker::with(|c| c.max_topic_alias = 5).await;
    for alias in [0u16, 6] {
        let mut c = b.client(V5, "c").await;
        let mut m = publish("tai/t", b"x", Q0, false);
        m.properties.topic_alias = Some(alias);
        c.send(&Packet::Publish(m)).await;
        c.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;
    }
    let mut c = b.client(V5, "ok").await;
    let mut m = publish("tai/t", b"x", Q1, false);
    m.properties.topic_alias = Some(5);
    c.publish_packet(m).await;
    b.stop().await;
}

// 5.0 3.3.2.3.4, outbound: to a client that announced a Topic Alias Maximum, a topic sent before
// goes as its alias alone; aliases are never 0 [MQTT-3.3.2-8] nor above the client's maximum
// [MQTT-3.3.2-11], and are reassigned once all are taken; short topics go by name; a client that
// announced none gets none; a new connection starts without mappings [MQTT-3.3.2-7].
#[tokio::test]
async fn topic_alias_outbound() {
    let b = TestBroker::start().await;
    let mut connect = hermod_testkit::connect_packet(V5, "aliased");
    connect.properties.topic_alias_maximum = Some(2);
    let (mut s, _) = b.connect_with(connect.clone()).await;
    s.subscribe("tao/#", Q1).await;
    let mut plain = b.client(V5, "plain").await;
    plain.subscribe("tao/#", Q1).await;
    let mut p = b.client(V5, "pub").await;
    let topics = [
        "tao/sensor/a",
        "tao/sensor/a",
        "tao/sensor/b",
        "tao/sensor/c",
        "tao/sensor/a",
        "tao/x",
        "tao/sensor/c",
    ];
    for (i, t) in topics.iter().enumerate() {
        p.publish(t, i.to_string().as_bytes(), Q1, false).await;
    }
    // Resolved as a receiver does [MQTT-3.3.2-10].
    let mut map = std::collections::HashMap::<u16, String>::new();
    let mut resolved = Vec::new();
    let mut by_alias_only = 0;
    let mut wire = Vec::new();
    for _ in &topics {
        let m = s.expect_publish_acked().await;
        wire.push((m.topic.clone(), m.properties.topic_alias));
        let topic = match m.properties.topic_alias {
            Some(a) => {
                assert!((1..=2).contains(&a), "alias {a} out of 1..=2");
                if m.topic.is_empty() {
                    by_alias_only += 1;
                } else {
                    map.insert(a, m.topic.clone());
                }
                map.get(&a)
                    .cloned()
                    .expect("an alias is mapped before it is used alone")
            }
            None => m.topic.clone(),
        };
        resolved.push((topic, String::from_utf8_lossy(&m.payload).into_owned()));
    }
    let expected: Vec<(String, String)> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i.to_string()))
        .collect();
    assert_eq!(resolved, expected, "on the wire: {wire:?}");
    assert_eq!(by_alias_only, 2, "the repeats of a and c: {wire:?}");
    assert_eq!(
        wire[5],
        ("tao/x".to_string(), None),
        "a short topic goes by name"
    );
    // A client that announced no Topic Alias Maximum gets full topics only.
    for t in &topics {
        let m = plain.expect_publish_acked().await;
        assert_eq!((m.topic.as_str(), m.properties.topic_alias), (*t, None));
    }
    // A new connection of the same session starts without mappings.
    drop(s);
    let (mut s, _) = b.connect_with(connect).await;
    s.subscribe("tao/#", Q1).await;
    p.publish("tao/sensor/a", b"again", Q1, false).await;
    let m = s.expect_publish_acked().await;
    assert_eq!(m.topic, "tao/sensor/a");
    b.stop().await;
}

// 5.0 [MQTT-3.3.4-9]: the server never has more unacknowledged QoS 1/2 PUBLISH packets in flight
// to a client than the client's Receive Maximum.
#[tokio::test]
async fn receive_maximum_respected() {
    let b = TestBroker::start().await;
    let mut c = connect_packet(V5, "sub");
    c.properties.receive_maximum = Some(2);
    let (mut s, _) = b.connect_with(c).await;
    s.subscribe("rm/t", Q2).await;
    let mut p = b.client(V5, "pub").await;
    for i in 0..6 {
        p.publish(
            "rm/t",
            format!("{i}").as_bytes(),
            if i % 2 == 0 { Q1 } else { Q2 },
            false,
        )
        .await;
    }
    let mut inflight = Vec::new();
    while let Some(pk) = s.recv(QUIET).await {
        match pk {
            Packet::Publish(m) => inflight.push(m),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        inflight.len(),
        2,
        "only Receive Maximum (2) unacknowledged in flight: {inflight:?}"
    );
    let mut seen = payloads(&inflight);
    // Each acknowledgement frees one slot.
    let first = inflight.remove(0);
    s.ack(&first).await;
    match s.recv(WAIT).await {
        Some(Packet::Publish(m)) => {
            seen.push(String::from_utf8_lossy(&m.payload).into_owned());
            inflight.push(m);
        }
        other => panic!("expected the next PUBLISH after one ack, got {other:?}"),
    }
    s.expect_nothing(Duration::from_millis(200)).await;
    for m in std::mem::take(&mut inflight) {
        s.ack(&m).await;
    }
    seen.extend(payloads(&s.drain(QUIET).await));
    assert_eq!(
        seen,
        ["0", "1", "2", "3", "4", "5"],
        "all delivered, in order"
    );
    b.stop().await;
}

// 5.0 [MQTT-3.1.2-25]: the server does not send a packet larger than the client's Maximum Packet
// Size; such a message is discarded for that client.
#[tokio::test]
async fn client_maximum_packet_size() {
    let b = TestBroker::start().await;
    let mut c = connect_packet(V5, "small");
    c.properties.maximum_packet_size = Some(100);
    let (mut s, _) = b.connect_with(c).await;
    s.subscribe("mp/t", Q1).await;
    let mut big = b.client(V5, "big").await;
    big.subscribe("mp/t", Q1).await;
    let mut p = b.client(V5, "pub").await;
    p.publish("mp/t", &[b'x'; 200], Q1, false).await;
    p.publish("mp/t", b"small", Q1, false).await;
    assert_eq!(
        payloads(&s.drain(QUIET).await),
        ["small"],
        "oversized message not sent"
    );
    assert_eq!(
        big.collect(2).await.len(),
        2,
        "other subscribers unaffected"
    );
    b.stop().await;
}

// 5.0 [MQTT-3.8.3-3]: No Local: the client's own publications are not sent back to it.
#[tokio::test]
async fn no_local() {
    let b = TestBroker::start().await;
    let mut c = b.client(V5, "nl").await;
    c.subscribe_with(
        vec![(
            "nl/t".into(),
            SubscriptionOptions {
                qos: Q1,
                no_local: true,
                ..Default::default()
            },
        )],
        Default::default(),
    )
    .await;
    c.publish("nl/t", b"mine", Q1, false).await;
    c.expect_nothing(QUIET).await;
    let mut other = b.client(V5, "other").await;
    other.publish("nl/t", b"theirs", Q1, false).await;
    assert_eq!(c.expect_publish_acked().await.payload.as_ref(), b"theirs");
    b.stop().await;
}

// 5.0 [MQTT-3.3.4-3/4]: the Subscription Identifier of the matching subscription is sent with the
// PUBLISH; a subscription without one gets none; re-subscribing replaces the identifier.
#[tokio::test]
async fn subscription_identifier() {
    let b = TestBroker::start().await;
    let mut s = b.client(V5, "sid").await;
    let with_id = |id| SubscribeProperties {
        subscription_identifier: Some(id),
        ..Default::default()
    };
    s.subscribe_with(vec![("sid/a".into(), opts(Q1))], with_id(7))
        .await;
    s.subscribe("sid/b", Q1).await;
    let mut p = b.client(V5, "pub").await;
    p.publish("sid/a", b"a", Q1, false).await;
    p.publish("sid/b", b"b", Q1, false).await;
    let got = s.collect(2).await;
    assert_eq!(got[0].properties.subscription_identifiers, [7]);
    assert!(got[1].properties.subscription_identifiers.is_empty());
    s.subscribe_with(vec![("sid/a".into(), opts(Q1))], with_id(268_435_455))
        .await;
    p.publish("sid/a", b"a2", Q1, false).await;
    assert_eq!(
        s.expect_publish_acked()
            .await
            .properties
            .subscription_identifiers,
        [268_435_455]
    );
    b.stop().await;
}

// 5.0 [MQTT-3.1.2-29]: with Request Problem Information 0 the server does not send a Reason String
// or User Properties on packets other than PUBLISH, CONNACK and DISCONNECT.
#[tokio::test]
async fn request_problem_information_zero() {
    let b = TestBroker::start().await;
    let mut c = connect_packet(V5, "rpi");
    c.properties.request_problem_information = Some(0);
    let (mut c, _) = b.connect_with(c).await;
    let ack = c
        .subscribe_with(
            vec![("ok".into(), opts(Q1)), ("bad/#/x".into(), opts(Q1))],
            Default::default(),
        )
        .await;
    assert_eq!(
        ack.reasons,
        [ReasonCode::GRANTED_QOS_1, ReasonCode::TOPIC_FILTER_INVALID]
    );
    assert_eq!(ack.properties.reason_string, None);
    assert!(ack.properties.user_properties.is_empty());
    let un = c.unsubscribe(&["nothing"]).await;
    assert_eq!(un.properties.reason_string, None);
    let mut m = publish("nobody/listens", b"x", Q1, false);
    m.packet_id = Some(pid(5));
    c.send(&Packet::Publish(m)).await;
    match c.expect().await {
        Packet::PublishAck(a) => {
            assert_eq!(
                a.reason,
                ReasonCode::NO_MATCHING_SUBSCRIBERS,
                "3.4.2.1: 0x10 no matching subscribers"
            );
            assert_eq!(a.properties.reason_string, None);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    b.stop().await;
}

// 5.0 4.12 / 3.15: AUTH when CONNECT had no Authentication Method is a protocol error →
// DISCONNECT 0x82 and close. 0x8C (Bad authentication method) is not a valid DISCONNECT reason
// code (table 3.14.2.1, [MQTT-3.14.2-1]), so it must not be used here either.
#[tokio::test]
async fn auth_after_connect() {
    let b = TestBroker::start().await;
    let mut c = b.client(V5, "a").await;
    c.send(&Packet::Auth(Default::default())).await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    let mut c = b.client(V5, "b").await;
    let mut auth = hermod_proto::Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        ..Default::default()
    };
    auth.properties.authentication_method = Some("SCRAM-SHA-1".into());
    c.send(&Packet::Auth(auth)).await;
    // Read the raw DISCONNECT: the codec (rightly) refuses to decode a DISCONNECT with 0x8C.
    let raw = c.recv_raw(WAIT).await;
    assert!(
        raw.len() >= 3 && raw[0] == 0xE0,
        "expected a DISCONNECT, got {raw:02X?}"
    );
    assert_eq!(
        raw[2], 0x82,
        "DISCONNECT reason after AUTH with a method CONNECT did not announce: got 0x{:02X}",
        raw[2]
    );
    b.stop().await;
}

// 5.0 [MQTT-3.3.4-9]: Receive Maximum also bounds the unacknowledged messages re-sent when a
// session resumes: a client reconnecting with Receive Maximum 2 gets at most 2 PUBLISH packets
// before it acknowledges any.
#[tokio::test]
async fn receive_maximum_on_resume() {
    let b = TestBroker::start().await;
    let (mut s, _) = b.connect_with(persistent(V5, "rr")).await;
    s.subscribe("rr/t", Q1).await;
    let mut p = b.client(V5, "pub").await;
    for i in 0..5 {
        p.publish("rr/t", format!("{i}").as_bytes(), Q1, false)
            .await;
    }
    for _ in 0..5 {
        s.expect_publish().await; // not acknowledged
    }
    s.drop_connection();
    let mut c = persistent(V5, "rr");
    c.properties.receive_maximum = Some(2);
    let (mut s, ack) = b.connect_with(c).await;
    assert!(ack.session_present);
    let mut n = 0;
    while let Some(pk) = s.recv(QUIET).await {
        assert!(matches!(pk, Packet::Publish(_)), "{pk:?}");
        n += 1;
    }
    assert!(
        n <= 2,
        "{n} unacknowledged PUBLISH packets re-sent to a client with Receive Maximum 2"
    );
    b.stop().await;
}

// 5.0 3.4.2.1 / 3.5.2.1: PUBACK/PUBREC 0x10 when no subscriber matched, 0x00 otherwise.
#[tokio::test]
async fn no_matching_subscribers_reason() {
    let b = TestBroker::start().await;
    let mut c = b.client(V5, "c").await;
    assert_eq!(
        c.publish_packet(publish("nm/t", b"x", Q1, false)).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        c.publish_packet(publish("nm/t", b"x", Q2, false)).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    c.subscribe("nm/t", Q0).await;
    assert_eq!(
        c.publish_packet(publish("nm/t", b"x", Q1, false)).await,
        ReasonCode::SUCCESS
    );
    b.stop().await;
}

// A 5.0 publisher's properties are not sent to a 3.1.1 subscriber (which has no properties), and
// the message still arrives.
#[tokio::test]
async fn v5_to_v311_subscriber() {
    let b = TestBroker::start().await;
    let mut s = b.client(V311, "old").await;
    s.subscribe("mix/t", Q1).await;
    let mut p = b.client(V5, "new").await;
    let mut m = publish("mix/t", b"hello", Q1, false);
    m.properties.user_properties = users(&[("k", "v")]);
    m.properties.content_type = Some("text/plain".into());
    p.publish_packet(m).await;
    assert_eq!(s.expect_publish_acked().await.payload.as_ref(), b"hello");
    b.stop().await;
}
