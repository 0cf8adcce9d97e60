//! The spec's reaction to generated malformed input, checked exactly (not just "no panic"):
//! the fixed header's size limit and remaining length, fixed-header flags, UTF-8 strings and
//! packet identifiers, each on generated packets of every version.

use bytes::BytesMut;
use hermod_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::generators::{packet, version};
use crate::{MAX, frame, split_packet, varint};

fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_packet(p, v, &mut buf).unwrap();
    buf.to_vec()
}

fn version_and_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

/// The verdict of the fixed-header rules alone, written from the spec: `true` when the first
/// byte is acceptable for `version` [2.1.2, MQTT-2.2.2-1, MQTT-3.3.1-2, MQTT-3.3.1-4].
fn first_byte_ok(b: u8, version: ProtocolVersion) -> bool {
    let (kind, flags) = (b >> 4, b & 0x0F);
    match kind {
        0 => false,                                         // [2.1.2] reserved
        15 => version == ProtocolVersion::V5 && flags == 0, // AUTH is v5 only
        3 => {
            let qos = (flags >> 1) & 0x03;
            qos != 3 && !(qos == 0 && flags & 0x08 != 0)
        }
        6 | 8 | 10 => flags == 0b0010,
        _ => flags == 0,
    }
}

/// Every first byte in every version, with a remaining length whose body has not arrived: a bad
/// type or bad flags is a Malformed Packet (0x81) from the fixed header alone, nothing consumed;
/// a good one waits for the body [MQTT-2.2.2-2: "If invalid flags are received it is a
/// Malformed Packet"].
#[test]
fn fixed_header_first_byte_table() {
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        for b in 0..=255u8 {
            let bytes = [b, 0x7F];
            let mut buf = BytesMut::from(&bytes[..]);
            let got = decode_packet(&mut buf, v, MAX);
            if first_byte_ok(b, v) {
                assert_eq!(got, Ok(None), "{v:?} first byte {b:#04X}");
            } else {
                assert!(
                    matches!(&got, Err(e) if e.reason_code() == ReasonCode::MALFORMED_PACKET),
                    "{v:?} first byte {b:#04X}: {got:?}"
                );
            }
            assert_eq!(&buf[..], &bytes[..], "nothing consumed");
        }
    }
}

