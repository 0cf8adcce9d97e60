//! The store-and-forward bridge between real brokers on 127.0.0.1: Hermod to Hermod (out, in,
//! prefixes, an outage of the remote, no loops, TLS, `$SYS` state) and Hermod to Debian's
//! `mosquitto` when it is installed.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hermod_rules::bridge::{self, Bridge, BridgeConfig, BridgeError};
use hermod_testkit::{
    Client, Packet, Pki, Publish, Q1, Q2, QUIET, TestBroker, V5, V311, Via, persistent, tempdir,
};

/// The longest any "eventually" below waits.
const LONG: Duration = Duration::from_secs(60);

fn config(name: &str, addr: SocketAddr, topics: &[&str], extra: &str) -> BridgeConfig {
    let list: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
    let text = format!(
        "name = {name:?}\naddress = \"{addr}\"\nkeepalive = 5\ntopic = [{}]\n{extra}",
        list.join(", ")
    );
    BridgeConfig::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn start(edge: &TestBroker, config: BridgeConfig) -> Bridge {
    bridge::start(edge.handle().clone(), config, Path::new(".")).unwrap()
}

/// Waits (bounded by `limit`) until `f` holds.
async fn until(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn up(b: &Bridge) {
    until("bridge link up", LONG, || b.stats().connected).await;
}

/// Waits (bounded) until the bridge counted `out` messages out and `inn` in (the receiving
/// client may see a message before the bridge has read its acknowledgement).
async fn counted(b: &Bridge, out: u64, inn: u64) {
    until(&format!("{out} out and {inn} in"), LONG, || {
        let s = b.stats();
        (s.messages_out, s.messages_in) == (out, inn)
    })
    .await;
}

fn state(broker: &TestBroker, name: &str) -> Option<String> {
    let topic = format!("$SYS/broker/connection/{name}/state");
    broker
        .handle()
        .retained(&topic)
        .first()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
}

fn seq(p: &Publish) -> usize {
    std::str::from_utf8(&p.payload).unwrap().parse().unwrap()
}

/// Publishes `n` QoS 1 messages `topic_of(i)` with payload `i`, in order.
async fn publish_n(c: &mut Client, n: usize, topic_of: impl Fn(usize) -> String) {
    for i in 0..n {
        c.publish(&topic_of(i), i.to_string().as_bytes(), Q1, false)
            .await;
    }
}

/// Receives until `n` distinct sequence numbers were seen (acking each), bounded by [`LONG`];
/// every arrival in order.
async fn receive_distinct(c: &mut Client, n: usize) -> Vec<Publish> {
    let deadline = Instant::now() + LONG;
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    while seen.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} arrived",
            seen.len()
        );
        if let Some(Packet::Publish(p)) = c.recv(Duration::from_secs(1)).await {
            c.ack(&p).await;
            seen.insert(seq(&p));
            all.push(p);
        }
    }
    all
}

/// Every sequence number 0..n is there and first arrivals are in increasing order.
fn assert_complete_in_order(all: &[Publish], n: usize) {
    let mut firsts = Vec::new();
    let mut seen = HashSet::new();
    for p in all {
        if seen.insert(seq(p)) {
            firsts.push(seq(p));
        }
    }
    assert_eq!(seen.len(), n);
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "first arrivals out of order"
    );
}

