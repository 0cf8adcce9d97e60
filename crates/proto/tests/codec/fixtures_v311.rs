//! MQTT 3.1.1 fixtures, one per packet type (and per interesting variant). Each byte group is
//! annotated; `check_fixture` decodes, encodes, and tries every strict prefix.

use bytes::Bytes;
use hermod_proto::*;

use crate::{check_fixture, pid};

const V: ProtocolVersion = ProtocolVersion::V311;

#[test]
fn connect_full() {
    #[rustfmt::skip]
    let bytes = [
        0x10,                               // CONNECT, flags 0000
        0x24,                               // remaining length 36
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x04,                               // protocol level 4 (3.1.1)
        0xEE,                               // user name | password | will retain | will QoS 1 | will | clean session
        0x00, 0x3C,                         // keep alive 60 s
        0x00, 0x04, b'c', b'l', b'i', b'1', // client id "cli1"
        0x00, 0x03, b'w', b'/', b't',       // will topic "w/t"
        0x00, 0x03, b'b', b'y', b'e',       // will payload "bye"
        0x00, 0x04, b'u', b's', b'e', b'r', // user name "user"
        0x00, 0x02, 0xDE, 0xAD,             // password (binary)
    ];
    let expected = Packet::Connect(Box::new(Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 60,
        client_id: "cli1".into(),
        will: Some(LastWill {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(&[0xDE, 0xAD])),
        properties: ConnectProperties::default(),
    }));
    check_fixture(V, &bytes, &expected);
}

#[test]
fn connect_minimal() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x0C,                         // CONNECT, remaining length 12
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name "MQTT"
        0x04,                               // level 4
        0x00,                               // no flags (clean session 0)
        0x00, 0x00,                         // keep alive disabled
        0x00, 0x00,                         // empty client id
    ];
    let expected = Packet::Connect(Box::new(Connect {
        protocol: V,
        ..Connect::default()
    }));
    check_fixture(V, &bytes, &expected);
}

#[test]
fn connack() {
    #[rustfmt::skip]
    let accepted = [
        0x20, 0x02, // CONNACK, remaining length 2
        0x01,       // session present
        0x00,       // return code 0: accepted
    ];
    let p = Packet::ConnectAck(ConnectAck {
        session_present: true,
        ..ConnectAck::default()
    });
    check_fixture(V, &accepted, &p);

    #[rustfmt::skip]
    let refused = [
        0x20, 0x02, // CONNACK, remaining length 2
        0x00,       // no session
        0x05,       // return code 5: not authorized (v5 0x87)
    ];
    let p = Packet::ConnectAck(ConnectAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ConnectAck::default()
    });
    check_fixture(V, &refused, &p);
}

#[test]
fn connack_return_codes_map_both_ways() {
    let table = [
        (0u8, 0x00u8),
        (1, 0x84),
        (2, 0x85),
        (3, 0x88),
        (4, 0x86),
        (5, 0x87),
    ];
    for (v3, v5) in table {
        let p = Packet::ConnectAck(ConnectAck {
            reason: ReasonCode(v5),
            ..ConnectAck::default()
        });
        check_fixture(V, &[0x20, 0x02, 0x00, v3], &p);
    }
}

