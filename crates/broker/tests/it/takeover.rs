//! Client id takeover [MQTT-3.1.4-3].

use std::time::Duration;

use bytes::Bytes;

use crate::harness::*;

// [MQTT-3.1.4-3] (3.1.1: [MQTT-3.1.4-2]): a second connection with the same client id closes the
// first; 5.0 sends it DISCONNECT 0x8E (Session taken over) first.
async fn second_connection_closes_first(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut first = b.client(v, "same").await;
    let mut second = b.client(v, "same").await;
    first
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    second.ping().await;
    b.stop().await;
}
both_versions!(second_connection_closes_first);

// The session (subscriptions, unacknowledged and queued messages) passes to the new connection
// when it does not ask for a clean start [MQTT-3.2.2-2]; the unacknowledged message is re-sent
// with DUP=1 [MQTT-4.4.0-1].
async fn session_passes_to_new_connection(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut first, _) = b.connect_with(persistent(v, "tk")).await;
    first.subscribe("tk/#", Q1).await;
    let mut p = b.client(v, "pub").await;
    p.publish("tk/1", b"inflight", Q1, false).await;
    let m = first.expect_publish().await; // not acked
    let (mut second, ack) = b.connect_with(persistent(v, "tk")).await;
    assert!(ack.session_present, "session present after takeover");
    first
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    let again = second.expect_publish_acked().await;
    assert_eq!(again.payload.as_ref(), b"inflight");
    assert!(again.dup);
    assert_eq!(again.packet_id, m.packet_id);
    p.publish("tk/2", b"after", Q1, false).await;
    assert_eq!(
        second.expect_publish_acked().await.payload.as_ref(),
        b"after",
        "subscription taken over"
    );
    second.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(session_passes_to_new_connection);

// The displaced connection must not clobber the session the new connection holds: after several
// quick takeovers, the last connection still owns a working session, which stays persistent.
async fn displaced_does_not_clobber(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut c, _) = b.connect_with(persistent(v, "clob")).await;
    c.subscribe("cl/t", Q1).await;
    let mut olds = vec![c];
    for _ in 0..4 {
        let (c, ack) = b.connect_with(persistent(v, "clob")).await;
        assert!(ack.session_present);
        olds.push(c);
    }
    let mut last = olds.pop().expect("last");
    for mut o in olds {
        assert!(
            o.is_closed_within(WAIT).await,
            "displaced connection closed"
        );
    }
    let mut p = b.client(v, "pub").await;
    p.publish("cl/t", b"1", Q1, false).await;
    assert_eq!(last.expect_publish_acked().await.payload.as_ref(), b"1");
    last.drop_connection();
    // Offline: queued.
    p.publish("cl/t", b"2", Q1, false).await;
    let (mut again, ack) = b.connect_with(persistent(v, "clob")).await;
    assert!(ack.session_present, "session survived the takeovers");
    assert_eq!(again.expect_publish_acked().await.payload.as_ref(), b"2");
    b.stop().await;
}
both_versions!(displaced_does_not_clobber);

// Takeover with clean start: the old session is discarded [MQTT-3.1.2-4] (3.1.1 [MQTT-3.1.2-6]).
async fn clean_takeover_discards(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let (mut first, _) = b.connect_with(persistent(v, "ct")).await;
    first.subscribe("ct/t", Q1).await;
    let (mut second, ack) = b.connect_with(connect_packet(v, "ct")).await;
    assert!(!ack.session_present);
    assert!(first.is_closed_within(WAIT).await);
    let mut p = b.client(v, "pub").await;
    p.publish("ct/t", b"x", Q1, false).await;
    second.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(clean_takeover_discards);

// 5.0: on takeover the old connection's will is published (no DISCONNECT 0x00 was received,
// 3.1.2.5) unless it has a Will Delay, which the new connection cancels [MQTT-3.1.3-9].
#[tokio::test]
async fn takeover_will_v5() {
    let b = TestBroker::start().await;
    let mut o = b.client(V5, "obs").await;
    o.subscribe("tw/#", Q1).await;
    for (id, delay) in [("nodelay", 0u32), ("delay", 1)] {
        let mut c = persistent(V5, id);
        c.will = Some(LastWill {
            topic: format!("tw/{id}"),
            payload: Bytes::from_static(b"w"),
            qos: Q1,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(delay),
                ..Default::default()
            },
        });
        let (_first, _) = b.connect_with(c).await;
        let (_second, _) = b.connect_with(persistent(V5, id)).await;
    }
    let got = o.drain(Duration::from_millis(1500)).await;
    assert_eq!(
        got.iter().map(|m| m.topic.as_str()).collect::<Vec<_>>(),
        ["tw/nodelay"]
    );
    b.stop().await;
}

