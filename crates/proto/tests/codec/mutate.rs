//! Structure-aware mutation of encoded packet streams (bits, bytes, lengths, whole ranges) and
//! the checks every decode of untrusted bytes must pass. Shared with the allocation-bound binary
//! (`tests/alloc`), which includes this file with `#[path]`.
#![allow(dead_code, unreachable_pub)]

use bytes::BytesMut;
use hermod_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::MAX;
use crate::generators::{packet, version};
use crate::support::{decode_all, read_varint, varint};

/// One edit of an encoded byte stream.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, u8),
    /// Copies `len` bytes from the first index to the second (duplicated fields, properties).
    Duplicate(Index, Index, u8),
    /// Rewrites the first packet's remaining length: new value, padded with `pad` extra
    /// continuation bytes (non-minimal; 4 or more total is malformed).
    RemainingLength(u32, u8),
    /// Adds or subtracts a small amount to the first packet's remaining length.
    NudgeLength(i8),
    /// A new first byte (packet type and flags).
    FirstByte(u8),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), vec(any::<u8>(), 1..6)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1u8..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (any::<Index>(), any::<Index>(), 1u8..16).prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
        2 => (prop_oneof![0u32..300, any::<u32>()], 0u8..4).prop_map(|(v, p)| Mutation::RemainingLength(v, p)),
        2 => (-4i8..=4).prop_map(Mutation::NudgeLength),
        1 => any::<u8>().prop_map(Mutation::FirstByte),
    ]
}

/// Encodes `value` as a variable byte integer of at least `1 + pad` bytes (the top byte's
/// continuation bits are what the decoder reads, so more than 4 bytes is malformed).
fn padded_varint(value: u32, pad: u8) -> Vec<u8> {
    let mut out = varint(usize::try_from(value & 0x0FFF_FFFF).unwrap());
    for _ in 0..pad {
        if let Some(last) = out.last_mut() {
            *last |= 0x80;
        }
        out.push(0);
    }
    out
}

pub(crate) fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match m {
        Mutation::FlipBit(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::SetByte(i, b) => bytes[i.index(len)] = *b,
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        Mutation::Insert(i, b) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let at = i.index(len);
            let end = (at + usize::from(*n)).min(len);
            bytes.drain(at..end);
        }
        Mutation::Duplicate(from, to, n) => {
            let start = from.index(len);
            let end = (start + usize::from(*n)).min(len);
            let copy = bytes[start..end].to_vec();
            let at = to.index(len + 1);
            bytes.splice(at..at, copy);
        }
        Mutation::RemainingLength(v, pad) => {
            let used = read_varint(&bytes[1..]).map_or(0, |(_, u)| u);
            bytes.splice(1..1 + used, padded_varint(*v, *pad));
        }
        Mutation::NudgeLength(d) => {
            if let Some((value, used)) = read_varint(&bytes[1..]) {
                let value = value.saturating_add_signed(isize::from(*d));
                bytes.splice(1..1 + used, varint(value.min(0x0FFF_FFFF)));
            }
        }
        Mutation::FirstByte(b) => bytes[0] = *b,
    }
}

/// Reason codes a decode error may carry: the server answers with one of these (4.13).
pub(crate) const DECODE_REASONS: [ReasonCode; 5] = [
    ReasonCode::MALFORMED_PACKET,
    ReasonCode::PROTOCOL_ERROR,
    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    ReasonCode::TOPIC_NAME_INVALID,
    ReasonCode::PACKET_TOO_LARGE,
];

/// The checks every decode of untrusted bytes must pass.
pub(crate) fn check_decode(
    bytes: &[u8],
    version: ProtocolVersion,
    max: usize,
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    let out = decode_all(&mut buf, version, max);
    if let Some(e) = &out.error {
        prop_assert!(
            DECODE_REASONS.contains(&e.reason_code()),
            "{e} answered with {}",
            e.reason_code()
        );
        if let DecodeError::PacketTooLarge { size, max: m } = e {
            prop_assert!(*size > *m && *m == max);
        }
    }
    // What was accepted is a packet: it encodes, within the limit, back to itself.
    for p in &out.packets {
        let mut again = BytesMut::new();
        encode_packet(p, version, &mut again)
            .map_err(|e| TestCaseError::fail(format!("decoded {p:?} does not encode: {e}")))?;
        prop_assert!(
            again.len() <= max,
            "re-encoded {} bytes over the limit {}",
            again.len(),
            max
        );
        let mut copy = again.clone();
        prop_assert_eq!(decode_packet(&mut copy, version, MAX), Ok(Some(p.clone())));
        prop_assert!(copy.is_empty());
    }
    Ok(())
}

/// A stream of 1-3 encoded packets of `version`.
pub(crate) fn encoded_stream(version: ProtocolVersion) -> impl Strategy<Value = Vec<u8>> {
    vec(packet(version), 1..4).prop_map(move |packets| {
        let mut buf = BytesMut::new();
        for p in &packets {
            encode_packet(p, version, &mut buf).unwrap();
        }
        buf.to_vec()
    })
}

/// A version and a mutated stream of its packets.
pub(crate) fn mutated_stream() -> impl Strategy<Value = (ProtocolVersion, Vec<u8>)> {
    (version(), vec(mutation(), 1..5))
        .prop_flat_map(|(v, edits)| (Just(v), encoded_stream(v), Just(edits)))
        .prop_map(|(v, mut bytes, edits)| {
            for m in &edits {
                apply(&mut bytes, m);
            }
            (v, bytes)
        })
}
