//! Malformed and forbidden input: each case names the rule it breaks and expects one exact
//! `DecodeError` variant (the message text is free, the variant is not).

use bytes::BytesMut;
use hermod_proto::{DecodeError, ProtocolVersion, decode_packet};

use crate::MAX;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Which `DecodeError` variant a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Malformed,
    Protocol,
    TopicNameInvalid,
    InvalidProtocolName,
    Unsupported(u8),
    TooLarge { size: usize, max: usize },
}

fn kind(e: &DecodeError) -> Kind {
    match e {
        DecodeError::Malformed(_) => Kind::Malformed,
        DecodeError::Protocol(_) => Kind::Protocol,
        DecodeError::TopicNameInvalid(_) => Kind::TopicNameInvalid,
        DecodeError::InvalidProtocolName => Kind::InvalidProtocolName,
        DecodeError::UnsupportedProtocolVersion(l) => Kind::Unsupported(*l),
        DecodeError::PacketTooLarge { size, max } => Kind::TooLarge {
            size: *size,
            max: *max,
        },
    }
}

/// A v3.1.1 CONNECT with the given flags byte and payload after the (empty) client id.
fn connect_v3(flags: u8, tail: &[u8]) -> Vec<u8> {
    let mut body = vec![
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x00, 0x00, 0x00,
    ];
    body.extend_from_slice(tail);
    with_header(0x10, &body)
}

/// A v5 CONNECT whose connect properties are `props` (without the length byte).
fn connect_v5_props(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x00];
    body.push(u8::try_from(props.len()).unwrap());
    body.extend_from_slice(props);
    body.extend_from_slice(&[0x00, 0x00]); // empty client id
    with_header(0x10, &body)
}

/// Prefixes `body` with a fixed header (body shorter than 128 bytes).
fn with_header(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first, u8::try_from(body.len()).unwrap()];
    v.extend_from_slice(body);
    v
}

