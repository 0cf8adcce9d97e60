//! Packet builders and assertion helpers.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use hermod_proto::{
    Connect, Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS,
    SubscriptionOptions, encode_packet,
};

/// A CONNECT with clean start, keep alive 60 and no will.
pub fn connect_packet(v: ProtocolVersion, id: &str) -> Connect {
    connect_auth(v, id, None, None)
}

/// [`connect_packet`] with optional credentials.
pub fn connect_auth(
    v: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    pass: Option<&[u8]>,
) -> Connect {
    Connect {
        protocol: v,
        client_id: id.into(),
        clean_start: true,
        keep_alive: 60,
        username: user.map(str::to_owned),
        password: pass.map(Bytes::copy_from_slice),
        ..Connect::default()
    }
}

/// A persistent-session CONNECT: clean start 0 and, for v5, session expiry 300 s.
pub fn persistent(v: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect_packet(v, id);
    c.clean_start = false;
    if v.is_v5() {
        c.properties.session_expiry_interval = Some(300);
    }
    c
}

pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("non-zero packet id")
}

pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// A PUBLISH; packet id 1 when QoS > 0 (override as needed).
pub fn publish(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(1)),
        payload: Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    }
}

/// Encodes a packet for `v` (for building raw byte sequences).
pub fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_packet(p, v, &mut b).expect("encodable");
    b.to_vec()
}

/// Payloads as (lossy) strings, for assertions.
pub fn payloads(v: &[Publish]) -> Vec<String> {
    v.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// (topic, payload) pairs, for assertions.
pub fn got(v: &[Publish]) -> Vec<(String, String)> {
    v.iter()
        .map(|p| {
            (
                p.topic.clone(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
