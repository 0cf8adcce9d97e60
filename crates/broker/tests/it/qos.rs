//! QoS 0/1/2 flows in both directions, redelivery and ordering.

use crate::harness::*;

// [MQTT-3.8.4-8] (5.0 [MQTT-3.8.4-8], 3.1.1 3.8.4): the delivered QoS is min(published QoS,
// granted QoS); [MQTT-2.2.1-2/3] QoS>0 PUBLISH carries a non-zero packet id, QoS 0 none.
async fn granted_qos_is_min(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    for q in [Q0, Q1, Q2] {
        s.subscribe(&format!("m/{}", q as u8), q).await;
    }
    let mut p = b.client(v, "pub").await;
    for pq in [Q0, Q1, Q2] {
        for sq in [Q0, Q1, Q2] {
            p.publish(
                &format!("m/{}", sq as u8),
                format!("{}{}", pq as u8, sq as u8).as_bytes(),
                pq,
                false,
            )
            .await;
        }
    }
    let got = s.collect(9).await;
    s.expect_nothing(QUIET).await;
    for m in &got {
        let tag = String::from_utf8_lossy(&m.payload).into_owned();
        let pq = tag.as_bytes()[0] - b'0';
        let sq = tag.as_bytes()[1] - b'0';
        assert_eq!(
            m.qos as u8,
            pq.min(sq),
            "message {tag}: published QoS {pq}, subscribed {sq}"
        );
        assert_eq!(
            m.packet_id.is_some(),
            m.qos != Q0,
            "packet id presence for {tag}"
        );
        assert!(!m.dup, "first delivery has DUP=0 [MQTT-3.3.1-3]");
        assert!(!m.retain);
    }
    b.stop().await;
}
both_versions!(granted_qos_is_min);

