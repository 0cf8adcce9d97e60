//! Streaming: `decode_packet` consumes from a `BytesMut` that fills as the socket delivers, so the
//! packets and the error it reports must not depend on where the bytes were split. Checked on
//! valid and on mutated streams, at random split points and at every prefix.

use bytes::BytesMut;
use hermod_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::mutate::{encoded_stream, mutated_stream};
use crate::{MAX, Outcome, decode_all};

/// Feeds `bytes` in chunks cut at `cuts`, decoding after each chunk as a connection would, and
/// stops at the first error (the connection is closed then).
fn decode_chunked(bytes: &[u8], cuts: &[Index], version: ProtocolVersion, max: usize) -> Outcome {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut fed = 0;
    for p in points {
        buf.extend_from_slice(&bytes[fed..p]);
        fed = p;
        let out = decode_all(&mut buf, version, max);
        packets.extend(out.packets);
        if out.error.is_some() {
            let mut rest = out.rest;
            rest.extend_from_slice(&bytes[fed..]);
            return Outcome {
                packets,
                error: out.error,
                rest,
            };
        }
    }
    Outcome {
        packets,
        error: None,
        rest: buf.to_vec(),
    }
}

fn at_once(bytes: &[u8], version: ProtocolVersion, max: usize) -> Outcome {
    decode_all(&mut BytesMut::from(bytes), version, max)
}

proptest! {
    #![proptest_config(crate::fuzz_config(1500, 0x4845_524D_4F44_0003))]

    /// Valid streams split anywhere decode to the same packets, all of them, nothing left.
    #[test]
    fn valid_stream_split_anywhere(
        (v, bytes) in crate::generators::version().prop_flat_map(|v| (Just(v), encoded_stream(v))),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let whole = at_once(&bytes, v, MAX);
        prop_assert_eq!(&whole.error, &None);
        prop_assert!(whole.rest.is_empty());
        prop_assert!(!whole.packets.is_empty());
        prop_assert_eq!(decode_chunked(&bytes, &cuts, v, MAX), whole);
    }

    /// Mutated streams too: same packets, same first error, same bytes left, wherever the cuts.
    #[test]
    fn mutated_stream_split_anywhere(
        (v, bytes) in mutated_stream(),
        cuts in vec(any::<Index>(), 0..8),
        max in prop_oneof![Just(MAX), 0usize..120],
    ) {
        let whole = at_once(&bytes, v, max);
        prop_assert_eq!(decode_chunked(&bytes, &cuts, v, max), whole);
    }

    /// Every prefix of a buffer is either incomplete (nothing consumed) or already gives the
    /// first result the whole buffer gives: bytes that arrive later never change a verdict.
    #[test]
    fn every_prefix_agrees_with_the_whole((v, bytes) in mutated_stream()) {
        let mut whole = BytesMut::from(&bytes[..]);
        let first = decode_packet(&mut whole, v, MAX);
        let consumed = bytes.len() - whole.len();
        for cut in 0..=bytes.len() {
            let mut prefix = BytesMut::from(&bytes[..cut]);
            match decode_packet(&mut prefix, v, MAX) {
                Ok(None) => prop_assert_eq!(prefix.len(), cut, "incomplete, yet consumed"),
                got => {
                    prop_assert_eq!(&got, &first, "prefix of {} bytes", cut);
                    prop_assert_eq!(cut - prefix.len(), consumed);
                }
            }
        }
    }
}
