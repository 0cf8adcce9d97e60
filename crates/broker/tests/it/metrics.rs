//! Broker metrics (`BrokerHandle::metrics`, `stats`, `prometheus_text`) and the `$SYS` topics
//! against a known load.

use std::time::Duration;

use hermod_broker::api::DropReason;
use hermod_broker::metrics::{ConnectResult, DisconnectReason};
use hermod_proto::{Packet, QoS};

use crate::harness::*;

const N: usize = 25;

/// N PUBLISH at QoS 0 and N at QoS 1 to one subscriber, 3 to nobody, one too large for the
/// subscriber's queue: every counter exact.
async fn counters_match_a_known_load(v: ProtocolVersion) {
    let b = TestBroker::with(|c| c.max_queued_messages = 1000).await;
    let mut sub = b.client(v, "sub").await;
    sub.subscribe_one("load/#", QoS::AtLeastOnce).await;
    let mut publ = b.client(v, "pub").await;
    let payload = [7u8; 10];
    for _ in 0..N {
        publ.publish("load/q0", &payload, QoS::AtMostOnce, false)
            .await;
        publ.publish("load/q1", &payload, QoS::AtLeastOnce, false)
            .await;
    }
    for _ in 0..3 {
        publ.publish("nobody/here", &payload, QoS::AtLeastOnce, false)
            .await;
    }
    let got = sub.collect(2 * N).await;
    assert_eq!(got.len(), 2 * N);
    b.wait_metric("all sent", |m| m.messages_sent == 2 * N as u64)
        .await;
    let m = b.handle().metrics();
    assert_eq!(m.messages_received_by_qos, [N as u64, N as u64 + 3, 0]);
    assert_eq!(m.messages_sent_by_qos, [N as u64, N as u64, 0]);
    assert_eq!(m.publish_bytes_received, (2 * N as u64 + 3) * 10);
    assert_eq!(m.publish_bytes_sent, 2 * N as u64 * 10);
    assert_eq!(m.packets_received[3], 2 * N as u64 + 3, "PUBLISH received");
    assert_eq!(m.packets_sent[3], 2 * N as u64, "PUBLISH sent");
    assert_eq!(m.packets_received[1], 2, "CONNECT");
    assert_eq!(m.packets_sent[2], 2, "CONNACK");
    assert_eq!(m.packets_sent[4], N as u64 + 3, "PUBACK to the publisher");
    assert_eq!(m.dropped_for(DropReason::NoSubscribers), 3);
    assert_eq!(m.messages_dropped, 0);
    assert_eq!(m.connects_for(ConnectResult::Success), 2);
    assert_eq!(m.clients_connected, 2);
    assert_eq!(m.clients_maximum, 2);
    assert_eq!(
        m.latency.count,
        2 * N as u64,
        "one latency per live delivery"
    );
    assert!(m.bytes_received > m.publish_bytes_received);
    assert!(m.bytes_sent > m.publish_bytes_sent);
    assert_eq!(m.acl_publish_allowed, 2 * N as u64 + 3);
    assert_eq!(m.acl_receive_allowed, 2 * N as u64);
    let st = b.handle().stats();
    assert_eq!(st.messages_received, 2 * N as u64 + 3);
    assert_eq!(st.subscriptions, 1);
    assert_eq!(st.topics, 1);
    assert_eq!(st.messages_no_subscribers, 3);

    let text = b.handle().prometheus_text();
    for line in [
        format!("hermod_messages_received_total{{qos=\"0\"}} {N}"),
        format!("hermod_messages_received_total{{qos=\"1\"}} {}", N + 3),
        format!("hermod_messages_sent_total{{qos=\"1\"}} {N}"),
        "hermod_messages_dropped_total{reason=\"no_subscribers\"} 3".to_owned(),
        "hermod_messages_dropped_total{reason=\"queue_full\"} 0".to_owned(),
        "hermod_connects_total{listener=\"mqtt\",result=\"success\"} 2".to_owned(),
        format!(
            "hermod_packets_received_total{{type=\"publish\"}} {}",
            2 * N + 3
        ),
        format!("hermod_publish_deliver_latency_seconds_count {}", 2 * N),
        "hermod_clients_connected 2".to_owned(),
        "hermod_subscriptions 1".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("hermod_build_info{version=\""));

    publ.disconnect().await;
    b.wait_metric("normal disconnect", |m| {
        m.disconnects_for(DisconnectReason::Normal) == 1 && m.clients_connected == 1
    })
    .await;
    sub.drop_connection();
    b.wait_metric("lost connection", |m| {
        m.disconnects_for(DisconnectReason::Lost) == 1 && m.clients_connected == 0
    })
    .await;
    b.stop().await;
}
both_versions!(counters_match_a_known_load);