#[rustfmt::skip]
fn cases() -> Vec<(&'static str, ProtocolVersion, usize, Vec<u8>, Kind)> {
    use Kind::*;
    vec![
        // --- fixed header ---
        ("[1.5.5] remaining length of 5 bytes", V3, MAX, vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], Malformed),
        ("[3.1.2.24] oversized packet refused from the fixed header alone", V3, 1000,
            vec![0x30, 0xFF, 0x7F], TooLarge { size: 16_386, max: 1000 }),
        ("size limit counts the fixed header too", V5, 4, vec![0x30, 0x03], TooLarge { size: 5, max: 4 }),
        ("[2.1.2] packet type 0", V3, MAX, vec![0x00, 0x00], Malformed),
        ("[2.1.2] AUTH in 3.1.1", V3, MAX, vec![0xF0, 0x00], Malformed),
        ("[MQTT-2.2.2-1] PUBREL flags 0000", V3, MAX, vec![0x60, 0x02, 0x00, 0x01], Malformed),
        ("[MQTT-2.2.2-1] SUBSCRIBE flags 0000", V3, MAX, vec![0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], Malformed),
        ("[MQTT-2.2.2-1] UNSUBSCRIBE flags 0011", V3, MAX, vec![0xA3, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], Malformed),
        ("[MQTT-2.2.2-1] PINGREQ flags 0001", V3, MAX, vec![0xC1, 0x00], Malformed),
        ("[MQTT-2.2.2-1] PUBACK flags 0010", V5, MAX, vec![0x42, 0x02, 0x00, 0x01], Malformed),
        ("[MQTT-3.3.1-4] PUBLISH QoS 3", V3, MAX, vec![0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01], Malformed),
        ("[MQTT-3.3.1-2] DUP on QoS 0", V3, MAX, vec![0x38, 0x03, 0x00, 0x01, b'a'], Malformed),
        // --- lengths ---
        ("[2.1.4] truncated body: topic longer than the packet", V3, MAX, vec![0x30, 0x02, 0x00, 0x05], Malformed),
        ("[2.1.4] truncated body: QoS 1 without packet id", V3, MAX, vec![0x32, 0x03, 0x00, 0x01, b'a'], Malformed),
        ("[2.1.4] trailing garbage after PINGREQ", V3, MAX, vec![0xC0, 0x01, 0x00], Malformed),
        ("[3.4.2] 3.1.1 PUBACK longer than 2", V3, MAX, vec![0x40, 0x03, 0x00, 0x01, 0x00], Malformed),
        ("[3.11.2] 3.1.1 UNSUBACK with a payload", V3, MAX, vec![0xB0, 0x03, 0x00, 0x01, 0x00], Malformed),
        ("[3.14] 3.1.1 DISCONNECT with a body", V3, MAX, vec![0xE0, 0x01, 0x00], Malformed),
        ("[2.2.2.1] property length past the packet end", V5, MAX, vec![0x30, 0x04, 0x00, 0x01, b'a', 0x05], Malformed),
        ("[1.5.5] property length of 5 bytes", V5, MAX,
            vec![0x30, 0x08, 0x00, 0x01, b'a', 0x80, 0x80, 0x80, 0x80, 0x01], Malformed),
        // --- strings ---
        ("[MQTT-1.5.4-1] invalid UTF-8", V3, MAX, vec![0x30, 0x03, 0x00, 0x01, 0xFF], Malformed),
        ("[MQTT-1.5.4-1] UTF-16 surrogate encoded in UTF-8", V3, MAX,
            vec![0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80], Malformed),
        ("[MQTT-1.5.4-1] overlong encoding of '/'", V3, MAX, vec![0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF], Malformed),
        ("[MQTT-1.5.4-2] U+0000 in a topic", V3, MAX, vec![0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'], Malformed),
        ("[MQTT-1.5.4-2] U+0000 in a subscription filter", V3, MAX,
            vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00], Malformed),
        // --- topics ---
        ("[MQTT-3.3.2-2] wildcard + in topic name", V3, MAX, vec![0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'], TopicNameInvalid),
        ("[MQTT-3.3.2-2] wildcard # in topic name", V5, MAX, vec![0x30, 0x04, 0x00, 0x01, b'#', 0x00], TopicNameInvalid),
        ("[MQTT-4.7.3-1] empty topic in 3.1.1", V3, MAX, vec![0x30, 0x02, 0x00, 0x00], TopicNameInvalid),
        ("[3.3.2.3.4] empty topic without topic alias in v5", V5, MAX, vec![0x30, 0x03, 0x00, 0x00, 0x00], Protocol),
        // --- packet ids ---
        ("[MQTT-2.2.1-3] packet id 0 in PUBLISH QoS 1", V3, MAX, vec![0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00], Protocol),
        ("[MQTT-2.2.1-3] packet id 0 in PUBACK", V3, MAX, vec![0x40, 0x02, 0x00, 0x00], Protocol),
        ("[MQTT-2.2.1-3] packet id 0 in PUBREL", V5, MAX, vec![0x62, 0x02, 0x00, 0x00], Protocol),
        ("[MQTT-2.2.1-3] packet id 0 in SUBSCRIBE", V3, MAX, vec![0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], Protocol),
        ("[MQTT-2.2.1-3] packet id 0 in UNSUBACK", V3, MAX, vec![0xB0, 0x02, 0x00, 0x00], Protocol),
        // --- properties ---
        ("[MQTT-2.2.2-2] duplicate message expiry interval", V5, MAX,
            vec![0x30, 0x0E, 0x00, 0x01, b'a', 0x0A, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2], Protocol),
        ("[3.8.2.1.2] duplicate subscription identifier in SUBSCRIBE", V5, MAX,
            vec![0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00], Protocol),
        ("[2.2.2.2] session expiry interval not allowed in PUBLISH", V5, MAX,
            vec![0x30, 0x09, 0x00, 0x01, b'a', 0x05, 0x11, 0, 0, 0, 1], Malformed),
        ("[2.2.2.2] topic alias not allowed in a will", V5, MAX,
            with_header(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x03, 0x23, 0x00, 0x01, 0x00, 0x01, b't', 0x00, 0x00]), Malformed),
        ("[2.2.2.2] unknown property identifier 0x7F", V5, MAX, vec![0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x7F, 0x00], Malformed),
        ("[3.1.2.11.3] receive maximum 0", V5, MAX, connect_v5_props(&[0x21, 0x00, 0x00]), Protocol),
        ("[3.1.2.11.4] maximum packet size 0", V5, MAX, connect_v5_props(&[0x27, 0, 0, 0, 0]), Protocol),
        ("[3.1.2.11.7] request problem information 2", V5, MAX, connect_v5_props(&[0x17, 0x02]), Protocol),
        ("[3.3.2.3.2] payload format indicator 2", V5, MAX, vec![0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x01, 0x02], Protocol),
        ("[3.8.2.1.2] subscription identifier 0", V5, MAX,
            vec![0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b'a', 0x00], Protocol),
        // --- CONNECT ---
        ("[MQTT-3.1.2-1] unknown protocol name", V3, MAX,
            with_header(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'X', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00]), InvalidProtocolName),
        ("[MQTT-3.1.2-2] MQTT level 3", V3, MAX,
            with_header(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x03, 0x02, 0x00, 0x00, 0x00, 0x00]), Unsupported(3)),
        ("[MQTT-3.1.2-2] MQTT level 6", V5, MAX,
            with_header(0x10, &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x00, 0x00, 0x00]), Unsupported(6)),
        ("[MQTT-3.1.2-3] reserved connect flag", V3, MAX, connect_v3(0x03, &[]), Malformed),
        ("[MQTT-3.1.2-14] will QoS 3", V3, MAX, connect_v3(0x1C, &[0x00, 0x01, b't', 0x00, 0x00]), Malformed),
        ("[MQTT-3.1.2-13] will QoS without will flag", V3, MAX, connect_v3(0x08, &[]), Malformed),
        ("[MQTT-3.1.2-15] will retain without will flag", V3, MAX, connect_v3(0x20, &[]), Malformed),
        ("[MQTT-3.1.2-22] password without user name in 3.1.1", V3, MAX, connect_v3(0x40, &[0x00, 0x00]), Malformed),
        ("[MQTT-3.1.3-11] wildcard in will topic", V3, MAX,
            connect_v3(0x04, &[0x00, 0x03, b'a', b'/', b'#', 0x00, 0x00]), TopicNameInvalid),
        // --- CONNACK ---
        ("[MQTT-3.2.2-1] 3.1.1 CONNACK reserved flag", V3, MAX, vec![0x20, 0x02, 0x02, 0x00], Malformed),
        ("[3.2.2.3] 3.1.1 CONNACK return code 6", V3, MAX, vec![0x20, 0x02, 0x00, 0x06], Malformed),
        ("[3.2.2] 3.1 CONNACK reserved byte not 0", ProtocolVersion::V31, MAX, vec![0x20, 0x02, 0x01, 0x00], Malformed),
        ("[3.2.2.2] v5 CONNACK reason 0x04", V5, MAX, vec![0x20, 0x03, 0x00, 0x04, 0x00], Protocol),
        // --- acks ---
        ("[3.4.2.1] PUBACK reason 0x92", V5, MAX, vec![0x40, 0x03, 0x00, 0x01, 0x92], Protocol),
        ("[3.6.2.1] PUBREL reason 0x10", V5, MAX, vec![0x62, 0x03, 0x00, 0x01, 0x10], Protocol),
        ("[MQTT-3.9.3-2] 3.1.1 SUBACK return code 0x03", V3, MAX, vec![0x90, 0x03, 0x00, 0x01, 0x03], Malformed),
        ("[3.9.3] v5 SUBACK reason 0x04", V5, MAX, vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x04], Protocol),
        ("[3.11.3] v5 UNSUBACK reason 0x01", V5, MAX, vec![0xB0, 0x04, 0x00, 0x01, 0x00, 0x01], Protocol),
        // --- SUBSCRIBE / UNSUBSCRIBE ---
        ("[MQTT-3.8.3-3] SUBSCRIBE without filters", V3, MAX, vec![0x82, 0x02, 0x00, 0x01], Protocol),
        ("[MQTT-3.8.3-3] v5 SUBSCRIBE without filters", V5, MAX, vec![0x82, 0x03, 0x00, 0x01, 0x00], Protocol),
        ("[MQTT-3.8.3-4] 3.1.1 subscription options upper bits", V3, MAX,
            vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04], Malformed),
        ("[3.8.3.1] subscription QoS 3", V3, MAX, vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03], Malformed),
        ("[MQTT-3.8.3-5] v5 subscription options bit 6", V5, MAX,
            vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40], Malformed),
        ("[3.8.3.1] retain handling 3", V5, MAX, vec![0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30], Protocol),
        ("[2.1.4] SUBSCRIBE filter without options byte", V3, MAX, vec![0x82, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], Malformed),
        ("[MQTT-3.10.3-2] UNSUBSCRIBE without filters", V3, MAX, vec![0xA2, 0x02, 0x00, 0x01], Protocol),
        // --- DISCONNECT / AUTH ---
        ("[3.14.2.1] v5 DISCONNECT reason 0x01", V5, MAX, vec![0xE0, 0x01, 0x01], Protocol),
        ("[3.15.2.1] AUTH reason 0x80", V5, MAX, vec![0xF0, 0x02, 0x80, 0x00], Protocol),
        ("[3.15.2.2] AUTH reason without property length", V5, MAX, vec![0xF0, 0x01, 0x18], Malformed),
        ("[2.2.2.2] will delay interval not allowed in AUTH", V5, MAX,
            vec![0xF0, 0x07, 0x18, 0x05, 0x18, 0, 0, 0, 1], Malformed),
    ]
}

