//! Helpers of the randomised tests, shared with the allocation-bound binary (`tests/alloc`),
//! which includes this file with `#[path]`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use bytes::BytesMut;
use hermod_proto::{DecodeError, Packet, ProtocolVersion, decode_packet};
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// Configuration of the randomised tests: a fixed number of cases and a fixed seed, so a CI run
/// takes a known time and replays the same inputs (a failing input is also saved under
/// `proptest-regressions/`). `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=<n>` explore further by hand.
pub(crate) fn fuzz_config(cases: u32, seed: u64) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if matches!(config.rng_seed, RngSeed::Random) {
        config.rng_seed = RngSeed::Fixed(seed);
    }
    config
}

/// What decoding a buffer to its end gives: the packets, then the first error or `None` when
/// the rest is an incomplete packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) packets: Vec<Packet>,
    pub(crate) error: Option<DecodeError>,
    /// Bytes left in the buffer.
    pub(crate) rest: Vec<u8>,
}

/// Decodes packets from `buf` until it needs more bytes or fails. Every success must consume
/// bytes (else the loop could spin); an error ends the connection, so decoding stops there.
pub(crate) fn decode_all(buf: &mut BytesMut, version: ProtocolVersion, max: usize) -> Outcome {
    let mut packets = Vec::new();
    loop {
        let before = buf.len();
        match decode_packet(buf, version, max) {
            Ok(Some(p)) => {
                assert!(buf.len() < before, "a decoded packet consumed nothing");
                packets.push(p);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return Outcome {
                    packets,
                    error: None,
                    rest: buf.to_vec(),
                };
            }
            Err(e) => {
                return Outcome {
                    packets,
                    error: Some(e),
                    rest: buf.to_vec(),
                };
            }
        }
    }
}

/// A minimal variable byte integer (1.5.5).
pub(crate) fn varint(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = u8::try_from(v % 128).unwrap();
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            return out;
        }
    }
}

/// Reads a variable byte integer: (value, bytes used), `None` if incomplete or longer than 4.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A fixed header plus `body`.
pub(crate) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    v.extend(varint(body.len()));
    v.extend_from_slice(body);
    v
}

/// Splits an encoded packet into its first byte, header length and body.
pub(crate) fn split_packet(bytes: &[u8]) -> (u8, usize, &[u8]) {
    let (len, used) = read_varint(&bytes[1..]).unwrap();
    let header = 1 + used;
    (bytes[0], header, &bytes[header..header + len])
}
