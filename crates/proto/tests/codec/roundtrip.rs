//! Property tests: every generated packet survives encode → decode unchanged, `encoded_len`
//! matches the bytes written, and the decoder never panics on arbitrary or mutated input.

use bytes::BytesMut;
use hermod_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::MAX;
use crate::generators::{packet, version};

fn roundtrip(p: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    encode_packet(p, version, &mut buf).map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    prop_assert_eq!(encoded_len(p, version), buf.len());
    let bytes = buf.clone();
    let decoded = decode_packet(&mut buf, version, MAX);
    prop_assert_eq!(decoded, Ok(Some(p.clone())), "bytes {:02X?}", &bytes[..]);
    prop_assert!(buf.is_empty());
    Ok(())
}

/// A PUBLISH encoded from borrowed parts (`encode_publish`) is byte for byte the packet's
/// encoding, and `encoded_publish_len` its length.
fn publish_view_matches(p: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let Packet::Publish(publish) = p else {
        return Ok(());
    };
    let mut whole = BytesMut::new();
    let mut parts = BytesMut::new();
    let a = encode_packet(p, version, &mut whole);
    let b = encode_publish(&publish.view(), version, &mut parts);
    prop_assert_eq!(a.is_ok(), b.is_ok());
    prop_assert_eq!(&whole[..], &parts[..]);
    prop_assert_eq!(
        encoded_len(p, version),
        encoded_publish_len(&publish.view(), version)
    );
    Ok(())
}

proptest! {
    #![proptest_config(crate::fuzz_config(1000, 0x4845_524D_4F44_0001))]

    #[test]
    fn publish_from_parts_v311(p in packet(ProtocolVersion::V311)) {
        publish_view_matches(&p, ProtocolVersion::V311)?;
    }

    #[test]
    fn publish_from_parts_v5(p in packet(ProtocolVersion::V5)) {
        publish_view_matches(&p, ProtocolVersion::V5)?;
    }

    #[test]
    fn roundtrip_v311(p in packet(ProtocolVersion::V311)) {
        roundtrip(&p, ProtocolVersion::V311)?;
    }

    #[test]
    fn roundtrip_v31(p in packet(ProtocolVersion::V31)) {
        roundtrip(&p, ProtocolVersion::V31)?;
    }

    #[test]
    fn roundtrip_v5(p in packet(ProtocolVersion::V5)) {
        roundtrip(&p, ProtocolVersion::V5)?;
    }

    /// Arbitrary bytes, any version, small maximum: decoding never panics, and a success
    /// consumes a non-empty prefix.
    #[test]
    fn decode_never_panics(bytes in vec(any::<u8>(), 0..64), version in version(), max in 0usize..96) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_packet(&mut buf, version, max) {
            prop_assert!(buf.len() < bytes.len());
        }
    }

    /// Valid encodings with a few bytes overwritten reach deep into the body parsers.
    #[test]
    fn decode_never_panics_on_mutated_packets(
        p in packet(ProtocolVersion::V5),
        version in version(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = BytesMut::new();
        encode_packet(&p, ProtocolVersion::V5, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, b) in edits {
            let i = i.index(buf.len());
            buf[i] = b;
        }
        let keep = cut.index(buf.len() + 1);
        buf.truncate(keep);
        while let Ok(Some(_)) = decode_packet(&mut buf, version, MAX) {}
    }
}