#[test]
fn publish_qos0_retain() {
    #[rustfmt::skip]
    let bytes = [
        0x31,                         // PUBLISH, DUP 0, QoS 0, RETAIN 1
        0x07,                         // remaining length 7
        0x00, 0x03, b'a', b'/', b'b', // topic "a/b"
                                      // (no packet id at QoS 0)
        b'h', b'i',                   // payload "hi"
    ];
    let p = Packet::Publish(Publish {
        retain: true,
        topic: "a/b".into(),
        payload: Bytes::from_static(b"hi"),
        ..Publish::default()
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn publish_qos1_dup() {
    #[rustfmt::skip]
    let bytes = [
        0x3A,             // PUBLISH, DUP 1, QoS 1, RETAIN 0
        0x08,             // remaining length 8
        0x00, 0x01, b't', // topic "t"
        0x00, 0x0A,       // packet id 10
        0x01, 0x02, 0x03, // payload
    ];
    let p = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        topic: "t".into(),
        packet_id: Some(pid(10)),
        payload: Bytes::from_static(&[1, 2, 3]),
        ..Publish::default()
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn publish_qos2_empty_payload() {
    #[rustfmt::skip]
    let bytes = [
        0x34,             // PUBLISH, DUP 0, QoS 2, RETAIN 0
        0x05,             // remaining length 5
        0x00, 0x01, b'x', // topic "x"
        0x12, 0x34,       // packet id 0x1234
                          // empty payload
    ];
    let p = Packet::Publish(Publish {
        qos: QoS::ExactlyOnce,
        topic: "x".into(),
        packet_id: Some(pid(0x1234)),
        ..Publish::default()
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn publish_acks() {
    // type nibble | flags, remaining length 2, packet id
    check_fixture(
        V,
        &[0x40, 0x02, 0x00, 0x01],
        &Packet::PublishAck(PublishAck::new(pid(1))),
    ); // PUBACK 1
    check_fixture(
        V,
        &[0x50, 0x02, 0x00, 0x02],
        &Packet::PublishReceived(PublishAck::new(pid(2))),
    ); // PUBREC 2
    check_fixture(
        V,
        &[0x62, 0x02, 0x00, 0x03],
        &Packet::PublishRelease(PublishAck::new(pid(3))),
    ); // PUBREL 3 (flags 0010)
    check_fixture(
        V,
        &[0x70, 0x02, 0xFF, 0xFF],
        &Packet::PublishComplete(PublishAck::new(pid(0xFFFF))),
    ); // PUBCOMP 65535
}

#[test]
fn subscribe() {
    #[rustfmt::skip]
    let bytes = [
        0x82,                         // SUBSCRIBE, flags 0010
        0x0C,                         // remaining length 12
        0x00, 0x05,                   // packet id 5
        0x00, 0x03, b'a', b'/', b'+', // filter "a/+"
        0x01,                         //   requested QoS 1
        0x00, 0x01, b'#',             // filter "#"
        0x02,                         //   requested QoS 2
    ];
    let qos = |qos| SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    };
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(5),
        filters: vec![
            ("a/+".into(), qos(QoS::AtLeastOnce)),
            ("#".into(), qos(QoS::ExactlyOnce)),
        ],
        properties: SubscribeProperties::default(),
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn suback() {
    #[rustfmt::skip]
    let bytes = [
        0x90, 0x04, // SUBACK, remaining length 4
        0x00, 0x05, // packet id 5
        0x01,       // granted QoS 1
        0x80,       // failure
    ];
    let p = Packet::SubscribeAck(SubscribeAck {
        packet_id: pid(5),
        reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
        properties: AckProperties::default(),
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn unsubscribe() {
    #[rustfmt::skip]
    let bytes = [
        0xA2,                         // UNSUBSCRIBE, flags 0010
        0x0A,                         // remaining length 10
        0x00, 0x06,                   // packet id 6
        0x00, 0x03, b'a', b'/', b'+', // filter "a/+"
        0x00, 0x01, b'#',             // filter "#"
    ];
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(6),
        filters: vec!["a/+".into(), "#".into()],
        user_properties: vec![],
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn unsuback() {
    #[rustfmt::skip]
    let bytes = [
        0xB0, 0x02, // UNSUBACK, remaining length 2
        0x00, 0x06, // packet id 6 (no payload in 3.1.1)
    ];
    let p = Packet::UnsubscribeAck(UnsubscribeAck {
        packet_id: pid(6),
        reasons: vec![],
        properties: AckProperties::default(),
    });
    check_fixture(V, &bytes, &p);
}

#[test]
fn ping_and_disconnect() {
    check_fixture(V, &[0xC0, 0x00], &Packet::PingRequest); // PINGREQ, remaining length 0
    check_fixture(V, &[0xD0, 0x00], &Packet::PingResponse); // PINGRESP, remaining length 0
    check_fixture(V, &[0xE0, 0x00], &Packet::Disconnect(Disconnect::default())); // DISCONNECT, remaining length 0
}

#[test]
fn non_minimal_remaining_length_is_accepted() {
    let mut buf = bytes::BytesMut::from(&[0xC0, 0x80, 0x00][..]); // PINGREQ, length 0 in two bytes
    assert_eq!(
        decode_packet(&mut buf, V, crate::MAX),
        Ok(Some(Packet::PingRequest))
    );
    assert!(buf.is_empty());
}

#[test]
fn publish_payload_is_zero_copy() {
    let mut buf =
        bytes::BytesMut::from(&[0x30, 0x07, 0x00, 0x01, b't', b'a', b'b', b'c', b'd'][..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Some(Packet::Publish(p)) = decode_packet(&mut buf, V, crate::MAX).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(&p.payload[..], b"abcd");
    assert!(
        range.contains(&(p.payload.as_ptr() as usize)),
        "payload must point into the receive buffer"
    );
}

#[test]
fn multi_byte_remaining_length() {
    // 200-byte payload: remaining length 3 + 200 = 203 = 0xCB 0x01 (two bytes).
    let payload = vec![0xAB; 200];
    let mut bytes = vec![0x30, 0xCB, 0x01, 0x00, 0x01, b't'];
    bytes.extend_from_slice(&payload);
    let p = Packet::Publish(Publish {
        topic: "t".into(),
        payload: payload.into(),
        ..Publish::default()
    });
    check_fixture(V, &bytes, &p);
}
