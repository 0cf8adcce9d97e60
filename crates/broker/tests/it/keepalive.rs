//! Keep alive.

use std::time::{Duration, Instant};

use crate::harness::*;

// [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): no packet within 1.5 × keep alive → the
// broker closes the connection (5.0 may send DISCONNECT 0x8D first).
async fn closed_after_one_and_a_half(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut p = connect_packet(v, "ka");
    p.keep_alive = 1;
    let (mut c, _) = b.connect_with(p).await;
    let t0 = Instant::now();
    match c.recv(Duration::from_secs(4)).await {
        None => {}
        Some(Packet::Disconnect(d)) => {
            assert!(v.is_v5(), "3.1.1 has no server DISCONNECT");
            assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT);
        }
        Some(other) => panic!("unexpected {other:?}"),
    }
    assert!(c.is_closed_within(WAIT).await, "closed");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "closed after {took:?}, before 1.5 × keep alive"
    );
    assert!(
        took <= Duration::from_millis(2600),
        "closed after {took:?}, long after 1.5 × keep alive"
    );
    b.stop().await;
}
both_versions!(closed_after_one_and_a_half);

// [MQTT-3.1.2-23] PINGREQ keeps the connection open ([MQTT-3.12.4-1] answered with PINGRESP);
// keep alive 0 disables the mechanism.
async fn pingreq_keeps_alive(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut p = connect_packet(v, "ka");
    p.keep_alive = 1;
    let (mut c, _) = b.connect_with(p).await;
    let mut p0 = connect_packet(v, "ka0");
    p0.keep_alive = 0;
    let (mut idle, _) = b.connect_with(p0).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.ping().await;
    }
    // 3 s since connect: both still open.
    c.ping().await;
    idle.ping().await;
    b.stop().await;
}
both_versions!(pingreq_keeps_alive);

// max_keepalive (Mosquitto): 5.0 clients asking for more (or for 0) get Server Keep Alive in
// CONNACK [MQTT-3.2.2-21] and the broker enforces that value.
#[tokio::test]
async fn server_keep_alive_v5() {
    let b = TestBroker::with(|c| c.max_keepalive = 1).await;
    for (asked, want) in [(60, Some(1)), (0, Some(1)), (1, None)] {
        let mut p = connect_packet(V5, &format!("c{asked}"));
        p.keep_alive = asked;
        let (_c, ack) = b.connect_with(p).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert_eq!(ack.properties.server_keep_alive, want, "asked {asked}");
    }
    // The capped value is enforced: asked 60, got 1 → closed after about 1.5 s.
    let mut p = connect_packet(V5, "enforced");
    p.keep_alive = 60;
    let (mut c, _) = b.connect_with(p).await;
    let t0 = Instant::now();
    assert!(c.is_closed_within(Duration::from_secs(4)).await);
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
    b.stop().await;
}

// max_keepalive (Mosquitto): a 3.1.1 client asking above the cap is refused with CONNACK 0x02.
#[tokio::test]
async fn keep_alive_above_cap_refused_v311() {
    let b = TestBroker::with(|c| c.max_keepalive = 10).await;
    let mut p = connect_packet(V311, "big");
    p.keep_alive = 11;
    let (mut c, ack) = b.connect_with(p).await;
    assert_eq!(
        ack.reason,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        "v3 return code 0x02"
    );
    c.expect_closed(WAIT).await;
    let mut p = connect_packet(V311, "ok");
    p.keep_alive = 10;
    let (_c, ack) = b.connect_with(p).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    b.stop().await;
}
