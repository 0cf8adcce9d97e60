//! MQTT over WebSocket and WebSocket over TLS (MQTT 5.0 / 3.1.1 chapter 6), with
//! tokio-tungstenite as the client: round trips, a packet split over two frames, two packets in
//! one frame, the path check; and paho-mqtt / MQTT.js from interop/access when installed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const ACL: &str = "\
user root
topic readwrite #

user alice
topic readwrite home/alice/#
";

fn wss(pki: &Pki) -> Via {
    Via::Wss(tls_client_config(&pki.ca_pem, None), "/mqtt")
}

// A pub/sub round trip over ws and over wss, each to a subscriber on another transport.
#[tokio::test]
async fn round_trip_over_ws_and_wss() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    for (name, addr, via) in [("ws", b.addr(WS), Via::Ws("/mqtt")), ("wss", b.addr(WSS), wss(&pki))] {
        for v in [V311, V5] {
            let mut ws = Client::connect(addr, &via, login(v, &format!("alice-{name}"), "alice")).await;
            assert_eq!(ws.subscribe("home/alice/#", Q1).await, ReasonCode(1), "{name}");
            let mut tcp = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "alice-tcp", "alice")).await;
            tcp.subscribe("home/alice/#", Q1).await;
            // ws → tcp and tcp → ws.
            ws.publish("home/alice/from-ws", name.as_bytes(), Q1, false).await;
            tcp.publish("home/alice/from-tcp", b"tcp", Q1, false).await;
            let mut at_ws = got(&ws.drain(QUIET).await);
            at_ws.sort();
            assert_eq!(
                at_ws,
                vec![("home/alice/from-tcp".into(), "tcp".into()), ("home/alice/from-ws".into(), name.into())],
                "{name} {v:?}"
            );
            let mut at_tcp = got(&tcp.drain(QUIET).await);
            at_tcp.sort();
            assert_eq!(at_tcp.len(), 2, "{name} {v:?}: {at_tcp:?}");
            // The ACL applies on WebSocket listeners too.
            assert_eq!(ws.publish("home/bob/x", b"no", Q1, false).await, if v == V5 { ReasonCode::NOT_AUTHORIZED } else { ReasonCode::SUCCESS });
            ws.disconnect().await;
            tcp.disconnect().await;
        }
    }
    // Password checks on ws: wrong password refused.
    let bad = connect_packet(V5, "x", Some("alice"), Some(b"nope"));
    assert_eq!(Client::connack(b.addr(WS), &Via::Ws("/mqtt"), bad).await, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    b.stop().await;
}

// [MQTT-6.0.0-2]: the receiver must not assume packets are aligned on WebSocket frame
// boundaries. One CONNECT split over two binary frames, then a PUBLISH split over two frames.
#[tokio::test]
async fn one_packet_split_over_two_frames() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    for (name, addr, via) in [("ws", b.addr(WS), Via::Ws("/mqtt")), ("wss", b.addr(WSS), wss(&pki))] {
        let mut spy = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "spy", "root")).await;
        spy.subscribe("home/#", Q1).await;
        let mut c = Client::open(addr, &via, V5).await.expect("ws open");
        let connect = encode(&Packet::Connect(Box::new(login(V5, "split", "alice"))), V5);
        let (a, z) = connect.split_at(7); // inside the variable header
        c.send_raw(a).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.send_raw(z).await;
        match c.expect().await {
            Packet::ConnectAck(ack) => assert_eq!(ack.reason, ReasonCode::SUCCESS, "{name}"),
            other => panic!("{name}: expected CONNACK, got {other:?}"),
        }
        let mut p = publish("home/alice/split", b"0123456789abcdef", Q1, false);
        p.packet_id = Some(pid(7));
        let bytes = encode(&Packet::Publish(p), V5);
        let (a, z) = bytes.split_at(1); // after the first byte of the fixed header
        c.send_raw(a).await;
        c.send_raw(z).await;
        match c.expect().await {
            Packet::PublishAck(ack) => assert_eq!(ack.packet_id, pid(7), "{name}"),
            other => panic!("{name}: expected PUBACK, got {other:?}"),
        }
        let m = spy.expect_publish().await;
        assert_eq!((m.topic.as_str(), &m.payload[..]), ("home/alice/split", &b"0123456789abcdef"[..]), "{name}");
        c.disconnect().await;
        spy.disconnect().await;
    }
    b.stop().await;
}