proptest! {
    #![proptest_config(crate::fuzz_config(2000, 0x4845_524D_4F44_0005))]

    /// A packet larger than the maximum packet size is refused with 0x95 from its fixed header
    /// alone, before the body is buffered; one that fits waits for its body, then decodes
    /// [3.2.2.3.6 / MQTT-3.1.2-24: the limit counts the whole packet, fixed header included].
    #[test]
    fn size_limit_is_checked_from_the_fixed_header((v, p) in version_and_packet(), slack in -8isize..8) {
        let bytes = encode(&p, v);
        let (_, header, _) = split_packet(&bytes);
        let max = bytes.len().saturating_add_signed(slack);
        let mut head = BytesMut::from(&bytes[..header]);
        let got = decode_packet(&mut head, v, max);
        if bytes.len() > max {
            prop_assert_eq!(&got, &Err(DecodeError::PacketTooLarge { size: bytes.len(), max }));
            prop_assert_eq!(got.unwrap_err().reason_code(), ReasonCode::PACKET_TOO_LARGE);
        } else {
            // A packet with an empty body is complete with its header.
            let want = if header == bytes.len() { Ok(Some(p.clone())) } else { Ok(None) };
            prop_assert_eq!(got, want);
            let mut whole = BytesMut::from(&bytes[..]);
            prop_assert_eq!(decode_packet(&mut whole, v, max), Ok(Some(p)));
        }
    }

    /// A remaining length whose fourth byte still has the continuation bit is a Malformed Packet
    /// (0x81), whatever the first byte and the limit, as soon as those 4 bytes are there [1.5.5:
    /// "The maximum number of bytes in the Variable Byte Integer field is four"].
    #[test]
    fn five_byte_remaining_length_is_malformed(
        first in any::<u8>(),
        length in vec(0x80u8..=0xFF, 4),
        tail in vec(any::<u8>(), 0..4),
        v in version(),
        max in prop_oneof![Just(MAX), 0usize..10],
    ) {
        let bytes = [vec![first], length, tail].concat();
        let mut buf = BytesMut::from(&bytes[..]);
        let got = decode_packet(&mut buf, v, max);
        prop_assert!(matches!(&got, Err(DecodeError::Malformed(_))), "{:?}", got);
        prop_assert_eq!(got.unwrap_err().reason_code(), ReasonCode::MALFORMED_PACKET);
        prop_assert_eq!(buf.len(), bytes.len(), "nothing consumed");
    }

    /// A declared remaining length longer than what has arrived is awaited (never an error and
    /// never a guess), whatever its value up to 268,435,455 and even non-minimally encoded
    /// (the spec obliges senders to be minimal [MQTT-1.5.5-1], the receiver may accept).
    #[test]
    fn long_declared_length_waits(
        (v, p) in version_and_packet(),
        extra in prop_oneof![1usize..300, 1usize..268_000_000],
    ) {
        let bytes = encode(&p, v);
        let (first, _, body) = split_packet(&bytes);
        let declared = (body.len() + extra).min(hermod_proto::MAX_REMAINING_LENGTH);
        prop_assume!(declared > body.len());
        let mut grown = vec![first];
        grown.extend(varint(declared));
        grown.extend_from_slice(body);
        let mut buf = BytesMut::from(&grown[..]);
        prop_assert_eq!(decode_packet(&mut buf, v, usize::MAX), Ok(None));
        prop_assert_eq!(buf.len(), grown.len());
    }

    /// A PUBLISH topic made of arbitrary bytes gets exactly the spec's verdict: ill-formed UTF-8
    /// [MQTT-1.5.4-1] or U+0000 [MQTT-1.5.4-2] is a Malformed Packet (0x81); a wildcard in a
    /// topic name [MQTT-3.3.2-2] is Topic Name invalid (0x90); anything else is accepted as is.
    #[test]
    fn publish_topic_bytes_get_the_spec_verdict(
        topic in prop_oneof![
            vec(any::<u8>(), 1..8),
            "[a-z+#/\u{0}é€😀]{1,6}".prop_map(String::into_bytes),
        ],
        qos in 0u8..3,
        v in version(),
        payload in vec(any::<u8>(), 0..4),
    ) {
        let mut body = u16::try_from(topic.len()).unwrap().to_be_bytes().to_vec();
        body.extend(&topic);
        if qos > 0 {
            body.extend([0x00, 0x07]);
        }
        if v == ProtocolVersion::V5 {
            body.push(0x00);
        }
        body.extend(&payload);
        let bytes = frame(0x30 | (qos << 1), &body);
        let got = decode_packet(&mut BytesMut::from(&bytes[..]), v, MAX);
        let want = match std::str::from_utf8(&topic) {
            Err(_) => Some(ReasonCode::MALFORMED_PACKET),
            Ok(s) if s.contains('\0') => Some(ReasonCode::MALFORMED_PACKET),
            Ok(s) if s.contains(['+', '#']) => Some(ReasonCode::TOPIC_NAME_INVALID),
            Ok(_) => None,
        };
        match (want, got) {
            (Some(code), Err(e)) => prop_assert_eq!(e.reason_code(), code, "{}", e),
            (None, Ok(Some(Packet::Publish(p)))) => {
                prop_assert_eq!(p.topic.as_bytes(), &topic[..]);
                prop_assert_eq!(&p.payload[..], &payload[..]);
            }
            (want, got) => return Err(TestCaseError::fail(format!("want {want:?}, got {got:?}"))),
        }
    }

    /// The same rules for the other strings: the CONNECT client identifier and user name, and
    /// a SUBSCRIBE filter (filters are not topic names: wildcards are the broker's to judge).
    #[test]
    fn other_string_fields_get_the_utf8_verdict(
        text in prop_oneof![vec(any::<u8>(), 0..8), "[a-z+#\u{0}é😀]{0,6}".prop_map(String::into_bytes)],
        field in 0u8..3,
        v5 in any::<bool>(),
    ) {
        let v = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
        let string = [u16::try_from(text.len()).unwrap().to_be_bytes().to_vec(), text.clone()].concat();
        let props: &[u8] = if v5 { &[0x00] } else { &[] };
        let bytes = match field {
            0 | 1 => {
                // CONNECT: client id `text` (field 0) or user name `text` (field 1).
                let flags = if field == 1 { 0x82 } else { 0x02 };
                let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', v.level(), flags, 0x00, 0x3C];
                body.extend(props);
                if field == 0 {
                    body.extend(&string);
                } else {
                    body.extend([0x00, 0x01, b'c']);
                    body.extend(&string);
                }
                frame(0x10, &body)
            }
            _ => {
                let mut body = vec![0x00, 0x01];
                body.extend(props);
                body.extend(&string);
                body.push(0x01);
                frame(0x82, &body)
            }
        };
        let got = decode_packet(&mut BytesMut::from(&bytes[..]), v, MAX);
        let well_formed = std::str::from_utf8(&text).is_ok_and(|s| !s.contains('\0'));
        if well_formed {
            prop_assert!(matches!(got, Ok(Some(_))), "{:?}", got);
        } else {
            prop_assert!(
                matches!(&got, Err(e) if e.reason_code() == ReasonCode::MALFORMED_PACKET),
                "{:?}", got
            );
        }
    }

    /// Packet identifier 0 in any packet that carries one is a Protocol Error (0x82)
    /// [MQTT-2.2.1-3].
    #[test]
    fn packet_identifier_zero_is_a_protocol_error((v, p) in version_and_packet()) {
        let offset = match &p {
            Packet::Publish(pb) if pb.qos != QoS::AtMostOnce => 2 + pb.topic.len(),
            Packet::PublishAck(_)
            | Packet::PublishReceived(_)
            | Packet::PublishRelease(_)
            | Packet::PublishComplete(_)
            | Packet::Subscribe(_)
            | Packet::SubscribeAck(_)
            | Packet::Unsubscribe(_)
            | Packet::UnsubscribeAck(_) => 0,
            _ => return Ok(()),
        };
        let mut bytes = encode(&p, v);
        let (_, header, _) = split_packet(&bytes);
        bytes[header + offset] = 0;
        bytes[header + offset + 1] = 0;
        let got = decode_packet(&mut BytesMut::from(&bytes[..]), v, MAX);
        prop_assert!(matches!(&got, Err(DecodeError::Protocol(_))), "{:?}", got);
    }
}
