//! Things' topics through a running broker with no ACL file (every other topic open): a client
//! uses its own thing's shadow topics only, cannot forge a reply, and a will cannot reach
//! another thing (the unit tests of `auth::things` cover the rules themselves).

use std::time::Duration;

use hermod_proto::{ProtocolVersion, QoS, ReasonCode};

use crate::harness::*;

const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn a_client_uses_its_own_things_topics_only() {
    let b = TestBroker::start().await;
    let mut lamp1 = b.client(V5, "lamp-1").await;
    let mut lamp2 = b.client(V5, "lamp-2").await;
    assert_eq!(
        lamp1
            .subscribe_one("$hermod/things/lamp-1/shadow/#", QoS::AtLeastOnce)
            .await,
        ReasonCode::GRANTED_QOS_1
    );
    // [MQTT-3.9.3-1] v5 SUBACK 0x87 for a filter the client may not read.
    for f in [
        "$hermod/things/lamp-1/shadow/#",
        "$hermod/things/+/shadow/#",
        "$hermod/#",
    ] {
        assert_eq!(
            lamp2.subscribe_one(f, QoS::AtLeastOnce).await,
            ReasonCode::NOT_AUTHORIZED,
            "{f}"
        );
    }
    // Another thing's request: PUBACK 0x87, nothing routed.
    assert_eq!(
        lamp2
            .publish(
                "$hermod/things/lamp-1/shadow/update",
                b"{}",
                QoS::AtLeastOnce,
                false
            )
            .await,
        ReasonCode::NOT_AUTHORIZED
    );
    // A forged reply, even on its own thing.
    assert_eq!(
        lamp2
            .publish(
                "$hermod/things/lamp-2/shadow/update/accepted",
                b"{}",
                QoS::AtLeastOnce,
                false
            )
            .await,
        ReasonCode::NOT_AUTHORIZED
    );
    // Its own request is taken (and reaches a subscriber of its own thing).
    assert_eq!(
        lamp1
            .publish(
                "$hermod/things/lamp-1/shadow/get",
                b"",
                QoS::AtLeastOnce,
                false
            )
            .await,
        ReasonCode::SUCCESS
    );
    let m = lamp1.expect_publish_acked().await;
    assert_eq!(m.topic, "$hermod/things/lamp-1/shadow/get");
    lamp1.expect_nothing(Duration::from_millis(200)).await;
    b.stop().await;
}

/// A will is a publish: one on another thing's shadow is refused at CONNECT.
#[tokio::test]
async fn a_will_cannot_update_another_things_shadow() {
    let b = TestBroker::start().await;
    let mut c = connect_packet(V5, "lamp-2");
    c.will = Some(LastWill {
        topic: "$hermod/things/lamp-1/shadow/update".into(),
        payload: bytes::Bytes::from_static(br#"{"state":{"desired":{"on":false}}}"#),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    assert_eq!(
        Client::connack(b.addr, &Via::Tcp, c).await,
        ReasonCode::NOT_AUTHORIZED
    );
    b.stop().await;
}