// [MQTT-4.3.2-4] (3.1.1: [MQTT-4.3.2-2])/[MQTT-3.4] QoS 1: PUBACK carries the PUBLISH's packet
// id; [MQTT-4.3.3]: QoS 2 flow PUBREC (same id) → PUBREL → PUBCOMP (same id).
async fn publisher_acks(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    s.subscribe("ack/#", Q2).await;
    let mut p = b.client(v, "pub").await;
    let mut m = publish("ack/1", b"one", Q1, false);
    m.packet_id = Some(pid(4242));
    p.send(&Packet::Publish(m)).await;
    match p.expect().await {
        Packet::PublishAck(a) => {
            assert_eq!(a.packet_id, pid(4242));
            assert_eq!(a.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let mut m = publish("ack/2", b"two", Q2, false);
    m.packet_id = Some(pid(777));
    p.send(&Packet::Publish(m)).await;
    match p.expect().await {
        Packet::PublishReceived(a) => assert_eq!(a.packet_id, pid(777)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    p.send(&Packet::PublishRelease(PublishAck::new(pid(777))))
        .await;
    match p.expect().await {
        Packet::PublishComplete(a) => {
            assert_eq!(a.packet_id, pid(777));
            assert_eq!(a.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert_eq!(payloads(&s.collect(2).await), ["one", "two"]);
    b.stop().await;
}
both_versions!(publisher_acks);

// [MQTT-4.3.3-10] (5.0) / 4.3.3 method B (3.1.1): a QoS 2 PUBLISH re-sent (same packet id, DUP=1)
// before PUBREL is acknowledged again but routed only once. After PUBCOMP the id is free: a
// new PUBLISH with it is a new message.
async fn qos2_duplicate_routed_once(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    s.subscribe("dup/t", Q2).await;
    let mut p = b.client(v, "pub").await;
    let mut m = publish("dup/t", b"only-once", Q2, false);
    m.packet_id = Some(pid(9));
    p.send(&Packet::Publish(m.clone())).await;
    assert!(matches!(p.expect().await, Packet::PublishReceived(a) if a.packet_id == pid(9)));
    m.dup = true;
    p.send(&Packet::Publish(m.clone())).await;
    p.send(&Packet::Publish(m.clone())).await;
    assert!(
        matches!(p.expect().await, Packet::PublishReceived(a) if a.packet_id == pid(9)),
        "PUBREC for the re-sent PUBLISH"
    );
    assert!(matches!(p.expect().await, Packet::PublishReceived(a) if a.packet_id == pid(9)));
    p.send(&Packet::PublishRelease(PublishAck::new(pid(9))))
        .await;
    assert!(matches!(p.expect().await, Packet::PublishComplete(a) if a.packet_id == pid(9)));
    // Same id, new message.
    m.dup = false;
    m.payload = bytes::Bytes::from_static(b"second");
    p.send(&Packet::Publish(m)).await;
    assert!(matches!(p.expect().await, Packet::PublishReceived(a) if a.packet_id == pid(9)));
    p.send(&Packet::PublishRelease(PublishAck::new(pid(9))))
        .await;
    assert!(matches!(p.expect().await, Packet::PublishComplete(_)));
    let got = s.drain(QUIET).await;
    assert_eq!(
        payloads(&got),
        ["only-once", "second"],
        "duplicate QoS 2 PUBLISH must not be routed twice"
    );
    b.stop().await;
}
both_versions!(qos2_duplicate_routed_once);

// [MQTT-4.3.3-11]/3.6.4: PUBREL gets PUBCOMP; for an unknown packet id 5.0 answers PUBCOMP 0x92
// (Packet Identifier not found), 3.1.1 a plain PUBCOMP.
async fn pubrel_unknown_id(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut c = b.client(v, "c").await;
    c.send(&Packet::PublishRelease(PublishAck::new(pid(31))))
        .await;
    match c.expect().await {
        Packet::PublishComplete(a) => {
            assert_eq!(a.packet_id, pid(31));
            let want = if v.is_v5() {
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
            } else {
                ReasonCode::SUCCESS
            };
            assert_eq!(a.reason, want);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    c.ping().await;
    b.stop().await;
}
both_versions!(pubrel_unknown_id);

// [MQTT-4.3.3-4], [MQTT-4.3.3-6] (3.1.1: [MQTT-4.3.3-1]) outbound QoS 2: PUBLISH → client
// PUBREC → broker PUBREL (same id) → client PUBCOMP; nothing re-sent afterwards.
async fn qos2_outbound_flow(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    s.subscribe("q2/t", Q2).await;
    let mut p = b.client(v, "pub").await;
    p.publish("q2/t", b"x", Q2, false).await;
    let m = s.expect_publish().await;
    assert_eq!(m.qos, Q2);
    let id = m.packet_id.expect("id");
    s.send(&Packet::PublishReceived(PublishAck::new(id))).await;
    match s.expect().await {
        Packet::PublishRelease(a) => assert_eq!(a.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    s.send(&Packet::PublishComplete(PublishAck::new(id))).await;
    s.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(qos2_outbound_flow);

// [MQTT-4.4.0-1]: on reconnect of a persistent session, unacknowledged QoS 1 PUBLISH packets are
// re-sent with their original packet ids and DUP=1 [MQTT-3.3.1-1]; once acked they are gone.
async fn qos1_redelivered_with_dup(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut s, _) = b.connect_with(persistent(v, "sub")).await;
    s.subscribe("re/t", Q1).await;
    let mut p = b.client(v, "pub").await;
    p.publish("re/t", b"unacked", Q1, false).await;
    let first = s.expect_publish().await;
    assert!(!first.dup);
    s.drop_connection();
    let (mut s, ack) = b.connect_with(persistent(v, "sub")).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2] session present");
    let again = s.expect_publish().await;
    assert!(again.dup, "re-sent PUBLISH has DUP=1");
    assert_eq!(again.packet_id, first.packet_id, "same packet id");
    assert_eq!(again.payload.as_ref(), b"unacked");
    assert_eq!(again.qos, Q1);
    s.ack(&again).await;
    s.expect_nothing(QUIET).await;
    s.disconnect().await;
    let (mut s, _) = b.connect_with(persistent(v, "sub")).await;
    s.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(qos1_redelivered_with_dup);

// [MQTT-4.4.0-1] / 4.3.3: a QoS 2 message that got PUBREC but not PUBCOMP is resumed with PUBREL
// (not the PUBLISH) on reconnect; one that got no PUBREC is re-sent as PUBLISH with DUP=1.
async fn qos2_resumed_on_reconnect(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut s, _) = b.connect_with(persistent(v, "sub")).await;
    s.subscribe("re2/#", Q2).await;
    let mut p = b.client(v, "pub").await;
    p.publish("re2/a", b"recd", Q2, false).await;
    let a = s.expect_publish().await;
    let a_id = a.packet_id.expect("id");
    s.send(&Packet::PublishReceived(PublishAck::new(a_id)))
        .await;
    assert!(matches!(s.expect().await, Packet::PublishRelease(r) if r.packet_id == a_id));
    p.publish("re2/b", b"unrecd", Q2, false).await;
    let bm = s.expect_publish().await;
    s.drop_connection();
    let (mut s, ack) = b.connect_with(persistent(v, "sub")).await;
    assert!(ack.session_present);
    let mut saw_rel = false;
    let mut saw_pub = false;
    for _ in 0..2 {
        match s.expect().await {
            Packet::PublishRelease(r) => {
                assert_eq!(r.packet_id, a_id, "PUBREL for the message that got PUBREC");
                saw_rel = true;
            }
            Packet::Publish(m) => {
                assert_eq!(
                    m.payload.as_ref(),
                    b"unrecd",
                    "only the un-PUBREC'd message is re-sent"
                );
                assert!(m.dup);
                assert_eq!(m.packet_id, bm.packet_id);
                saw_pub = true;
                s.send(&Packet::PublishReceived(PublishAck::new(
                    m.packet_id.expect("id"),
                )))
                .await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_rel && saw_pub);
    s.send(&Packet::PublishComplete(PublishAck::new(a_id)))
        .await;
    let rel = s
        .wait_for("PUBREL", |q| matches!(q, Packet::PublishRelease(_)))
        .await;
    if let Packet::PublishRelease(r) = rel {
        s.send(&Packet::PublishComplete(PublishAck::new(r.packet_id)))
            .await;
    }
    s.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(qos2_resumed_on_reconnect);

// [MQTT-4.6.0-5] (3.1.1 [MQTT-4.6.0-6]): each topic is an ordered topic: 100 messages published in
// a burst arrive in order (QoS 1, and QoS 0 / QoS 2 mixed on one topic).
async fn ordering_per_topic(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut s = b.client(v, "sub").await;
    s.subscribe("ord/t", Q2).await;
    let mut p = b.client(v, "pub").await;
    for i in 1..=100u16 {
        let mut m = publish("ord/t", i.to_string().as_bytes(), Q1, false);
        m.packet_id = Some(pid(i));
        p.send(&Packet::Publish(m)).await;
    }
    let got = s.collect(100).await;
    let want: Vec<String> = (1..=100).map(|i: u32| i.to_string()).collect();
    assert_eq!(payloads(&got), want);
    for i in 1..=100u16 {
        assert!(
            matches!(p.expect().await, Packet::PublishAck(a) if a.packet_id == pid(i)),
            "PUBACKs in order [MQTT-4.6.0-2]"
        );
    }
    // Mixed QoS on one topic.
    for i in 0..30u16 {
        let q = [Q0, Q1, Q2][usize::from(i % 3)];
        let mut m = publish("ord/t", format!("m{i}").as_bytes(), q, false);
        m.packet_id = (q != Q0).then(|| pid(1000 + i));
        p.send(&Packet::Publish(m)).await;
        if q == Q2 {
            p.wait_for("PUBREC", |x| matches!(x, Packet::PublishReceived(_)))
                .await;
            p.send(&Packet::PublishRelease(PublishAck::new(pid(1000 + i))))
                .await;
        }
    }
    let got = s.collect(30).await;
    let want: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads(&got), want);
    b.stop().await;
}
both_versions!(ordering_per_topic);
