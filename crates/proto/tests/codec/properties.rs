//! v5 properties, mutated with knowledge of their structure: a property block of a generated
//! packet is located, split into its entries, and an entry is inserted (a random identifier, an
//! identifier valid elsewhere, or a copy of one already present). The expected reaction follows
//! from table 2.4 alone, written out here independently of the codec's own tables:
//! - an identifier the spec does not define is a Malformed Packet (0x81) [2.2.2.2];
//! - a defined identifier not allowed in that packet is a Malformed Packet (0x81) [2.2.2.2];
//! - a second copy of a property that may appear once is a Protocol Error (0x82) [MQTT-2.2.2-2]
//!   (User Property may repeat, and Subscription Identifier in PUBLISH [MQTT-3.3.4-3]);
//! - anything else decodes, and the decoded packet carries the inserted value.

use bytes::BytesMut;
use hermod_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::generators::packet;
use crate::{MAX, frame, read_varint, split_packet, varint};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// How a property value is written (table 2.4 data types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    Two,
    Four,
    Var,
    Utf8,
    Binary,
    Pair,
}

/// The data type of each identifier table 2.4 defines.
fn kind_of(id: u8) -> Option<Kind> {
    Some(match id {
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Kind::Byte,
        0x13 | 0x21 | 0x22 | 0x23 => Kind::Two,
        0x02 | 0x11 | 0x18 | 0x27 => Kind::Four,
        0x0B => Kind::Var,
        0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Kind::Utf8,
        0x09 | 0x16 => Kind::Binary,
        0x26 => Kind::Pair,
        _ => return None,
    })
}

/// Which property block of which packet: the identifiers table 2.4 allows there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

fn allowed(block: Block) -> &'static [u8] {
    match block {
        Block::Connect => &[0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27],
        Block::Will => &[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26],
        Block::ConnAck => &[
            0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27,
            0x28, 0x29, 0x2A,
        ],
        Block::Publish => &[0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26],
        Block::PubAck | Block::SubAck | Block::UnsubAck => &[0x1F, 0x26],
        Block::Subscribe => &[0x0B, 0x26],
        Block::Unsubscribe => &[0x26],
        Block::Disconnect => &[0x11, 0x1C, 0x1F, 0x26],
        Block::Auth => &[0x15, 0x16, 0x1F, 0x26],
    }
}

fn repeatable(block: Block, id: u8) -> bool {
    id == 0x26 || (id == 0x0B && block == Block::Publish)
}

/// Rewrites a v5 body to the long form (reason code and property length present) where the
/// encoder used a short one, and returns the offsets of its property blocks.
fn blocks(p: &Packet, body: &mut Vec<u8>) -> Vec<(usize, Block)> {
    match p {
        Packet::Connect(c) => {
            let mut out = vec![(10, Block::Connect)];
            if c.will.is_some() {
                let (len, used) = read_varint(&body[10..]).unwrap();
                let client_id = 10 + used + len;
                out.push((client_id + 2 + c.client_id.len(), Block::Will));
            }
            out
        }
        Packet::ConnectAck(_) => vec![(2, Block::ConnAck)],
        Packet::Publish(p) => {
            let pid = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
            vec![(2 + p.topic.len() + pid, Block::Publish)]
        }
        Packet::PublishAck(_)
        | Packet::PublishReceived(_)
        | Packet::PublishRelease(_)
        | Packet::PublishComplete(_) => {
            body.resize(body.len().max(3), 0x00); // reason 0x00
            if body.len() == 3 {
                body.push(0x00); // empty property block
            }
            vec![(3, Block::PubAck)]
        }
        Packet::Subscribe(_) => vec![(2, Block::Subscribe)],
        Packet::SubscribeAck(_) => vec![(2, Block::SubAck)],
        Packet::Unsubscribe(_) => vec![(2, Block::Unsubscribe)],
        Packet::UnsubscribeAck(_) => vec![(2, Block::UnsubAck)],
        Packet::Disconnect(_) | Packet::Auth(_) => {
            body.resize(body.len().max(1), 0x00);
            if body.len() == 1 {
                body.push(0x00);
            }
            let block = if matches!(p, Packet::Auth(_)) {
                Block::Auth
            } else {
                Block::Disconnect
            };
            vec![(1, block)]
        }
        Packet::PingRequest | Packet::PingResponse => vec![],
    }
}