// [MQTT-6.0.0-2] the other way: two (here three) packets in one binary frame are all handled.
#[tokio::test]
async fn two_packets_in_one_frame() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    for (name, addr, via) in [("ws", b.addr(WS), Via::Ws("/mqtt")), ("wss", b.addr(WSS), wss(&pki))] {
        let mut c = Client::open(addr, &via, V5).await.expect("ws open");
        // CONNECT + SUBSCRIBE in one frame.
        let mut frame = encode(&Packet::Connect(Box::new(login(V5, "batch", "alice"))), V5);
        let sub = Subscribe {
            packet_id: pid(3),
            filters: vec![("home/alice/#".into(), SubscriptionOptions { qos: Q1, ..SubscriptionOptions::default() })],
            properties: SubscribeProperties::default(),
        };
        frame.extend(encode(&Packet::Subscribe(sub), V5));
        c.send_raw(&frame).await;
        assert!(matches!(c.expect().await, Packet::ConnectAck(a) if a.reason == ReasonCode::SUCCESS), "{name}: CONNACK");
        assert!(matches!(c.expect().await, Packet::SubscribeAck(a) if a.packet_id == pid(3)), "{name}: SUBACK");
        // PUBLISH + PINGREQ in one frame.
        let mut p = publish("home/alice/batch", b"two in one", Q1, false);
        p.packet_id = Some(pid(9));
        let mut frame = encode(&Packet::Publish(p), V5);
        frame.extend(encode(&Packet::PingRequest, V5));
        c.send_raw(&frame).await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(match c.expect().await {
                Packet::PublishAck(a) if a.packet_id == pid(9) => "PUBACK".to_owned(),
                Packet::PingResponse => "PINGRESP".to_owned(),
                Packet::Publish(m) => {
                    if let Some(id) = m.packet_id {
                        c.send(&Packet::PublishAck(PublishAck::new(id))).await;
                    }
                    format!("PUBLISH {} {}", m.topic, String::from_utf8_lossy(&m.payload))
                }
                other => format!("{other:?}"),
            });
        }
        seen.sort();
        assert_eq!(seen, vec!["PINGRESP", "PUBACK", "PUBLISH home/alice/batch two in one"], "{name}");
        c.disconnect().await;
    }
    b.stop().await;
}

// Another path than the listener's `path` is refused at the upgrade (HTTP 404).
#[tokio::test]
async fn wrong_path_is_refused() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let r = Client::open(b.addr(WS), &Via::Ws("/other"), V5).await;
    let e = r.err().expect("upgrade on /other must fail");
    assert!(e.contains("404"), "{e}");
    b.stop().await;
}

/// interop/access in the repository.
fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/access")
}

// paho-mqtt (Python, websockets transport) over ws and wss against this broker: the same
// script interop/access/run.sh uses. Skipped when python3 or paho-mqtt is missing.
#[tokio::test]
async fn paho_websockets() {
    let Some(python) = which("python3") else {
        eprintln!("SKIP: python3 not found");
        return;
    };
    let probe = Command::new(&python).args(["-c", "import paho.mqtt.client"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: paho-mqtt not installed (pip install -r interop/requirements.txt)");
        return;
    }
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let ca = b.path().join("certs/ca.pem");
    let (code, out, err) = run(
        Command::new(&python)
            .arg(interop_dir().join("ws_paho.py"))
            .args(["--host", "127.0.0.1", "--ws-port", &b.addr(WS).port().to_string()])
            .args(["--wss-port", &b.addr(WSS).port().to_string(), "--cafile"])
            .arg(&ca)
            .args(["--username", "alice", "--password", "alice-pw", "--topic", "home/alice/paho"]),
        b.path(),
        "paho",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(code, Some(0), "ws_paho.py:\n{out}\n{err}");
    b.stop().await;
}

// MQTT.js (Node) over ws and wss: interop/access/ws_mqttjs.mjs. Skipped when node or
// interop/access/node_modules (npm ci) is missing.
#[tokio::test]
async fn mqttjs_websockets() {
    let Some(node) = which("node") else {
        eprintln!("SKIP: node not found");
        return;
    };
    if !interop_dir().join("node_modules/mqtt").is_dir() {
        eprintln!("SKIP: MQTT.js not installed (cd interop/access && npm ci)");
        return;
    }
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let ca = b.path().join("certs/ca.pem");
    let (code, out, err) = run(
        Command::new(&node)
            .arg(interop_dir().join("ws_mqttjs.mjs"))
            .args(["--host", "127.0.0.1", "--ws-port", &b.addr(WS).port().to_string()])
            .args(["--wss-port", &b.addr(WSS).port().to_string(), "--cafile"])
            .arg(&ca)
            .args(["--username", "alice", "--password", "alice-pw", "--topic", "home/alice/mqttjs"]),
        b.path(),
        "mqttjs",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(code, Some(0), "ws_mqttjs.mjs:\n{out}\n{err}");
    b.stop().await;
}