#[test]
fn malformed_table() {
    let cases = cases();
    assert!(cases.len() >= 30);
    for (rule, version, max, bytes, want) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        match decode_packet(&mut buf, version, max) {
            Err(e) => assert_eq!(kind(&e), want, "{rule}: got {e}"),
            Ok(p) => panic!("{rule}: expected {want:?}, decoded {p:?}"),
        }
        // A fixed-header error consumes nothing; a body error has consumed exactly the packet.
        assert!(
            buf.is_empty() || buf[..] == bytes[..],
            "{rule}: consumed part of a packet"
        );
    }
}

/// The error messages name their rule, so a log line points at the spec.
#[test]
fn messages_cite_the_rule() {
    for (rule, version, max, bytes, _) in cases() {
        let mut buf = BytesMut::from(&bytes[..]);
        if let Err(
            DecodeError::Malformed(m) | DecodeError::Protocol(m) | DecodeError::TopicNameInvalid(m),
        ) = decode_packet(&mut buf, version, max)
        {
            assert!(m.starts_with('['), "{rule}: message {m:?} cites no rule");
        }
    }
}

#[test]
fn too_large_checked_before_body_arrives() {
    // Exactly at the limit is accepted (the body is then awaited), one byte over is refused.
    let mut buf = BytesMut::from(&[0x30, 0x03][..]);
    assert_eq!(decode_packet(&mut buf, V3, 5), Ok(None));
    assert!(matches!(
        decode_packet(&mut buf, V3, 4),
        Err(DecodeError::PacketTooLarge { size: 5, max: 4 })
    ));
}

#[test]
fn fourth_length_byte_with_continuation_is_refused_without_a_fifth() {
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x80][..]);
    assert!(matches!(
        decode_packet(&mut buf, V3, MAX),
        Err(DecodeError::Malformed(_))
    ));
    // Three continuation bytes are still an incomplete header.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80][..]);
    assert_eq!(decode_packet(&mut buf, V3, MAX), Ok(None));
}
