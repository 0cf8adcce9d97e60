//! How a message travels between nodes: in the payload of a NATS message (core or JetStream)
//! and as the value of a retained message in the `MQ_RET` bucket.
//!
//! ```text
//! 1 byte   format (1)
//! 8 bytes  unix time in ms when the origin node sent it (big-endian): a receiver counts the
//!          v5 Message Expiry Interval from there, so a retained message read at start-up
//!          expires when it would have on its origin node
//! 1 byte   length of the origin node's name, then the name
//! rest     the message as an MQTT 5 PUBLISH packet (our own codec): topic, payload, QoS,
//!          retain and every forwarded property, the expiry interval as it stood when sent
//! ```
//!
//! Reusing the PUBLISH encoding means the properties a v5 subscriber sees are exactly those
//! its publisher sent, through the same code that reads them from a socket. The topic travels
//! here in full, so the NATS subject (which may be truncated, see `subject`) is only for
//! routing.

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hermod_broker::message::Message;
use hermod_proto::{Packet, ProtocolVersion, Publish, QoS};

const FORMAT: u8 = 1;

/// A message read off the backbone.
#[derive(Debug)]
pub struct Received {
    /// The origin node's name.
    pub node: String,
    /// The message, ready for `BrokerHandle::publish_remote` (no publisher: remote messages
    /// are not subject to no-local, whose client is on another node).
    pub message: Message,
}

/// Why bytes off the backbone are not a message.
#[derive(Debug, thiserror::Error)]
#[error("malformed backbone message: {0}")]
pub struct WireError(String);

/// Encodes `message` as sent by `node` at `now` / `now_ms`.
#[must_use]
pub fn encode(message: &Message, node: &str, now: Instant, now_ms: u64) -> Bytes {
    let mut properties = message.properties.clone();
    properties.message_expiry_interval = message.remaining_expiry(now);
    let publish = Publish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.to_string(),
        packet_id: (message.qos != QoS::AtMostOnce).then_some(NonZeroU16::MIN),
        payload: message.payload.clone(),
        properties,
    };
    let name = &node.as_bytes()[..node.len().min(255)];
    let mut buf = BytesMut::with_capacity(16 + name.len() + message.size());
    buf.put_u8(FORMAT);
    buf.put_u64(now_ms);
    buf.put_u8(name.len() as u8);
    buf.put_slice(name);
    // Encoding cannot fail for a message the broker accepted (its sizes were checked on the
    // way in); if it ever did, an empty packet makes the receiver count it as malformed.
    let _ = hermod_proto::encode_packet(&Packet::Publish(publish), ProtocolVersion::V5, &mut buf);
    buf.freeze()
}

/// Decodes a message encoded by [`encode`], received at `now` / `now_ms`.
///
/// # Errors
/// Anything that is not such a message (another format, a truncated or invalid packet).
pub fn decode(mut bytes: Bytes, now: Instant, now_ms: u64) -> Result<Received, WireError> {
    if bytes.len() < 10 || bytes[0] != FORMAT {
        return Err(WireError("unknown format".into()));
    }
    bytes.advance(1);
    let sent_ms = bytes.get_u64();
    let n = usize::from(bytes.get_u8());
    if bytes.len() < n {
        return Err(WireError("truncated node name".into()));
    }
    let node = String::from_utf8_lossy(&bytes.split_to(n)).into_owned();
    let mut buf = BytesMut::from(bytes);
    let packet = hermod_proto::decode_packet(&mut buf, ProtocolVersion::V5, usize::MAX)
        .map_err(|e| WireError(e.to_string()))?;
    let Some(Packet::Publish(p)) = packet else {
        return Err(WireError("not a PUBLISH packet".into()));
    };
    let mut properties = p.properties;
    // Counted from when the origin sent it; clocks of the nodes are assumed close (NTP).
    let expires_at = properties.message_expiry_interval.map(|s| {
        let elapsed = Duration::from_millis(now_ms.saturating_sub(sent_ms));
        now + Duration::from_secs(u64::from(s)).saturating_sub(elapsed)
    });
    properties.message_expiry_interval = None;
    properties.topic_alias = None;
    Ok(Received {
        node,
        message: Message {
            topic: Arc::from(p.topic),
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            publisher: None,
            expires_at,
            received_at: Some(now),
            origin: None,
            settle: None,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hermod_proto::PublishProperties;

    fn message(qos: QoS, expiry: Option<Duration>, now: Instant) -> Message {
        Message {
            topic: "a/b c/ü".into(),
            payload: Bytes::from_static(b"\x00payload"),
            qos,
            retain: true,
            properties: PublishProperties {
                content_type: Some("text/plain".into()),
                response_topic: Some("r/1".into()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
                payload_format_indicator: Some(1),
                ..PublishProperties::default()
            },
            publisher: Some("c1".into()),
            expires_at: expiry.map(|d| now + d),
            received_at: None,
            origin: None,
            settle: None,
        }
    }

    #[test]
    fn round_trip_keeps_topic_payload_qos_retain_and_properties() {
        let now = Instant::now();
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let m = message(qos, None, now);
            let r = decode(encode(&m, "n1", now, 1_000), now, 1_000).unwrap();
            assert_eq!(r.node, "n1");
            assert_eq!(r.message.topic, m.topic);
            assert_eq!(r.message.payload, m.payload);
            assert_eq!(r.message.qos, qos);
            assert!(r.message.retain);
            assert_eq!(r.message.properties, m.properties);
            assert!(r.message.publisher.is_none());
            assert!(r.message.expires_at.is_none());
        }
    }

    #[test]
    fn expiry_counts_from_when_the_origin_sent_it() {
        // [MQTT-3.3.2-6] the interval sent on is what is left of the publisher's.
        let now = Instant::now();
        let m = message(QoS::AtLeastOnce, Some(Duration::from_secs(100)), now);
        let bytes = encode(&m, "n1", now, 50_000);
        // Read 30 s later (by the wall clock): 70 s left.
        let r = decode(bytes, now, 80_000).unwrap();
        let left = r.message.expires_at.unwrap().duration_since(now);
        assert_eq!(left.as_secs(), 70);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let now = Instant::now();
        for b in [
            &b""[..],
            b"\x01",
            b"\x02\0\0\0\0\0\0\0\0\0",
            b"\x01\0\0\0\0\0\0\0\0\x09ab",
            b"\x01\0\0\0\0\0\0\0\0\x00\x30\x05\x00\x09abc",
            b"\x01\0\0\0\0\0\0\0\0\x00\xe0\x00",
        ] {
            assert!(decode(Bytes::copy_from_slice(b), now, 0).is_err(), "{b:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(Bytes::from(b), Instant::now(), 0);
        }
    }
}