/// A full queue drops by reason `queue_full`, counted per delivery and reported as an event.
#[tokio::test]
async fn queue_overflow_is_counted_by_reason() {
    let b = TestBroker::with(|c| c.max_queued_messages = 5).await;
    let mut events = b.handle().events();
    let (mut sub, _) = Client::connect_with(b.addr, persistent(V5, "slow")).await;
    sub.subscribe_one("q/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publ = b.client(V5, "pub").await;
    for i in 0..8u8 {
        publ.publish("q/x", &[i], QoS::AtLeastOnce, false).await;
    }
    b.wait_metric("3 dropped", |m| m.dropped_for(DropReason::QueueFull) == 3)
        .await;
    assert_eq!(b.metric(|m| m.messages_dropped), 3);
    let mut seen = 0;
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        if let hermod_broker::api::Event::MessageDropped {
            reason, client_id, ..
        } = e
        {
            assert_eq!(reason, DropReason::QueueFull);
            assert_eq!(client_id.as_deref(), Some("slow"));
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
    let text = b.handle().prometheus_text();
    assert!(
        text.contains("hermod_messages_dropped_total{reason=\"queue_full\"} 3"),
        "{text}"
    );
    b.stop().await;
}

/// Every PUBLISH that arrives within `d` (QoS 0 only: nothing to acknowledge).
async fn publishes_for(c: &mut Client, d: Duration) -> Vec<hermod_proto::Publish> {
    let deadline = tokio::time::Instant::now() + d;
    let mut v = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return v;
        }
        if let Some(Packet::Publish(p)) = c.recv(left).await {
            v.push(p);
        }
    }
}

/// Waits (bounded) for a `$SYS` topic to be published with `want`.
async fn wait_sys(c: &mut Client, topic: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} never matched"
        );
        if let Some(Packet::Publish(p)) = c.recv(Duration::from_secs(3)).await
            && p.topic == topic
        {
            let v = String::from_utf8_lossy(&p.payload).into_owned();
            if want(&v) {
                return v;
            }
        }
    }
}

