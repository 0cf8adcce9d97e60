//! `[auth.http] acl_url`: the HTTP authorizer (EMQX's), against a small HTTP service running in
//! the test. The service answers authentication (no `action` field) with `allow` and
//! authorization by topic prefix: `allow/`, `deny/`, `ignore/` (the `acl_file` decides),
//! `slow/` (never answers: timeout), `err/` (status 500). The observer (`obs`) is allowed
//! everything.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::harness::*;

const ACL_FILE: &str = "\
user obs
topic readwrite #

user u
topic readwrite ignore/open/#
";

fn decide(req: &serde_json::Value) -> Option<(u16, String)> {
    let result = |r: &str| Some((200, format!(r#"{{"result":"{r}"}}"#)));
    let Some(action) = req["action"].as_str() else {
        return result("allow"); // authentication
    };
    assert!(action == "publish" || action == "subscribe", "{req}");
    assert!(req["peerhost"].as_str().is_some(), "{req}");
    if req["username"] == "obs" {
        return result("allow");
    }
    let topic = req["topic"].as_str().unwrap_or_default();
    match topic.split('/').next().unwrap_or_default() {
        "allow" => result("allow"),
        "deny" => result("deny"),
        "ignore" => result("ignore"),
        "slow" => None,
        "err" => Some((500, r#"{"result":"allow"}"#.into())),
        _ => result("deny"),
    }
}

async fn broker_with(server: &AuthServer, acl_url: &str, extra: &str) -> TestBroker {
    let dir = tempdir();
    write(dir.path(), "acl", ACL_FILE);
    let timeout = if extra.contains("timeout_ms") {
        ""
    } else {
        "timeout_ms = 300\n"
    };
    let config = format!(
        "allow_anonymous = false\nacl_file = \"acl\"\n\n[auth.http]\nurl = \"{}\"\nacl_url = \"{acl_url}\"\n{timeout}cache_ttl_secs = 0\n{extra}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
        server.url
    );
    TestBroker::start_in(dir, &config).await
}

async fn broker(server: &AuthServer) -> TestBroker {
    broker_with(server, &server.url, "").await
}

async fn login(b: &TestBroker, v: ProtocolVersion, id: &str, user: &str) -> Client {
    let (c, ack) = b
        .connect_with(connect_auth(v, id, Some(user), Some(b"pw")))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{user} connects");
    c
}

/// The authorization requests the service got for `action` on `topic`.
fn asked(server: &AuthServer, action: &str, topic: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r["action"] == action && r["topic"] == topic)
        .count()
}

/// The topics `o` receives up to and including `fence`.
async fn topics_until(o: &mut Client, fence: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let p = o.expect_publish().await;
        let done = p.topic == fence;
        got.push(p.topic.to_string());
        if done {
            return got;
        }
    }
}

const DENIED_PUBACK_V5: ReasonCode = ReasonCode::NOT_AUTHORIZED;

// Publish: the service's allow and deny decide; denied QoS 1 gets PUBACK 0x87 (v5) or a plain
// PUBACK (3.1.1, as the file ACL does) and is not delivered.
async fn publish_allowed_and_denied(v: ProtocolVersion) {
    let server = AuthServer::start(decide).await;
    let b = broker(&server).await;
    let mut o = login(&b, V5, "observer", "obs").await;
    assert_eq!(o.subscribe_one("#", Q0).await, ReasonCode::SUCCESS);
    let mut c = login(&b, v, "pub", "u").await;
    assert_eq!(
        c.publish("allow/a", b"1", Q1, false).await,
        ReasonCode::SUCCESS
    );
    let denied = if v == V5 {
        DENIED_PUBACK_V5
    } else {
        ReasonCode::SUCCESS
    };
    assert_eq!(c.publish("deny/a", b"2", Q1, false).await, denied);
    assert_eq!(
        c.publish("deny/a", b"3", Q0, false).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        c.publish("allow/fence", b"4", Q1, false).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        topics_until(&mut o, "allow/fence").await,
        ["allow/a", "allow/fence"]
    );
    let r = server
        .requests()
        .into_iter()
        .find(|r| r["topic"] == "deny/a")
        .expect("asked");
    assert_eq!(r["clientid"], "pub");
    assert_eq!(r["username"], "u");
    assert_eq!(r["action"], "publish");
    assert_eq!(r["peerhost"], "127.0.0.1");
    // The deny was cached: asked once for two publishes.
    assert_eq!(asked(&server, "publish", "deny/a"), 1);
    b.stop().await;
}

// Subscribe denied: SUBACK 0x87 (v5) / 0x80 (3.1.1); allowed filters are granted.
async fn subscribe_denied(v: ProtocolVersion) {
    let server = AuthServer::start(decide).await;
    let b = broker(&server).await;
    let mut c = login(&b, v, "sub", "u").await;
    let denied = if v == V5 {
        ReasonCode::NOT_AUTHORIZED
    } else {
        ReasonCode::UNSPECIFIED_ERROR // 0x80
    };
    assert_eq!(c.subscribe_one("deny/#", Q1).await, denied);
    assert_eq!(c.subscribe_one("allow/#", Q1).await, ReasonCode(1));
    // Several filters in one SUBSCRIBE, each asked once.
    let ack = c
        .subscribe_with(
            ["allow/x", "deny/y", "allow/x"]
                .iter()
                .map(|f| ((*f).into(), opts(Q1)))
                .collect(),
            SubscribeProperties::default(),
        )
        .await;
    assert_eq!(ack.reasons, [ReasonCode(1), denied, ReasonCode(1)]);
    assert_eq!(asked(&server, "subscribe", "allow/x"), 1);
    assert_eq!(asked(&server, "subscribe", "deny/#"), 1);
    // `ignore`: the acl_file decides (and it decides what is delivered: receiving is not asked).
    assert_eq!(c.subscribe_one("ignore/open/#", Q1).await, ReasonCode(1));
    let mut p = login(&b, V5, "pub", "u").await;
    p.publish("ignore/open/z", b"z", Q1, false).await;
    assert_eq!(c.expect_publish().await.topic, "ignore/open/z");
    assert!(server.requests().iter().all(|r| r["action"] != "receive"));
    b.stop().await;
}

// `ignore`: the acl_file decides (u may write ignore/open/# only).
async fn ignore_falls_through_to_acl_file(v: ProtocolVersion) {
    let server = AuthServer::start(decide).await;
    let b = broker(&server).await;
    let mut o = login(&b, V5, "observer", "obs").await;
    assert_eq!(o.subscribe_one("#", Q0).await, ReasonCode::SUCCESS);
    let mut c = login(&b, v, "pub", "u").await;
    let denied = if v == V5 {
        DENIED_PUBACK_V5
    } else {
        ReasonCode::SUCCESS
    };
    assert_eq!(
        c.publish("ignore/open/1", b"1", Q1, false).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(c.publish("ignore/closed/1", b"2", Q1, false).await, denied);
    assert_eq!(
        c.publish("allow/fence", b"3", Q1, false).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        topics_until(&mut o, "allow/fence").await,
        ["ignore/open/1", "allow/fence"]
    );
    b.stop().await;
}

both_versions!(
    publish_allowed_and_denied,
    subscribe_denied,
    ignore_falls_through_to_acl_file
);

// The cache: 100 publishes to one topic make one request.
#[tokio::test]
async fn cached_answers() {
    let server = AuthServer::start(decide).await;
    let b = broker(&server).await;
    let mut c = login(&b, V5, "pub", "u").await;
    for i in 0..100 {
        let qos = if i % 2 == 0 { Q0 } else { Q1 };
        c.publish("allow/cached", b"x", qos, false).await;
    }
    assert_eq!(asked(&server, "publish", "allow/cached"), 1);
    let stats = b.handle().http_acl_stats().expect("acl_url");
    assert_eq!((stats.requests, stats.errors), (1, 0), "{stats:?}");
    assert!(stats.cache_hits >= 99, "{stats:?}");
    let text = b.handle().prometheus_text();
    assert!(
        text.contains("hermod_auth_http_acl_requests_total 1\n"),
        "{text}"
    );
    // Another client is another key.
    let mut d = login(&b, V5, "pub2", "u").await;
    d.publish("allow/cached", b"x", Q1, false).await;
    assert_eq!(asked(&server, "publish", "allow/cached"), 2);
    b.stop().await;
}

// A cache of TTL 0: every publish asks.
#[tokio::test]
async fn no_cache() {
    let server = AuthServer::start(decide).await;
    let b = broker_with(&server, &server.url, "acl_cache_ttl_secs = 0").await;
    let mut c = login(&b, V5, "pub", "u").await;
    for _ in 0..5 {
        c.publish("allow/x", b"x", Q1, false).await;
    }
    assert_eq!(asked(&server, "publish", "allow/x"), 5);
    b.stop().await;
}

// A service too slow (timeout) or failing (500): denied, not cached, the connection stays up
// and the packets after are handled (no stall beyond the timeout).
#[tokio::test]
async fn slow_or_failing_service_denies_without_stalling() {
    let server = AuthServer::start(decide).await;
    let b = broker(&server).await;
    let mut c = login(&b, V5, "pub", "u").await;
    let started = Instant::now();
    assert_eq!(c.publish("slow/1", b"x", Q1, false).await, DENIED_PUBACK_V5);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // Pipelined: a slow one, then an allowed one, all answered in order.
    let mut first = publish("slow/1", b"y", Q1, false);
    first.packet_id = Some(pid(100));
    let mut second = publish("allow/after", b"z", Q1, false);
    second.packet_id = Some(pid(101));
    c.send(&Packet::Publish(first)).await;
    c.send(&Packet::Publish(second)).await;
    match c.expect().await {
        Packet::PublishAck(a) => {
            assert_eq!((a.packet_id, a.reason), (pid(100), DENIED_PUBACK_V5));
        }
        other => panic!("{other:?}"),
    }
    match c.expect().await {
        Packet::PublishAck(a) => assert_eq!(a.packet_id, pid(101)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        asked(&server, "publish", "slow/1"),
        2,
        "timeouts are not cached"
    );
    // A subscription waiting for a slow answer: denied.
    assert_eq!(
        c.subscribe_one("slow/#", Q1).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // 500: denied, not cached.
    for _ in 0..2 {
        assert_eq!(c.publish("err/x", b"x", Q1, false).await, DENIED_PUBACK_V5);
    }
    assert_eq!(asked(&server, "publish", "err/x"), 2);
    assert_eq!(b.handle().http_acl_stats().expect("acl_url").errors, 5);
    c.ping().await;
    assert_eq!(
        c.publish("allow/still", b"x", Q1, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    b.stop().await;
}

// The authorization service down (nothing listens): denied, the connection stays up.
#[tokio::test]
async fn service_down_denies() {
    let server = AuthServer::start(decide).await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let b = broker_with(&server, &format!("http://127.0.0.1:{port}/acl"), "").await;
    for v in [V311, V5] {
        let mut c = login(&b, v, "pub", "u").await;
        let denied = if v == V5 {
            DENIED_PUBACK_V5
        } else {
            ReasonCode::SUCCESS
        };
        assert_eq!(c.publish("allow/a", b"x", Q1, false).await, denied);
        let sub_denied = if v == V5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        };
        assert_eq!(c.subscribe_one("allow/#", Q1).await, sub_denied);
        c.ping().await;
    }
    b.stop().await;
}

// A will on a topic the service denies is refused at CONNECT (as the file ACL does); an allowed
// one is accepted.
#[tokio::test]
async fn will_denied_at_connect() {
    let server = AuthServer::start(decide).await;
    let b = broker(&server).await;
    for v in [V311, V5] {
        for (topic, expected) in [
            ("deny/will", ReasonCode::NOT_AUTHORIZED),
            ("slow/will", ReasonCode::NOT_AUTHORIZED),
            ("allow/will", ReasonCode::SUCCESS),
        ] {
            let mut c = connect_auth(v, "willer", Some("u"), Some(b"pw"));
            c.will = Some(LastWill {
                topic: topic.into(),
                payload: Bytes::from_static(b"bye"),
                qos: Q0,
                retain: false,
                properties: Default::default(),
            });
            assert_eq!(
                Client::connack(b.addr(0), &Via::Tcp, c).await,
                expected,
                "{v:?} {topic}"
            );
        }
    }
    assert_eq!(asked(&server, "publish", "deny/will"), 1, "cached");
    b.stop().await;
}

// A connection waiting for a slow answer still obeys a kick (DISCONNECT 0x98 at once, not after
// the timeout) and a takeover.
#[tokio::test]
async fn kick_and_takeover_while_waiting() {
    let server = AuthServer::start(decide).await;
    let b = broker_with(&server, &server.url, "timeout_ms = 10000").await;
    let mut c = login(&b, V5, "waiter", "u").await;
    let mut p = publish("slow/k", b"x", Q1, false);
    p.packet_id = Some(pid(1));
    c.send(&Packet::Publish(p.clone())).await;
    while asked(&server, "publish", "slow/k") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    assert!(b.handle().kick("waiter"));
    c.expect_disconnect(ReasonCode::ADMINISTRATIVE_ACTION).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let mut c = login(&b, V5, "waiter", "u").await;
    c.send(&Packet::Publish(p)).await;
    while asked(&server, "publish", "slow/k") < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let mut new = login(&b, V5, "waiter", "u").await;
    c.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // And a shutdown.
    let mut p = publish("slow/s", b"x", Q1, false);
    p.packet_id = Some(pid(2));
    new.send(&Packet::Publish(p)).await;
    while asked(&server, "publish", "slow/s") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    b.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

// A will the service allows (though the acl_file would not) is published when its connection
// drops, the service being asked again then (no cache here).
#[tokio::test]
async fn will_allowed_by_the_service_is_published() {
    let server = AuthServer::start(decide).await;
    let b = broker_with(&server, &server.url, "acl_cache_ttl_secs = 0").await;
    let mut o = login(&b, V5, "observer", "obs").await;
    assert_eq!(o.subscribe_one("#", Q0).await, ReasonCode::SUCCESS);
    let mut c = connect_auth(V5, "willer", Some("u"), Some(b"pw"));
    c.will = Some(LastWill {
        topic: "allow/will".into(),
        payload: Bytes::from_static(b"bye"),
        qos: Q0,
        retain: false,
        properties: Default::default(),
    });
    let (c, ack) = b.connect_with(c).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c.drop_connection();
    assert_eq!(o.expect_publish().await.topic, "allow/will");
    assert_eq!(
        asked(&server, "publish", "allow/will"),
        2,
        "at CONNECT and at publication"
    );
    b.stop().await;
}
