//! Access control tried as an attacker would (issue 8): a will on a forbidden topic, another
//! user's client id, a subscription to another user's tree, denied messages filling a queue,
//! in-flight messages re-sent after the ACL changed, a shared group with a member that may not
//! read. Each test fails on the broker before the fix. Both protocol versions where both apply.

use std::time::Duration;

use hermod_proto::{ConnectProperties, LastWill};

use crate::harness::*;

const ACL: &str = "\
user root
topic readwrite #
topic read $SYS/#

user alice
topic readwrite alice/#

user bob
topic readwrite bob/#
";

/// Password file with [`USERS`], `acl` as the ACL file, durable store (the default), one TCP
/// listener; `top` is prepended (top-level keys).
async fn broker(acl: &str, top: &str) -> TestBroker {
    broker_with(acl, top, "").await
}

/// As [`broker`], with `tables` (e.g. `[store]`) appended.
async fn broker_with(acl: &str, top: &str, tables: &str) -> TestBroker {
    let dir = tempdir();
    let passwd: String = USERS.iter().map(|(u, p)| passwd_line(u, p)).collect();
    write(dir.path(), "passwd", &passwd);
    write(dir.path(), "acl", acl);
    let config = format!(
        "{top}\nallow_anonymous = false\npassword_file = \"passwd\"\nacl_file = \"acl\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n{tables}"
    );
    TestBroker::start_in(dir, &config).await
}

async fn connect(b: &TestBroker, c: Connect) -> Client {
    Client::connect(b.addr(0), &Via::Tcp, c).await
}

async fn connack(b: &TestBroker, c: Connect) -> ReasonCode {
    Client::connack(b.addr(0), &Via::Tcp, c).await
}

fn with_will(mut c: Connect, topic: &str, retain: bool) -> Connect {
    c.will = Some(LastWill {
        topic: topic.into(),
        payload: bytes::Bytes::from_static(b"will"),
        qos: Q1,
        retain,
        properties: Default::default(),
    });
    c
}

/// A persistent session: clean start off, and (v5) a session that never expires.
fn persistent(mut c: Connect) -> Connect {
    c.clean_start = false;
    if c.protocol == V5 {
        c.properties = ConnectProperties {
            session_expiry_interval: Some(u32::MAX),
            ..ConnectProperties::default()
        };
    }
    c
}

fn puback(p: &Publish) -> Packet {
    Packet::PublishAck(PublishAck::new(p.packet_id.expect("QoS 1")))
}

/// The refusal a client sees: v5 0x87; v3.1.1 return code 5 (which the codec reads as 0x87).
const REFUSED: ReasonCode = ReasonCode::NOT_AUTHORIZED;

#[tokio::test]
async fn will_on_a_denied_topic_is_refused_at_connect() {
    let b = broker(ACL, "").await;
    let mut alice = connect(&b, login(V5, "alice-watch", "alice")).await;
    assert_eq!(alice.subscribe_one("alice/#", Q1).await, ReasonCode(1));
    for v in [V311, V5] {
        // Bob may write bob/# only: a (retained) will on alice/cmd is refused at CONNECT
        // (Mosquitto answers "not authorised" too), so it can never be published nor retained.
        for retain in [false, true] {
            let c = with_will(login(v, "bob-1", "bob"), "alice/cmd", retain);
            assert_eq!(connack(&b, c).await, REFUSED, "{v:?} retain={retain}");
        }
        // The same client with a will on its own tree is accepted.
        let c = with_will(login(v, "bob-1", "bob"), "bob/status", false);
        drop(connect(&b, c).await);
    }
    alice.expect_nothing(QUIET).await;
    let mut late = connect(&b, login(V5, "alice-late", "alice")).await;
    assert_eq!(late.subscribe_one("alice/cmd", Q1).await, ReasonCode(1));
    late.expect_nothing(QUIET).await; // no retained will
    b.stop().await;
}

#[tokio::test]
async fn dollar_and_share_will_topics_are_refused() {
    let b = broker(ACL, "").await;
    for v in [V311, V5] {
        // Root may write `#`, but `$` topics are the server's and `$share/...` is no topic.
        for topic in ["$SYS/broker/uptime", "$share/g/alice/cmd", "$internal/x"] {
            let c = with_will(login(v, "root-w", "root"), topic, true);
            assert_eq!(connack(&b, c).await, REFUSED, "{v:?} {topic}");
        }
    }
    b.stop().await;
}

