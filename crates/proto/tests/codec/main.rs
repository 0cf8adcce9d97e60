//! Codec tests against the public API: annotated byte fixtures per version, a malformed-input
//! table, incomplete-input handling, and property tests (round trip, never panic, structure-aware
//! mutations, streaming, the spec's reaction to generated malformed input).
#![allow(clippy::unwrap_used)]

mod encode_only;
mod fixtures_v31;
mod fixtures_v311;
mod fixtures_v5;
mod generators;
mod malformed;
mod mutate;
mod mutations;
mod properties;
mod reactions;
mod roundtrip;
mod streaming;
mod support;

use bytes::BytesMut;
use hermod_proto::{Packet, PacketId, ProtocolVersion, decode_packet, encode_packet, encoded_len};

pub(crate) use support::*;

/// Generous limit for tests that are not about the maximum packet size.
pub(crate) const MAX: usize = 1 << 20;

pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// Checks one fixture both ways:
/// - decoding `bytes` yields `expected` and consumes exactly `bytes`, even with a following packet
///   already buffered;
/// - every strict prefix decodes to `Ok(None)` and consumes nothing;
/// - encoding `expected` yields `bytes`, and `encoded_len` agrees.
pub(crate) fn check_fixture(version: ProtocolVersion, bytes: &[u8], expected: &Packet) {
    let mut buf = BytesMut::from(bytes);
    buf.extend_from_slice(&[0xC0, 0x00]); // a PINGREQ right behind it
    let got = decode_packet(&mut buf, version, MAX)
        .unwrap_or_else(|e| panic!("decode {expected:?}: {e}"));
    assert_eq!(got.as_ref(), Some(expected), "decode");
    assert_eq!(
        &buf[..],
        &[0xC0, 0x00],
        "decode must consume exactly one packet"
    );

    for cut in 0..bytes.len() {
        let mut prefix = BytesMut::from(&bytes[..cut]);
        assert_eq!(
            decode_packet(&mut prefix, version, MAX),
            Ok(None),
            "prefix of {cut} bytes"
        );
        assert_eq!(
            &prefix[..],
            &bytes[..cut],
            "prefix of {cut} bytes must not be consumed"
        );
    }

    let mut out = BytesMut::new();
    encode_packet(expected, version, &mut out).unwrap();
    assert_eq!(&out[..], bytes, "encode");
    assert_eq!(encoded_len(expected, version), bytes.len(), "encoded_len");
}

/// Decodes a whole packet that must be valid.
pub(crate) fn decode_one(version: ProtocolVersion, bytes: &[u8]) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let p = decode_packet(&mut buf, version, MAX).unwrap().unwrap();
    assert!(buf.is_empty());
    p
}

/// Encodes a packet that must be encodable, checking `encoded_len` on the way.
pub(crate) fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_packet(packet, version, &mut out).unwrap();
    assert_eq!(encoded_len(packet, version), out.len());
    out.to_vec()
}
