//! Durable storage: what a persistent session, its queue, inbound QoS 2 state and retained
//! messages look like after the broker restarts on the same data directory. (The `kill -9`
//! crash test runs the broker as a separate process: `tests/crash.rs`.)

use std::path::Path;
use std::time::Duration;

use hermod_broker::config::{CorruptSetting, StoreSection, SyncSetting};
use hermod_proto::{Packet, ProtocolVersion, PublishAck, QoS, ReasonCode};

use crate::harness::*;

async fn start_on(dir: &Path, sync: SyncSetting) -> TestBroker {
    let path = dir.to_path_buf();
    TestBroker::with(move |c| {
        c.store = StoreSection {
            path,
            sync,
            on_corrupt: CorruptSetting::Fail,
            max_disk_bytes: 0,
        };
    })
    .await
}

async fn queue_survives_restart(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut sub, ack) = b.connect_with(persistent(v, "durable-sub")).await;
    assert!(!ack.session_present);
    sub.subscribe("d/#", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut publisher = b.client(v, "durable-pub").await;
    for i in 0..5 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publisher
            .publish("d/x", format!("m{i}").as_bytes(), qos, false)
            .await;
    }
    publisher.disconnect().await;
    b.stop().await;

    // Restart: the session, its subscription and its queue come back.
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut sub, ack) = b.connect_with(persistent(v, "durable-sub")).await;
    assert!(
        ack.session_present,
        "[MQTT-3.2.2-3] session present after restart"
    );
    let got = sub.collect(5).await;
    assert_eq!(
        payloads(&got),
        ["m0", "m1", "m2", "m3", "m4"],
        "in order [MQTT-4.6.0-5]"
    );
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
    sub.expect_nothing(Duration::from_millis(300)).await;
    // The subscription itself survived: a new message is routed.
    let mut publisher = b.client(v, "durable-pub").await;
    publisher
        .publish("d/y", b"after", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(payloads(&sub.collect(1).await), ["after"]);
    sub.disconnect().await;
    publisher.disconnect().await;
    b.stop().await;

    // Acknowledged messages were removed from the store: nothing is redelivered.
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut sub, ack) = b.connect_with(persistent(v, "durable-sub")).await;
    assert!(ack.session_present);
    sub.expect_nothing(Duration::from_millis(400)).await;
    sub.disconnect().await;
    b.stop().await;
}

async fn retained_survives_restart(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Batch).await;
    let mut c = b.client(v, "ret-pub").await;
    c.publish("r/keep", b"kept", QoS::AtLeastOnce, true).await;
    c.publish("r/gone", b"soon gone", QoS::AtLeastOnce, true)
        .await;
    c.publish("r/gone", b"", QoS::AtLeastOnce, true).await; // [MQTT-3.3.1-6] delete
    c.disconnect().await;
    b.stop().await;

    let b = start_on(dir.path(), SyncSetting::Batch).await;
    let mut s = b.client(v, "ret-sub").await;
    s.subscribe("r/#", QoS::AtLeastOnce).await;
    let got = s.drain(Duration::from_millis(400)).await;
    assert_eq!(payloads(&got), ["kept"]);
    assert!(
        got[0].retain,
        "[MQTT-3.3.1-8] retained flag on subscribe delivery"
    );
    s.disconnect().await;
    b.stop().await;
}

