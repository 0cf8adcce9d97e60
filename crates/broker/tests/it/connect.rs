//! CONNECT / CONNACK handling.

use std::time::{Duration, Instant};

use crate::harness::*;

// [MQTT-3.1.2-2] (3.1.1) / 3.1.2.2 (5.0): an unsupported protocol level gets CONNACK 0x01
// (unacceptable protocol version) and the connection is closed.
#[tokio::test]
async fn unsupported_protocol_level() {
    let b = TestBroker::start().await;
    let mut c = b.tcp(V311).await;
    // CONNECT, "MQTT", level 6, clean session, keep alive 60, client id "x".
    c.send_raw(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 60, 0, 1, b'x',
    ])
    .await;
    match c.expect().await {
        Packet::ConnectAck(a) => {
            assert_eq!(
                a.reason,
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                "CONNACK return code 0x01"
            );
            assert!(!a.session_present);
        }
        other => panic!("expected CONNACK 0x01, got {other:?}"),
    }
    c.expect_closed(WAIT).await;
    b.stop().await;
}

// [MQTT-3.1.2-1]: a protocol name other than "MQTT" (or "MQIsdp" for 3.1) → close, no CONNACK needed.
#[tokio::test]
async fn bad_protocol_name_closes() {
    let b = TestBroker::start().await;
    let mut c = b.tcp(V311).await;
    c.send_raw(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'X', 4, 0x02, 0, 60, 0, 1, b'x',
    ])
    .await;
    assert!(
        c.is_closed_within(WAIT).await,
        "closed after a bad protocol name"
    );
    b.stop().await;
}

// [MQTT-3.1.0-1]: the first packet from the client must be CONNECT; anything else closes the connection.
#[tokio::test]
async fn first_packet_not_connect() {
    let b = TestBroker::start().await;
    let mut c = b.tcp(V311).await;
    c.send(&Packet::PingRequest).await;
    c.expect_closed(WAIT).await;
    let mut c = b.tcp(V311).await;
    c.send(&Packet::Publish(publish("t", b"x", Q0, false)))
        .await;
    c.expect_closed(WAIT).await;
    assert!(b.metric(|m| m.protocol_errors) >= 2);
    b.stop().await;
}

// [MQTT-3.1.0-2]: a second CONNECT is a protocol violation: close (v5: DISCONNECT 0x82 first).
async fn second_connect(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut c = b.client(v, "twice").await;
    c.send(&Packet::Connect(Box::new(connect_packet(v, "twice"))))
        .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    b.stop().await;
}
both_versions!(second_connect);

// 3.1.4 / Mosquitto's connect timeout: a connection that sends no CONNECT is closed after
// connect_timeout seconds.
#[tokio::test]
async fn connect_timeout() {
    let b = TestBroker::with(|c| c.connect_timeout = 1).await;
    let mut c = b.tcp(V311).await;
    let t0 = Instant::now();
    c.expect_closed(Duration::from_secs(3)).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );
    // A partial CONNECT does not extend the deadline either.
    let mut c = b.tcp(V311).await;
    c.send_raw(&[0x10, 13, 0, 4, b'M']).await;
    c.expect_closed(Duration::from_secs(3)).await;
    b.stop().await;
}

// [MQTT-3.1.3-6]: 3.1.1 zero-length client id with clean session is accepted (server assigns one).
// [MQTT-3.1.3-8]: without clean session → CONNACK 0x02 and close.
// 5.0 3.1.3.1 / [MQTT-3.2.2-16]: the server assigns an id and returns it as Assigned Client Identifier.
#[tokio::test]
async fn zero_length_client_id() {
    let b = TestBroker::start().await;
    // 3.1.1, clean session: accepted, and the connection works.
    let (mut c, ack) = b.connect_with(connect_packet(V311, "")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    c.ping().await;
    // 3.1.1, no clean session: identifier rejected.
    let mut p = connect_packet(V311, "");
    p.clean_start = false;
    let (mut c2, ack) = b.connect_with(p).await;
    assert_eq!(
        ack.reason,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        "3.1.1 CONNACK return code 0x02"
    );
    c2.expect_closed(WAIT).await;
    // 5.0: assigned, unique, usable.
    let (mut a, ack_a) = b.connect_with(connect_packet(V5, "")).await;
    let (_b2, ack_b) = b.connect_with(persistent(V5, "")).await;
    let id_a = ack_a
        .properties
        .assigned_client_identifier
        .clone()
        .expect("Assigned Client Identifier [MQTT-3.2.2-16]");
    let id_b = ack_b
        .properties
        .assigned_client_identifier
        .clone()
        .expect("Assigned Client Identifier");
    assert_eq!(ack_a.reason, ReasonCode::SUCCESS);
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b, "assigned identifiers are unique");
    a.subscribe("zl/t", Q1).await;
    a.publish("zl/t", b"mine", Q1, false).await;
    assert_eq!(a.expect_publish_acked().await.payload.as_ref(), b"mine");
    // A client that names its id gets none assigned.
    let (_n, ack) = b.connect_with(connect_packet(V5, "named")).await;
    assert_eq!(ack.properties.assigned_client_identifier, None);
    c.disconnect().await;
    b.stop().await;
}

