//! The test harness itself against real servers: a 3-node JetStream cluster keeps an R3 stream
//! writable with one node killed, and the node comes back. Skipped without nats-server (unless
//! `HERMOD_REQUIRE_PEERS` is set).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use hermod_testkit::nats::{NatsCluster, require_nats};

/// Longest wait for the cluster to settle (stream creation, publish acks, a leader move).
const SETTLE: Duration = Duration::from_secs(15);
/// Longest wait for an ack once the stream leader was killed: the other replicas elect a new
/// one only after a Raft election timeout (4-9 s in nats-server), measured here at about 7.5 s.
const FAILOVER: Duration = Duration::from_secs(30);

async fn connect(url: &str) -> async_nats::Client {
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)));
    tokio::time::timeout(Duration::from_secs(10), options.connect(url))
        .await
        .expect("connect in time")
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Publishes with an ack, retrying while the cluster settles (leader elections); the stream
/// sequence of the message.
async fn publish_acked(
    within: Duration,
    js: &jetstream::Context,
    subject: &str,
    payload: &'static str,
    cluster: &NatsCluster,
) -> u64 {
    let start = Instant::now();
    loop {
        let attempt = async {
            // A message id, so that a retry of a publish that was stored is not stored twice.
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", payload);
            js.publish_with_headers(subject.to_owned(), headers, payload.into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(ack)) => return ack.sequence,
            Ok(Err(e)) => eprintln!("publish {payload} after {:?}: {e}", start.elapsed()),
            Err(_) => eprintln!("publish {payload} after {:?}: timed out", start.elapsed()),
        }
        assert!(
            start.elapsed() < within,
            "no ack for {payload} within {within:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server name of the stream's leader, if it has one now.
async fn stream_leader(js: &jetstream::Context, name: &str) -> Option<String> {
    let mut stream = js.get_stream(name).await.ok()?;
    let info = stream.info().await.ok()?;
    info.cluster.as_ref()?.leader.clone()
}

/// Moves the leadership of stream `name` to server `to` (a stepdown with a preferred
/// successor), so that killing `to` always tests a leader failover, not just a lost follower.
async fn move_leader(client: &async_nats::Client, js: &jetstream::Context, name: &str, to: &str) {
    let start = Instant::now();
    loop {
        let leader = stream_leader(js, name).await;
        if leader.as_deref() == Some(to) {
            return;
        }
        assert!(
            start.elapsed() < SETTLE,
            "stream {name} led by {leader:?}, not {to}, after {SETTLE:?}"
        );
        let body = format!(r#"{{"placement":{{"preferred":"{to}"}}}}"#);
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"),
                body.into(),
            ),
        )
        .await;
        match answer {
            Ok(Ok(msg)) => eprintln!(
                "stepdown of {leader:?}: {}",
                String::from_utf8_lossy(&msg.payload)
            ),
            Ok(Err(e)) => eprintln!("stepdown of {leader:?}: {e}"),
            Err(_) => eprintln!("stepdown of {leader:?}: timed out"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_stream_survives_a_killed_node() {
    let Some(bin) = require_nats("r3_stream_survives_a_killed_node") else {
        return;
    };
    let t0 = Instant::now();
    let mut cluster = NatsCluster::start(&bin, 3);
    eprintln!(
        "3 nodes healthy with a meta leader after {:?}",
        t0.elapsed()
    );
    assert_eq!(cluster.urls().len(), 3);

    let client = connect(&cluster.url(0)).await;
    let js = jetstream::new(client.clone());
    let start = Instant::now();
    loop {
        let created = tokio::time::timeout(
            Duration::from_secs(5),
            js.get_or_create_stream(stream::Config {
                name: "HARNESS".into(),
                subjects: vec!["harness.>".into()],
                num_replicas: 3,
                ..Default::default()
            }),
        )
        .await;
        match created {
            Ok(Ok(_)) => break,
            Ok(Err(e)) => eprintln!("create stream after {:?}: {e}", start.elapsed()),
            Err(_) => eprintln!("create stream after {:?}: timed out", start.elapsed()),
        }
        assert!(
            start.elapsed() < SETTLE,
            "stream not created within {SETTLE:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("R3 stream created after {:?}", t0.elapsed());
    assert_eq!(
        publish_acked(SETTLE, &js, "harness.one", "one", &cluster).await,
        1
    );

    // Kill the stream's leader: the case where the stream must elect another.
    let moving = Instant::now();
    move_leader(&client, &js, "HARNESS", "n0").await;
    eprintln!("stream leader moved to n0 in {:?}", moving.elapsed());
    drop((js, client));
    let pid = cluster.pid(0);
    cluster.kill(0);
    // Reaped by `kill`, so the process is gone, not a zombie.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "node 0 (pid {pid}) still there"
    );
    let killed = Instant::now();
    let js1 = jetstream::new(connect(&cluster.url(1)).await);
    assert_eq!(
        publish_acked(FAILOVER, &js1, "harness.two", "two", &cluster).await,
        2
    );
    eprintln!(
        "ack with n0 (the stream leader) down after {:?}",
        killed.elapsed()
    );
    eprintln!(
        "new stream leader: {:?}",
        stream_leader(&js1, "HARNESS").await
    );

    let restarted = Instant::now();
    cluster.restart(0);
    eprintln!(
        "n0 back (knows the meta leader) after {:?}",
        restarted.elapsed()
    );
    let js0 = jetstream::new(connect(&cluster.url(0)).await);
    assert_eq!(
        publish_acked(SETTLE, &js0, "harness.three", "three", &cluster).await,
        3
    );
    eprintln!("whole test {:?}", t0.elapsed());
}

/// A single node (no `cluster` block) keeps its file store across a kill and restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_keeps_its_store_across_a_restart() {
    let Some(bin) = require_nats("single_node_keeps_its_store_across_a_restart") else {
        return;
    };
    let mut cluster = NatsCluster::start(&bin, 1);
    assert_eq!(cluster.urls(), [cluster.url(0)]);
    let js = jetstream::new(connect(&cluster.url(0)).await);
    tokio::time::timeout(
        SETTLE,
        js.get_or_create_stream(stream::Config {
            name: "ONE".into(),
            subjects: vec!["one.>".into()],
            ..Default::default()
        }),
    )
    .await
    .expect("stream created in time")
    .expect("stream created");
    assert_eq!(publish_acked(SETTLE, &js, "one.a", "a", &cluster).await, 1);
    drop(js);
    cluster.restart(0);
    let js = jetstream::new(connect(&cluster.url(0)).await);
    assert_eq!(publish_acked(SETTLE, &js, "one.b", "b", &cluster).await, 2);
}