/// Length of the value after a known identifier at the start of `rest`.
fn value_len(kind: Kind, rest: &[u8]) -> usize {
    let string = |at: usize| 2 + usize::from(u16::from_be_bytes([rest[at], rest[at + 1]]));
    match kind {
        Kind::Byte => 1,
        Kind::Two => 2,
        Kind::Four => 4,
        Kind::Var => read_varint(rest).unwrap().1,
        Kind::Utf8 | Kind::Binary => string(0),
        Kind::Pair => {
            let k = string(0);
            k + string(k)
        }
    }
}

/// The entries (identifier byte included) of the property block at `at`, and the block's end.
fn entries(body: &[u8], at: usize) -> (Vec<Vec<u8>>, usize) {
    let (len, used) = read_varint(&body[at..]).unwrap();
    let props = &body[at + used..at + used + len];
    let mut out = Vec::new();
    let mut i = 0;
    while i < props.len() {
        let id = props[i];
        let n = 1 + value_len(kind_of(id).unwrap(), &props[i + 1..]);
        out.push(props[i..i + n].to_vec());
        i += n;
    }
    (out, at + used + len)
}

/// A valid value (one no per-value rule refuses) for a defined identifier.
fn value(id: u8) -> BoxedStrategy<Vec<u8>> {
    let string = || {
        "[a-z/é]{0,6}".prop_map(|s: String| {
            let mut v = u16::try_from(s.len()).unwrap().to_be_bytes().to_vec();
            v.extend_from_slice(s.as_bytes());
            v
        })
    };
    match (id, kind_of(id)) {
        // Receive Maximum and Maximum Packet Size may not be 0 [3.1.2.11.3, 3.1.2.11.4].
        (0x21, _) => (1u16..).prop_map(|v| v.to_be_bytes().to_vec()).boxed(),
        (0x27, _) => (1u32..).prop_map(|v| v.to_be_bytes().to_vec()).boxed(),
        (_, Some(Kind::Byte)) => (0u8..=1).prop_map(|b| vec![b]).boxed(),
        (_, Some(Kind::Two)) => any::<u16>().prop_map(|v| v.to_be_bytes().to_vec()).boxed(),
        (_, Some(Kind::Four)) => any::<u32>().prop_map(|v| v.to_be_bytes().to_vec()).boxed(),
        (_, Some(Kind::Var)) => (1usize..=268_435_455).prop_map(varint).boxed(),
        (_, Some(Kind::Utf8)) => string().boxed(),
        (_, Some(Kind::Binary)) => vec(any::<u8>(), 0..6)
            .prop_map(|b| {
                let mut v = u16::try_from(b.len()).unwrap().to_be_bytes().to_vec();
                v.extend(b);
                v
            })
            .boxed(),
        (_, Some(Kind::Pair)) => (string(), string())
            .prop_map(|(k, v)| [k, v].concat())
            .boxed(),
        // Undefined: whatever follows is never read.
        (_, None) => vec(any::<u8>(), 0..4).boxed(),
    }
}

/// What to insert into a property block.
#[derive(Debug, Clone)]
enum Insert {
    /// A defined or undefined one-byte identifier and a value.
    Entry(u8, Vec<u8>),
    /// An identifier above 127, written as a 2-byte variable byte integer: never defined.
    WideId(u16),
    /// A copy of the block's n-th entry.
    Copy(Index),
}