#[tokio::test]
async fn will_is_checked_again_when_published() {
    let b = broker(ACL, "").await;
    let mut root = connect(&b, login(V5, "root-watch", "root")).await;
    assert_eq!(root.subscribe_one("bob/#", Q1).await, ReasonCode(1));
    // Control: allowed at CONNECT and still allowed when the connection drops.
    drop(
        connect(
            &b,
            with_will(login(V311, "bob-1", "bob"), "bob/status", false),
        )
        .await,
    );
    let p = root.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("bob/status", &b"will"[..])
    );
    root.send(&puback(&p)).await;
    // Allowed at CONNECT, then the ACL is reloaded without bob's write access: not published.
    let bob = connect(
        &b,
        with_will(login(V311, "bob-2", "bob"), "bob/status", false),
    )
    .await;
    b.write(
        "acl",
        &ACL.replace("topic readwrite bob/#", "topic read bob/#"),
    );
    b.reloader.reload().expect("reload");
    drop(bob);
    root.expect_nothing(Duration::from_millis(500)).await;
    b.stop().await;
}

#[tokio::test]
async fn cross_user_takeover_is_refused_and_the_owners_session_is_intact() {
    let b = broker(ACL, "").await;
    let mut root = connect(&b, login(V5, "root-pub", "root")).await;
    for v in [V311, V5] {
        let id = format!("alice-dev-{v:?}");
        let mut alice = connect(&b, persistent(login(v, &id, "alice"))).await;
        assert_eq!(alice.subscribe_one("alice/#", Q1).await, ReasonCode(1));
        // Online: bob is refused and alice's connection is not disturbed.
        for clean in [false, true] {
            let mut c = persistent(login(v, &id, "bob"));
            c.clean_start = clean;
            assert_eq!(connack(&b, c).await, REFUSED, "{v:?} online, clean={clean}");
        }
        alice.ping().await;
        // One message in flight (received, never acknowledged), then offline with two queued.
        root.publish("alice/1", b"1", Q1, false).await;
        let p = alice.expect_publish().await;
        assert_eq!(p.topic, "alice/1");
        drop(alice);
        tokio::time::sleep(Duration::from_millis(100)).await;
        root.publish("alice/2", b"2", Q1, false).await;
        root.publish("alice/3", b"3", Q1, false).await;
        // Offline: bob (resume or clean start) and an anonymous-looking login are refused and
        // receive nothing of alice's.
        for clean in [false, true] {
            let mut c = persistent(login(v, &id, "bob"));
            c.clean_start = clean;
            match Client::try_connect(b.addr(0), &Via::Tcp, c).await {
                Ok((mut bob, ack)) => {
                    assert_eq!(ack.reason, REFUSED, "{v:?} offline, clean={clean}");
                    assert!(!ack.session_present, "{v:?}: session present leaked");
                    loop {
                        match bob.read(WAIT).await {
                            Recv::Closed => break,
                            Recv::Packet(Packet::Publish(p)) => {
                                panic!("{v:?}: bob got alice's message {p:?}")
                            }
                            Recv::Packet(_) => {}
                            Recv::Timeout => panic!("{v:?}: not closed after the refusal"),
                        }
                    }
                }
                Err(e) => panic!("{v:?}: {e}"),
            }
        }
        // Alice's session is intact: the in-flight message again (DUP), then the queue, in order.
        let (mut alice, ack) =
            Client::try_connect(b.addr(0), &Via::Tcp, persistent(login(v, &id, "alice")))
                .await
                .expect("alice reconnects");
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert!(ack.session_present, "{v:?}: alice's session survived");
        let first = alice.expect_publish().await;
        assert_eq!(
            (first.topic.as_str(), first.dup),
            ("alice/1", true),
            "{v:?}"
        );
        alice.send(&puback(&first)).await;
        let rest = got(&alice.drain(QUIET).await);
        assert_eq!(
            rest,
            [
                ("alice/2".to_owned(), "2".to_owned()),
                ("alice/3".to_owned(), "3".to_owned())
            ],
            "{v:?}"
        );
        alice.disconnect().await;
    }
    b.stop().await;
}

