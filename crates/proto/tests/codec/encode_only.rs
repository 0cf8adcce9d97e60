//! Encoding rules that do not show up in a round trip: v3 down-mapping of v5 fields, and errors.

use bytes::{Bytes, BytesMut};
use hermod_proto::*;

use crate::{encode, pid};

const V3: ProtocolVersion = ProtocolVersion::V311;

#[test]
fn connack_reasons_map_to_v3_return_codes() {
    let table = [
        (0x00, 0),
        (0x84, 1),
        (0x85, 2),
        (0x88, 3),
        (0x89, 3),
        (0x86, 4),
        (0x87, 5),
        (0x80, 3),
        (0x8A, 3),
        (0x9F, 3),
    ];
    for (v5, v3) in table {
        let p = Packet::ConnectAck(ConnectAck {
            reason: ReasonCode(v5),
            properties: ConnectAckProperties {
                reason_string: Some("dropped".into()),
                ..Default::default()
            },
            ..ConnectAck::default()
        });
        assert_eq!(encode(&p, V3), [0x20, 0x02, 0x00, v3], "reason 0x{v5:02X}");
    }
}

#[test]
fn suback_failures_become_0x80_in_v3() {
    let p = Packet::SubscribeAck(SubscribeAck {
        packet_id: pid(1),
        reasons: vec![
            ReasonCode(0),
            ReasonCode(1),
            ReasonCode(2),
            ReasonCode(0x8F),
            ReasonCode(0xA2),
        ],
        properties: AckProperties {
            reason_string: Some("dropped".into()),
            user_properties: vec![],
        },
    });
    assert_eq!(
        encode(&p, V3),
        [0x90, 0x07, 0x00, 0x01, 0x00, 0x01, 0x02, 0x80, 0x80]
    );
}

#[test]
fn v5_only_fields_are_dropped_in_v3() {
    let unsuback = Packet::UnsubscribeAck(UnsubscribeAck {
        packet_id: pid(2),
        reasons: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: AckProperties::default(),
    });
    assert_eq!(encode(&unsuback, V3), [0xB0, 0x02, 0x00, 0x02]);

    let disconnect = Packet::Disconnect(Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        properties: DisconnectProperties {
            reason_string: Some("bye".into()),
            ..Default::default()
        },
    });
    assert_eq!(encode(&disconnect, V3), [0xE0, 0x00]);

    let puback = Packet::PublishAck(PublishAck {
        reason: ReasonCode::QUOTA_EXCEEDED,
        ..PublishAck::new(pid(3))
    });
    assert_eq!(encode(&puback, V3), [0x40, 0x02, 0x00, 0x03]);

    let publish = Packet::Publish(Publish {
        topic: "t".into(),
        properties: PublishProperties {
            message_expiry_interval: Some(1),
            ..Default::default()
        },
        ..Publish::default()
    });
    assert_eq!(encode(&publish, V3), [0x30, 0x03, 0x00, 0x01, b't']);

    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: pid(4),
        filters: vec![(
            "a".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
        properties: SubscribeProperties {
            subscription_identifier: Some(9),
            user_properties: vec![],
        },
    });
    assert_eq!(
        encode(&subscribe, V3),
        [0x82, 0x06, 0x00, 0x04, 0x00, 0x01, b'a', 0x01]
    );
}

#[test]
fn dup_is_not_written_on_qos0() {
    let p = Packet::Publish(Publish {
        dup: true,
        topic: "t".into(),
        ..Publish::default()
    });
    assert_eq!(encode(&p, V3), [0x30, 0x03, 0x00, 0x01, b't']);
}

#[test]
fn auth_is_not_in_v3() {
    let p = Packet::Auth(Auth::default());
    let mut buf = BytesMut::new();
    assert_eq!(
        encode_packet(&p, V3, &mut buf),
        Err(EncodeError::NotInVersion)
    );
    assert!(buf.is_empty());
    assert_eq!(encoded_len(&p, V3), usize::MAX);
}

#[test]
fn qos1_publish_without_packet_id() {
    let p = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: "t".into(),
        ..Publish::default()
    });
    let mut buf = BytesMut::new();
    assert_eq!(
        encode_packet(&p, V3, &mut buf),
        Err(EncodeError::MissingPacketId)
    );
    assert!(buf.is_empty());
}

#[test]
fn field_too_long() {
    let long = "a".repeat(65_536);
    let p = Packet::Publish(Publish {
        topic: long.clone(),
        ..Publish::default()
    });
    let mut buf = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        encode_packet(&p, V3, &mut buf),
        Err(EncodeError::FieldTooLong)
    );
    assert_eq!(&buf[..], b"keep", "nothing appended on error");
    assert_eq!(encoded_len(&p, V3), usize::MAX);

    let p = Packet::Publish(Publish {
        topic: "a".repeat(65_535),
        ..Publish::default()
    });
    assert_eq!(encode(&p, V3).len(), 1 + 3 + 2 + 65_535);

    let p = Packet::Connect(Box::new(Connect {
        password: Some(Bytes::from(vec![0; 65_536])),
        ..Connect::default()
    }));
    assert_eq!(
        encode_packet(&p, V3, &mut BytesMut::new()),
        Err(EncodeError::FieldTooLong)
    );
    let p = Packet::Disconnect(Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: DisconnectProperties {
            reason_string: Some(long),
            ..Default::default()
        },
    });
    assert_eq!(
        encode_packet(&p, ProtocolVersion::V5, &mut BytesMut::new()),
        Err(EncodeError::FieldTooLong)
    );
}

#[test]
fn remaining_length_limit() {
    // 2 + 1 (topic "t") + payload = 268,435,455 exactly fits; one more byte does not. The zeroed
    // payload is never touched by the size computation, so the OS need not commit its pages.
    let payload = Bytes::from(vec![0u8; MAX_REMAINING_LENGTH - 3]);
    let p = Packet::Publish(Publish {
        topic: "t".into(),
        payload: payload.clone(),
        ..Publish::default()
    });
    assert_eq!(encoded_len(&p, V3), 1 + 4 + MAX_REMAINING_LENGTH);
    let p = Packet::Publish(Publish {
        topic: "tt".into(),
        payload,
        ..Publish::default()
    });
    assert_eq!(encoded_len(&p, V3), usize::MAX);
    assert_eq!(
        encode_packet(&p, V3, &mut BytesMut::new()),
        Err(EncodeError::TooLarge)
    );
}

#[test]
fn encode_appends() {
    let mut buf = BytesMut::from(&[0xAA][..]);
    encode_packet(&Packet::PingRequest, V3, &mut buf).unwrap();
    encode_packet(&Packet::PingResponse, V3, &mut buf).unwrap();
    assert_eq!(&buf[..], &[0xAA, 0xC0, 0x00, 0xD0, 0x00]);
}