fn insert() -> impl Strategy<Value = Insert> {
    prop_oneof![
        3 => (0u8..=0x2F).prop_flat_map(|id| value(id).prop_map(move |v| Insert::Entry(id, v))),
        1 => (0x30u8..=0x7F).prop_flat_map(|id| value(id).prop_map(move |v| Insert::Entry(id, v))),
        1 => (128u16..16_384).prop_map(Insert::WideId),
        3 => any::<Index>().prop_map(Insert::Copy),
    ]
}

/// What table 2.4 says decoding must do.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Decodes,
    Malformed,
    ProtocolError,
}

proptest! {
    #![proptest_config(crate::fuzz_config(3000, 0x4845_524D_4F44_0004))]

    #[test]
    fn inserted_properties_get_the_reaction_table_2_4_gives(
        p in packet(V5),
        which in any::<Index>(),
        at in any::<Index>(),
        ins in insert(),
    ) {
        let mut encoded = BytesMut::new();
        encode_packet(&p, V5, &mut encoded).unwrap();
        let (first, _, body) = split_packet(&encoded);
        let mut body = body.to_vec();
        let found = blocks(&p, &mut body);
        prop_assume!(!found.is_empty());
        let (offset, block) = found[which.index(found.len())];
        let (mut list, end) = entries(&body, offset);
        let present: Vec<u8> = list.iter().map(|e| e[0]).collect();

        let (new, expect) = match ins {
            Insert::Entry(id, v) => {
                let expect = if kind_of(id).is_none() || !allowed(block).contains(&id) {
                    Expect::Malformed // [2.2.2.2]
                } else if present.contains(&id) && !repeatable(block, id) {
                    Expect::ProtocolError // [MQTT-2.2.2-2]
                } else {
                    Expect::Decodes
                };
                ([vec![id], v].concat(), expect)
            }
            Insert::WideId(id) => (varint(usize::from(id)), Expect::Malformed), // [2.2.2.2]
            Insert::Copy(i) => {
                prop_assume!(!list.is_empty());
                let e = list[i.index(list.len())].clone();
                let expect = if repeatable(block, e[0]) {
                    Expect::Decodes
                } else {
                    Expect::ProtocolError // [MQTT-2.2.2-2]
                };
                (e, expect)
            }
        };
        list.insert(at.index(list.len() + 1), new.clone());
        let props: Vec<u8> = list.concat();
        let mut rebuilt = body[..offset].to_vec();
        rebuilt.extend(varint(props.len()));
        rebuilt.extend(&props);
        rebuilt.extend_from_slice(&body[end..]);
        let bytes = frame(first, &rebuilt);

        let mut buf = BytesMut::from(&bytes[..]);
        let got = decode_packet(&mut buf, V5, MAX);
        match expect {
            Expect::Malformed => prop_assert!(
                matches!(&got, Err(e) if e.reason_code() == ReasonCode::MALFORMED_PACKET),
                "{:?} in {:?}: want 0x81, got {:?}", new, block, got
            ),
            Expect::ProtocolError => prop_assert!(
                matches!(&got, Err(e) if e.reason_code() == ReasonCode::PROTOCOL_ERROR),
                "{:?} in {:?}: want 0x82, got {:?}", new, block, got
            ),
            Expect::Decodes => {
                let Ok(Some(decoded)) = got else {
                    return Err(TestCaseError::fail(format!("{new:?} in {block:?}: {got:?}")));
                };
                prop_assert!(buf.is_empty());
                // The inserted entry is there: re-encoding the decoded packet and listing the
                // same block gives one entry more than the original, and this one among them.
                let mut again = BytesMut::new();
                encode_packet(&decoded, V5, &mut again).unwrap();
                let (_, _, body2) = split_packet(&again);
                let mut body2 = body2.to_vec();
                let blocks2 = blocks(&decoded, &mut body2);
                let (offset2, _) = blocks2[which.index(blocks2.len())];
                let (list2, _) = entries(&body2, offset2);
                prop_assert_eq!(list2.len(), list.len());
                prop_assert!(list2.contains(&new), "{:?} lost", new);
            }
        }
    }
}