#[tokio::test]
async fn subscribe_to_an_unreachable_filter_is_refused() {
    let b = broker(ACL, "").await;
    for (v, refused) in [(V311, ReasonCode(0x80)), (V5, ReasonCode::NOT_AUTHORIZED)] {
        let mut alice = connect(&b, login(v, "alice-s", "alice")).await;
        // [MQTT-3.9.3-2] 3.1.1 return code 0x80 = failure; v5 0x87 not authorized.
        assert_eq!(alice.subscribe_one("bob/#", Q1).await, refused, "{v:?}");
        assert_eq!(alice.subscribe_one("$SYS/#", Q1).await, refused, "{v:?}");
        assert_eq!(
            alice.subscribe_one("$share/g/bob/+", Q1).await,
            refused,
            "{v:?}"
        );
        // Overlapping allowed and denied topics: granted, filtered per message.
        assert_eq!(alice.subscribe_one("#", Q1).await, ReasonCode(1), "{v:?}");
        assert_eq!(alice.subscribe_one("+/x", Q1).await, ReasonCode(1), "{v:?}");
        let mut root = connect(&b, login(V5, "root-s", "root")).await;
        root.publish("bob/x", b"no", Q1, false).await;
        root.publish("alice/x", b"yes", Q1, false).await;
        assert_eq!(
            got(&alice.drain(QUIET).await),
            [("alice/x".to_owned(), "yes".to_owned())],
            "{v:?}"
        );
        root.disconnect().await;
        alice.disconnect().await;
    }
    b.stop().await;
}

#[tokio::test]
async fn denied_messages_do_not_fill_the_queue() {
    for store in ["", "[store]\nsync = \"memory\"\n"] {
        let b = broker_with(ACL, "max_queued_messages = 50", store).await;
        let mut root = connect(&b, login(V5, "root-q", "root")).await;
        let mut alice = connect(&b, persistent(login(V5, "alice-q", "alice"))).await;
        assert_eq!(alice.subscribe_one("#", Q1).await, ReasonCode(1));
        drop(alice);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..60 {
            root.publish("bob/x", format!("b{i}").as_bytes(), Q1, false)
                .await;
        }
        for i in 0..5 {
            root.publish("alice/x", format!("a{i}").as_bytes(), Q1, false)
                .await;
        }
        let mut alice = connect(&b, persistent(login(V5, "alice-q", "alice"))).await;
        let got: Vec<String> = got(&alice.drain(QUIET).await)
            .into_iter()
            .map(|(t, p)| format!("{t}={p}"))
            .collect();
        let want: Vec<String> = (0..5).map(|i| format!("alice/x=a{i}")).collect();
        assert_eq!(got, want, "store {store:?}: only alice's, none pushed out");
        alice.disconnect().await;
        root.disconnect().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn in_flight_messages_are_rechecked_when_resent() {
    let b = broker(ACL, "").await;
    let mut root = connect(&b, login(V5, "root-r", "root")).await;
    let mut alice = connect(&b, persistent(login(V311, "alice-r", "alice"))).await;
    assert_eq!(alice.subscribe_one("alice/#", Q1).await, ReasonCode(1));
    root.publish("alice/secret", b"1", Q1, false).await;
    assert_eq!(alice.expect_publish().await.topic, "alice/secret");
    drop(alice); // never acknowledged
    tokio::time::sleep(Duration::from_millis(100)).await;
    root.publish("alice/secret", b"2", Q1, false).await; // queued (on disk)
    // The ACL changes: alice may no longer read alice/secret.
    b.write(
        "acl",
        &ACL.replace(
            "topic readwrite alice/#",
            "topic readwrite alice/#\ntopic deny alice/secret",
        ),
    );
    b.reloader.reload().expect("reload");
    let (mut alice, ack) = Client::try_connect(
        b.addr(0),
        &Via::Tcp,
        persistent(login(V311, "alice-r", "alice")),
    )
    .await
    .expect("reconnect");
    assert!(ack.session_present);
    // Neither the in-flight one (re-sent with DUP before the fix) nor the queued one arrives.
    alice.expect_nothing(QUIET).await;
    root.publish("alice/ok", b"3", Q1, false).await;
    assert_eq!(
        got(&alice.drain(QUIET).await),
        [("alice/ok".to_owned(), "3".to_owned())]
    );
    b.stop().await;
}

#[tokio::test]
async fn shared_group_members_that_may_not_read_are_skipped() {
    let b = broker(ACL, "").await;
    let mut alice = connect(&b, login(V5, "alice-g", "alice")).await;
    let mut bob = connect(&b, login(V5, "bob-g", "bob")).await;
    // Both subscriptions are granted (each overlaps its owner's tree).
    assert_eq!(alice.subscribe_one("$share/g/#", Q1).await, ReasonCode(1));
    assert_eq!(bob.subscribe_one("$share/g/#", Q1).await, ReasonCode(1));
    let mut root = connect(&b, login(V5, "root-g", "root")).await;
    for i in 0..10 {
        root.publish("alice/x", format!("{i}").as_bytes(), Q1, false)
            .await;
    }
    // Every message goes to the member that may read it (round robin used to hand half of them
    // to bob, whose deliveries were then dropped).
    assert_eq!(alice.drain(QUIET).await.len(), 10);
    bob.expect_nothing(Duration::from_millis(100)).await;
    b.stop().await;
}
