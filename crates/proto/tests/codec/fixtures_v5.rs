//! MQTT 5.0 fixtures, one per packet type plus the short forms of the acks, DISCONNECT and AUTH.

use bytes::Bytes;
use hermod_proto::*;

use crate::{check_fixture, pid};

const V: ProtocolVersion = ProtocolVersion::V5;

fn user(k: &str, v: &str) -> UserProperty {
    (k.into(), v.into())
}

#[test]
fn connect_full() {
    #[rustfmt::skip]
    let bytes = [
        0x10,                               // CONNECT
        0x3C,                               // remaining length 60
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x05,                               // protocol level 5
        0xD6,                               // user name | password | will QoS 2 | will | clean start
        0x00, 0x1E,                         // keep alive 30 s
        0x0F,                               // property length 15
        0x11, 0x00, 0x00, 0x00, 0x78,       //   session expiry interval 120
        0x21, 0x00, 0x10,                   //   receive maximum 16
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property ("k", "v")
        0x00, 0x02, b'c', b'5',             // client id "c5"
        0x0E,                               // will property length 14
        0x18, 0x00, 0x00, 0x00, 0x05,       //   will delay interval 5
        0x01, 0x01,                         //   payload format indicator 1 (UTF-8)
        0x03, 0x00, 0x04, b't', b'e', b'x', b't', // content type "text"
        0x00, 0x04, b'w', b'i', b'l', b'l', // will topic "will"
        0x00, 0x01, b'x',                   // will payload "x"
        0x00, 0x01, b'u',                   // user name "u"
        0x00, 0x01, b'p',                   // password "p"
    ];
    let expected = Packet::Connect(Box::new(Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 30,
        client_id: "c5".into(),
        will: Some(LastWill {
            topic: "will".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(1),
                content_type: Some("text".into()),
                ..WillProperties::default()
            },
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: ConnectProperties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(16),
            user_properties: vec![user("k", "v")],
            ..ConnectProperties::default()
        },
    }));
    check_fixture(V, &bytes, &expected);
}

#[test]
fn connect_password_without_username() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x11,                         // CONNECT, remaining length 17
        0x00, 0x04, b'M', b'Q', b'T', b'T', // "MQTT"
        0x05,                               // level 5
        0x42,                               // password | clean start (allowed without user name in v5)
        0x00, 0x00,                         // keep alive 0
        0x00,                               // property length 0
        0x00, 0x00,                         // empty client id
        0x00, 0x02, 0x01, 0x02,             // password
    ];
    let expected = Packet::Connect(Box::new(Connect {
        protocol: V,
        clean_start: true,
        password: Some(Bytes::from_static(&[1, 2])),
        ..Connect::default()
    }));
    check_fixture(V, &bytes, &expected);
}

#[test]
fn connack_with_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x20, 0x15,                         // CONNACK, remaining length 21
        0x00,                               // no session present
        0x00,                               // reason 0x00 success
        0x12,                               // property length 18
        0x12, 0x00, 0x03, b'a', b'b', b'c', //   assigned client identifier "abc"
        0x24, 0x01,                         //   maximum QoS 1
        0x25, 0x00,                         //   retain available 0
        0x27, 0x00, 0x00, 0x10, 0x00,       //   maximum packet size 4096
        0x22, 0x00, 0x0A,                   //   topic alias maximum 10
    ];
    let p = Packet::ConnectAck(ConnectAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties: ConnectAckProperties {
            assigned_client_identifier: Some("abc".into()),
            topic_alias_maximum: Some(10),
            maximum_qos: Some(1),
            retain_available: Some(0),
            maximum_packet_size: Some(4096),
            ..ConnectAckProperties::default()
        },
    });
    // The encoder writes properties in its own order; decode this order, then check the
    // canonical encoding separately.
    assert_eq!(crate::decode_one(V, &bytes), p);
    #[rustfmt::skip]
    let canonical = [
        0x20, 0x15, 0x00, 0x00, 0x12,
        0x24, 0x01,                         // maximum QoS 1
        0x25, 0x00,                         // retain available 0
        0x27, 0x00, 0x00, 0x10, 0x00,       // maximum packet size 4096
        0x12, 0x00, 0x03, b'a', b'b', b'c', // assigned client identifier "abc"
        0x22, 0x00, 0x0A,                   // topic alias maximum 10
    ];
    check_fixture(V, &canonical, &p);
}