/// `$SYS` with sys_interval = 1: Mosquitto's names, values of a known load, unchanged values
/// not re-published, load averages that rise under load; QoS 0 and retained.
async fn sys_topics_follow_the_load(v: ProtocolVersion) {
    let b = TestBroker::with(|c| c.sys_interval = 1).await;
    // The first update is made at start: wait for it to be retained.
    for _ in 0..200 {
        if b.handle().retained("$SYS/#").len() > 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut watcher = b.client(v, "watcher").await;
    watcher.subscribe_one("$SYS/#", QoS::AtLeastOnce).await;
    // The retained values first (sent on subscribe, flagged retain).
    let first = watcher.drain(Duration::from_millis(300)).await;
    assert!(first.iter().all(|p| p.qos == QoS::AtMostOnce));
    assert!(first.iter().any(|p| p.retain));
    let names: Vec<&str> = first.iter().map(|p| p.topic.as_str()).collect();
    for name in [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/disconnected",
        "$SYS/broker/clients/expired",
        "$SYS/broker/clients/maximum",
        "$SYS/broker/clients/total",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/messages/stored",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/publish/messages/received",
        "$SYS/broker/publish/messages/sent",
        "$SYS/broker/publish/messages/dropped",
        "$SYS/broker/publish/bytes/received",
        "$SYS/broker/publish/bytes/sent",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/shared_subscriptions/count",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/store/messages/count",
        "$SYS/broker/store/messages/bytes",
        "$SYS/broker/load/messages/received/1min",
        "$SYS/broker/load/publish/received/5min",
        "$SYS/broker/load/publish/dropped/15min",
        "$SYS/broker/load/bytes/sent/1min",
        "$SYS/broker/load/connections/1min",
        "$SYS/broker/load/sockets/15min",
    ] {
        assert!(names.contains(&name), "{name} not among {names:?}");
    }
    let version = first.iter().find(|p| p.topic == "$SYS/broker/version");
    assert!(version.is_some_and(|p| p.payload.starts_with(b"hermod ")));

    // A known load: N messages, N * 10 payload bytes.
    let mut publ = b.client(v, "pub").await;
    for _ in 0..N {
        publ.publish("work/x", &[1u8; 10], QoS::AtLeastOnce, false)
            .await;
    }
    wait_sys(&mut watcher, "$SYS/broker/publish/messages/received", |s| {
        s == N.to_string()
    })
    .await;
    wait_sys(&mut watcher, "$SYS/broker/publish/bytes/received", |s| {
        s == (N * 10).to_string()
    })
    .await;
    // Idle now: publish/messages/received is not published again, the uptime is.
    let idle = publishes_for(&mut watcher, Duration::from_millis(2500)).await;
    let topics: Vec<&str> = idle.iter().map(|p| p.topic.as_str()).collect();
    assert!(topics.contains(&"$SYS/broker/uptime"), "{topics:?}");
    assert!(
        !topics.contains(&"$SYS/broker/publish/messages/received"),
        "unchanged value re-published: {topics:?}"
    );
    b.stop().await;
}
both_versions!(sys_topics_follow_the_load);

/// The load averages rise under load (sys_interval = 1).
#[tokio::test]
async fn sys_load_rises_under_load() {
    let b = TestBroker::with(|c| c.sys_interval = 1).await;
    let mut watcher = b.client(V5, "watcher").await;
    watcher
        .subscribe_one("$SYS/broker/load/publish/received/1min", QoS::AtMostOnce)
        .await;
    let initial = wait_sys(
        &mut watcher,
        "$SYS/broker/load/publish/received/1min",
        |_| true,
    )
    .await;
    assert_eq!(initial, "0.00");
    let mut publ = b.client(V5, "pub").await;
    for _ in 0..50 {
        publ.publish("work/x", b"x", QoS::AtLeastOnce, false).await;
    }
    let risen = wait_sys(
        &mut watcher,
        "$SYS/broker/load/publish/received/1min",
        |s| s.parse::<f64>().is_ok_and(|x| x > 1.0),
    )
    .await;
    assert!(risen.parse::<f64>().unwrap_or(0.0) > 1.0);
    b.stop().await;
}

/// The receive ACL governs `$SYS` like any topic: a client whose rules do not let it read
/// `$SYS/#` gets nothing; one allowed does.
#[tokio::test]
async fn acl_hides_sys_from_a_client_not_allowed_to_read_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("acl"),
        "topic readwrite t/#\nuser watcher\ntopic read $SYS/#\n",
    )
    .expect("acl written");
    let b = TestBroker::start_in(
        dir,
        "allow_anonymous = true\nacl_file = \"acl\"\nsys_interval = 1\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
    )
    .await;
    let mut anon = b.client(V5, "anon").await;
    // The subscription itself is refused or granted per the subscribe ACL; either way, no
    // $SYS message reaches this client.
    anon.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let c = hermod_proto::Connect {
        protocol: V5,
        client_id: "watcher".into(),
        username: Some("watcher".into()),
        clean_start: true,
        ..hermod_proto::Connect::default()
    };
    let (mut watcher, ack) = Client::connect_with(b.addr, c).await;
    assert_eq!(ack.reason, hermod_proto::ReasonCode::SUCCESS);
    watcher.subscribe_one("$SYS/#", QoS::AtMostOnce).await;
    wait_sys(&mut watcher, "$SYS/broker/uptime", |_| true).await;
    let leaked = publishes_for(&mut anon, Duration::from_millis(1500)).await;
    assert!(leaked.is_empty(), "{leaked:?}");
    assert!(b.metric(|m| m.acl_receive_denied + m.acl_subscribe_denied) > 0);
    b.stop().await;
}

/// Clients cannot publish into `$SYS` (as Mosquitto): the message is dropped (v5: 0x87).
async fn clients_cannot_publish_to_sys(v: ProtocolVersion) {
    let b = TestBroker::start().await;
    let mut watcher = b.client(v, "watcher").await;
    watcher.subscribe_one("$SYS/#", QoS::AtLeastOnce).await;
    let mut evil = b.client(v, "evil").await;
    let code = evil
        .publish("$SYS/broker/version", b"fake", QoS::AtLeastOnce, true)
        .await;
    if v == V5 {
        assert_eq!(code, hermod_proto::ReasonCode::NOT_AUTHORIZED);
    }
    evil.publish("$SYS/x", b"fake", QoS::AtMostOnce, false)
        .await;
    watcher.expect_nothing(Duration::from_millis(300)).await;
    assert!(b.handle().retained("$SYS/#").is_empty());
    assert_eq!(b.metric(|m| m.acl_publish_denied), 2);
    b.stop().await;
}
both_versions!(clients_cannot_publish_to_sys);

/// `promtool check metrics` (Debian package `prometheus`) parses the exposition and finds
/// nothing to lint. Skipped, saying so, where promtool is not installed.
#[tokio::test]
async fn promtool_accepts_the_exposition() {
    use std::io::Write as _;
    let b = TestBroker::start().await;
    let mut sub = b.client(V5, "sub").await;
    sub.subscribe_one("p/#", QoS::AtLeastOnce).await;
    let mut publ = b.client(V5, "pub").await;
    publ.publish("p/1", b"x", QoS::AtLeastOnce, false).await;
    sub.collect(1).await;
    let text = b.handle().prometheus_text();
    b.stop().await;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: promtool not installed (apt-get install -y prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("written");
    let out = child.wait_with_output().expect("promtool ran");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n{text}"
    );
}
