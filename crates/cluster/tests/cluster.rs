//! Three Hermod nodes (in-process brokers) over a real 3-node NATS JetStream cluster (R3):
//! cross-node pub/sub at every QoS and both protocol versions, v5 properties, per-publisher
//! order, retained messages from any node, a node that loses NATS, and one NATS node of three
//! killed. Skipped without nats-server unless `HERMOD_REQUIRE_PEERS` is set (CI sets it).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_cluster::{Cluster, ClusterConfig};
use hermod_proto::{ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode};
use hermod_testkit::nats::{NatsCluster, require_nats};
use hermod_testkit::{Client, TestBroker, publish};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

struct Node {
    broker: TestBroker,
    cluster: Option<Cluster>,
    /// Its store's folder (every node has durable storage on, as `hermod serve` by default).
    _store: tempfile::TempDir,
}

impl Node {
    async fn start(name: &str, nats: Vec<String>, f: impl FnOnce(&mut ClusterConfig)) -> Self {
        let store = hermod_testkit::tempdir();
        let path = store.path().to_path_buf();
        let broker = TestBroker::with(move |c| {
            c.store.path = path;
            c.store.sync = hermod_broker::config::SyncSetting::Os;
        })
        .await;
        let mut config = ClusterConfig::new(name, nats);
        config.ack_timeout = Duration::from_secs(3);
        // The test servers have 1 GB of file store: the stream must leave room for the buckets.
        config.max_bytes = 64 << 20;
        f(&mut config);
        let cluster = Cluster::start(broker.handle().clone(), &config)
            .await
            .expect("cluster starts");
        Node {
            broker,
            cluster: Some(cluster),
            _store: store,
        }
    }

    async fn status(&self) -> hermod_cluster::ClusterStatus {
        self.cluster.as_ref().unwrap().view().status().await
    }

    async fn client(&self, v: ProtocolVersion, id: &str) -> Client {
        self.broker.client(v, id).await
    }

    async fn stop(mut self) {
        if let Some(c) = self.cluster.take() {
            c.shutdown().await;
        }
        self.broker.stop().await;
    }
}

