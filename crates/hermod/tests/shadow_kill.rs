//! Crash test of the shadow service's durability contract: an update whose `accepted` a client
//! received survives `kill -9`.
//!
//! `hermod serve -c` runs as a separate process with a store on disk (`sync = "batch"`) and its
//! commits slowed by the store's fault injection (200 ms), so `accepted` published before the
//! commit would be caught. A client sends 300 updates to one thing (each reporting its number)
//! plus updates to other things, all pipelined, and the broker gets SIGKILL once 20 `accepted`
//! arrived. Restarted on the same directory, `get` must answer a version at least the highest
//! accepted one, with the document of that version (version v reports number v - 1).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_client::{ConnectOptions, Connection, connect};
use hermod_proto::{
    Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use serde_json::Value;

const UPDATES: u16 = 300;
const KILL_AFTER: u64 = 20;
const THING: &str = "$hermod/things/kill-1/shadow";

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("hermod-shadow-kill-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Broker(Child);

impl Broker {
    fn start(config: &Path, addr: SocketAddr) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_hermod"))
            .args(["serve", "-c"])
            .arg(config)
            .env("RUST_LOG", "off")
            .env(hermod_broker::store::COMMIT_DELAY_ENV, "200")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hermod starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "hermod did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SIGKILL on Unix.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

async fn client(addr: SocketAddr, id: &str) -> Connection {
    // The service may still be subscribing right after the port opens.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opts = ConnectOptions::new(id).version(ProtocolVersion::V5);
    let (mut conn, _) = connect(addr, &opts).await.expect("connects");
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(
            format!("{THING}/+/+"),
            SubscriptionOptions {
                qos: QoS::AtMostOnce,
                ..SubscriptionOptions::default()
            },
        )],
        properties: SubscribeProperties::default(),
    });
    conn.send(&sub).await.expect("subscribe");
    loop {
        match conn.recv_timeout(Duration::from_secs(5)).await {
            Ok(Some(Packet::SubscribeAck(_))) => return conn,
            Ok(Some(_)) => {}
            other => panic!("no SUBACK: {other:?}"),
        }
    }
}

fn update(n: u16, topic: String, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic,
        packet_id: Some(pid(packet_id)),
        payload: Bytes::from(format!(r#"{{"state":{{"reported":{{"n":{n}}}}}}}"#)),
        ..Publish::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_shadow_updates_survive_kill_9() {
    let dir = TempDir::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = dir.0.join("hermod.toml");
    // The test's clients act for many things: the ACL grants them every thing's topics.
    std::fs::write(dir.0.join("acl"), "topic readwrite $hermod/things/#\n").expect("acl");
    std::fs::write(
        &config,
        format!(
            "allow_anonymous = true\nacl_file = \"acl\"\n[[listener]]\nbind = \"{addr}\"\n\n[store]\npath = \"data\"\nsync = \"batch\"\n\n[admin]\nenabled = false\n\n[shadow]\nmax_pending_per_thing = 1000\n"
        ),
    )
    .expect("config");
    let broker = Broker::start(&config, addr);
    let mut conn = client(addr, "kill-app").await;
    for n in 0..UPDATES {
        conn.queue(&update(n, format!("{THING}/update"), n + 2))
            .expect("encode");
        // Other things' updates in the same commits.
        conn.queue(&update(
            n,
            format!("$hermod/things/other-{}/shadow/update", n % 50),
            n + 2 + UPDATES,
        ))
        .expect("encode");
    }
    conn.flush().await.expect("flush");
    let mut highest = 0u64;
    let mut accepted = 0u64;
    while accepted < KILL_AFTER {
        match conn.recv_timeout(Duration::from_secs(10)).await {
            Ok(Some(Packet::Publish(p))) if p.topic.ends_with("/update/accepted") => {
                let doc: Value = serde_json::from_slice(&p.payload).expect("json");
                let v = doc["version"].as_u64().expect("version");
                assert_eq!(
                    doc["state"]["reported"]["n"].as_u64(),
                    Some(v - 1),
                    "version {v} is update {}",
                    v - 1
                );
                highest = highest.max(v);
                accepted += 1;
            }
            Ok(Some(_)) => {}
            other => panic!("broker went away before {KILL_AFTER} accepted: {other:?}"),
        }
    }
    drop(broker); // kill -9
    drop(conn);
    assert!(highest >= KILL_AFTER);

    let _broker = Broker::start(&config, addr);
    let mut conn = client(addr, "kill-check").await;
    conn.send(&Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: format!("{THING}/get"),
        packet_id: Some(pid(2)),
        payload: Bytes::from_static(b"{}"),
        ..Publish::default()
    }))
    .await
    .expect("get");
    let doc = loop {
        match conn.recv_timeout(Duration::from_secs(10)).await {
            Ok(Some(Packet::Publish(p))) if p.topic.ends_with("/get/accepted") => {
                break serde_json::from_slice::<Value>(&p.payload).expect("json");
            }
            Ok(Some(Packet::Publish(p))) if p.topic.ends_with("/get/rejected") => {
                let why = String::from_utf8_lossy(&p.payload);
                panic!("accepted version {highest} lost: get after the restart: {why}");
            }
            Ok(Some(_)) => {}
            other => panic!("no get/accepted after the restart: {other:?}"),
        }
    };
    let version = doc["version"].as_u64().expect("version");
    assert!(
        version >= highest,
        "accepted version {highest} lost: the restarted broker has {version}"
    );
    assert_eq!(
        doc["state"]["reported"]["n"].as_u64(),
        Some(version - 1),
        "{doc}"
    );
    eprintln!("accepted up to version {highest} before kill -9; version {version} after restart");
}
