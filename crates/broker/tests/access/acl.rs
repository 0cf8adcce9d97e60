//! The ACL file end to end: a table of cases, each checked on
//! - publish: v5 QoS 1; denied → PUBACK 0x87 and not delivered to a subscriber that may read it;
//! - subscribe: SUBACK grants the filter (Mosquitto 2.0 semantics: SUBSCRIBE is not checked
//!   against acl_file, see crates/broker/src/auth/acl.rs) but nothing unreadable is delivered;
//! - live delivery and retained delivery at subscribe time.
//!
//! Absence is checked without sleeping: every check ends with a "fence" message on a topic the
//! client may use (`pattern readwrite fence/#`), sent by the same publisher after the message
//! under test, so once the fence arrives, the message under test has arrived or never will.

use crate::harness::*;

const ACL: &str = "\
# The observer and default writer.
user root
topic readwrite #
topic readwrite $SYS/#

user alice
topic readwrite home/alice/#
topic deny home/alice/locked
topic read news/#
topic write cmd/+/set
topic read $SYS/broker/connection/#

user bob
topic home/bob/#
topic read home/alice/shared
topic read news/#
topic deny news/secret

# carol has a block but no rules: patterns only.
user carol

pattern readwrite dev/%u/%c/#
pattern read in/%c
pattern deny dev/%u/blocked/#
pattern write $SYS/broker/connection/%c/state
pattern readwrite fence/#
";

/// (name, user, client id, topic, may read (None: not checked), may write, writer (user, client
/// id) for the read checks).
struct Case {
    name: &'static str,
    user: &'static str,
    cid: &'static str,
    topic: &'static str,
    read: Option<bool>,
    write: bool,
    writer: (&'static str, &'static str),
}

const ROOT: (&str, &str) = ("root", "writer");
const BRIDGE: (&str, &str) = ("carol", "br1");

const fn case(
    name: &'static str,
    user: &'static str,
    cid: &'static str,
    topic: &'static str,
    read: Option<bool>,
    write: bool,
) -> Case {
    Case {
        name,
        user,
        cid,
        topic,
        read,
        write,
        writer: ROOT,
    }
}

const R: Option<bool> = Some(true);
const NR: Option<bool> = Some(false);

fn cases() -> Vec<Case> {
    vec![
        case("user readwrite", "alice", "a1", "home/alice/x", R, true),
        case(
            "user readwrite, # matches several levels",
            "alice",
            "a1",
            "home/alice/deep/er",
            R,
            true,
        ),
        case(
            "user readwrite, # matches the parent level",
            "alice",
            "a1",
            "home/alice",
            R,
            true,
        ),
        case(
            "user deny beats readwrite",
            "alice",
            "a1",
            "home/alice/locked",
            NR,
            false,
        ),
        case("user read-only", "alice", "a1", "news/today", R, false),
        case(
            "user write-only with +",
            "alice",
            "a1",
            "cmd/lamp/set",
            NR,
            true,
        ),
        case(
            "+ is exactly one level",
            "alice",
            "a1",
            "cmd/lamp/x/set",
            NR,
            false,
        ),
        case(
            "another user's rules do not apply",
            "alice",
            "a1",
            "home/bob/x",
            NR,
            false,
        ),
        case(
            "no access word means readwrite",
            "bob",
            "b1",
            "home/bob/x",
            R,
            true,
        ),
        case(
            "read of another user's topic",
            "bob",
            "b1",
            "home/alice/shared",
            R,
            false,
        ),
        case(
            "nothing else of alice's",
            "bob",
            "b1",
            "home/alice/x",
            NR,
            false,
        ),
        case(
            "user deny beats read #",
            "bob",
            "b1",
            "news/secret",
            NR,
            false,
        ),
        case("user read #", "bob", "b1", "news/today", R, false),
        case(
            "pattern %u and %c",
            "carol",
            "c9",
            "dev/carol/c9/temp",
            R,
            true,
        ),
        case(
            "pattern %c must match the client id",
            "carol",
            "c9",
            "dev/carol/c8/temp",
            NR,
            false,
        ),
        case(
            "pattern %u must match the username",
            "carol",
            "c9",
            "dev/alice/c9/temp",
            NR,
            false,
        ),
        case(
            "pattern deny beats pattern readwrite",
            "carol",
            "blocked",
            "dev/carol/blocked/x",
            NR,
            false,
        ),
        case("pattern read %c", "carol", "c9", "in/c9", R, false),
        case(
            "pattern read %c, other id",
            "carol",
            "c9",
            "in/c8",
            NR,
            false,
        ),
        case(
            "user without a block gets patterns",
            "zed",
            "z1",
            "in/z1",
            R,
            false,
        ),
        case(
            "user without a block gets nothing else",
            "zed",
            "z1",
            "home/alice/x",
            NR,
            false,
        ),
        case(
            "pattern %u/%c for a user without a block",
            "zed",
            "z1",
            "dev/zed/z1/a/b",
            R,
            true,
        ),
        Case {
            writer: BRIDGE,
            ..case(
                "$SYS read by an explicit rule",
                "alice",
                "a1",
                "$SYS/broker/connection/br1/state",
                R,
                false,
            )
        },
        Case {
            writer: BRIDGE,
            ..case(
                "# rules do not cover $SYS",
                "bob",
                "b1",
                "$SYS/broker/connection/br1/state",
                NR,
                false,
            )
        },
        case(
            "bridge state via pattern %c",
            "alice",
            "a1",
            "$SYS/broker/connection/a1/state",
            None,
            true,
        ),
        case(
            "bridge state of another client id",
            "alice",
            "a1",
            "$SYS/broker/connection/a2/state",
            None,
            false,
        ),
        case(
            "publishing into $SYS is refused even when the ACL allows it",
            "root",
            "r1",
            "$SYS/broker/uptime",
            None,
            false,
        ),
    ]
}

