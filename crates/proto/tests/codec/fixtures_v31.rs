//! MQTT 3.1 fixtures: CONNECT with the `MQIsdp` protocol name, and CONNACK whose first byte is reserved.

use bytes::Bytes;
use hermod_proto::{Connect, ConnectAck, Packet, ProtocolVersion, ReasonCode};

use crate::check_fixture;

#[test]
fn connect_v31() {
    #[rustfmt::skip]
    let bytes = [
        0x10,                                     // CONNECT, flags 0000
        0x18,                                     // remaining length 24
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name "MQIsdp"
        0x03,                                     // protocol level 3
        0xC2,                                     // user name | password | clean session
        0x00, 0x0A,                               // keep alive 10 s
        0x00, 0x03, b'o', b'l', b'd',             // client id "old"
        0x00, 0x01, b'u',                         // user name "u"
        0x00, 0x02, b'p', b'w',                   // password "pw"
    ];
    let expected = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V31,
        clean_start: true,
        keep_alive: 10,
        client_id: "old".into(),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"pw")),
        ..Connect::default()
    }));
    // A CONNECT is decoded by its own name and level whatever version the caller assumed.
    for version in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        assert_eq!(
            hermod_proto::decode_packet(&mut buf, version, crate::MAX),
            Ok(Some(expected.clone()))
        );
    }
    // ...and encoded by `connect.protocol`, not by the version argument.
    assert_eq!(crate::encode(&expected, ProtocolVersion::V5), bytes);
    check_fixture(ProtocolVersion::V31, &bytes, &expected);
}

#[test]
fn connack_v31() {
    #[rustfmt::skip]
    let bytes = [
        0x20, 0x02, // CONNACK, remaining length 2
        0x00,       // reserved byte (no session-present flag in 3.1)
        0x02,       // return code 2: identifier rejected
    ];
    let expected = Packet::ConnectAck(ConnectAck {
        reason: ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        ..ConnectAck::default()
    });
    check_fixture(ProtocolVersion::V31, &bytes, &expected);
    // session_present cannot be expressed in 3.1: it is not written.
    let with_session = Packet::ConnectAck(ConnectAck {
        session_present: true,
        ..ConnectAck::default()
    });
    assert_eq!(
        crate::encode(&with_session, ProtocolVersion::V31),
        [0x20, 0x02, 0x00, 0x00]
    );
}
