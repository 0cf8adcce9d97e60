//! Shared subscriptions `$share/{group}/{filter}` (5.0 4.8.2; Mosquitto also offers them to 3.1.1).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

// 4.8.2: each message published to a shared subscription's topic goes to exactly one member of
// the group; a normal subscription on the same topic still gets every message.
async fn spread_exactly_once(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut m1 = b.client(v, "m1").await;
    let mut m2 = b.client(v, "m2").await;
    m1.subscribe("$share/g/sh/t", Q1).await;
    m2.subscribe("$share/g/sh/t", Q1).await;
    let mut normal = b.client(v, "normal").await;
    normal.subscribe("sh/t", Q1).await;
    let mut p = b.client(v, "pub").await;
    for i in 0..20 {
        p.publish("sh/t", format!("{i:02}").as_bytes(), Q1, false)
            .await;
    }
    let a = payloads(&m1.drain(QUIET).await);
    let c = payloads(&m2.drain(Duration::from_millis(100)).await);
    assert!(
        !a.is_empty() && !c.is_empty(),
        "both members get messages: {a:?} / {c:?}"
    );
    let mut all: Vec<String> = a.iter().chain(c.iter()).cloned().collect();
    all.sort();
    let want: Vec<String> = (0..20).map(|i| format!("{i:02}")).collect();
    assert_eq!(all, want, "each message exactly once over the group");
    assert_eq!(
        payloads(&normal.drain(Duration::from_millis(100)).await),
        want
    );
    b.stop().await;
}
both_versions!(spread_exactly_once);

// Two groups on the same filter each get every message.
#[tokio::test]
async fn two_groups_each_get_all() {
    let b = TestBroker::start().await;
    let mut a = b.client(V5, "a").await;
    let mut c = b.client(V5, "c").await;
    a.subscribe("$share/ga/gg/+", Q1).await;
    c.subscribe("$share/gb/gg/+", Q1).await;
    let mut p = b.client(V5, "pub").await;
    for i in 0..5 {
        p.publish("gg/x", format!("{i}").as_bytes(), Q1, false)
            .await;
    }
    assert_eq!(payloads(&a.collect(5).await), ["0", "1", "2", "3", "4"]);
    assert_eq!(payloads(&c.collect(5).await), ["0", "1", "2", "3", "4"]);
    b.stop().await;
}

// 5.0 4.8.2: a QoS 1 message a member received but did not acknowledge before its connection
// (and clean session) ended SHOULD go to another member of the group. Nothing is lost.
async fn unacked_go_to_other_member(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut m1 = b.client(v, "m1").await;
    let mut m2 = b.client(v, "m2").await;
    m1.subscribe("$share/g/un/t", Q1).await;
    m2.subscribe("$share/g/un/t", Q1).await;
    let mut p = b.client(v, "pub").await;
    for i in 0..6 {
        p.publish("un/t", format!("{i}").as_bytes(), Q1, false)
            .await;
    }
    // m1 receives its share but never acknowledges; m2 acknowledges.
    let mut m1_got = Vec::new();
    while let Some(Packet::Publish(m)) = m1.recv(QUIET).await {
        m1_got.push(m);
    }
    assert!(!m1_got.is_empty(), "m1 got some of the messages");
    let mut m2_got = payloads(&m2.drain(Duration::from_millis(100)).await);
    m1.drop_connection();
    m2_got.extend(payloads(&m2.drain(Duration::from_millis(600)).await));
    let set: BTreeSet<String> = m2_got.iter().cloned().collect();
    assert_eq!(set.len(), m2_got.len(), "no duplicates at m2: {m2_got:?}");
    let want: BTreeSet<String> = (0..6).map(|i| i.to_string()).collect();
    assert_eq!(set, want, "m1's unacknowledged messages were handed to m2");
    b.stop().await;
}
both_versions!(unacked_go_to_other_member);

// 5.0 [MQTT-4.8.2-4]: a QoS 2 delivery to a member whose connection breaks MUST be completed to
// that member when it reconnects (its session persists), and [MQTT-4.8.2-5] not be sent to any
// other member meanwhile.
#[tokio::test]
async fn qos2_stays_with_its_member_v5() {
    let b = TestBroker::start().await;
    let (mut m1, _) = b.connect_with(persistent(V5, "m1")).await;
    let mut m2 = b.client(V5, "m2").await;
    m1.subscribe("$share/g/q2/t", Q2).await;
    m2.subscribe("$share/g/q2/t", Q2).await;
    let mut p = b.client(V5, "pub").await;
    // Publish until m1 has one (round robin: at most two).
    let mut first = None;
    for i in 0..2 {
        p.publish("q2/t", format!("{i}").as_bytes(), Q2, false)
            .await;
        if let Some(Packet::Publish(m)) = m1.recv(Duration::from_millis(300)).await {
            first = Some(m);
            break;
        }
    }
    let first = first.expect("m1 got a QoS 2 message");
    let m2_before = payloads(&m2.drain(Duration::from_millis(100)).await);
    m1.drop_connection(); // no PUBREC sent
    let m2_after = payloads(&m2.drain(QUIET).await);
    assert!(
        !m2_after.contains(&String::from_utf8_lossy(&first.payload).into_owned()),
        "QoS 2 message in flight to m1 was sent to m2 [MQTT-4.8.2-5] (m2 before: {m2_before:?}, after: {m2_after:?})"
    );
    let (mut m1, ack) = b.connect_with(persistent(V5, "m1")).await;
    assert!(ack.session_present);
    let again = m1.expect_publish().await;
    assert_eq!(
        again.payload, first.payload,
        "[MQTT-4.8.2-4] delivery completed to the same member"
    );
    assert!(again.dup);
    b.stop().await;
}

// A member that unsubscribes no longer receives; the remaining member gets everything.
#[tokio::test]
async fn unsubscribed_member_leaves_group() {
    let b = TestBroker::start().await;
    let mut m1 = b.client(V5, "m1").await;
    let mut m2 = b.client(V5, "m2").await;
    m1.subscribe("$share/g/ul/t", Q1).await;
    m2.subscribe("$share/g/ul/t", Q1).await;
    let ack = m1.unsubscribe(&["$share/g/ul/t"]).await;
    assert_eq!(ack.reasons, [ReasonCode::SUCCESS]);
    let mut p = b.client(V5, "pub").await;
    for i in 0..4 {
        p.publish("ul/t", format!("{i}").as_bytes(), Q1, false)
            .await;
    }
    assert_eq!(payloads(&m2.collect(4).await), ["0", "1", "2", "3"]);
    m1.expect_nothing(Duration::from_millis(100)).await;
    b.stop().await;
}
