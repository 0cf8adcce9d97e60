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
    for (name, addr, via) in [
        ("ws", b.addr(WS), Via::Ws("/mqtt")),
        ("wss", b.addr(WSS), wss(&pki)),
    ] {
        for v in [V311, V5] {
            let mut ws =
                Client::connect(addr, &via, login(v, &format!("alice-{name}"), "alice")).await;
            assert_eq!(
                ws.subscribe_one("home/alice/#", Q1).await,
                ReasonCode(1),
                "{name}"
            );
            let mut tcp =
                Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "alice-tcp", "alice")).await;
            tcp.subscribe_one("home/alice/#", Q1).await;
            // ws → tcp and tcp → ws.
            ws.publish("home/alice/from-ws", name.as_bytes(), Q1, false)
                .await;
            tcp.publish("home/alice/from-tcp", b"tcp", Q1, false).await;
            let mut at_ws = got(&ws.drain(QUIET).await);
            at_ws.sort();
            assert_eq!(
                at_ws,
                vec![
                    ("home/alice/from-tcp".into(), "tcp".into()),
                    ("home/alice/from-ws".into(), name.into())
                ],
                "{name} {v:?}"
            );
            let mut at_tcp = got(&tcp.drain(QUIET).await);
            at_tcp.sort();
            assert_eq!(at_tcp.len(), 2, "{name} {v:?}: {at_tcp:?}");
            // The ACL applies on WebSocket listeners too.
            assert_eq!(
                ws.publish("home/bob/x", b"no", Q1, false).await,
                if v == V5 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::SUCCESS
                }
            );
            ws.disconnect().await;
            tcp.disconnect().await;
        }
    }
    // Password checks on ws: wrong password refused.
    let bad = connect_auth(V5, "x", Some("alice"), Some(b"nope"));
    assert_eq!(
        Client::connack(b.addr(WS), &Via::Ws("/mqtt"), bad).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    b.stop().await;
}

// [MQTT-6.0.0-2]: the receiver must not assume packets are aligned on WebSocket frame
// boundaries. One CONNECT split over two binary frames, then a PUBLISH split over two frames.
#[tokio::test]
async fn one_packet_split_over_two_frames() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    for (name, addr, via) in [
        ("ws", b.addr(WS), Via::Ws("/mqtt")),
        ("wss", b.addr(WSS), wss(&pki)),
    ] {
        let mut spy = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "spy", "root")).await;
        spy.subscribe_one("home/#", Q1).await;
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
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("home/alice/split", &b"0123456789abcdef"[..]),
            "{name}"
        );
        c.disconnect().await;
        spy.disconnect().await;
    }
    b.stop().await;
}

fn subscribe_packet(id: u16, filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        filters: vec![(
            filter.into(),
            SubscriptionOptions {
                qos: Q1,
                ..SubscriptionOptions::default()
            },
        )],
        properties: SubscribeProperties::default(),
    })
}

/// The next `n` packets, summarised and sorted (QoS 1 PUBLISH acked).
async fn next_packets(c: &mut Client, n: usize, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let p = match c.read(WAIT).await {
            Recv::Packet(p) => p,
            other => panic!("{what}: expected {n} packets, got {seen:?} then {other:?}"),
        };
        seen.push(match p {
            Packet::ConnectAck(a) => format!("CONNACK {:?}", a.reason),
            Packet::SubscribeAck(a) => format!("SUBACK {} {:?}", a.packet_id, a.reasons),
            Packet::PublishAck(a) => format!("PUBACK {}", a.packet_id),
            Packet::PingResponse => "PINGRESP".to_owned(),
            Packet::Publish(m) => {
                if let Some(id) = m.packet_id {
                    c.send(&Packet::PublishAck(PublishAck::new(id))).await;
                }
                format!(
                    "PUBLISH {} {}",
                    m.topic,
                    String::from_utf8_lossy(&m.payload)
                )
            }
            other => format!("{other:?}"),
        });
    }
    seen.sort();
    seen
}

// [MQTT-6.0.0-2] the other way: several packets in one binary frame are all handled
// (SUBSCRIBE + PUBLISH + PINGREQ, on an established connection).
#[tokio::test]
async fn several_packets_in_one_frame() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    for (name, addr, via) in [
        ("ws", b.addr(WS), Via::Ws("/mqtt")),
        ("wss", b.addr(WSS), wss(&pki)),
    ] {
        let mut c = Client::connect(addr, &via, login(V5, "batch", "alice")).await;
        let mut p = publish("home/alice/batch", b"in one frame", Q1, false);
        p.packet_id = Some(pid(9));
        let mut frame = encode(&subscribe_packet(3, "home/alice/#"), V5);
        frame.extend(encode(&Packet::Publish(p), V5));
        frame.extend(encode(&Packet::PingRequest, V5));
        c.send_raw(&frame).await;
        assert_eq!(
            next_packets(&mut c, 4, name).await,
            vec![
                "PINGRESP",
                "PUBACK 9",
                "PUBLISH home/alice/batch in one frame",
                "SUBACK 3 [ReasonCode(0x01)]"
            ],
            "{name}"
        );
        c.disconnect().await;
    }
    b.stop().await;
}

// CONNECT and SUBSCRIBE in one frame (ws, wss) or one TCP write: the SUBSCRIBE must be handled
// right after the CONNECT, without waiting for more bytes from the client. (Packets are not
// aligned on frame or segment boundaries [MQTT-6.0.0-2]; MQTT 4.4 lets a client send packets
// before CONNACK arrives.)
#[tokio::test]
async fn connect_and_subscribe_in_one_frame_or_write() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    for (name, addr, via) in [
        ("tcp", b.addr(TCP), Via::Tcp),
        ("ws", b.addr(WS), Via::Ws("/mqtt")),
        ("wss", b.addr(WSS), wss(&pki)),
    ] {
        let mut c = Client::open(addr, &via, V5).await.expect("open");
        let mut bytes = encode(
            &Packet::Connect(Box::new(login(V5, "pipelined", "alice"))),
            V5,
        );
        bytes.extend(encode(&subscribe_packet(3, "home/alice/#"), V5));
        c.send_raw(&bytes).await;
        assert_eq!(
            next_packets(&mut c, 2, name).await,
            vec!["CONNACK ReasonCode(0x00)", "SUBACK 3 [ReasonCode(0x01)]"],
            "{name}: CONNECT + SUBSCRIBE sent together"
        );
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
    let probe = Command::new(&python)
        .args(["-c", "import paho.mqtt.client"])
        .output();
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
            .args([
                "--host",
                "127.0.0.1",
                "--ws-port",
                &b.addr(WS).port().to_string(),
            ])
            .args(["--wss-port", &b.addr(WSS).port().to_string(), "--cafile"])
            .arg(&ca)
            .args([
                "--username",
                "alice",
                "--password",
                "alice-pw",
                "--topic",
                "home/alice/paho",
            ]),
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
            .args([
                "--host",
                "127.0.0.1",
                "--ws-port",
                &b.addr(WS).port().to_string(),
            ])
            .args(["--wss-port", &b.addr(WSS).port().to_string(), "--cafile"])
            .arg(&ca)
            .args([
                "--username",
                "alice",
                "--password",
                "alice-pw",
                "--topic",
                "home/alice/mqttjs",
            ]),
        b.path(),
        "mqttjs",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(code, Some(0), "ws_mqttjs.mjs:\n{out}\n{err}");
    b.stop().await;
}