#[tokio::test]
async fn out_and_in_with_prefixes_keep_order() {
    let remote = TestBroker::start().await;
    let edge = TestBroker::start().await;
    let b = start(
        &edge,
        config(
            "cloud",
            remote.addr,
            &["sensors/# out 1 local/ site1/", "cmd/# in 1 \"\" edge1/"],
            "",
        ),
    );
    up(&b).await;
    assert_eq!(state(&edge, "cloud").as_deref(), Some("1"));
    let mut on_remote = remote.client(V5, "on-remote").await;
    on_remote.subscribe_one("#", Q1).await;
    let mut on_edge = edge.client(V5, "on-edge").await;
    on_edge.subscribe_one("cmd/#", Q1).await;

    let mut publisher = edge.client(V5, "edge-pub").await;
    // Not under the local prefix: stays on the edge.
    publisher.publish("sensors/raw", b"x", Q1, false).await;
    let (_, got) = tokio::join!(
        publish_n(&mut publisher, 1000, |i| format!("local/sensors/{i}")),
        on_remote.collect(1000)
    );
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.topic, format!("site1/sensors/{i}"));
        assert_eq!(seq(p), i);
    }
    on_remote.expect_nothing(QUIET).await;

    let mut remote_pub = remote.client(V5, "remote-pub").await;
    remote_pub.publish("cmd/no-prefix", b"x", Q1, false).await;
    remote_pub
        .publish("edge1/cmd/reboot", b"now", Q1, false)
        .await;
    let p = on_edge.expect_publish_acked().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("cmd/reboot", &b"now"[..])
    );
    on_edge.expect_nothing(QUIET).await;

    counted(&b, 1000, 1).await;
    assert_eq!(b.stats().reconnects, 0);
    b.shutdown().await;
    assert_eq!(state(&edge, "cloud").as_deref(), Some("0"));
    edge.stop().await;
    remote.stop().await;
}

/// A remote whose sessions (and their queues) survive a restart.
async fn durable_remote(dir: tempfile::TempDir, port: u16) -> TestBroker {
    let toml = format!(
        "allow_anonymous = true\nsys_interval = 0\nmax_queued_messages = 100000\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\n[store]\npath = \"data\"\nsync = \"os\"\n"
    );
    TestBroker::start_in(dir, &toml).await
}