async fn inbound_qos2_state_survives_restart(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut watcher, _) = b.connect_with(persistent(v, "q2-watch")).await;
    watcher.subscribe("q2/#", QoS::AtLeastOnce).await;
    watcher.disconnect().await;
    let (mut publisher, _) = b.connect_with(persistent(v, "q2-pub")).await;
    let mut p = publish("q2/t", b"once", QoS::ExactlyOnce, false);
    p.packet_id = Some(pid(7));
    publisher.send(&Packet::Publish(p.clone())).await;
    publisher
        .wait_for(
            "PUBREC",
            |p| matches!(p, Packet::PublishReceived(a) if a.packet_id == pid(7)),
        )
        .await;
    publisher.drop_connection(); // no PUBREL: the broker restarts in between
    b.stop().await;

    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut publisher, ack) = b.connect_with(persistent(v, "q2-pub")).await;
    assert!(ack.session_present);
    // The client re-sends the PUBLISH (DUP) as [MQTT-4.4.0-1] requires: not routed a second time.
    p.dup = true;
    publisher.send(&Packet::Publish(p)).await;
    publisher
        .wait_for(
            "PUBREC",
            |p| matches!(p, Packet::PublishReceived(a) if a.packet_id == pid(7)),
        )
        .await;
    publisher
        .send(&Packet::PublishRelease(PublishAck::new(pid(7))))
        .await;
    match publisher
        .wait_for("PUBCOMP", |p| matches!(p, Packet::PublishComplete(_)))
        .await
    {
        Packet::PublishComplete(c) => {
            assert_eq!(c.reason, ReasonCode::SUCCESS, "packet id was known")
        }
        _ => unreachable!(),
    }
    let (mut watcher, _) = b.connect_with(persistent(v, "q2-watch")).await;
    let got = watcher.drain(Duration::from_millis(500)).await;
    assert_eq!(
        payloads(&got),
        ["once"],
        "exactly once across a restart [MQTT-4.3.3]"
    );
    watcher.disconnect().await;
    publisher.disconnect().await;
    b.stop().await;
}

