//! The checks the fuzz targets run on each input. A panic is a finding: AFL++ records the input
//! under `out/<target>/default/crashes/`.

use bytes::BytesMut;
use hermod_proto::{ProtocolVersion, ReasonCode, decode_packet, encode_packet};

/// Reason codes a decode error may be answered with.
const DECODE_REASONS: [ReasonCode; 5] = [
    ReasonCode::MALFORMED_PACKET,
    ReasonCode::PROTOCOL_ERROR,
    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    ReasonCode::TOPIC_NAME_INVALID,
    ReasonCode::PACKET_TOO_LARGE,
];

/// `decode` input: one selector byte (`% 3`: 3.1, 3.1.1, 5.0; bit 7: maximum packet size 64
/// instead of 1 MiB), then the byte stream a client sent.
pub fn decode(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => ProtocolVersion::V31,
        1 => ProtocolVersion::V311,
        _ => ProtocolVersion::V5,
    };
    let max = if selector & 0x80 != 0 { 64 } else { 1 << 20 };
    let mut buf = BytesMut::from(stream);
    loop {
        let before = buf.len();
        match decode_packet(&mut buf, version, max) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a packet consumed nothing");
                let mut again = BytesMut::new();
                encode_packet(&packet, version, &mut again).expect("a decoded packet encodes");
                assert!(again.len() <= max, "re-encoded over the limit");
                let back = decode_packet(&mut again, version, max).expect("re-encoding decodes");
                assert_eq!(back.as_ref(), Some(&packet), "decode(encode(p)) != p");
                assert!(again.is_empty());
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "incomplete, yet consumed");
                return;
            }
            Err(e) => {
                assert!(DECODE_REASONS.contains(&e.reason_code()), "{e}");
                return;
            }
        }
    }
}

/// `proxy` input: the first bytes of a connection to a `proxy_protocol = true` listener.
pub fn proxy(data: &[u8]) {
    let (result, consumed) = hermod_broker::transport::fuzz_proxy_header(data);
    assert!(consumed <= data.len());
    if result.is_ok() {
        let header = &data[..consumed];
        if header.starts_with(b"PROXY ") {
            assert!(consumed <= 107 && header.ends_with(b"\r\n"), "{header:?}");
        } else {
            let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
            assert_eq!(consumed, 16 + len);
        }
    } else if let Err(e) = &result {
        assert!(e.starts_with("PROXY protocol"), "{e}");
    }
}
