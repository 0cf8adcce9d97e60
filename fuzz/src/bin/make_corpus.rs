//! Writes the seed corpus: one small valid packet of each type per version, encoded by the
//! codec (`corpus/decode/`), and PROXY v1/v2 headers followed by a CONNECT (`corpus/proxy/`).
//! Run `cargo run --bin make_corpus` in fuzz/ after a wire-format change.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use hermod_proto::*;

fn main() -> std::io::Result<()> {
    let id = NonZeroU16::MIN;
    let user = vec![("k".to_owned(), "v".to_owned())];
    let packets = |v5: bool| {
        let props = |p: PublishProperties| if v5 { p } else { PublishProperties::default() };
        vec![
            Packet::Connect(Box::new(Connect {
                protocol: if v5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V311
                },
                clean_start: true,
                keep_alive: 60,
                client_id: "c".into(),
                will: Some(LastWill {
                    topic: "w".into(),
                    payload: Bytes::from_static(b"x"),
                    ..LastWill::default()
                }),
                username: Some("u".into()),
                password: Some(Bytes::from_static(b"p")),
                properties: ConnectProperties {
                    receive_maximum: v5.then_some(10),
                    user_properties: if v5 { user.clone() } else { vec![] },
                    ..ConnectProperties::default()
                },
            })),
            Packet::ConnectAck(ConnectAck::default()),
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: "a/b".into(),
                packet_id: Some(id),
                payload: Bytes::from_static(b"hi"),
                properties: props(PublishProperties {
                    message_expiry_interval: Some(5),
                    subscription_identifiers: vec![1],
                    user_properties: user.clone(),
                    ..PublishProperties::default()
                }),
                ..Publish::default()
            }),
            Packet::PublishAck(PublishAck::new(id)),
            Packet::PublishReceived(PublishAck::new(id)),
            Packet::PublishRelease(PublishAck::new(id)),
            Packet::PublishComplete(PublishAck::new(id)),
            Packet::Subscribe(Subscribe {
                packet_id: id,
                filters: vec![("a/+".into(), SubscriptionOptions::default())],
                properties: SubscribeProperties {
                    subscription_identifier: v5.then_some(7),
                    ..SubscribeProperties::default()
                },
            }),
            Packet::SubscribeAck(SubscribeAck {
                packet_id: id,
                reasons: vec![ReasonCode::GRANTED_QOS_1],
                properties: AckProperties::default(),
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: id,
                filters: vec!["a/#".into()],
                user_properties: vec![],
            }),
            Packet::UnsubscribeAck(UnsubscribeAck {
                packet_id: id,
                reasons: if v5 {
                    vec![ReasonCode::SUCCESS]
                } else {
                    vec![]
                },
                properties: AckProperties::default(),
            }),
            Packet::PingRequest,
            Packet::PingResponse,
            Packet::Disconnect(Disconnect::default()),
        ]
    };
    std::fs::create_dir_all("corpus/decode")?;
    for (selector, version) in [(1u8, ProtocolVersion::V311), (2, ProtocolVersion::V5)] {
        let mut list = packets(version.is_v5());
        if version.is_v5() {
            list.push(Packet::Auth(Auth {
                reason: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: AuthProperties {
                    authentication_method: Some("m".into()),
                    ..AuthProperties::default()
                },
            }));
        }
        for (i, p) in list.iter().enumerate() {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&[selector]);
            encode_packet(p, version, &mut buf).map_err(std::io::Error::other)?;
            std::fs::write(format!("corpus/decode/v{}-{i:02}", version.level()), &buf)?;
        }
    }
    std::fs::create_dir_all("corpus/proxy")?;
    let connect = [
        0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
    ];
    let v1: [&[u8]; 3] = [
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n",
        b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 1883\r\n",
        b"PROXY UNKNOWN\r\n",
    ];
    for (i, h) in v1.iter().enumerate() {
        std::fs::write(format!("corpus/proxy/v1-{i}"), [h, &connect[..]].concat())?;
    }
    // v2: signature, PROXY over TCP/IPv4, 12 address bytes; and LOCAL with no addresses.
    let sig = b"\r\n\r\n\x00\r\nQUIT\n";
    let mut v2 = sig.to_vec();
    v2.extend([
        0x21, 0x11, 0x00, 0x0C, 198, 51, 100, 9, 10, 0, 0, 1, 0xEE, 0x48, 0x07, 0x5B,
    ]);
    std::fs::write("corpus/proxy/v2-0", [&v2[..], &connect[..]].concat())?;
    let mut local = sig.to_vec();
    local.extend([0x20, 0x00, 0x00, 0x00]);
    std::fs::write("corpus/proxy/v2-1", [&local[..], &connect[..]].concat())?;
    Ok(())
}