async fn clean_sessions_are_not_stored(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let mut c = b.client(v, "clean-one").await;
    c.subscribe("c/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    b.stop().await;
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (c, ack) = b.connect_with(persistent(v, "clean-one")).await;
    assert!(!ack.session_present, "a clean session left nothing behind");
    c.disconnect().await;
    b.stop().await;
}

async fn long_offline_queue_is_paged_back_in_order(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let b = TestBroker::with(move |c| {
        c.store = StoreSection {
            path,
            sync: SyncSetting::Os,
            on_corrupt: CorruptSetting::Fail,
            max_disk_bytes: 0,
        };
        c.max_queued_messages = 2000;
    })
    .await;
    let (mut sub, _) = b.connect_with(persistent(v, "pager")).await;
    sub.subscribe("p/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = b.client(v, "pager-pub").await;
    for i in 0..700 {
        publisher
            .publish("p/x", format!("{i:04}").as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    publisher.disconnect().await;
    // Offline: the queue lives on disk, paged in (256 at a time) once the client is back.
    let (mut sub, ack) = b.connect_with(persistent(v, "pager")).await;
    assert!(ack.session_present);
    let got = sub.collect(700).await;
    let want: Vec<String> = (0..700).map(|i| format!("{i:04}")).collect();
    assert_eq!(payloads(&got), want);
    sub.expect_nothing(Duration::from_millis(300)).await;
    sub.disconnect().await;
    b.stop().await;
}

async fn session_expiry_counts_while_the_broker_is_down(v: ProtocolVersion) {
    if !v.is_v5() {
        return; // v3.1.1 sessions expire by persistent_client_expiration (tested in the unit tests)
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let mut c = persistent(v, "short-lived");
    c.properties.session_expiry_interval = Some(1);
    let (cl, _) = b.connect_with(c.clone()).await;
    cl.disconnect().await;
    b.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (cl, ack) = b.connect_with(c).await;
    assert!(
        !ack.session_present,
        "the session expired while the broker was down"
    );
    cl.disconnect().await;
    b.stop().await;
}

both_versions!(
    queue_survives_restart,
    retained_survives_restart,
    inbound_qos2_state_survives_restart,
    clean_sessions_are_not_stored,
    long_offline_queue_is_paged_back_in_order,
    session_expiry_counts_while_the_broker_is_down,
);

#[tokio::test]
async fn corrupt_store_is_refused_or_quarantined() {
    use hermod_broker::{Broker, Config};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hermod.redb"),
        b"this is not a database, just garbage bytes",
    )
    .expect("write");
    let mut cfg = Config::for_tests();
    cfg.store = StoreSection {
        path: dir.path().to_path_buf(),
        sync: SyncSetting::Batch,
        on_corrupt: CorruptSetting::Fail,
        max_disk_bytes: 0,
    };
    let err = Broker::bind(cfg.clone())
        .await
        .expect_err("corrupt store refused");
    assert!(
        err.to_string().contains("hermod.redb"),
        "error names the file: {err}"
    );
    cfg.store.on_corrupt = CorruptSetting::Quarantine;
    let b = Broker::bind(cfg)
        .await
        .expect("quarantined and started empty");
    drop(b);
    assert!(
        dir.path().join("hermod.redb.bad").exists(),
        "renamed to *.bad"
    );
}

/// Fills the offline queue of a persistent session with `n` messages m0..m{n-1} and returns what
/// it receives on reconnect.
async fn overflow_run(
    store: Option<&Path>,
    tweak: impl FnOnce(&mut hermod_broker::Config) + Send + 'static,
    n: usize,
) -> (Vec<String>, u64) {
    let store = store.map(Path::to_path_buf);
    let b = TestBroker::with(move |c| {
        if let Some(path) = store {
            c.store = StoreSection {
                path,
                sync: SyncSetting::Os,
                on_corrupt: CorruptSetting::Fail,
                max_disk_bytes: 0,
            };
        }
        tweak(c);
    })
    .await;
    let v = hermod_proto::ProtocolVersion::V5;
    let (mut sub, _) = b.connect_with(persistent(v, "ovf-sub")).await;
    sub.subscribe("o/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = b.client(v, "ovf-pub").await;
    for i in 0..n {
        publisher
            .publish(
                "o/t",
                format!("m{i}:{}", "x".repeat(15)).as_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
    publisher.disconnect().await;
    let (mut sub, _) = b.connect_with(persistent(v, "ovf-sub")).await;
    let got = sub.drain(Duration::from_millis(500)).await;
    let dropped = b.metric(|m| m.messages_dropped);
    sub.disconnect().await;
    b.stop().await;
    let names = payloads(&got)
        .into_iter()
        .map(|p| p.split(':').next().unwrap_or_default().to_owned())
        .collect();
    (names, dropped)
}

#[tokio::test]
async fn queue_overflow_drop_new_and_drop_oldest() {
    use hermod_broker::config::QueueOverflow;
    // In memory, and stored: the same policy.
    for with_store in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = with_store.then(|| dir.path());
        let (got, dropped) = overflow_run(store, |c| c.max_queued_messages = 5, 8).await;
        assert_eq!(
            got,
            ["m0", "m1", "m2", "m3", "m4"],
            "drop_new keeps the first (store: {with_store})"
        );
        assert_eq!(dropped, 3, "drops are counted");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = with_store.then(|| dir.path());
        let (got, dropped) = overflow_run(
            store,
            |c| {
                c.max_queued_messages = 5;
                c.queue_overflow = QueueOverflow::DropOldest;
            },
            8,
        )
        .await;
        assert_eq!(
            got,
            ["m3", "m4", "m5", "m6", "m7"],
            "drop_oldest keeps the newest (store: {with_store})"
        );
        assert_eq!(dropped, 3);
    }
}

#[tokio::test]
async fn max_queued_bytes_bounds_the_memory_queue() {
    // A message counts topic, properties and payload (`Message::size`): 37 bytes here, so
    // 80 bytes hold two.
    let (got, dropped) = overflow_run(None, |c| c.max_queued_bytes = 80, 4).await;
    assert_eq!(got, ["m0", "m1"]);
    assert_eq!(dropped, 2);
}

/// With a store, an offline persistent session's deliveries live on disk only; the byte limit
/// counts them too (it used to count the in-memory queue only, so a queue on disk grew to
/// `max_queued_messages` whatever `max_queued_bytes` said). Both overflow policies.
#[tokio::test]
async fn max_queued_bytes_counts_the_queue_on_disk() {
    use hermod_broker::config::QueueOverflow;
    let dir = tempfile::tempdir().expect("tempdir");
    let (got, dropped) = overflow_run(Some(dir.path()), |c| c.max_queued_bytes = 80, 4).await;
    assert_eq!(got, ["m0", "m1"], "drop_new: the first two fit in 80 bytes");
    assert_eq!(dropped, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let (got, dropped) = overflow_run(
        Some(dir.path()),
        |c| {
            c.max_queued_bytes = 80;
            c.queue_overflow = QueueOverflow::DropOldest;
        },
        4,
    )
    .await;
    assert_eq!(got, ["m2", "m3"], "drop_oldest: the newest two");
    assert_eq!(dropped, 2);
}

/// The sizes of a queue on disk are read back at start-up: after a restart the messages already
/// queued still count against `max_queued_bytes`.
#[tokio::test]
async fn max_queued_bytes_counts_a_queue_restored_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = ProtocolVersion::V5;
    let start = |dir: &Path| {
        let path = dir.to_path_buf();
        TestBroker::with(move |c| {
            c.store = StoreSection {
                path,
                sync: SyncSetting::Os,
                on_corrupt: CorruptSetting::Fail,
                max_disk_bytes: 0,
            };
            // Five messages of 37 bytes (`Message::size`).
            c.max_queued_bytes = 200;
        })
    };
    let b = start(dir.path()).await;
    let (mut sub, _) = b.connect_with(persistent(v, "bytes-sub")).await;
    sub.subscribe("o/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut p = b.client(v, "bytes-pub").await;
    for i in 0..3 {
        let m = format!("m{i}:{}", "x".repeat(15));
        p.publish("o/t", m.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    p.disconnect().await;
    b.stop().await;

    let b = start(dir.path()).await;
    let mut p = b.client(v, "bytes-pub").await;
    for i in 3..13 {
        let m = format!("m{i}:{}", "x".repeat(15));
        p.publish("o/t", m.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    p.disconnect().await;
    let (mut sub, ack) = b.connect_with(persistent(v, "bytes-sub")).await;
    assert!(ack.session_present);
    let got = sub.drain(Duration::from_millis(500)).await;
    let names: Vec<String> = payloads(&got)
        .into_iter()
        .map(|p| p.split(':').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names[..3], ["m0", "m1", "m2"], "the stored ones first");
    // Without the restored sizes the limit would have let 5 more in (8 in all). The stored
    // size of a message is its record's, a little more than `Message::size`.
    assert!(
        (3..=5).contains(&names.len()),
        "at most 200 bytes queued: got {names:?}"
    );
    sub.disconnect().await;
    b.stop().await;
}

// issue 9: `max_queued_bytes` counts the whole message. Messages made of user properties with
// an empty payload used to count 0 bytes each, so the queue grew without bound (290 MB with a
// 1 MB limit).
#[tokio::test]
async fn max_queued_bytes_counts_user_properties() {
    let b = TestBroker::with(|c| c.max_queued_bytes = 4096).await;
    let v = hermod_proto::ProtocolVersion::V5;
    let (mut sub, _) = b.connect_with(persistent(v, "props-sub")).await;
    sub.subscribe("up/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = b.client(v, "props-pub").await;
    for i in 0..10 {
        let mut m = publish("up/t", b"", QoS::AtLeastOnce, false);
        m.properties.user_properties = vec![(format!("k{i}"), "v".repeat(2000))];
        publisher.publish_packet(m).await;
    }
    let (mut sub, _) = b.connect_with(persistent(v, "props-sub")).await;
    let got = sub.drain(Duration::from_millis(500)).await;
    // About 2 KB each: two fit in 4 KB, the rest are dropped and counted.
    assert_eq!(
        got.len(),
        2,
        "queued {} messages of ~2 KB within 4 KB",
        got.len()
    );
    assert_eq!(b.metric(|m| m.messages_dropped), 8);
    sub.disconnect().await;
    b.stop().await;
}

#[tokio::test]
async fn disk_budget_drops_instead_of_storing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    // A 1-byte budget: the first stored message already exceeds it.
    let (got, dropped) = overflow_run(Some(&path), |c| c.store.max_disk_bytes = 1, 3).await;
    assert_eq!(got, ["m0"]);
    assert_eq!(dropped, 2);
}

/// [MQTT-3.1.3-9] A will waiting for its delay survives a restart: it is published once the rest
/// of the delay passes, unless the client reconnects first.
#[tokio::test]
async fn delayed_will_survives_restart() {
    use hermod_proto::{LastWill, WillProperties};
    let v = hermod_proto::ProtocolVersion::V5;
    for reconnect in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = start_on(dir.path(), SyncSetting::Os).await;
        let mut c = persistent(v, "will-holder");
        c.will = Some(LastWill {
            topic: "wills/holder".into(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(2),
                ..WillProperties::default()
            },
        });
        let (holder, _) = b.connect_with(c.clone()).await;
        holder.drop_connection(); // abnormal: the will is pending for 2 s
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.stop().await;

        let b = start_on(dir.path(), SyncSetting::Os).await;
        let mut watcher = b.client(v, "will-watch").await;
        watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
        if reconnect {
            c.will = None;
            let (holder, ack) = b.connect_with(c.clone()).await;
            assert!(ack.session_present);
            watcher.expect_nothing(Duration::from_millis(2500)).await;
            holder.disconnect().await;
        } else {
            let got = watcher.drain(Duration::from_millis(3000)).await;
            assert_eq!(
                payloads(&got),
                ["gone"],
                "the pending will was published after the restart"
            );
        }
        watcher.disconnect().await;
        b.stop().await;
    }
}

// issue 9: a client that resumes its stored session with Session Expiry 0 (v5) or clean session
// (3.1.1) ends it [MQTT-3.1.2-4/5]: once it disconnects the session is gone, also from the store,
// so a restart does not bring it back (before: session present = 1 after the restart, with
// messages queued for nobody).
async fn session_ended_by_its_client_stays_ended_after_restart(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut sub, _) = b.connect_with(persistent(v, "ender")).await;
    sub.subscribe("e/#", Q1).await;
    sub.disconnect().await;
    let mut p = b.client(v, "pub").await;
    p.publish("e/1", b"queued", Q1, false).await;
    // Resume (session present), then end it: v5 with expiry 0, 3.1.1 with clean session.
    let mut ending = persistent(v, "ender");
    if v.is_v5() {
        ending.properties.session_expiry_interval = Some(0);
    } else {
        ending.clean_start = true;
    }
    let (mut c, ack) = b.connect_with(ending).await;
    assert_eq!(
        ack.session_present,
        v.is_v5(),
        "v5 resumes, 3.1.1 clean starts"
    );
    if v.is_v5() {
        assert_eq!(c.expect_publish_acked().await.payload.as_ref(), b"queued");
    }
    c.disconnect().await;
    p.disconnect().await;
    b.stop().await;

    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut c, ack) = b.connect_with(persistent(v, "ender")).await;
    assert!(
        !ack.session_present,
        "the ended session came back after a restart"
    );
    c.expect_nothing(QUIET).await;
    c.disconnect().await;
    b.stop().await;
}
both_versions!(session_ended_by_its_client_stays_ended_after_restart);

/// Waits up to `within` for the broker's `store_available` gauge to read `want`.
async fn wait_store_available(b: &TestBroker, want: u64, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while b.metric(|m| m.store_available) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "store_available never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a QoS 1/2 PUBLISH and returns the reason code of its PUBACK / PUBREC (waiting up to
/// 10 s: a commit caught by a disk error waits `FAILED_COMMIT_WAIT` for a retry first).
async fn publish_reason(c: &mut Client, topic: &str, payload: &[u8], qos: QoS) -> ReasonCode {
    let mut p = publish(topic, payload, qos, false);
    let id = c.next_packet_id();
    p.packet_id = Some(id);
    c.send(&Packet::Publish(p)).await;
    match c.recv(Duration::from_secs(10)).await {
        Some(Packet::PublishAck(a)) if qos == QoS::AtLeastOnce && a.packet_id == id => a.reason,
        Some(Packet::PublishReceived(a)) if qos == QoS::ExactlyOnce && a.packet_id == id => {
            if !a.reason.is_error() {
                c.send(&Packet::PublishRelease(PublishAck::new(id))).await;
                c.wait_for("PUBCOMP", |p| matches!(p, Packet::PublishComplete(_)))
                    .await;
            }
            a.reason
        }
        other => panic!("expected the ack of {topic}, got {other:?}"),
    }
}

/// Issue 9, item 7: a disk error no longer takes durable traffic down until a restart, and no
/// longer does so silently. While the store cannot write, a v5 publisher is told 0x80 and keeps
/// its connection, a 3.1.1 publisher is disconnected (it cannot be told no), a persistent session
/// is refused at CONNACK (0x88 / return code 3) instead of getting an empty queue, and clean
/// sessions work as usual. Once the disk works again everything resumes, without a restart, and
/// nothing acknowledged is lost.
#[tokio::test]
async fn disk_fault_is_reported_and_heals_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = hermod_broker::store::fault_switch(&dir.path().join("hermod.redb"));
    let b = start_on(dir.path(), SyncSetting::Batch).await;
    assert_eq!(b.metric(|m| m.store_available), 1);
    let (mut sub, _) = b.connect_with(persistent(V5, "fault-sub")).await;
    sub.subscribe("f/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let (mut sub3, _) = b.connect_with(persistent(V311, "fault-sub3")).await;
    sub3.subscribe("f/#", QoS::AtLeastOnce).await;
    sub3.disconnect().await;
    let mut publisher = b.client(V5, "fault-pub").await;
    assert_eq!(
        publish_reason(&mut publisher, "f/a", b"before", QoS::AtLeastOnce).await,
        ReasonCode::SUCCESS
    );

    // The disk fails.
    fault.set_failing(true);
    assert_eq!(
        publish_reason(&mut publisher, "f/a", b"during", QoS::AtLeastOnce).await,
        ReasonCode::UNSPECIFIED_ERROR,
        "the commit failed: not acknowledged as success"
    );
    wait_store_available(&b, 0, Duration::from_secs(5)).await;
    assert_eq!(
        publish_reason(&mut publisher, "f/a", b"refused", QoS::AtLeastOnce).await,
        ReasonCode::UNSPECIFIED_ERROR
    );
    assert_eq!(
        publish_reason(&mut publisher, "f/a", b"refused-q2", QoS::ExactlyOnce).await,
        ReasonCode::UNSPECIFIED_ERROR,
        "PUBREC 0x80 ends the QoS 2 flow"
    );
    publisher.ping().await; // still connected
    let (mut c, ack) = b.connect_with(persistent(V5, "fault-sub")).await;
    assert_eq!(
        ack.reason,
        ReasonCode::SERVER_UNAVAILABLE,
        "v5 CONNACK 0x88"
    );
    assert!(c.is_closed_within(WAIT).await);
    let (mut c, ack) = b.connect_with(persistent(V311, "fault-sub3")).await;
    assert_eq!(
        ack.reason,
        ReasonCode::SERVER_UNAVAILABLE,
        "3.1.1 return code 3"
    );
    assert!(c.is_closed_within(WAIT).await);
    let (mut c, ack) = b.connect_with(persistent(V5, "fault-new")).await;
    assert_eq!(
        ack.reason,
        ReasonCode::SERVER_UNAVAILABLE,
        "a new persistent session needs the store too"
    );
    assert!(c.is_closed_within(WAIT).await);
    // A 3.1.1 publisher cannot be told no: it is disconnected instead of acknowledged.
    let mut p3 = b.client(V311, "fault-pub3").await;
    let mut p = publish("f/a", b"refused-3", QoS::AtLeastOnce, false);
    p.packet_id = Some(pid(9));
    p3.send(&Packet::Publish(p)).await;
    match p3.recv(Duration::from_secs(5)).await {
        None => {}
        Some(other) => panic!("expected the connection closed, got {other:?}"),
    }
    assert_eq!(
        b.metric(|m| m.protocol_errors),
        0,
        "a store failure is not the client's protocol error"
    );
    // Clean sessions do not need the store.
    let mut clean = b.client(V5, "fault-clean").await;
    clean.subscribe("g/#", QoS::AtLeastOnce).await;
    publisher
        .publish("g/x", b"memory only", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(payloads(&clean.collect(1).await), ["memory only"]);
    clean.disconnect().await;

    // The disk works again: no restart.
    fault.set_failing(false);
    wait_store_available(&b, 1, Duration::from_secs(15)).await;
    assert_eq!(
        publish_reason(&mut publisher, "f/a", b"after", QoS::AtLeastOnce).await,
        ReasonCode::SUCCESS
    );
    let (mut sub, ack) = b.connect_with(persistent(V5, "fault-sub")).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.session_present, "the session survived the fault");
    // "during" was routed before the store knew the disk failed: its batch was retried and
    // written once the disk healed (its publisher was told 0x80: QoS 1 allows the copy). What
    // was refused while the store was down was not stored.
    let got = sub.drain(Duration::from_millis(500)).await;
    assert_eq!(payloads(&got), ["before", "during", "after"]);
    sub.disconnect().await;
    let (mut sub3, ack) = b.connect_with(persistent(V311, "fault-sub3")).await;
    assert!(ack.session_present);
    let got = sub3.drain(Duration::from_millis(500)).await;
    assert_eq!(payloads(&got), ["before", "during", "after"]);
    sub3.disconnect().await;
    publisher.disconnect().await;
    b.stop().await;

    // And the file is consistent: after a restart the sessions are there, their queues empty.
    let b = start_on(dir.path(), SyncSetting::Batch).await;
    let (mut sub, ack) = b.connect_with(persistent(V5, "fault-sub")).await;
    assert!(ack.session_present);
    sub.expect_nothing(Duration::from_millis(300)).await;
    sub.disconnect().await;
    b.stop().await;
}

/// Over `[store] max_disk_bytes` a copy to be stored is dropped: a v5 publisher is told 0x97
/// (quota exceeded), not 0x10 (no matching subscribers); a 3.1.1 one cannot be told no and is
/// acknowledged, the drop counted.
#[tokio::test]
async fn over_max_disk_bytes_v5_publisher_gets_quota_exceeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let b = TestBroker::with(move |c| {
        c.store = StoreSection {
            path,
            sync: SyncSetting::Os,
            on_corrupt: CorruptSetting::Fail,
            max_disk_bytes: 1,
        };
    })
    .await;
    let (mut sub, _) = b.connect_with(persistent(V5, "quota-sub")).await;
    sub.subscribe("q/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut p5 = b.client(V5, "quota-pub5").await;
    let mut p3 = b.client(V311, "quota-pub3").await;
    // Under budget: stored (it takes the store over its 1-byte budget).
    assert_eq!(
        publish_reason(&mut p5, "q/t", b"first", QoS::AtLeastOnce).await,
        ReasonCode::SUCCESS
    );
    let dropped = b.metric(|m| m.messages_dropped);
    assert_eq!(
        publish_reason(&mut p5, "q/t", b"v5-q1", QoS::AtLeastOnce).await,
        ReasonCode::QUOTA_EXCEEDED
    );
    assert_eq!(
        publish_reason(&mut p5, "q/t", b"v5-q2", QoS::ExactlyOnce).await,
        ReasonCode::QUOTA_EXCEEDED
    );
    assert_eq!(
        publish_reason(&mut p3, "q/t", b"v3-q1", QoS::AtLeastOnce).await,
        ReasonCode::SUCCESS,
        "3.1.1: acknowledged as before"
    );
    assert_eq!(
        b.metric(|m| m.messages_dropped),
        dropped + 3,
        "drops counted"
    );
    p5.ping().await;
    let (mut sub, _) = b.connect_with(persistent(V5, "quota-sub")).await;
    assert_eq!(
        payloads(&sub.drain(Duration::from_millis(400)).await),
        ["first"]
    );
    sub.disconnect().await;
    p5.disconnect().await;
    p3.disconnect().await;
    b.stop().await;
}

// issue 9: a persistent session's subscriptions are stored one row each (a SUBSCRIBE writes one
// small row instead of rewriting the whole session record, which made N single-filter
// SUBSCRIBEs cost O(N²)); subscribing and unsubscribing one by one survives a restart.
async fn subscriptions_one_by_one_survive_restart(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut s, _) = b.connect_with(persistent(v, "rows")).await;
    for i in 0..500 {
        s.subscribe(&format!("rows/{i}"), Q1).await;
    }
    s.unsubscribe(&["rows/7"]).await;
    s.subscribe("rows/8", QoS::AtMostOnce).await; // replaced: QoS 0 now
    s.disconnect().await;
    b.stop().await;

    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut s, ack) = b.connect_with(persistent(v, "rows")).await;
    assert!(ack.session_present);
    let mut p = b.client(v, "rows-pub").await;
    for t in ["rows/0", "rows/7", "rows/8", "rows/499"] {
        p.publish(t, t.as_bytes(), Q1, false).await;
    }
    let got = s.drain(QUIET).await;
    let mut topics: Vec<(String, QoS)> = got.iter().map(|m| (m.topic.clone(), m.qos)).collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        topics,
        [
            ("rows/0".to_owned(), Q1),
            ("rows/499".to_owned(), Q1),
            ("rows/8".to_owned(), QoS::AtMostOnce)
        ],
        "rows/7 was unsubscribed, rows/8 replaced"
    );
    b.stop().await;
}
both_versions!(subscriptions_one_by_one_survive_restart);

// issue 10: a shared-subscription delivery handed from a leaving member to another persistent
// member on a store must get a place (a `seq`) in the receiver's own durable queue. It used to
// keep the leaver's number, so the receiver skipped it as "already in flight" when one of its
// own stored messages had that number, or dequeued its own entry with it on acknowledgement.
async fn shared_delivery_handed_over_gets_its_own_queue_place(v: ProtocolVersion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut m2, _) = b.connect_with(persistent(v, "member-b")).await;
    m2.subscribe("$share/g/s/#", Q1).await;
    m2.subscribe("b/#", Q1).await;
    m2.disconnect().await;
    let mut p = b.client(v, "pub").await;
    // B's own stored queue: seq 1 and 2.
    p.publish("b/1", b"b1", Q1, false).await;
    p.publish("b/2", b"b2", Q1, false).await;
    // A (online) gets the shared messages, stored in its queue as its seq 1 and 2, and leaves
    // without acknowledging them: they go to B.
    let (mut m1, _) = b.connect_with(persistent(v, "member-a")).await;
    m1.subscribe("$share/g/s/#", Q1).await;
    p.publish("s/1", b"s1", Q1, false).await;
    p.publish("s/2", b"s2", Q1, false).await;
    assert_eq!(m1.expect_publish().await.payload.as_ref(), b"s1");
    assert_eq!(m1.expect_publish().await.payload.as_ref(), b"s2");
    m1.unsubscribe(&["$share/g/s/#"]).await; // A leaves the group (its deliveries move on)
    m1.drop_connection();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut m2, _) = b.connect_with(persistent(v, "member-b")).await;
    let got = m2.drain(QUIET).await; // acknowledged as they arrive
    assert_eq!(
        sorted(payloads(&got)),
        ["b1", "b2", "s1", "s2"],
        "B gets its own and the handed-over messages"
    );
    m2.disconnect().await;
    p.disconnect().await;
    b.stop().await;
    // Nothing of B's is left over (or lost) across a restart.
    let b = start_on(dir.path(), SyncSetting::Os).await;
    let (mut m2, ack) = b.connect_with(persistent(v, "member-b")).await;
    assert!(ack.session_present);
    m2.expect_nothing(QUIET).await;
    b.stop().await;
}
both_versions!(shared_delivery_handed_over_gets_its_own_queue_place);

/// A service's documents (`BrokerHandle::kv`) are in the store: written before `put` resolves,
/// read back after a restart, deleted for good; namespaces are apart.
#[tokio::test]
async fn service_documents_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start_on(dir.path(), SyncSetting::Batch).await;
    let shadows = b.handle().kv("shadow");
    assert!(shadows.is_durable());
    shadows
        .put("dev-1", bytes::Bytes::from_static(b"{\"v\":1}"))
        .await
        .expect("committed");
    shadows
        .put("dev-2", bytes::Bytes::from_static(b"two"))
        .await
        .expect("committed");
    shadows.delete("dev-2").await.expect("committed");
    b.handle()
        .kv("other")
        .put("dev-1", bytes::Bytes::from_static(b"elsewhere"))
        .await
        .expect("committed");
    let too_large = bytes::Bytes::from(vec![0u8; hermod_broker::api::MAX_KV_VALUE + 1]);
    assert!(shadows.put("big", too_large).await.is_err());
    b.stop().await;

    let b = start_on(dir.path(), SyncSetting::Batch).await;
    let shadows = b.handle().kv("shadow");
    assert_eq!(
        shadows.entries(),
        [("dev-1".to_owned(), bytes::Bytes::from_static(b"{\"v\":1}"))]
    );
    assert_eq!(
        b.handle().kv("other").get("dev-1").as_deref(),
        Some(&b"elsewhere"[..])
    );
    b.stop().await;
}

/// Without a store (`sync = "memory"`) documents live in memory and `put` resolves at once.
#[tokio::test]
async fn service_documents_without_a_store_are_in_memory() {
    let b = TestBroker::start().await;
    let kv = b.handle().kv("shadow");
    assert!(!kv.is_durable());
    kv.put("a", bytes::Bytes::from_static(b"1"))
        .await
        .expect("in memory");
    assert_eq!(kv.get("a").as_deref(), Some(&b"1"[..]));
    assert_eq!(kv.len(), 1);
    b.stop().await;
}