#[test]
fn connack_refused() {
    #[rustfmt::skip]
    let bytes = [
        0x20, 0x03, // CONNACK, remaining length 3
        0x00,       // no session
        0x87,       // reason 0x87 not authorized
        0x00,       // property length 0
    ];
    let p = Packet::ConnectAck(ConnectAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ConnectAck::default()
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn publish_with_every_property() {
    #[rustfmt::skip]
    let bytes = [
        0x32,                                     // PUBLISH, QoS 1
        0x30,                                     // remaining length 48
        0x00, 0x03, b'a', b'/', b'b',             // topic "a/b"
        0x00, 0x07,                               // packet id 7
        0x23,                                     // property length 35
        0x01, 0x01,                               //   payload format indicator 1
        0x02, 0x00, 0x00, 0x00, 0x3C,             //   message expiry interval 60
        0x23, 0x00, 0x05,                         //   topic alias 5
        0x08, 0x00, 0x01, b'r',                   //   response topic "r"
        0x09, 0x00, 0x02, 0xCA, 0xFE,             //   correlation data CA FE
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', //   user property ("k", "v")
        0x0B, 0x01,                               //   subscription identifier 1
        0x0B, 0x80, 0x01,                         //   subscription identifier 128 (two-byte varint)
        0x03, 0x00, 0x01, b'j',                   //   content type "j"
        b'h', b'e', b'l', b'l', b'o',             // payload "hello"
    ];
    let p = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "a/b".into(),
        packet_id: Some(pid(7)),
        payload: Bytes::from_static(b"hello"),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(5),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(&[0xCA, 0xFE])),
            user_properties: vec![user("k", "v")],
            subscription_identifiers: vec![1, 128],
            content_type: Some("j".into()),
        },
        ..Publish::default()
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn publish_empty_topic_with_alias() {
    #[rustfmt::skip]
    let bytes = [
        0x30, 0x07,       // PUBLISH QoS 0, remaining length 7
        0x00, 0x00,       // empty topic: the alias stands in for it
        0x03,             // property length 3
        0x23, 0x00, 0x05, //   topic alias 5
        b'x',             // payload
    ];
    let p = Packet::Publish(Publish {
        payload: Bytes::from_static(b"x"),
        properties: PublishProperties {
            topic_alias: Some(5),
            ..PublishProperties::default()
        },
        ..Publish::default()
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn publish_acks_short_forms() {
    // PUBACK, remaining length 2: reason 0x00 and no properties are implied.
    check_fixture(
        V,
        &[0x40, 0x02, 0x00, 0x01],
        &Packet::PublishAck(PublishAck::new(pid(1))),
    );
    // PUBACK, remaining length 3: reason 0x10 no matching subscribers, no properties.
    let ack = PublishAck {
        reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..PublishAck::new(pid(2))
    };
    check_fixture(V, &[0x40, 0x03, 0x00, 0x02, 0x10], &Packet::PublishAck(ack));
    // PUBREL, flags 0010, remaining length 3: reason 0x92 packet identifier not found.
    let ack = PublishAck {
        reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..PublishAck::new(pid(4))
    };
    check_fixture(
        V,
        &[0x62, 0x03, 0x00, 0x04, 0x92],
        &Packet::PublishRelease(ack),
    );
    // PUBCOMP, remaining length 2.
    check_fixture(
        V,
        &[0x70, 0x02, 0x00, 0x05],
        &Packet::PublishComplete(PublishAck::new(pid(5))),
    );
    // A remaining length of 3 carrying reason 0x00 decodes to the same packet as the length-2 form.
    assert_eq!(
        crate::decode_one(V, &[0x40, 0x03, 0x00, 0x01, 0x00]),
        Packet::PublishAck(PublishAck::new(pid(1)))
    );
}

#[test]
fn publish_acks_with_properties() {
    #[rustfmt::skip]
    let pubrec = [
        0x50, 0x08,             // PUBREC, remaining length 8
        0x00, 0x03,             // packet id 3
        0x80,                   // reason 0x80 unspecified error
        0x04,                   // property length 4
        0x1F, 0x00, 0x01, b'e', //   reason string "e"
    ];
    let ack = PublishAck {
        packet_id: pid(3),
        reason: ReasonCode::UNSPECIFIED_ERROR,
        properties: AckProperties {
            reason_string: Some("e".into()),
            user_properties: vec![],
        },
    };
    check_fixture(V, &pubrec, &Packet::PublishReceived(ack));

    #[rustfmt::skip]
    let puback = [
        0x40, 0x0B,                               // PUBACK, remaining length 11
        0x00, 0x06,                               // packet id 6
        0x00,                                     // reason 0x00 (written because properties follow)
        0x07,                                     // property length 7
        0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'b', //   user property ("a", "b")
    ];
    let ack = PublishAck {
        packet_id: pid(6),
        reason: ReasonCode::SUCCESS,
        properties: AckProperties {
            reason_string: None,
            user_properties: vec![user("a", "b")],
        },
    };
    check_fixture(V, &puback, &Packet::PublishAck(ack));
}

#[test]
fn subscribe_with_options() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 0x18,                   // SUBSCRIBE, flags 0010, remaining length 24
        0x00, 0x0A,                   // packet id 10
        0x02,                         // property length 2
        0x0B, 0x2A,                   //   subscription identifier 42
        0x00, 0x03, b'a', b'/', b'#', // filter "a/#"
        0x2D,                         //   retain handling 2 | retain as published | no local | QoS 1
        0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'x', // filter "$share/g/x"
        0x00,                         //   all options 0
    ];
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        filters: vec![
            (
                "a/#".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            ),
            ("$share/g/x".into(), SubscriptionOptions::default()),
        ],
        properties: SubscribeProperties {
            subscription_identifier: Some(42),
            user_properties: vec![],
        },
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn suback() {
    #[rustfmt::skip]
    let bytes = [
        0x90, 0x0A,                   // SUBACK, remaining length 10
        0x00, 0x0A,                   // packet id 10
        0x05,                         // property length 5
        0x1F, 0x00, 0x02, b'n', b'o', //   reason string "no"
        0x01,                         // granted QoS 1
        0x8F,                         // topic filter invalid
    ];
    let p = Packet::SubscribeAck(SubscribeAck {
        packet_id: pid(10),
        reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::TOPIC_FILTER_INVALID],
        properties: AckProperties {
            reason_string: Some("no".into()),
            user_properties: vec![],
        },
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn unsubscribe() {
    #[rustfmt::skip]
    let bytes = [
        0xA2, 0x0F,                               // UNSUBSCRIBE, flags 0010, remaining length 15
        0x00, 0x0B,                               // packet id 11
        0x07,                                     // property length 7
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', //   user property ("k", "v")
        0x00, 0x03, b'a', b'/', b'#',             // filter "a/#"
    ];
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(11),
        filters: vec!["a/#".into()],
        user_properties: vec![user("k", "v")],
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn unsuback() {
    #[rustfmt::skip]
    let bytes = [
        0xB0, 0x05, // UNSUBACK, remaining length 5
        0x00, 0x0B, // packet id 11
        0x00,       // property length 0
        0x00,       // success
        0x11,       // no subscription existed
    ];
    let p = Packet::UnsubscribeAck(UnsubscribeAck {
        packet_id: pid(11),
        reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: AckProperties::default(),
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn ping() {
    check_fixture(V, &[0xC0, 0x00], &Packet::PingRequest); // PINGREQ, remaining length 0
    check_fixture(V, &[0xD0, 0x00], &Packet::PingResponse); // PINGRESP, remaining length 0
}

#[test]
fn disconnect_forms() {
    // Remaining length 0: normal disconnection, no properties.
    check_fixture(V, &[0xE0, 0x00], &Packet::Disconnect(Disconnect::default()));
    // Remaining length 1: reason 0x04 disconnect with will message, property length omitted.
    let d = Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        ..Disconnect::default()
    };
    check_fixture(V, &[0xE0, 0x01, 0x04], &Packet::Disconnect(d));

    #[rustfmt::skip]
    let bytes = [
        0xE0, 0x0D,                   // DISCONNECT, remaining length 13
        0x8E,                         // reason 0x8E session taken over
        0x0B,                         // property length 11
        0x11, 0x00, 0x00, 0x00, 0x00, //   session expiry interval 0
        0x1F, 0x00, 0x03, b'b', b'y', b'e', // reason string "bye"
    ];
    let d = Disconnect {
        reason: ReasonCode::SESSION_TAKEN_OVER,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: Some("bye".into()),
            ..DisconnectProperties::default()
        },
    };
    check_fixture(V, &bytes, &Packet::Disconnect(d));
}

#[test]
fn auth_forms() {
    // Remaining length 0: success, no properties.
    check_fixture(V, &[0xF0, 0x00], &Packet::Auth(Auth::default()));

    #[rustfmt::skip]
    let bytes = [
        0xF0, 0x0E,                               // AUTH, remaining length 14
        0x18,                                     // reason 0x18 continue authentication
        0x0C,                                     // property length 12
        0x15, 0x00, 0x04, b'S', b'C', b'R', b'M', //   authentication method "SCRM"
        0x16, 0x00, 0x02, 0x01, 0x02,             //   authentication data 01 02
    ];
    let a = Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: AuthProperties {
            authentication_method: Some("SCRM".into()),
            authentication_data: Some(Bytes::from_static(&[1, 2])),
            ..AuthProperties::default()
        },
    };
    check_fixture(V, &bytes, &Packet::Auth(a));
    // A reason other than 0x00 needs the property length even when there are no properties.
    let a = Auth {
        reason: ReasonCode::REAUTHENTICATE,
        ..Auth::default()
    };
    check_fixture(V, &[0xF0, 0x02, 0x19, 0x00], &Packet::Auth(a));
}