/// What one connection of a takeover storm saw: its CONNACK (if any), the QoS 1 payloads it
/// received (acknowledged), and whether the broker closed it.
struct Seen {
    client: Client,
    connack: Option<ConnectAck>,
    marks: Vec<String>,
    closed: bool,
}

async fn watch(mut c: Client) -> Seen {
    let mut connack = None;
    let mut marks = Vec::new();
    // Quiet for 3 s: settled (the survivor); or closed (displaced or superseded).
    while let Some(p) = c.recv(Duration::from_secs(3)).await {
        match p {
            Packet::ConnectAck(a) => connack = Some(a),
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    c.send(&Packet::PublishAck(PublishAck::new(id))).await;
                    marks.push(String::from_utf8_lossy(&p.payload).into_owned());
                }
            }
            _ => {}
        }
    }
    let closed = c.is_closed_within(Duration::from_millis(100)).await;
    Seen {
        client: c,
        connack,
        marks,
        closed,
    }
}

// issue 9: `n` connections with the same client id arrive back to back while the session's
// connection cannot be written to (it never reads: its socket is full), so each takeover waits
// for the hand-off. The session must end up, whole, with the newest connection: its
// subscription still delivers and its queued QoS 1 messages all arrive.
// (Before: the third connection cancelled the pending hand-off, the survivor got session
// present = 1 with no subscriptions, and the QoS 1 messages never arrived.)
async fn takeover_storm(v: ProtocolVersion, n: usize) {
    let b = TestBroker::start().await;
    let (mut old, _) = b.connect_with(persistent(v, "storm")).await;
    old.subscribe("st/#", Q1).await;
    let mut p = b.client(v, "pub").await;
    // About 25 MB of QoS 0 that `old` never reads: its socket and the broker's write block.
    let bulk = vec![b'x'; 256 * 1024];
    for _ in 0..100 {
        p.publish("st/bulk", &bulk, Q0, false).await;
    }
    for i in 0..3 {
        p.publish("st/q", format!("q{i}").as_bytes(), Q1, false)
            .await;
    }
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut c = Client::tcp(b.addr, v).await;
        c.send(&Packet::Connect(Box::new(persistent(v, "storm"))))
            .await;
        conns.push(c);
    }
    let seen: Vec<Seen> = futures_join(conns.into_iter().map(watch).collect()).await;
    drop(old);
    // At least once [MQTT-4.3.2]: a message whose PUBACK had not been processed when the next
    // connection took over is re-sent to it, so one may arrive on several connections.
    let mut marks: Vec<String> = seen.iter().flat_map(|s| s.marks.clone()).collect();
    marks.sort();
    marks.dedup();
    assert_eq!(marks, ["q0", "q1", "q2"], "every QoS 1 message arrived");
    let open: Vec<&Seen> = seen.iter().filter(|s| !s.closed).collect();
    assert_eq!(open.len(), 1, "exactly one connection holds the session");
    let ack = open[0]
        .connack
        .as_ref()
        .expect("the survivor got a CONNACK");
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(
        ack.session_present,
        "[MQTT-3.2.2-2] the session was resumed"
    );
    let mut survivor = seen
        .into_iter()
        .find(|s| !s.closed)
        .expect("survivor")
        .client;
    p.publish("st/q", b"after", Q1, false).await;
    assert_eq!(
        survivor.expect_publish_acked().await.payload.as_ref(),
        b"after",
        "the subscription survived the storm"
    );
    b.stop().await;
}

/// Runs the futures concurrently on the test runtime and returns their outputs in order.
async fn futures_join<T: Send + 'static>(
    futs: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

async fn takeover_storm_of_3(v: ProtocolVersion) {
    takeover_storm(v, 3).await;
}
async fn takeover_storm_of_10(v: ProtocolVersion) {
    takeover_storm(v, 10).await;
}
both_versions!(takeover_storm_of_3, takeover_storm_of_10);
