//! Internal connections (`BrokerHandle::connect_internal`): the broker's own services as MQTT
//! clients over an in-process pipe, with the `$hermod/` client id namespace kept to them.

use std::time::Duration;

use hermod_broker::api::{
    INTERNAL_CLIENT_PREFIX, InternalOptions, ORIGIN_CLIENT_ID, ORIGIN_PEERHOST, ORIGIN_SEQ,
    ORIGIN_USERNAME,
};
use hermod_client::{ConnectOptions, Connection};
use hermod_proto::{
    Packet, ProtocolVersion, PublishAck, QoS, ReasonCode, Subscribe, SubscribeProperties,
};
use tokio::io::DuplexStream;

use crate::harness::*;

/// An internal client of `b`, connected with a persistent session.
async fn internal(b: &TestBroker, id: &str, o: InternalOptions) -> Connection<DuplexStream> {
    let mut conn = Connection::over(b.handle().connect_internal(o), ProtocolVersion::V5);
    let opts = ConnectOptions::new(id)
        .version(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry(u32::MAX);
    let ack = conn.handshake(&opts).await.expect("internal CONNACK");
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    conn
}

async fn subscribe(conn: &mut Connection<DuplexStream>, filter: &str) {
    conn.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(filter.to_owned(), opts(QoS::AtLeastOnce))],
        properties: SubscribeProperties::default(),
    }))
    .await
    .expect("SUBSCRIBE sent");
    match conn.recv_timeout(WAIT).await.expect("SUBACK") {
        Some(Packet::SubscribeAck(a)) => assert_eq!(a.reasons, vec![ReasonCode::GRANTED_QOS_1]),
        other => panic!("{other:?}"),
    }
}

async fn next_publish(conn: &mut Connection<DuplexStream>) -> hermod_proto::Publish {
    match conn.recv_timeout(WAIT).await.expect("a packet in time") {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A service subscribes over the pipe and gets clients' messages at QoS 1; the ACL file that
/// denies every client everything does not apply to it (it acts for the broker), and what it
/// does not acknowledge is sent again when it reconnects.
#[tokio::test]
async fn internal_client_reads_past_the_acl_and_gets_unacknowledged_messages_again() {
    let dir = tempdir();
    write(dir.path(), "acl", "user writer\ntopic write dev/#\n");
    let b = TestBroker::start_in(
        dir,
        "allow_anonymous = true\nacl_file = \"acl\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
    )
    .await;
    let mut svc = internal(&b, "$hermod/rule/t", InternalOptions::default()).await;
    subscribe(&mut svc, "dev/#").await;
    let mut writer = b
        .connect_with(connect_auth(V5, "w", Some("writer"), None))
        .await
        .0;
    writer
        .publish("dev/gw", b"one", QoS::AtLeastOnce, false)
        .await;
    let p = next_publish(&mut svc).await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("dev/gw", &b"one"[..]));
    // The publisher, which rules need and MQTT does not carry, rides in user properties.
    let origin: Vec<(&str, &str)> = p
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        origin,
        [
            (ORIGIN_SEQ, "1"),
            (ORIGIN_CLIENT_ID, "w"),
            (ORIGIN_USERNAME, "writer"),
            (ORIGIN_PEERHOST, "127.0.0.1")
        ]
    );
    // Not acknowledged: dropped with the pipe, then re-sent to the next connection [MQTT-4.4.0-1].
    drop(svc);
    let mut svc = internal(&b, "$hermod/rule/t", InternalOptions::default()).await;
    let again = next_publish(&mut svc).await;
    assert!(again.dup, "a re-send carries DUP");
    assert_eq!(&again.payload[..], b"one");
    // The same stored queue entry: the same sequence number, so a sink can write it once.
    assert!(
        again
            .properties
            .user_properties
            .contains(&(ORIGIN_SEQ.to_owned(), "1".to_owned()))
    );
    svc.send(&Packet::PublishAck(PublishAck::new(
        again.packet_id.expect("QoS 1 has a packet id"),
    )))
    .await
    .expect("PUBACK sent");
    // A network client without rights still gets nothing.
    let mut anon = b.client(V5, "anon").await;
    assert_eq!(
        anon.subscribe_one("dev/#", QoS::AtLeastOnce).await,
        ReasonCode::NOT_AUTHORIZED
    );
}

/// `$hermod/` client ids belong to internal connections: a network client asking for one is
/// refused (so that nobody takes a rule's session and its messages), and an internal
/// connection must use one.
#[tokio::test]
async fn the_internal_client_id_namespace_is_kept() {
    let b = TestBroker::start().await;
    let id = format!("{INTERNAL_CLIENT_PREFIX}rule/collector");
    for v in [V311, V5] {
        let code = Client::connack(b.addr, &Via::Tcp, connect_packet(v, &id)).await;
        assert_eq!(code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "{v:?}");
    }
    let mut conn = Connection::over(
        b.handle().connect_internal(InternalOptions::default()),
        ProtocolVersion::V5,
    );
    let refused = conn
        .handshake(&ConnectOptions::new("plain-id").version(ProtocolVersion::V5))
        .await;
    assert_eq!(
        refused.err().and_then(|e| e.refused_reason()),
        Some(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
    );
}

/// The session limit comes from `InternalOptions`, not `max_queued_messages`: with drop-oldest
/// and room for 3, the newest 3 of 5 messages wait for a service that was away.
#[tokio::test]
async fn internal_session_limit_and_overflow_policy_are_its_own() {
    let b = TestBroker::with(|c| c.max_queued_messages = 1).await;
    let o = InternalOptions {
        max_queued_messages: 3,
        max_queued_bytes: 0,
        drop_oldest: true,
    };
    let mut svc = internal(&b, "$hermod/bridge/x", o).await;
    subscribe(&mut svc, "q/#").await;
    svc.disconnect().await.expect("DISCONNECT");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut p = b.client(V5, "p").await;
    for i in 0..5 {
        p.publish(&format!("q/{i}"), b"m", QoS::AtLeastOnce, false)
            .await;
    }
    let mut svc = internal(&b, "$hermod/bridge/x", o).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = next_publish(&mut svc).await;
        got.push(m.topic.clone());
        let id = m.packet_id.expect("QoS 1");
        svc.send(&Packet::PublishAck(PublishAck::new(id)))
            .await
            .expect("PUBACK");
    }
    assert_eq!(got, ["q/2", "q/3", "q/4"]);
    assert!(
        svc.recv_timeout(Duration::from_millis(300)).await.is_err(),
        "nothing more"
    );
}