// MQTT 3.1 (protocol name MQIsdp, level 3): connect, subscribe, publish, receive. 3.1 CONNACK
// has no session-present flag (reserved byte 0).
#[tokio::test]
async fn mqtt31_pub_sub() {
    let b = TestBroker::start().await;
    let (mut s, ack) = b.connect_with(connect_packet(V31, "old-sub")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    assert_eq!(
        s.subscribe("v31/#", Q2).await,
        vec![ReasonCode::GRANTED_QOS_2]
    );
    let mut p = b.client(V31, "old-pub").await;
    for q in [Q0, Q1, Q2] {
        p.publish("v31/t", format!("q{}", q as u8).as_bytes(), q, false)
            .await;
    }
    let got = s.collect(3).await;
    assert_eq!(payloads(&got), ["q0", "q1", "q2"]);
    assert_eq!(got.iter().map(|p| p.qos).collect::<Vec<_>>(), [Q0, Q1, Q2]);
    // Interoperates with 3.1.1 and 5.0 clients.
    let mut p5 = b.client(V5, "new-pub").await;
    p5.publish("v31/t", b"from5", Q1, false).await;
    assert_eq!(s.expect_publish_acked().await.payload.as_ref(), b"from5");
    s.disconnect().await;
    b.stop().await;
}

// 5.0 [MQTT-4.12.0-1] / 3.1.2.11.9: an Authentication Method the server does not support →
// CONNACK 0x8C (Bad authentication method), then close.
#[tokio::test]
async fn auth_method_refused() {
    let b = TestBroker::start().await;
    let mut p = connect_packet(V5, "auth");
    p.properties.authentication_method = Some("SCRAM-SHA-256".into());
    let (mut c, ack) = b.connect_with(p).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    c.expect_closed(WAIT).await;
    b.stop().await;
}

// allow_anonymous = false: a client without user name is refused: 3.1.1 CONNACK 0x05
// (not authorized, what Mosquitto sends), 5.0 CONNACK 0x87 (Not authorized); then close
// [MQTT-3.2.2-5 (3.1.1) / MQTT-3.2.2-7 (5.0)].
async fn anonymous_refused(v: ProtocolVersion) {
    let b = TestBroker::with(|c| c.allow_anonymous = Some(false)).await;
    let (mut c, ack) = b.connect_with(connect_packet(v, "anon")).await;
    // The codec maps the v3 return code 5 to 0x87 when decoding.
    assert_eq!(
        ack.reason,
        ReasonCode::NOT_AUTHORIZED,
        "{v:?}: expected not authorized (v3 5 / v5 0x87), got {ack:?}"
    );
    assert!(
        !ack.session_present,
        "[MQTT-3.2.2-4/6] session present 0 on refusal"
    );
    c.expect_closed(WAIT).await;
    b.stop().await;
}
both_versions!(anonymous_refused);

// 5.0 3.2.2.3: CONNACK announces the server's limits: Receive Maximum, Maximum Packet Size,
// Topic Alias Maximum; Retain Available only when retain is off.
#[tokio::test]
async fn connack_properties_v5() {
    let b = TestBroker::with(|c| {
        c.max_inflight_messages = 7;
        c.max_packet_size = 4096;
        c.max_topic_alias = 3;
    })
    .await;
    let (_c, ack) = b.connect_with(connect_packet(V5, "props")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.receive_maximum, Some(7));
    assert_eq!(ack.properties.maximum_packet_size, Some(4096));
    assert_eq!(ack.properties.topic_alias_maximum, Some(3));
    assert_eq!(ack.properties.retain_available, None);
    assert_eq!(ack.properties.server_keep_alive, None, "no cap configured");
    b.stop().await;
}

// [MQTT-3.2.2-1] (3.1.1) / [MQTT-3.2.2-2] (5.0): clean start → session present 0.
async fn clean_start_session_present_zero(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (c, ack) = b.connect_with(persistent(v, "sp")).await;
    assert!(!ack.session_present, "no session existed [MQTT-3.2.2-3]");
    c.disconnect().await;
    let (_c, ack) = b.connect_with(connect_packet(v, "sp")).await;
    assert!(!ack.session_present, "clean start → session present 0");
    b.stop().await;
}
both_versions!(clean_start_session_present_zero);

// [MQTT-3.1.2-3]: the reserved CONNECT flag must be 0, otherwise malformed → close.
// [MQTT-3.1.2-13/14]: will QoS without will flag / will QoS 3 → close.
#[tokio::test]
async fn bad_connect_flags_close() {
    let b = TestBroker::start().await;
    for (name, flags) in [
        ("reserved bit", 0x03u8),
        ("will qos without will", 0x0A),
        ("will qos 3", 0x1E),
    ] {
        let mut c = b.tcp(V311).await;
        c.send_raw(&[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 60, 0, 1, b'x',
        ])
        .await;
        match c.recv(WAIT).await {
            None => {}
            Some(Packet::ConnectAck(a)) if a.reason != ReasonCode::SUCCESS => {
                c.expect_closed(WAIT).await
            }
            Some(other) => panic!("{name}: expected close, got {other:?}"),
        }
        assert!(c.is_closed_within(WAIT).await, "{name}: connection closed");
    }
    b.stop().await;
}
