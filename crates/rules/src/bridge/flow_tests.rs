//! [`super::flow::Side`] on its own, over in-process pipes: order, inflight bounds, the
//! acknowledgements owed to the source, QoS 2 across a reconnect, and the peer's limits.

#![allow(clippy::unwrap_used)]

use std::num::NonZeroU16;
use std::time::Duration;

use bytes::Bytes;
use hermod_client::Connection;
use hermod_proto::{
    ConnectAck, ConnectAckProperties, Packet, PacketId, ProtocolVersion, Publish, PublishAck, QoS,
};
use tokio::io::{DuplexStream, WriteHalf};

use super::flow::{Origin, Side};

type W = WriteHalf<DuplexStream>;

fn side() -> (Side<W>, Connection<DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (_, w) = Connection::over(a, ProtocolVersion::V5).split();
    (
        Side::new(w, ProtocolVersion::V5),
        Connection::over(b, ProtocolVersion::V5),
    )
}

fn id(n: u16) -> PacketId {
    NonZeroU16::new(n).unwrap()
}

fn msg(topic: &str, qos: QoS) -> Publish {
    Publish {
        qos,
        topic: topic.into(),
        payload: Bytes::from_static(b"p"),
        ..Publish::default()
    }
}

fn origin(n: u16, qos: QoS) -> Option<Origin> {
    Some(Origin { id: id(n), qos })
}

fn ack(properties: ConnectAckProperties) -> ConnectAck {
    ConnectAck {
        properties,
        ..ConnectAck::default()
    }
}

/// What `side` wrote so far, decoded by its peer.
async fn written(side: &mut Side<W>, peer: &mut Connection<DuplexStream>) -> Vec<Packet> {
    side.flush().await.unwrap();
    let mut v = Vec::new();
    while let Ok(Some(p)) = peer.recv_timeout(Duration::from_millis(50)).await {
        v.push(p);
    }
    v
}

fn puback(n: u16) -> Packet {
    Packet::PublishAck(PublishAck::new(id(n)))
}

#[tokio::test]
async fn in_order_within_the_receive_maximum_and_the_source_acked_when_done() {
    let (mut target, mut target_peer) = side();
    let (mut source, mut source_peer) = side();
    target.limits(
        &ack(ConnectAckProperties {
            receive_maximum: Some(2),
            ..ConnectAckProperties::default()
        }),
        100,
    );
    for i in 0..4u16 {
        assert!(target.push(
            msg(&format!("t/{i}"), QoS::AtLeastOnce),
            origin(10 + i, QoS::AtLeastOnce)
        ));
    }
    assert_eq!(target.pump(&mut source).done, 0);
    let sent = written(&mut target, &mut target_peer).await;
    let topics: Vec<(String, Option<PacketId>)> = sent
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => (p.topic.clone(), p.packet_id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        topics,
        [("t/0".into(), Some(id(3))), ("t/1".into(), Some(id(4)))]
    );
    assert!(
        written(&mut source, &mut source_peer).await.is_empty(),
        "nothing acked yet"
    );

    assert_eq!(target.on_ack(&puback(3), &mut source).done, 1);
    assert_eq!(written(&mut source, &mut source_peer).await, [puback(10)]);
    // An unknown or repeated ack changes nothing.
    assert_eq!(target.on_ack(&puback(3), &mut source).done, 0);
    target.pump(&mut source);
    match &written(&mut target, &mut target_peer).await[..] {
        [Packet::Publish(p)] => assert_eq!((p.topic.as_str(), p.packet_id), ("t/2", Some(id(5)))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn qos_2_acks_the_source_at_pubrec_and_resumes_with_pubrel() {
    let (mut target, mut target_peer) = side();
    let (mut source, mut source_peer) = side();
    target.push(msg("q", QoS::ExactlyOnce), origin(7, QoS::ExactlyOnce));
    target.pump(&mut source);
    written(&mut target, &mut target_peer).await;
    let rec = Packet::PublishReceived(PublishAck::new(id(3)));
    assert_eq!(target.on_ack(&rec, &mut source).done, 1);
    assert_eq!(
        written(&mut source, &mut source_peer).await,
        [Packet::PublishReceived(PublishAck::new(id(7)))]
    );
    let rel = Packet::PublishRelease(PublishAck::new(id(3)));
    assert_eq!(
        written(&mut target, &mut target_peer).await,
        std::slice::from_ref(&rel)
    );
    assert_eq!(target.carry(), [id(3)]);

    // The next connection, session present: PUBREL again, and id 3 stays taken.
    let (mut next, mut next_peer) = side();
    next.resume(vec![id(3)], true);
    next.push(msg("after", QoS::AtLeastOnce), None);
    next.pump(&mut source);
    match &written(&mut next, &mut next_peer).await[..] {
        [first, Packet::Publish(p)] => {
            assert_eq!(first, &rel);
            assert_eq!(p.packet_id, Some(id(4)));
        }
        other => panic!("{other:?}"),
    }
    next.on_ack(
        &Packet::PublishComplete(PublishAck::new(id(3))),
        &mut source,
    );
    assert_eq!(next.carry(), [], "completed");
    // Session lost: nothing is owed.
    let (mut fresh, mut fresh_peer) = side();
    fresh.resume(vec![id(3)], false);
    assert!(written(&mut fresh, &mut fresh_peer).await.is_empty());
}

#[tokio::test]
async fn the_peers_limits_apply() {
    let (mut target, mut target_peer) = side();
    let (mut source, mut source_peer) = side();
    target.limits(
        &ack(ConnectAckProperties {
            maximum_packet_size: Some(40),
            maximum_qos: Some(1),
            retain_available: Some(0),
            ..ConnectAckProperties::default()
        }),
        100,
    );
    let mut big = msg("big", QoS::AtLeastOnce);
    big.payload = Bytes::from(vec![b'x'; 100]);
    target.push(big, origin(9, QoS::AtLeastOnce));
    let mut small = msg("small", QoS::ExactlyOnce);
    small.retain = true;
    target.push(small, origin(8, QoS::ExactlyOnce));
    assert_eq!(target.pump(&mut source).dropped, 1);
    // The dropped one is acknowledged to its source (else it would come back for ever).
    assert_eq!(written(&mut source, &mut source_peer).await, [puback(9)]);
    match &written(&mut target, &mut target_peer).await[..] {
        [Packet::Publish(p)] => {
            assert_eq!(
                (p.topic.as_str(), p.qos, p.retain),
                ("small", QoS::AtLeastOnce, false)
            );
        }
        other => panic!("{other:?}"),
    }
    // QoS 0 beyond the cap is refused; QoS 1 is not (bounded by the source's receive maximum).
    let (mut q0, _peer) = side();
    let accepted = (0..10_001)
        .filter(|_| q0.push(msg("z", QoS::AtMostOnce), None))
        .count();
    assert_eq!(accepted, 10_000);
    assert!(q0.push(msg("one", QoS::AtLeastOnce), None));
}