/// Reads PUBLISH packets (acking them) until one with payload `fence`; returns the payloads seen
/// on `topic` before it.
async fn until_fence(c: &mut Client, topic: &str, fence: &str, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let p = match c.recv(WAIT).await {
            Some(Packet::Publish(p)) => p,
            Some(_) => continue,
            None => panic!("{what}: the fence {fence:?} never arrived (seen on {topic}: {seen:?})"),
        };
        if let Some(id) = p.packet_id {
            c.send(&Packet::PublishAck(PublishAck::new(id))).await;
        }
        let body = String::from_utf8_lossy(&p.payload).into_owned();
        if body == fence {
            return seen;
        }
        if p.topic == topic {
            seen.push(body);
        }
    }
}

async fn connect(b: &TestBroker, user: &str, cid: &str) -> Client {
    Client::connect(b.addr(TCP), &Via::Tcp, login(V5, cid, user)).await
}

async fn ok_publish(c: &mut Client, topic: &str, payload: &str, retain: bool, what: &str) {
    let r = c.publish(topic, payload.as_bytes(), Q1, retain).await;
    assert!(
        r == ReasonCode::SUCCESS || r == ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "{what}: setup publish to {topic} refused: {r:?}"
    );
}

#[tokio::test]
async fn acl_table_end_to_end() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut observer = connect(&b, "root", "observer").await;
    assert_eq!(observer.subscribe_one("#", Q1).await, ReasonCode(1));
    assert_eq!(observer.subscribe_one("$SYS/#", Q1).await, ReasonCode(1));
    let mut failures = Vec::new();
    for (i, k) in cases.iter().enumerate() {
        let what = format!("case {i} '{}': {}/{} on {}", k.name, k.user, k.cid, k.topic);
        let fence_topic = format!("fence/{}", k.cid);
        let mut problems = Vec::new();

        let mut writer = None;
        if let Some(may_read) = k.read {
            let mut w = connect(&b, k.writer.0, k.writer.1).await;
            // Retained message and retained fence, before the client subscribes.
            ok_publish(&mut w, k.topic, &format!("retained-{i}"), true, &what).await;
            ok_publish(&mut w, &fence_topic, &format!("rfence-{i}"), true, &what).await;
            let mut c = connect(&b, k.user, k.cid).await;
            let granted = c.subscribe_one(k.topic, Q1).await;
            // A concrete topic as the filter: granted exactly when it may be read (a filter
            // that can match no readable topic is refused, v5 0x87).
            let expected = if may_read {
                ReasonCode(1)
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            if granted != expected {
                problems.push(format!("SUBACK {granted:?}, expected {expected:?}"));
            }
            assert_eq!(
                c.subscribe_one(&fence_topic, Q1).await,
                ReasonCode(1),
                "{what}: fence subscription"
            );
            let retained = until_fence(&mut c, k.topic, &format!("rfence-{i}"), &what).await;
            if (retained == vec![format!("retained-{i}")]) != may_read {
                problems.push(format!(
                    "retained delivery: got {retained:?}, may read = {may_read}"
                ));
            }
            // Live delivery.
            ok_publish(&mut w, k.topic, &format!("live-{i}"), false, &what).await;
            ok_publish(&mut w, &fence_topic, &format!("lfence-{i}"), false, &what).await;
            let live = until_fence(&mut c, k.topic, &format!("lfence-{i}"), &what).await;
            if (live == vec![format!("live-{i}")]) != may_read {
                problems.push(format!(
                    "live delivery: got {live:?}, may read = {may_read}"
                ));
            }
            c.disconnect().await;
            writer = Some(w);
        }

        // Publish by the client: PUBACK 0x87 when denied, and the observer (root, reads # and
        // $SYS/#) sees the message only when allowed.
        let mut c = connect(&b, k.user, k.cid).await;
        let r = c
            .publish(k.topic, format!("write-{i}").as_bytes(), Q1, false)
            .await;
        let denied = r == ReasonCode::NOT_AUTHORIZED;
        if denied == k.write {
            problems.push(format!("PUBACK {r:?}, may write = {}", k.write));
        }
        ok_publish(
            &mut c,
            "fence/observer",
            &format!("wfence-{i}"),
            false,
            &what,
        )
        .await;
        let seen = until_fence(&mut observer, k.topic, &format!("wfence-{i}"), &what).await;
        let delivered = seen.contains(&format!("write-{i}"));
        if delivered != k.write {
            problems.push(format!("observer got {seen:?}, may write = {}", k.write));
        }
        c.disconnect().await;

        // Clean up retained messages.
        if let Some(mut w) = writer {
            ok_publish(&mut w, k.topic, "", true, &what).await;
            ok_publish(&mut w, &fence_topic, "", true, &what).await;
            w.disconnect().await;
        }
        if !problems.is_empty() {
            failures.push(format!("{what}:\n    {}", problems.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} ACL cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    b.stop().await;
}

/// Every (topic, payload) delivered before the PUBLISH whose payload is `fence` (acked).
async fn collect_until(c: &mut Client, fence: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        match c.recv(WAIT).await {
            Some(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    c.send(&Packet::PublishAck(PublishAck::new(id))).await;
                }
                let body = String::from_utf8_lossy(&p.payload).into_owned();
                if body == fence {
                    seen.sort();
                    return seen;
                }
                seen.push((p.topic.clone(), body));
            }
            Some(_) => {}
            None => panic!("fence {fence:?} never arrived; seen {seen:?}"),
        }
    }
}

// A subscription wider than what the ACL lets the client read: granted (SUBACK 0x01), and
// only the readable topics are delivered, retained and live.
#[tokio::test]
async fn wildcard_subscription_is_filtered_per_delivery() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let topics = [
        "home/alice/x",
        "home/bob/x",
        "home/alice/shared",
        "home/carol/x",
    ];
    let mut root = connect(&b, "root", "writer").await;
    for t in topics {
        ok_publish(&mut root, t, &format!("retained {t}"), true, "setup").await;
    }
    ok_publish(&mut root, "fence/b1", "rf", true, "setup").await;
    let mut bob = connect(&b, "bob", "b1").await;
    assert_eq!(
        bob.subscribe_one("home/#", Q1).await,
        ReasonCode(1),
        "SUBACK grants home/# (not checked against acl_file)"
    );
    assert_eq!(bob.subscribe_one("fence/b1", Q1).await, ReasonCode(1));
    let retained = collect_until(&mut bob, "rf").await;
    let want = |prefix: &str| {
        vec![
            (
                "home/alice/shared".to_owned(),
                format!("{prefix} home/alice/shared"),
            ),
            ("home/bob/x".to_owned(), format!("{prefix} home/bob/x")),
        ]
    };
    assert_eq!(retained, want("retained"), "retained: only readable topics");
    for t in topics {
        ok_publish(&mut root, t, &format!("live {t}"), false, "live").await;
    }
    ok_publish(&mut root, "fence/b1", "lf", false, "fence").await;
    assert_eq!(
        collect_until(&mut bob, "lf").await,
        want("live"),
        "live: only readable topics"
    );
    b.stop().await;
}