fn outage() -> Duration {
    let secs = std::env::var("HERMOD_BRIDGE_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

#[tokio::test]
async fn messages_published_during_an_outage_all_arrive_in_order() {
    const N: usize = 10_000;
    let mut remote = durable_remote(tempdir(), 0).await;
    let port = remote.addr.port();
    // The reader's persistent session on the remote queues what the bridge delivers.
    let mut reader = Client::connect(remote.addr, &Via::Tcp, persistent(V5, "reader")).await;
    reader.subscribe_one("t/#", Q1).await;
    reader.disconnect().await;

    let edge = TestBroker::start().await;
    let b = start(&edge, config("away", remote.addr, &["t/# out 1"], ""));
    up(&b).await;
    let published = Arc::new(AtomicUsize::new(0));
    let mut publisher = edge.client(V5, "edge-pub").await;
    let count = published.clone();
    let publishing = async move {
        for i in 0..N {
            publisher
                .publish(&format!("t/{i}"), i.to_string().as_bytes(), Q1, false)
                .await;
            count.store(i + 1, Ordering::Relaxed);
        }
    };
    let outage = async {
        until("a first part published", LONG, || {
            published.load(Ordering::Relaxed) >= N / 5
        })
        .await;
        let dir = remote.dir.take().unwrap();
        remote.stop().await;
        until("link seen down", LONG, || !b.stats().connected).await;
        assert_eq!(state(&edge, "away").as_deref(), Some("0"));
        tokio::time::sleep(outage()).await;
        durable_remote(dir, port).await
    };
    let ((), remote) = tokio::join!(publishing, outage);
    up(&b).await;
    let mut reader = Client::connect(remote.addr, &Via::Tcp, persistent(V5, "reader")).await;
    let all = receive_distinct(&mut reader, N).await;
    assert_complete_in_order(&all, N);
    assert!(all.len() <= N + 200, "{} deliveries", all.len());
    // The reader may see the last ones before the bridge has read their PUBACKs.
    until("every message acknowledged to the bridge", LONG, || {
        b.stats().messages_out >= N as u64
    })
    .await;
    let s = b.stats();
    assert_eq!((s.reconnects, s.messages_dropped), (1, 0));
    b.shutdown().await;
    edge.stop().await;
    remote.stop().await;
}

#[tokio::test]
async fn the_queue_limit_and_on_full_apply_while_the_remote_is_away() {
    let mut remote = durable_remote(tempdir(), 0).await;
    let port = remote.addr.port();
    let mut reader = Client::connect(remote.addr, &Via::Tcp, persistent(V5, "reader")).await;
    reader.subscribe_one("q/#", Q1).await;
    reader.disconnect().await;
    let edge = TestBroker::start().await;
    let extra = "max_queued_messages = 5\non_full = \"drop_oldest\"\n";
    let b = start(&edge, config("q", remote.addr, &["q/# out 1"], extra));
    up(&b).await;
    let dir = remote.dir.take().unwrap();
    remote.stop().await;
    until("link down", LONG, || !b.stats().connected).await;
    let mut publisher = edge.client(V5, "pub").await;
    publish_n(&mut publisher, 20, |i| format!("q/{i}")).await;
    let remote = durable_remote(dir, port).await;
    up(&b).await;
    let mut reader = Client::connect(remote.addr, &Via::Tcp, persistent(V5, "reader")).await;
    let got: Vec<usize> = reader.collect(5).await.iter().map(seq).collect();
    assert_eq!(got, [15, 16, 17, 18, 19], "the newest 5 were kept");
    reader.expect_nothing(QUIET).await;
    b.shutdown().await;
    edge.stop().await;
    remote.stop().await;
}

#[tokio::test]
async fn qos_2_both_ways_and_the_line_qos_caps() {
    let remote = TestBroker::start().await;
    let edge = TestBroker::start().await;
    let b = start(
        &edge,
        config("two", remote.addr, &["z/# both 2", "c/# out 1"], ""),
    );
    up(&b).await;
    let mut on_remote = remote.client(V5, "on-remote").await;
    on_remote.subscribe("z/#", Q2).await;
    on_remote.subscribe("c/#", Q2).await;
    let mut on_edge = edge.client(V5, "on-edge").await;
    on_edge.subscribe("z/#", Q2).await;
    let mut pub_edge = edge.client(V5, "pub-edge").await;
    for i in 0..50 {
        pub_edge
            .publish(&format!("z/{i}"), i.to_string().as_bytes(), Q2, false)
            .await;
    }
    pub_edge.publish("c/capped", b"c", Q2, false).await;
    let got = on_remote.collect(51).await;
    for (i, p) in got.iter().take(50).enumerate() {
        assert_eq!((p.topic.clone(), p.qos), (format!("z/{i}"), Q2));
    }
    assert_eq!((got[50].topic.as_str(), got[50].qos), ("c/capped", Q1));
    let edge_copies = on_edge.collect(50).await;
    assert!(edge_copies.iter().all(|p| p.qos == Q2));
    let mut pub_remote = remote.client(V5, "pub-remote").await;
    pub_remote.publish("z/in", b"in", Q2, false).await;
    let p = on_edge.expect_publish_acked().await;
    assert_eq!((p.topic.as_str(), p.qos), ("z/in", Q2));
    assert_eq!(on_remote.expect_publish_acked().await.topic, "z/in");
    on_edge.expect_nothing(QUIET).await;
    on_remote.expect_nothing(QUIET).await;
    counted(&b, 51, 1).await;
    assert_eq!(b.stats().messages_dropped, 0);
    b.shutdown().await;
    edge.stop().await;
    remote.stop().await;
}

/// A "remote" that accepts the CONNECT and then sends bytes that are no MQTT packet: the link
/// goes down (no panic) and the bridge tries again.
#[tokio::test]
async fn a_remote_sending_garbage_is_a_link_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            // CONNACK (v5, success, no properties), then a reserved packet type.
            let _ = s
                .write_all(&[0x20, 0x03, 0x00, 0x00, 0x00, 0xF0, 0x00])
                .await;
            let _ = s.read(&mut buf).await;
        }
    });
    let edge = TestBroker::start().await;
    let b = start(&edge, config("junk", addr, &["j/# out 1"], ""));
    until("a second attempt", LONG, || {
        accepted.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(state(&edge, "junk").as_deref(), Some("0"));
    assert!(b.stats().failed_connects >= 1);
    assert!(!b.stats().connected);
    b.shutdown().await;
    server.abort();
    edge.stop().await;
}

/// The local session outlives the bridge: what is published while it is stopped goes out
/// when it starts again, and a topic line removed from the config is unsubscribed.
#[tokio::test]
async fn a_restarted_bridge_sends_what_queued_and_drops_removed_lines() {
    let remote = TestBroker::start().await;
    let edge = TestBroker::start().await;
    let mut reader = remote.client(V5, "reader").await;
    reader.subscribe_one("#", Q1).await;
    let mut publisher = edge.client(V5, "pub").await;

    let b = start(&edge, config("re", remote.addr, &["a/# out 1"], ""));
    up(&b).await;
    b.shutdown().await;
    publisher.publish("a/while-stopped", b"1", Q1, false).await;
    let b = start(&edge, config("re", remote.addr, &["a/# out 1"], ""));
    let p = reader.expect_publish_acked().await;
    assert_eq!(p.topic, "a/while-stopped");
    b.shutdown().await;

    let b = start(&edge, config("re", remote.addr, &["b/# out 1"], ""));
    up(&b).await;
    let subs = edge
        .handle()
        .client_subscriptions("$hermod/bridge/re")
        .await;
    let filters: Vec<String> = subs.unwrap().into_iter().map(|s| s.filter).collect();
    assert_eq!(filters, ["b/#"]);
    publisher.publish("a/gone", b"2", Q1, false).await;
    publisher.publish("b/new", b"3", Q1, false).await;
    let p = reader.expect_publish_acked().await;
    assert_eq!(p.topic, "b/new");
    reader.expect_nothing(QUIET).await;
    b.shutdown().await;
    edge.stop().await;
    remote.stop().await;
}

#[tokio::test]
async fn a_refused_connect_is_retried_and_the_link_stays_down() {
    let remote = TestBroker::with(|c| c.allow_anonymous = Some(false)).await;
    let edge = TestBroker::start().await;
    let b = start(&edge, config("denied", remote.addr, &["d/# out 1"], ""));
    until("two refused attempts", LONG, || {
        b.stats().failed_connects >= 2
    })
    .await;
    assert!(!b.stats().connected);
    assert_eq!(state(&edge, "denied").as_deref(), Some("0"));
    b.shutdown().await;
    edge.stop().await;
    remote.stop().await;
}

#[tokio::test]
async fn both_ways_does_not_loop() {
    let a = TestBroker::start().await;
    let b_broker = TestBroker::start().await;
    let b = start(&a, config("ab", b_broker.addr, &["x/# both 1"], ""));
    up(&b).await;
    let mut on_a = a.client(V5, "on-a").await;
    on_a.subscribe_one("x/#", Q1).await;
    let mut on_b = b_broker.client(V5, "on-b").await;
    on_b.subscribe_one("x/#", Q1).await;
    let mut pub_a = a.client(V5, "pub-a").await;
    pub_a.publish("x/from-a", b"1", Q1, false).await;
    let mut pub_b = b_broker.client(V5, "pub-b").await;
    pub_b.publish("x/from-b", b"2", Q1, false).await;
    let mut seen_a: Vec<String> = on_a
        .drain(Duration::from_secs(1))
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect();
    let mut seen_b: Vec<String> = on_b
        .drain(Duration::from_secs(1))
        .await
        .into_iter()
        .map(|p| p.topic)
        .collect();
    seen_a.sort();
    seen_b.sort();
    assert_eq!(seen_a, ["x/from-a", "x/from-b"]);
    assert_eq!(seen_b, ["x/from-a", "x/from-b"]);
    counted(&b, 1, 1).await;
    b.shutdown().await;
    a.stop().await;
    b_broker.stop().await;
}

#[tokio::test]
async fn state_goes_down_and_up_with_the_remote() {
    let remote = TestBroker::start().await;
    let addr = remote.addr;
    let edge = TestBroker::start().await;
    let b = start(&edge, config("st", addr, &["s/#"], ""));
    up(&b).await;
    assert_eq!(state(&edge, "st").as_deref(), Some("1"));
    remote.stop().await;
    until("state 0", LONG, || {
        state(&edge, "st").as_deref() == Some("0")
    })
    .await;
    assert!(!b.stats().connected);
    let remote = TestBroker::with(|c| c.listeners[0].bind = addr.to_string()).await;
    until("state 1 again", LONG, || {
        state(&edge, "st").as_deref() == Some("1")
    })
    .await;
    assert_eq!(b.stats().reconnects, 1);
    b.shutdown().await;
    edge.stop().await;
    remote.stop().await;
}

#[tokio::test]
async fn over_tls_with_a_client_certificate() {
    let dir = tempdir();
    let pki = Pki::new();
    pki.write_to(dir.path());
    let certs = dir.path().join("certs");
    let remote = TestBroker::start_in(
        dir,
        "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:0\"\ntransport = \"tls\"\n\
         certfile = \"certs/server.pem\"\nkeyfile = \"certs/server.key\"\n\
         cafile = \"certs/ca.pem\"\nrequire_certificate = true\n",
    )
    .await;
    let edge = TestBroker::start().await;
    let tls = "transport = \"tls\"\ncafile = \"ca.pem\"\ncertfile = \"client.pem\"\n\
               keyfile = \"client.key\"\n";
    let missing = config(
        "sec",
        remote.addr,
        &["t/# out 1"],
        &tls.replace("ca.pem", "nope.pem"),
    );
    let e = bridge::start(edge.handle().clone(), missing, &certs).unwrap_err();
    assert!(matches!(&e, BridgeError::Tls { .. }), "{e}");
    assert!(
        e.to_string().contains("sec") && e.to_string().contains("nope.pem"),
        "{e}"
    );

    let b = bridge::start(
        edge.handle().clone(),
        config("sec", remote.addr, &["t/# out 1"], tls),
        &certs,
    )
    .unwrap();
    up(&b).await;
    let mut reader = Client::connect(
        remote.addr,
        &Via::Tls(hermod_testkit::tls_client_config(
            &pki.ca_pem,
            Some(&pki.client2),
        )),
        hermod_testkit::connect_packet(V5, "reader"),
    )
    .await;
    reader.subscribe_one("t/#", Q1).await;
    let mut publisher = edge.client(V5, "pub").await;
    publisher.publish("t/secure", b"s", Q1, false).await;
    let p = reader.expect_publish_acked().await;
    assert_eq!(p.topic, "t/secure");
    b.shutdown().await;
    edge.stop().await;
    remote.stop().await;
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn to_mosquitto() {
    let exe = Path::new("/usr/sbin/mosquitto");
    if !exe.exists() {
        println!("skipped: /usr/sbin/mosquitto is not installed");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempdir();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let _mosquitto = Child(
        std::process::Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let edge = TestBroker::start().await;
    for (version, name) in [("mqttv5", "m5"), ("mqttv311", "m3")] {
        let extra = format!("protocol_version = \"{version}\"\n");
        let topics = [
            &format!("{name}/# out 1") as &str,
            &format!("back/{name}/# in 1"),
        ];
        let b = start(&edge, config(name, addr, &topics, &extra));
        up(&b).await;
        let mut reader = Client::connect_id(addr, V311, &format!("reader-{name}")).await;
        reader.subscribe_one(&format!("{name}/#"), Q1).await;
        let mut publisher = edge.client(V5, &format!("pub-{name}")).await;
        publish_n(&mut publisher, 100, |i| format!("{name}/{i}")).await;
        let got = reader.collect(100).await;
        for (i, p) in got.iter().enumerate() {
            assert_eq!(
                (p.topic.clone(), seq(p)),
                (format!("{name}/{i}"), i),
                "{name}"
            );
        }
        let mut on_edge = edge.client(V5, &format!("on-edge-{name}")).await;
        on_edge.subscribe_one("back/#", Q1).await;
        reader
            .publish(&format!("back/{name}/x"), b"b", Q1, false)
            .await;
        let p = on_edge.expect_publish_acked().await;
        assert_eq!(p.topic, format!("back/{name}/x"));
        counted(&b, 100, 1).await;
        b.shutdown().await;
    }
    edge.stop().await;
}
