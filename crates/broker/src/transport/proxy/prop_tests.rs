//! Randomised tests of the PROXY header reader: generated v1 and v2 headers (every command,
//! family and address, TLVs) followed by the MQTT bytes, then the same mutated. The reader must
//! return the address the header carries, consume exactly the header, never panic, never read
//! past a header it accepts, and refuse everything else with a PROXY error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ppp::v2::{Builder, Command, Protocol, Type, Version};
use proptest::collection::vec;
use proptest::prelude::*;

use super::{V1_MAX_LEN, V2_FIXED_LEN, parse_v1, parse_v2, read_header};
use crate::fuzz_support::{fuzz_config, mutated};
use crate::transport::TransportError;

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), 40_000);
/// What follows the header: an MQTT CONNECT.
const CONNECT: &[u8] = &[
    0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
];

/// A generated header and the address `read_header` must return for it.
#[derive(Debug, Clone)]
struct Case {
    header: Vec<u8>,
    addr: SocketAddr,
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
        v4().prop_map(|a| a.to_ipv6_mapped()),
        Just(Ipv6Addr::LOCALHOST),
    ]
}

/// PROXY v1 (proxy-protocol.txt 2.1): `PROXY TCP4|TCP6 src dst sport dport\r\n`, or
/// `PROXY UNKNOWN` + anything up to CRLF (the receiver ignores it and keeps the socket's address).
fn v1() -> impl Strategy<Value = Case> {
    prop_oneof![
        (v4(), v4(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| Case {
            header: format!("PROXY TCP4 {s} {d} {sp} {dp}\r\n").into_bytes(),
            addr: SocketAddr::new(s.into(), sp),
        }),
        (v6(), v6(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| Case {
            header: format!("PROXY TCP6 {s} {d} {sp} {dp}\r\n").into_bytes(),
            addr: SocketAddr::new(s.into(), sp),
        }),
        Just(Case {
            header: b"PROXY UNKNOWN\r\n".to_vec(),
            addr: PEER,
        }),
        // "the receiver must ignore anything presented before the CRLF is found" (2.1).
        vec("[a-zA-Z0-9:.]{1,8}", 1..8).prop_map(|words| Case {
            header: format!("PROXY UNKNOWN {}\r\n", words.join(" ")).into_bytes(),
            addr: PEER,
        }),
        // The worst case the spec names: UNKNOWN with two full-length IPv6 addresses (107 bytes).
        (v6(), v6(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| Case {
            header: format!("PROXY UNKNOWN {s} {d} {sp} {dp}\r\n").into_bytes(),
            addr: PEER,
        }),
    ]
}

/// PROXY v2 (proxy-protocol.txt 2.2), built with `ppp`'s writer: PROXY or LOCAL, any family
/// and transport protocol, and TLVs (ALPN, authority, NOOP, custom).
fn v2() -> impl Strategy<Value = Case> {
    let tlvs = vec(
        (
            prop_oneof![
                Just(u8::from(Type::ALPN)),
                Just(u8::from(Type::Authority)),
                Just(u8::from(Type::NoOp)),
                0xE0u8..=0xEF,
            ],
            vec(any::<u8>(), 0..24),
        ),
        0..4,
    );
    let protocol = prop_oneof![
        Just(Protocol::Stream),
        Just(Protocol::Datagram),
        Just(Protocol::Unspecified)
    ];
    let addresses = prop_oneof![
        (v4(), v4(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| (
            SocketAddr::new(s.into(), sp),
            SocketAddr::new(d.into(), dp)
        )),
        (v6(), v6(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| (
            SocketAddr::new(s.into(), sp),
            SocketAddr::new(d.into(), dp)
        )),
    ];
    (any::<bool>(), protocol, 0u8..4, addresses, tlvs).prop_map(
        |(local, protocol, family, (src, dst), tlvs)| {
            let command = if local {
                Command::Local
            } else {
                Command::Proxy
            };
            let builder = match family {
                // Unspecified family: no addresses.
                0 => Builder::new(Version::Two | command, 0x00),
                // AF_UNIX: 216 address bytes, no IP to take.
                1 => Builder::with_addresses(
                    Version::Two | command,
                    protocol,
                    ppp::v2::Unix::new([b'a'; 108], [b'b'; 108]),
                ),
                _ => Builder::with_addresses(Version::Two | command, protocol, (src, dst)),
            };
            let builder = tlvs.iter().fold(builder, |b, (kind, value)| {
                b.write_tlv(*kind, value)
                    .unwrap_or_else(|e| panic!("tlv: {e}"))
            });
            let header = builder.build().unwrap_or_else(|e| panic!("build: {e}"));
            let addr = if local || family < 2 { PEER } else { src };
            Case { header, addr }
        },
    )
}

fn header() -> impl Strategy<Value = Case> {
    prop_oneof![v1(), v2()]
}

/// Runs `read_header` over `input`; returns its result and how many bytes it consumed.
fn read(input: &[u8]) -> (Result<SocketAddr, TransportError>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut rest = input;
    let result = rt.block_on(read_header(&mut rest, PEER));
    (result, input.len() - rest.len())
}

proptest! {
    #![proptest_config(fuzz_config(1500, 0x4845_524D_4F44_0101))]

    /// A valid header followed by MQTT: the header's source address (or the socket's for v1
    /// UNKNOWN, v2 LOCAL, unspecified and AF_UNIX), and exactly the header consumed.
    #[test]
    fn generated_headers_give_their_address(case in header()) {
        let input = [&case.header[..], CONNECT].concat();
        let (result, consumed) = read(&input);
        prop_assert_eq!(
            result.map_err(|e| e.to_string()), Ok(case.addr),
            "{:?}", String::from_utf8_lossy(&case.header)
        );
        prop_assert_eq!(consumed, case.header.len(), "the MQTT bytes stay unread");
    }

    /// Every strict prefix of a header is refused once the connection ends, whatever the cut.
    #[test]
    fn truncated_headers_are_refused(case in header(), cut in any::<proptest::sample::Index>()) {
        let cut = cut.index(case.header.len());
        let (result, consumed) = read(&case.header[..cut]);
        prop_assert!(matches!(result, Err(TransportError::Proxy(_))), "{:?}", result);
        prop_assert!(consumed <= cut);
    }

    /// Mutated headers (and the MQTT after them): no panic, a PROXY error or an address, and an
    /// accepted header is exactly what was consumed: a v1 line through its only CRLF (at most
    /// 107 bytes), or a v2 header of the length its bytes 15-16 announce.
    #[test]
    fn mutated_headers_are_refused_or_parsed_exactly(
        input in header().prop_flat_map(|c| mutated([&c.header[..], CONNECT].concat())),
    ) {
        let (result, consumed) = read(&input);
        match result {
            Err(TransportError::Proxy(_)) => {}
            Err(e) => return Err(TestCaseError::fail(format!("not a PROXY error: {e}"))),
            Ok(addr) => {
                let header = &input[..consumed];
                if header.starts_with(b"PROXY ") {
                    prop_assert!(consumed <= V1_MAX_LEN);
                    prop_assert!(header.ends_with(b"\r\n"));
                    prop_assert_eq!(header.iter().filter(|&&b| b == b'\r' || b == b'\n').count(), 2);
                    prop_assert_eq!(parse_v1(header, PEER).ok(), Some(addr));
                } else {
                    prop_assert!(consumed >= V2_FIXED_LEN);
                    let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
                    prop_assert_eq!(consumed, V2_FIXED_LEN + len);
                    prop_assert_eq!(parse_v2(header, PEER).ok(), Some(addr));
                }
            }
        }
    }

    /// The parsers on arbitrary bytes, without the reader's framing: no panic.
    #[test]
    fn parsers_take_any_bytes(bytes in vec(any::<u8>(), 0..120)) {
        let _ = parse_v1(&bytes, PEER);
        let _ = parse_v2(&bytes, PEER);
        let mut v2 = ppp::v2::PROTOCOL_PREFIX.to_vec();
        v2.extend_from_slice(&bytes);
        let _ = parse_v2(&v2, PEER);
        let mut v1 = b"PROXY ".to_vec();
        v1.extend_from_slice(&bytes);
        let _ = parse_v1(&v1, PEER);
    }
}