/// `RUST_LOG=hermod_cluster=debug cargo test ...` shows what the nodes do.
fn log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Three NATS servers and one Hermod node on each (each lists its own server first).
async fn three_nodes(nats: &NatsCluster) -> Vec<Node> {
    log();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut urls = vec![nats.url(i)];
        urls.extend((0..3).filter(|j| *j != i).map(|j| nats.url(j)));
        nodes.push(Node::start(&format!("b{i}"), urls, |_| {}).await);
    }
    wait_until(
        "JetStream ready and 3 nodes listed on each node",
        Duration::from_secs(40),
        async || {
            for n in &nodes {
                let s = n.status().await;
                if !s.jetstream_ready || s.nodes.len() != 3 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    nodes
}

async fn wait_until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes probes on `from` until `sub` receives one: NATS interest for a new subscription
/// reaches the other servers asynchronously (the QoS 0 window of docs/cluster.md). Leaves
/// `sub` with nothing pending.
async fn await_route(from: &mut Client, sub: &mut Client, topic: &str) {
    let start = Instant::now();
    loop {
        from.publish(topic, b"probe", QoS::AtMostOnce, false).await;
        if let Some(hermod_proto::Packet::Publish(_)) = sub.recv(Duration::from_millis(200)).await {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no route for {topic} across nodes"
        );
    }
    // Probes still in flight.
    sub.drain(Duration::from_millis(300)).await;
}

/// The next packet, a PUBLISH within `d`, acknowledged.
async fn publish_within(c: &mut Client, d: Duration) -> hermod_proto::Publish {
    match c.recv(d).await {
        Some(hermod_proto::Packet::Publish(p)) => {
            c.ack(&p).await;
            p
        }
        other => panic!("expected a PUBLISH within {d:?}, got {other:?}"),
    }
}

macro_rules! nats_or_skip {
    ($name:literal) => {
        match require_nats($name) {
            Some(bin) => NatsCluster::start(&bin, 3),
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_pub_sub_at_every_qos_with_properties_and_order() {
    let nats = nats_or_skip!("cross_node_pub_sub_at_every_qos_with_properties_and_order");
    let nodes = three_nodes(&nats).await;
    let mut sub5 = nodes[1].client(V5, "sub5").await;
    sub5.subscribe_one("a/+/c", QoS::ExactlyOnce).await;
    let mut sub3 = nodes[2].client(V311, "sub3").await;
    sub3.subscribe_one("a/#", QoS::ExactlyOnce).await;
    let mut publisher = nodes[0].client(V5, "pub").await;
    await_route(&mut publisher, &mut sub5, "a/probe/c").await;
    await_route(&mut publisher, &mut sub3, "a/probe").await;
    sub5.drain(Duration::from_millis(200)).await;

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut p = publish("a/b/c", format!("q{}", qos as u8).as_bytes(), qos, false);
        p.properties = PublishProperties {
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"\x01\x02")),
            user_properties: vec![("k".into(), "v".into())],
            message_expiry_interval: Some(3600),
            payload_format_indicator: Some(1),
            ..PublishProperties::default()
        };
        // The ack of QoS 1/2 comes once JetStream (R3) has the message.
        assert_eq!(publisher.publish_packet(p).await, ReasonCode::SUCCESS);
        let got = sub5.expect_publish_acked().await;
        assert_eq!(got.topic, "a/b/c");
        assert_eq!(got.payload, format!("q{}", qos as u8).as_bytes());
        assert_eq!(got.qos, qos, "granted QoS 2 keeps the published QoS");
        let pr = &got.properties;
        assert_eq!(pr.content_type.as_deref(), Some("text/plain"));
        assert_eq!(pr.response_topic.as_deref(), Some("reply/here"));
        assert_eq!(pr.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
        assert_eq!(pr.user_properties, vec![("k".to_owned(), "v".to_owned())]);
        assert_eq!(pr.payload_format_indicator, Some(1));
        // [MQTT-3.3.2-6] what is left of the interval, not more.
        assert!(
            pr.message_expiry_interval
                .is_some_and(|s| (3590..=3600).contains(&s))
        );
        let got3 = sub3.expect_publish_acked().await;
        assert_eq!(got3.topic, "a/b/c");
        assert_eq!(got3.qos, qos);
    }

    // Per-publisher order, QoS 1 and QoS 0 each (a v3.1.1 publisher on another node).
    let mut p3 = nodes[2].client(V311, "pub3").await;
    for qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        for i in 0..200 {
            p3.publish("a/x/c", format!("{i}").as_bytes(), qos, false)
                .await;
        }
        let got: Vec<String> = sub5
            .collect(200)
            .await
            .iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect();
        let want: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        assert_eq!(got, want, "order of one publisher at {qos:?}");
    }
    // Each message once: nothing more on either subscriber.
    sub5.expect_nothing(Duration::from_millis(500)).await;
    let extra = sub3.drain(Duration::from_millis(500)).await;
    assert_eq!(
        extra.len(),
        400,
        "sub3 (a/#) got pub3's 400 messages, once each"
    );

    let s = nodes[0].status().await;
    assert_eq!(s.forward_failures, 0);
    assert!(s.forwarded >= 3);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_global_and_a_late_node_gets_them() {
    let nats = nats_or_skip!("retained_messages_are_global_and_a_late_node_gets_them");
    let nodes = three_nodes(&nats).await;
    let mut p0 = nodes[0].client(V5, "p0").await;
    assert_eq!(
        p0.publish("cfg/site1", b"v1", QoS::AtLeastOnce, true).await,
        ReasonCode::SUCCESS
    );
    // A new subscriber on another node gets it [MQTT-3.3.1-6].
    wait_until("retained on b2", Duration::from_secs(10), async || {
        nodes[2].broker.handle().retained("cfg/#").len() == 1
    })
    .await;
    let mut s2 = nodes[2].client(V5, "s2").await;
    s2.subscribe_one("cfg/#", QoS::AtLeastOnce).await;
    let got = s2.expect_publish_acked().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..], got.retain),
        ("cfg/site1", &b"v1"[..], true)
    );

    // Replaced from another node, then another topic set and cleared from a third.
    let mut p1 = nodes[1].client(V311, "p1").await;
    p1.publish("cfg/site1", b"v2", QoS::AtLeastOnce, true).await;
    p1.publish("cfg/site2", b"x", QoS::AtMostOnce, true).await;
    let mut p2 = nodes[2].client(V5, "p2").await;
    p2.publish("cfg/site2", b"", QoS::AtLeastOnce, true).await;
    for n in &nodes {
        wait_until(
            "the same retained set on every node",
            Duration::from_secs(10),
            async || {
                let r = n.broker.handle().retained("cfg/#");
                r.len() == 1 && r[0].payload == Bytes::from_static(b"v2")
            },
        )
        .await;
    }

    // A node that joins later starts with the cluster's retained messages.
    let late = Node::start("late", nats.urls(), |_| {}).await;
    wait_until(
        "retained on the late node",
        Duration::from_secs(20),
        async || {
            let r = late.broker.handle().retained("cfg/#");
            r.len() == 1 && r[0].payload == Bytes::from_static(b"v2")
        },
    )
    .await;
    // An operator's delete (`hermod ctl retained delete`, the API) on one node deletes it on
    // every node, late one included, without delivering anything.
    let mut watcher = nodes[2].client(V5, "ret-watch").await;
    watcher.subscribe_one("cfg/#", QoS::AtLeastOnce).await;
    let _retained = watcher.drain(Duration::from_millis(500)).await;
    assert!(nodes[1].broker.handle().delete_retained("cfg/site1"));
    for n in nodes.iter().chain(std::iter::once(&late)) {
        wait_until(
            "retained deleted everywhere",
            Duration::from_secs(20),
            async || n.broker.handle().retained("cfg/#").is_empty(),
        )
        .await;
    }
    watcher.expect_nothing(Duration::from_millis(500)).await;
    late.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nats_server_of_three_killed_traffic_continues() {
    let mut nats = nats_or_skip!("one_nats_server_of_three_killed_traffic_continues");
    let nodes = three_nodes(&nats).await;
    let (mut publisher, mut sub) = publisher_and_subscriber(&nodes).await;
    // b0's own NATS server dies: b0 reconnects to another, R3 keeps a quorum.
    nats.kill(0);
    traffic_continues(&mut publisher, &mut sub).await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_server_holding_a_nodes_stream_consumer_killed_traffic_continues() {
    let mut nats =
        nats_or_skip!("the_nats_server_holding_a_nodes_stream_consumer_killed_traffic_continues");
    let nodes = three_nodes(&nats).await;
    let (mut publisher, mut sub) = publisher_and_subscriber(&nodes).await;
    // The subscriber's node reads the stream through a single-replica consumer: when the
    // server holding it dies, the node must notice (no heartbeat) and recreate it elsewhere
    // from where it was, within seconds, not after the client's default of a minute.
    let host = stream_consumer_host(&nats).await;
    eprintln!("b1's stream consumer is on {host}");
    let i: usize = host.trim_start_matches('n').parse().unwrap();
    nats.kill(i);
    traffic_continues(&mut publisher, &mut sub).await;
    for n in nodes {
        n.stop().await;
    }
}

/// A QoS 1 subscriber to `t/#` on b1 and a publisher on b0, with the route between them in place.
async fn publisher_and_subscriber(nodes: &[Node]) -> (Client, Client) {
    let mut sub = nodes[1].client(V5, "sub").await;
    sub.subscribe_one("t/#", QoS::AtLeastOnce).await;
    let mut publisher = nodes[0].client(V5, "pub").await;
    await_route(&mut publisher, &mut sub, "t/probe").await;
    (publisher, sub)
}

/// The NATS server (`n0`..`n2`) holding the one ephemeral consumer on the message stream: the
/// stream consumer of the only node with a subscription.
async fn stream_consumer_host(nats: &NatsCluster) -> String {
    use futures_util::StreamExt;
    let urls: Vec<async_nats::ServerAddr> =
        nats.urls().iter().map(|u| u.parse().unwrap()).collect();
    let client = async_nats::connect(urls).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let start = Instant::now();
    loop {
        let stream = js.get_stream("MQ_MSGS").await.unwrap();
        let mut hosts = Vec::new();
        let mut consumers = stream.consumers();
        while let Some(Ok(info)) = consumers.next().await {
            if info.config.durable_name.is_none() {
                hosts.push(info.cluster.and_then(|c| c.leader));
            }
        }
        if let [Some(host)] = hosts.as_slice() {
            return host.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "one ephemeral consumer with a leader expected, found {hosts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 100 QoS 1 messages acknowledged to the publisher (retrying refusals while NATS recovers),
/// then every one of them delivered to the subscriber, once.
async fn traffic_continues(publisher: &mut Client, sub: &mut Client) {
    let start = Instant::now();
    let mut acked = 0;
    let mut refused = 0;
    while acked < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "QoS 1 never resumed"
        );
        match publisher
            .publish(
                "t/x",
                format!("{acked}").as_bytes(),
                QoS::AtLeastOnce,
                false,
            )
            .await
        {
            ReasonCode::SUCCESS => acked += 1,
            // Refused while the connection moves or a leader is elected: not acknowledged,
            // so not a loss; the publisher retries (as a client would).
            _ => refused += 1,
        }
    }
    let published = start.elapsed();
    // Every acknowledged message reaches the subscriber on the other node, once. The stream's
    // leader may have been on the killed server: an election first (a few seconds), then a
    // stream consumer lost with its server is recreated after two missed heartbeats.
    let mut got = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 100 && Instant::now() < deadline {
        if let Some(hermod_proto::Packet::Publish(p)) = sub.recv(Duration::from_secs(1)).await {
            sub.ack(&p).await;
            if p.topic == "t/x" {
                got.insert(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    }
    eprintln!(
        "published in {published:?} ({refused} refused), delivered {} in {:?} more",
        got.len(),
        start.elapsed() - published
    );
    assert_eq!(
        got.len(),
        100,
        "acked messages delivered (refused on the way: {refused})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_nats_serves_its_clients_and_refuses_unreplicated_acks() {
    // One NATS server (R1): stopping and starting it is the whole of NATS going away.
    let Some(bin) =
        require_nats("a_node_without_nats_serves_its_clients_and_refuses_unreplicated_acks")
    else {
        return;
    };
    let mut nats = NatsCluster::start(&bin, 1);
    let node = Node::start("alone", vec![nats.url(0)], |c| {
        c.ack_timeout = Duration::from_secs(1);
    })
    .await;
    wait_until("JetStream ready", Duration::from_secs(40), async || {
        node.status().await.jetstream_ready
    })
    .await;
    let mut local = node.client(V5, "local").await;
    local.subscribe_one("l/#", QoS::AtLeastOnce).await;
    let mut publisher = node.client(V5, "pub").await;
    let (keeper, _) = node
        .broker
        .connect_with(hermod_testkit::persistent(V5, "keeper"))
        .await;
    keeper.disconnect().await;
    nats.kill(0);
    wait_until("NATS disconnected", Duration::from_secs(20), async || {
        node.status().await.nats_state != "connected"
    })
    .await;
    // New connections: a clean session needs nothing of the cluster; a persistent session
    // this node holds is served as it is; one the cluster would have to find is refused
    // (0x88 server unavailable) rather than started as a second copy.
    let _fresh = node.client(V311, "fresh").await;
    let (_keeper, ack) = node
        .broker
        .connect_with(hermod_testkit::persistent(V5, "keeper"))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.session_present);
    let (_, ack) = node
        .broker
        .connect_with(hermod_testkit::persistent(V5, "elsewhere"))
        .await;
    assert_eq!(ack.reason, ReasonCode::SERVER_UNAVAILABLE);
    // QoS 0 keeps flowing to local subscribers.
    publisher
        .publish("l/0", b"q0", QoS::AtMostOnce, false)
        .await;
    assert_eq!(local.expect_publish_acked().await.payload, &b"q0"[..]);
    // QoS 1: delivered locally, but the publisher is not told it is safe: JetStream does not
    // have it (v5: 0x80), so it will publish again.
    let rc = publisher
        .publish("l/1", b"q1", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(rc, ReasonCode::UNSPECIFIED_ERROR);
    assert!(node.status().await.forward_failures >= 1);
    // The status says so.
    let text = node.status().await.render();
    assert!(
        text.contains("NATS: disconnected") || text.contains("NATS: pending"),
        "{text}"
    );
    // NATS back: QoS 1 is acknowledged again.
    nats.restart(0);
    let start = Instant::now();
    loop {
        if publisher
            .publish("l/1", b"again", QoS::AtLeastOnce, false)
            .await
            == ReasonCode::SUCCESS
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "QoS 1 not acknowledged after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_client_id_across_nodes() {
    let nats = nats_or_skip!("one_connection_per_client_id_across_nodes");
    let nodes = three_nodes(&nats).await;
    // Connected on b0, then the same client id on b1: b0's connection is taken over
    // [MQTT-3.1.4-2] with DISCONNECT 0x8E (v5).
    let mut first = nodes[0].client(V5, "dev-1").await;
    let mut second = nodes[1].client(V5, "dev-1").await;
    first
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    second.ping().await;
    // A client that bounces between the nodes quickly: every connection but the last is closed,
    // the last stays.
    let mut clients = Vec::new();
    for i in 0..9 {
        let v = if i % 2 == 0 { V5 } else { V311 };
        clients.push(nodes[i % 3].client(v, "dev-2").await);
    }
    let mut last = clients.pop().unwrap();
    for (i, mut c) in clients.into_iter().enumerate() {
        assert!(
            c.is_closed_within(Duration::from_secs(5)).await,
            "connection {i} of dev-2 still open"
        );
    }
    last.ping().await;
    last.expect_nothing(Duration::from_millis(500)).await;
    second.expect_nothing(Duration::from_millis(200)).await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscriptions_give_each_message_to_one_member_cluster_wide() {
    let nats = nats_or_skip!("shared_subscriptions_give_each_message_to_one_member_cluster_wide");
    let nodes = three_nodes(&nats).await;
    // One member of the group on each node, and a plain subscriber that gets everything.
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut m = n.client(V5, &format!("worker-{i}")).await;
        m.subscribe_one("$share/workers/jobs/#", QoS::AtLeastOnce)
            .await;
        members.push(m);
    }
    let mut all = nodes[1].client(V5, "all").await;
    all.subscribe_one("jobs/#", QoS::AtLeastOnce).await;
    let mut publisher = nodes[0].client(V5, "boss").await;
    await_route(&mut publisher, &mut all, "jobs/probe").await;
    // The probes may have reached a member (QoS 0, at most once each): drop them.
    for m in &mut members {
        m.drain(Duration::from_millis(300)).await;
    }
    // The group's durable consumer exists once a node has pulled: publish QoS 1 until the
    // first one reaches a member, then the real batch.
    let start = Instant::now();
    'ready: loop {
        publisher
            .publish("jobs/ready", b"?", QoS::AtLeastOnce, false)
            .await;
        for m in &mut members {
            if m.recv(Duration::from_millis(100)).await.is_some() {
                break 'ready;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "shared group never served"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in &mut members {
        m.drain(Duration::from_millis(300)).await;
    }
    all.drain(Duration::from_millis(300)).await;

    for qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        for i in 0..300 {
            publisher
                .publish(
                    &format!("jobs/{}", i % 7),
                    format!("{i}").as_bytes(),
                    qos,
                    false,
                )
                .await;
        }
        // [MQTT-4.8.2] each message to one member of the group, whatever node it is on.
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        let mut per_member = Vec::new();
        for m in &mut members {
            let got = m.drain(Duration::from_millis(1500)).await;
            per_member.push(got.len());
            for p in got {
                *seen
                    .entry(String::from_utf8_lossy(&p.payload).into_owned())
                    .or_default() += 1;
            }
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{qos:?}: delivered to two members: {twice:?}"
        );
        assert_eq!(seen.len(), 300, "{qos:?}: per member {per_member:?}");
        assert!(
            per_member.iter().filter(|n| **n > 0).count() >= 2,
            "{qos:?}: spread over the nodes' members: {per_member:?}"
        );
        // The plain subscription is not affected.
        assert_eq!(all.drain(Duration::from_millis(500)).await.len(), 300);
    }
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscription_gets_nothing_published_before_it() {
    let nats = nats_or_skip!("a_new_subscription_gets_nothing_published_before_it");
    let nodes = three_nodes(&nats).await;
    // b1 serves an interest (first level `a`) and has handed a QoS 1 message on.
    let mut a = nodes[1].client(V5, "a-sub").await;
    a.subscribe_one("a/#", QoS::AtLeastOnce).await;
    let mut publisher = nodes[0].client(V5, "pub").await;
    let start = Instant::now();
    loop {
        publisher
            .publish("a/1", b"x", QoS::AtLeastOnce, false)
            .await;
        if a.recv(Duration::from_millis(200)).await.is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no QoS 1 route");
    }
    // Messages on `b/...` stored while no one on b1 wants them...
    for i in 0..50 {
        publisher
            .publish("b/old", format!("{i}").as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    // ...are not handed to a subscription made afterwards [MQTT-3.8.4]: it gets only what
    // is published once it exists.
    let mut b = nodes[1].client(V5, "b-sub").await;
    b.subscribe_one("b/#", QoS::AtLeastOnce).await;
    let start = Instant::now();
    loop {
        publisher
            .publish("b/new", b"n", QoS::AtLeastOnce, false)
            .await;
        if let Some(hermod_proto::Packet::Publish(p)) = b.recv(Duration::from_millis(200)).await {
            assert_eq!(
                p.topic, "b/new",
                "an earlier message reached a later subscription"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no QoS 1 route for b/#"
        );
    }
    for p in b.drain(Duration::from_millis(500)).await {
        assert_eq!(p.topic, "b/new");
    }
    // And `a/...` goes on, nothing lost or repeated across the consumer's change.
    a.drain(Duration::from_millis(300)).await;
    for i in 0..20 {
        publisher
            .publish("a/2", format!("{i}").as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let got: Vec<String> = a
        .collect(20)
        .await
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    assert_eq!(got, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
    a.expect_nothing(Duration::from_millis(300)).await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_is_published_once_when_its_node_dies() {
    let nats = nats_or_skip!("a_will_is_published_once_when_its_node_dies");
    let mut nodes = three_nodes(&nats).await;
    let mut watcher = nodes[0].client(V5, "watcher").await;
    watcher.subscribe_one("status/#", QoS::AtLeastOnce).await;
    let mut watcher2 = nodes[1].client(V311, "watcher2").await;
    watcher2.subscribe_one("status/#", QoS::AtLeastOnce).await;
    // A device on b2 with a will, and one that disconnects cleanly (its will is discarded).
    let mut connect = hermod_testkit::connect_packet(V5, "dev-w");
    connect.will = Some(hermod_proto::LastWill {
        topic: "status/dev-w".into(),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (_device, _) = nodes[2].broker.connect_with(connect.clone()).await;
    connect.client_id = "dev-clean".into();
    connect.will.as_mut().unwrap().topic = "status/dev-clean".into();
    let (clean, _) = nodes[2].broker.connect_with(connect).await;
    clean.disconnect().await;
    // Let the will reach the bucket, then b2's process "dies": no goodbye to NATS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b2 = nodes.pop().unwrap();
    if let Some(c) = b2.cluster {
        c.abort().await;
    }
    // [MQTT-3.1.2-8] the will of a connection that ended without DISCONNECT, published by a
    // surviving node once b2's heartbeats have stopped for 10 s, once in the whole cluster.
    let got = publish_within(&mut watcher, Duration::from_secs(30)).await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("status/dev-w", &b"offline"[..])
    );
    let got2 = publish_within(&mut watcher2, Duration::from_secs(5)).await;
    assert_eq!(got2.topic, "status/dev-w");
    watcher.expect_nothing(Duration::from_secs(4)).await;
    watcher2.expect_nothing(Duration::from_millis(500)).await;
    b2.broker.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

/// Waits until `node` holds `n` messages queued for the offline session `client_id`.
async fn wait_queued(node: &Node, client_id: &str, n: usize) {
    wait_until(
        &format!("{n} messages queued for {client_id}"),
        Duration::from_secs(20),
        async || {
            node.broker
                .handle()
                .client(client_id)
                .is_some_and(|c| c.queued + c.stored >= n)
        },
    )
    .await;
}

/// The next `n` PUBLISH packets, acknowledged; their payloads.
async fn payloads_of(c: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let p = publish_within(c, Duration::from_secs(10)).await;
        out.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    out
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_moves_between_nodes_with_what_it_missed() {
    let nats = nats_or_skip!("a_persistent_session_moves_between_nodes_with_what_it_missed");
    let nodes = three_nodes(&nats).await;
    let mut publisher = nodes[2].client(V5, "pub-m").await;
    // A persistent session on b0 with a QoS 1 subscription, then offline.
    let (mut dev, ack) = nodes[0]
        .broker
        .connect_with(hermod_testkit::persistent(V5, "mover"))
        .await;
    assert!(!ack.session_present);
    dev.subscribe_one("mv/#", QoS::AtLeastOnce).await;
    await_route(&mut publisher, &mut dev, "mv/probe").await;
    // b0 records the session (drained: its checkpoint moves past the probes).
    tokio::time::sleep(hermod_cluster::sessions::SYNC + Duration::from_millis(500)).await;
    dev.disconnect().await;
    for m in numbered("m", 20) {
        publisher
            .publish("mv/a", m.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    wait_queued(&nodes[0], "mover", 20).await;
    // [MQTT-3.2.2-3] The client comes back on b1: its session, with session present, and
    // every message it missed, in order [MQTT-4.6.0-6].
    let (mut dev, ack) = nodes[1]
        .broker
        .connect_with(hermod_testkit::persistent(V5, "mover"))
        .await;
    assert!(ack.session_present, "the session moved from b0 to b1");
    assert_eq!(payloads_of(&mut dev, 20).await, numbered("m", 20));
    dev.expect_nothing(Duration::from_millis(500)).await;
    assert!(
        nodes[0].broker.handle().client("mover").is_none(),
        "b0 gave the session up"
    );
    // New messages reach it live on b1.
    publisher
        .publish("mv/b", b"live1", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(payloads_of(&mut dev, 1).await, ["live1"]);
    // Connected on b1, it connects to b0 again: b1's connection is taken over (v5 0x8E) and
    // the session follows it back, drained, so nothing comes twice.
    let (mut back, ack) = nodes[0]
        .broker
        .connect_with(hermod_testkit::persistent(V5, "mover"))
        .await;
    assert!(ack.session_present, "the session moved back to b0");
    dev.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    publisher
        .publish("mv/c", b"live2", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(payloads_of(&mut back, 1).await, ["live2"]);
    back.expect_nothing(Duration::from_millis(500)).await;
    drop(back);
    // v3.1.1, clean session 0: the same on another node.
    let (mut old, _) = nodes[1]
        .broker
        .connect_with(hermod_testkit::persistent(V311, "mover-3"))
        .await;
    old.subscribe_one("mv3/#", QoS::ExactlyOnce).await;
    await_route(&mut publisher, &mut old, "mv3/probe").await;
    old.disconnect().await;
    for m in numbered("q", 5) {
        publisher
            .publish("mv3/x", m.as_bytes(), QoS::ExactlyOnce, false)
            .await;
    }
    wait_queued(&nodes[1], "mover-3", 5).await;
    let (mut old, ack) = nodes[2]
        .broker
        .connect_with(hermod_testkit::persistent(V311, "mover-3"))
        .await;
    assert!(ack.session_present);
    let got = payloads_of(&mut old, 5).await;
    assert_eq!(got, numbered("q", 5));
    // [MQTT-3.1.2-4] A clean start on another node discards the session cluster-wide.
    let (clean, ack) = nodes[0]
        .broker
        .connect_with(hermod_testkit::connect_packet(V311, "mover-3"))
        .await;
    assert!(!ack.session_present);
    clean.disconnect().await;
    let (_again, ack) = nodes[1]
        .broker
        .connect_with(hermod_testkit::persistent(V311, "mover-3"))
        .await;
    assert!(!ack.session_present, "the clean start ended the session");
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_node_died_resumes_elsewhere_with_every_unacknowledged_message() {
    let nats = nats_or_skip!(
        "a_session_whose_node_died_resumes_elsewhere_with_every_unacknowledged_message"
    );
    let mut nodes = three_nodes(&nats).await;
    let mut publisher = nodes[0].client(V5, "pub-d").await;
    let (mut dev, _) = nodes[2]
        .broker
        .connect_with(hermod_testkit::persistent(V311, "dev-dead"))
        .await;
    dev.subscribe_one("dd/#", QoS::AtLeastOnce).await;
    await_route(&mut publisher, &mut dev, "dd/probe").await;
    // Two messages received but the second never acknowledged; then 600 more while offline
    // (past the mailbox's in-memory window of 500: most wait in the store, on b2 and then on
    // b1).
    publisher
        .publish("dd/x", b"a0", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(payloads_of(&mut dev, 1).await, ["a0"]);
    tokio::time::sleep(hermod_cluster::sessions::SYNC + Duration::from_millis(500)).await;
    publisher
        .publish("dd/x", b"a1", QoS::AtLeastOnce, false)
        .await;
    match dev.recv(Duration::from_secs(10)).await {
        Some(hermod_proto::Packet::Publish(p)) => assert_eq!(&p.payload[..], b"a1"),
        other => panic!("expected a1, got {other:?}"),
    }
    dev.drop_connection();
    for m in numbered("d", 600) {
        publisher
            .publish("dd/x", m.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    wait_queued(&nodes[2], "dev-dead", 600).await;
    // b2's process dies.
    let b2 = nodes.pop().unwrap();
    if let Some(c) = b2.cluster {
        c.abort().await;
    }
    b2.broker.stop().await;
    // On b1: refused as "server unavailable" while b2 still counts as alive (its record says
    // it holds the session), then resumed once b2's heartbeats have expired.
    let start = Instant::now();
    let (mut dev, ack) = loop {
        let mut c = hermod_testkit::persistent(V5, "dev-dead");
        c.properties.session_expiry_interval = Some(300);
        match Client::try_connect(nodes[1].broker.addr(0), &hermod_testkit::Via::Tcp, c).await {
            Ok((client, ack)) if ack.reason == ReasonCode::SUCCESS => break (client, ack),
            Ok((_, ack)) => assert_eq!(ack.reason, ReasonCode::SERVER_UNAVAILABLE),
            Err(e) => panic!("{e}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the session of the dead node was not taken over"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(ack.session_present);
    // Every message not acknowledged comes, in order: a1 again, then the 600.
    let mut want = vec!["a1".to_owned()];
    want.extend(numbered("d", 600));
    assert_eq!(payloads_of(&mut dev, 601).await, want);
    dev.expect_nothing(Duration::from_millis(500)).await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_identity_cannot_take_or_end_a_session_on_another_node() {
    let nats = nats_or_skip!("another_identity_cannot_take_or_end_a_session_on_another_node");
    log();
    // Two nodes with the same password file (alice, bob: the mosquitto_passwd fixture).
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../broker/src/auth/testdata/mosquitto_passwd.txt");
    let mut nodes = Vec::new();
    for i in 0..2 {
        let dir = hermod_testkit::tempdir();
        std::fs::copy(&fixture, dir.path().join("passwd")).unwrap();
        let broker = TestBroker::start_in(
            dir,
            "allow_anonymous = false\npassword_file = \"passwd\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
        )
        .await;
        let mut config = ClusterConfig::new(&format!("p{i}"), vec![nats.url(i)]);
        config.max_bytes = 64 << 20;
        let cluster = Cluster::start(broker.handle().clone(), &config)
            .await
            .unwrap();
        nodes.push(Node {
            broker,
            cluster: Some(cluster),
            _store: hermod_testkit::tempdir(),
        });
    }
    wait_until("JetStream ready", Duration::from_secs(40), async || {
        for n in &nodes {
            if !n.status().await.jetstream_ready {
                return false;
            }
        }
        true
    })
    .await;
    let creds = |user: &str, pass: &[u8]| {
        let mut c = hermod_testkit::connect_auth(V5, "meter-7", Some(user), Some(pass));
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(300);
        c
    };
    let (mut alice, ack) = nodes[0]
        .broker
        .connect_with(creds("alice", b"correct horse"))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    alice.subscribe_one("meter/#", QoS::AtLeastOnce).await;
    // bob, with alice's client id, on the other node, with and without clean start: refused
    // (0x87), and alice's connection and session stay where they are.
    for clean in [false, true] {
        let mut c = creds("bob", b"hunter2");
        c.clean_start = clean;
        let (_bob, ack) = nodes[1].broker.connect_with(c).await;
        assert_eq!(
            ack.reason,
            ReasonCode::NOT_AUTHORIZED,
            "clean start {clean}"
        );
    }
    alice.ping().await;
    let info = nodes[0].broker.handle().client("meter-7").unwrap();
    assert!(info.online && info.subscriptions == 1);
    // alice herself moves it.
    let (_alice2, ack) = nodes[1]
        .broker
        .connect_with(creds("alice", b"correct horse"))
        .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.session_present);
    alice
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    for n in nodes.drain(..) {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_bouncing_between_nodes_keeps_every_message() {
    let nats = nats_or_skip!("a_persistent_session_bouncing_between_nodes_keeps_every_message");
    let nodes = three_nodes(&nats).await;
    let mut publisher = nodes[0].client(V5, "pub-b").await;
    let (mut c, _) = nodes[0]
        .broker
        .connect_with(hermod_testkit::persistent(V5, "bouncer"))
        .await;
    c.subscribe_one("bn/#", QoS::AtLeastOnce).await;
    await_route(&mut publisher, &mut c, "bn/probe").await;
    // Six moves, one every few hundred ms: each round 5 messages are read and acknowledged,
    // 5 more are sent to the client but not acknowledged when it moves on.
    for round in 0..6 {
        for i in 0..10 {
            publisher
                .publish(
                    "bn/x",
                    format!("r{round}-{i}").as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                )
                .await;
        }
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let p = publish_within(&mut c, Duration::from_secs(10)).await;
            seen.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
        let next = (round + 1) % 3;
        let (mut moved, ack) = nodes[next]
            .broker
            .connect_with(hermod_testkit::persistent(V5, "bouncer"))
            .await;
        assert!(ack.session_present, "round {round}: the session moved");
        // The old connection: the 5 unacknowledged PUBLISH packets, then DISCONNECT 0x8E.
        match c
            .wait_for("DISCONNECT", |p| {
                matches!(p, hermod_proto::Packet::Disconnect(_))
            })
            .await
        {
            hermod_proto::Packet::Disconnect(d) => {
                assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER);
            }
            other => panic!("{other:?}"),
        }
        // Every message of the round not acknowledged yet comes, in publish order; ones
        // acknowledged after the last checkpoint may come again (at least once across a move).
        let got: Vec<String> = moved
            .drain(Duration::from_secs(2))
            .await
            .iter()
            .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
            .collect();
        for i in 5..10 {
            assert!(
                got.contains(&format!("r{round}-{i}")),
                "round {round}: r{round}-{i} missing from {got:?}"
            );
        }
        let order: Vec<(usize, usize)> = got
            .iter()
            .filter_map(|s| {
                let (r, i) = s.trim_start_matches('r').split_once('-')?;
                Some((r.parse().ok()?, i.parse().ok()?))
            })
            .collect();
        let from_this_round: Vec<_> = order.iter().filter(|(r, _)| *r == round).collect();
        assert!(
            from_this_round.windows(2).all(|w| w[0] <= w[1]),
            "round {round}: out of order: {got:?}"
        );
        c = moved;
    }
    drop(c);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_groups_per_node_are_bounded() {
    let nats = nats_or_skip!("shared_groups_per_node_are_bounded");
    log();
    // Each shared group is a durable consumer and a queue subscription in NATS: a client must
    // not be able to make a node create them without bound.
    let node = Node::start("s0", vec![nats.url(0)], |c| c.max_shared_groups = 2).await;
    let mut a = node.client(V5, "grp-a").await;
    assert_eq!(
        a.subscribe_one("$share/g1/t/#", QoS::AtLeastOnce).await.0,
        1
    );
    assert_eq!(
        a.subscribe_one("$share/g2/t/#", QoS::AtLeastOnce).await.0,
        1
    );
    // A third group: refused, v5 0x97 quota exceeded, 3.1.1 0x80 failure.
    assert_eq!(
        a.subscribe_one("$share/g3/t/#", QoS::AtLeastOnce).await,
        ReasonCode::QUOTA_EXCEEDED
    );
    let mut b = node.client(V311, "grp-b").await;
    assert_eq!(
        b.subscribe_one("$share/g4/t/#", QoS::AtMostOnce).await.0,
        0x80
    );
    // Joining a group that exists, and plain subscriptions, are not bounded by it.
    assert_eq!(b.subscribe_one("$share/g1/t/#", QoS::AtMostOnce).await.0, 0);
    assert_eq!(b.subscribe_one("t/#", QoS::AtMostOnce).await.0, 0);
    // Once a group has no member left here, another may come.
    a.unsubscribe(&["$share/g2/t/#"]).await;
    assert_eq!(
        a.subscribe_one("$share/g3/t/#", QoS::AtLeastOnce).await.0,
        1
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_will_of_a_dead_node_is_published_when_due_unless_its_session_resumes() {
    let nats = nats_or_skip!(
        "a_delayed_will_of_a_dead_node_is_published_when_due_unless_its_session_resumes"
    );
    let mut nodes = three_nodes(&nats).await;
    let mut watcher = nodes[0].client(V5, "dw-watcher").await;
    watcher.subscribe_one("dw/#", QoS::AtLeastOnce).await;
    // Two devices on b2 with persistent sessions and delayed wills: 3 s and 20 s.
    let device = |id: &str, delay: u32| {
        let mut c = hermod_testkit::persistent(V5, id);
        let mut will = hermod_proto::LastWill {
            topic: format!("dw/{id}"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        };
        will.properties.will_delay_interval = Some(delay);
        c.will = Some(will);
        c
    };
    let (a, _) = nodes[2].broker.connect_with(device("dev-a", 3)).await;
    let (b, _) = nodes[2].broker.connect_with(device("dev-b", 20)).await;
    // Their connections drop: both wills now wait for their delay on b2; then b2 dies.
    a.drop_connection();
    b.drop_connection();
    let dropped = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b2 = nodes.pop().unwrap();
    if let Some(c) = b2.cluster {
        c.abort().await;
    }
    b2.broker.stop().await;
    // dev-b comes back on b1 before its 20 s: refused while b2 still counts as alive, then
    // its session resumes there, which cancels its will [MQTT-3.1.3-9].
    let (_dev_b, ack) = loop {
        let (client, ack) = nodes[1].broker.connect_with(device("dev-b", 20)).await;
        if ack.reason == ReasonCode::SUCCESS {
            break (client, ack);
        }
        assert_eq!(ack.reason, ReasonCode::SERVER_UNAVAILABLE);
        assert!(
            dropped.elapsed() < Duration::from_secs(18),
            "dev-b not resumed in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(ack.session_present);
    // dev-a's will: published once by a survivor, once b2 is taken for dead and the will due.
    let got = publish_within(&mut watcher, Duration::from_secs(20)).await;
    assert_eq!(got.topic, "dw/dev-a");
    assert!(dropped.elapsed() >= Duration::from_secs(3));
    // dev-b's never, not even after its 20 s.
    let until = Duration::from_secs(26).saturating_sub(dropped.elapsed());
    watcher.expect_nothing(until).await;
    for n in nodes {
        n.stop().await;
    }
}

/// Makes `member` (the only member of `share` so far, on its node) served by the group's
/// durable consumer: QoS 1 probes until one arrives (the consumer starts with the messages
/// stored after its creation), then nothing left over.
async fn group_serves(publisher: &mut Client, member: &mut Client, topic: &str) {
    let start = Instant::now();
    loop {
        publisher
            .publish(topic, b"?", QoS::AtLeastOnce, false)
            .await;
        if member.recv(Duration::from_millis(200)).await.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "shared group never served"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    member.drain(Duration::from_millis(300)).await;
}

/// A QoS 1 message of a shared group until a member gets `payload`; other payloads (late
/// probes) are acknowledged and skipped.
async fn shared_receives(member: &mut Client, payload: &str, within: Duration) -> Publish {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match member.recv(left).await {
            Some(hermod_proto::Packet::Publish(p)) if &p.payload[..] == payload.as_bytes() => {
                return p;
            }
            Some(hermod_proto::Packet::Publish(p)) => member.ack(&p).await,
            Some(_) => {}
            None => panic!("{payload:?} not received within {within:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_message_a_member_did_not_acknowledge_goes_to_a_member_on_another_node() {
    let nats = nats_or_skip!(
        "a_shared_message_a_member_did_not_acknowledge_goes_to_a_member_on_another_node"
    );
    log();
    let quick = |c: &mut ClusterConfig| c.shared_redelivery = Duration::from_secs(2);
    let mut n0 = Node::start("h0", vec![nats.url(0)], quick).await;
    let n1 = Node::start("h1", vec![nats.url(1)], quick).await;
    let mut publisher = n1.client(V5, "boss").await;

    // 1. The member leaves (its session ends) without acknowledging: no other member on its
    // node, so the message goes back to the cluster and to the member on the other node
    // (MQTT 5.0 §4.8.2: a QoS 1 message unacknowledged when its member's session ends SHOULD
    // go to another member of the group).
    let mut a = n0.client(V5, "leaver").await;
    a.subscribe_one("$share/g1/jobs/#", QoS::AtLeastOnce).await;
    group_serves(&mut publisher, &mut a, "jobs/probe").await;
    publisher
        .publish("jobs/1", b"left", QoS::AtLeastOnce, false)
        .await;
    let held = shared_receives(&mut a, "left", Duration::from_secs(10)).await;
    assert_eq!(held.qos, QoS::AtLeastOnce);
    let mut b = n1.client(V5, "taker").await;
    b.subscribe_one("$share/g1/jobs/#", QoS::AtLeastOnce).await;
    a.drop_connection();
    let got = shared_receives(&mut b, "left", Duration::from_secs(20)).await;
    b.ack(&got).await;

    // 2. The member's node dies while the member holds the message unacknowledged: JetStream
    // gives it to the member on the other node after `shared_redelivery`.
    let mut c = n0.client(V5, "holder").await;
    c.subscribe_one("$share/g2/work/#", QoS::AtLeastOnce).await;
    group_serves(&mut publisher, &mut c, "work/probe").await;
    publisher
        .publish("work/1", b"died", QoS::AtLeastOnce, false)
        .await;
    let _held = shared_receives(&mut c, "died", Duration::from_secs(10)).await;
    // Held past two progress marks: a live node keeps what its member holds.
    let mut d = n1.client(V5, "survivor").await;
    d.subscribe_one("$share/g2/work/#", QoS::AtLeastOnce).await;
    d.expect_nothing(Duration::from_secs(4)).await;
    if let Some(cluster) = n0.cluster.take() {
        cluster.abort().await;
    }
    let got = shared_receives(&mut d, "died", Duration::from_secs(20)).await;
    d.ack(&got).await;
    // And once acknowledged, nothing comes again.
    d.expect_nothing(Duration::from_secs(3)).await;
    n0.broker.stop().await;
    n1.stop().await;
}
