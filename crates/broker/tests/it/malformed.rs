//! Malformed input and protocol violations, as a table. Each case runs on its own broker: an
//! observer client connects first, the victim connects (or not) and sends the raw bytes, the
//! broker's reaction is checked, and then the observer must still complete a publish/receive
//! round trip and a new client must still be able to connect: the broker keeps serving and
//! nothing panics (the harness counts panics raised in broker or codec code).

use std::time::Duration;

use crate::harness::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// The bytes are the first thing sent on the connection (no CONNECT).
    BeforeConnect,
    /// The bytes follow a successful CONNECT.
    AfterConnect,
}

#[derive(Debug, Clone)]
enum Expect {
    /// 5.0: DISCONNECT with one of these reason codes, then close. 3.1.1: close, no packet.
    Disconnect(&'static [u8]),
    /// Close without any packet (both versions).
    Close,
    /// Close; a CONNACK with a failure reason code may come first.
    CloseOrConnackError,
    /// Nothing happens within a short wait and the connection stays open (the client then closes).
    Silent,
}

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    version: ProtocolVersion,
    stage: Stage,
    bytes: Vec<u8>,
    expect: Expect,
}

const MALFORMED: &[u8] = &[0x81];
const PROTOCOL: &[u8] = &[0x82];

fn varint(mut n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        v.push(b);
        if n == 0 {
            return v;
        }
    }
}

fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    v.extend(varint(body.len()));
    v.extend_from_slice(body);
    v
}

fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Property block (length + bytes) for v5, nothing for v3.
fn props(v: ProtocolVersion, p: &[u8]) -> Vec<u8> {
    if v.is_v5() {
        cat(&[&varint(p.len()), p])
    } else {
        Vec::new()
    }
}

/// A QoS 0 PUBLISH with raw topic bytes and raw v5 properties.
fn raw_publish(v: ProtocolVersion, topic: &[u8], p: &[u8]) -> Vec<u8> {
    pkt(0x30, &cat(&[&s(topic), &props(v, p), b"payload"]))
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let both = |name: &'static str,
                stage: Stage,
                f: &dyn Fn(ProtocolVersion) -> Vec<u8>,
                expect: Expect| {
        [V311, V5].map(|v| Case {
            name,
            version: v,
            stage,
            bytes: f(v),
            expect: expect.clone(),
        })
    };
    let v5 = |name: &'static str, bytes: Vec<u8>, expect: Expect| Case {
        name,
        version: V5,
        stage: Stage::AfterConnect,
        bytes,
        expect,
    };
    use Expect::*;
    use Stage::*;
    // Fixed header.
    out.extend(both(
        "remaining length of 5 bytes [1.5.5]",
        AfterConnect,
        &|_| vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "packet type 0 [2.1.2]",
        AfterConnect,
        &|_| vec![0x00, 0x00],
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "PUBREL flags 0000 [MQTT-3.6.1-1]",
        AfterConnect,
        &|_| vec![0x60, 0x02, 0x00, 0x01],
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "SUBSCRIBE flags 0000 [MQTT-3.8.1-1]",
        AfterConnect,
        &|v| pkt(0x80, &cat(&[&[0, 1], &props(v, &[]), &s(b"t"), &[0]])),
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "UNSUBSCRIBE flags 0000 [MQTT-3.10.1-1]",
        AfterConnect,
        &|v| pkt(0xA0, &cat(&[&[0, 1], &props(v, &[]), &s(b"t")])),
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "PINGREQ flags 0001 [MQTT-2.2.2-2]",
        AfterConnect,
        &|_| vec![0xC1, 0x00],
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "DISCONNECT flags 0010 [MQTT-2.2.2-2]",
        AfterConnect,
        &|_| vec![0xE2, 0x00],
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "PUBLISH QoS 3 [MQTT-3.3.1-4]",
        AfterConnect,
        &|v| {
            let mut p = raw_publish(v, b"t", &[]);
            p[0] = 0x36;
            p
        },
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "DUP on QoS 0 [MQTT-3.3.1-2]",
        AfterConnect,
        &|v| {
            let mut p = raw_publish(v, b"t", &[]);
            p[0] = 0x38;
            p
        },
        Disconnect(&[0x81, 0x82]),
    ));
    out.extend(both(
        "oversized packet (declared 2 MB > 1 MB max) [MQTT-3.2.2-15]",
        AfterConnect,
        &|_| cat(&[&[0x30], &varint(2_000_000)]),
        Disconnect(&[0x95]),
    ));
    // Strings and topics.
    out.extend(both(
        "invalid UTF-8 in topic [MQTT-1.5.4-1]",
        AfterConnect,
        &|v| raw_publish(v, &[b'a', 0xC3, 0x28], &[]),
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "UTF-16 surrogate in topic [MQTT-1.5.4-1]",
        AfterConnect,
        &|v| raw_publish(v, &[0xED, 0xA0, 0x80], &[]),
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "U+0000 in topic [MQTT-1.5.4-2]",
        AfterConnect,
        &|v| raw_publish(v, b"a\0b", &[]),
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "wildcard in topic name [MQTT-3.3.2-2]",
        AfterConnect,
        &|v| raw_publish(v, b"a/+", &[]),
        Disconnect(&[0x81, 0x90]),
    ));
    out.extend(both(
        "empty topic name without alias [MQTT-4.7.3-1]",
        AfterConnect,
        &|v| raw_publish(v, b"", &[]),
        Disconnect(&[0x81, 0x82, 0x90]),
    ));
    out.extend(both(
        "string length beyond the packet [1.5.4]",
        AfterConnect,
        &|_| pkt(0x30, &[0, 50, b'a']),
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "QoS 1 PUBLISH without packet id",
        AfterConnect,
        &|_| pkt(0x32, &s(b"t")),
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "U+0000 in topic filter [MQTT-1.5.4-2]",
        AfterConnect,
        &|v| pkt(0x82, &cat(&[&[0, 1], &props(v, &[]), &s(b"a\0"), &[0]])),
        Disconnect(MALFORMED),
    ));
    // Packet identifiers.
    out.extend(both(
        "packet id 0 on QoS 1 PUBLISH [MQTT-2.2.1-3]",
        AfterConnect,
        &|v| pkt(0x32, &cat(&[&s(b"t"), &[0, 0], &props(v, &[]), b"x"])),
        Disconnect(&[0x81, 0x82]),
    ));
    out.extend(both(
        "packet id 0 on SUBSCRIBE [MQTT-2.2.1-3]",
        AfterConnect,
        &|v| pkt(0x82, &cat(&[&[0, 0], &props(v, &[]), &s(b"t"), &[0]])),
        Disconnect(&[0x81, 0x82]),
    ));
    // SUBSCRIBE / UNSUBSCRIBE payloads.
    out.extend(both(
        "SUBSCRIBE with no filters [MQTT-3.8.3-3]",
        AfterConnect,
        &|v| pkt(0x82, &cat(&[&[0, 1], &props(v, &[])])),
        Disconnect(PROTOCOL),
    ));
    out.extend(both(
        "UNSUBSCRIBE with no filters [MQTT-3.10.3-2]",
        AfterConnect,
        &|v| pkt(0xA2, &cat(&[&[0, 1], &props(v, &[])])),
        Disconnect(PROTOCOL),
    ));
    out.extend(both(
        "subscription options reserved bits [MQTT-3.8.3-4/5]",
        AfterConnect,
        &|v| {
            let o = if v.is_v5() { 0xC1 } else { 0x05 };
            pkt(0x82, &cat(&[&[0, 1], &props(v, &[]), &s(b"t"), &[o]]))
        },
        Disconnect(MALFORMED),
    ));
    out.extend(both(
        "subscription QoS 3 [MQTT-3.8.3-4]",
        AfterConnect,
        &|v| pkt(0x82, &cat(&[&[0, 1], &props(v, &[]), &s(b"t"), &[3]])),
        Disconnect(MALFORMED),
    ));
    // Server-to-client packets sent by a client.
    out.extend(both(
        "CONNACK sent by a client",
        AfterConnect,
        &|v| {
            if v.is_v5() {
                vec![0x20, 3, 0, 0, 0]
            } else {
                vec![0x20, 2, 0, 0]
            }
        },
        Disconnect(PROTOCOL),
    ));
    out.extend(both(
        "SUBACK sent by a client",
        AfterConnect,
        &|v| {
            if v.is_v5() {
                vec![0x90, 4, 0, 1, 0, 0]
            } else {
                vec![0x90, 3, 0, 1, 0]
            }
        },
        Disconnect(PROTOCOL),
    ));
    out.extend(both(
        "UNSUBACK sent by a client",
        AfterConnect,
        &|v| {
            if v.is_v5() {
                vec![0xB0, 4, 0, 1, 0, 0]
            } else {
                vec![0xB0, 2, 0, 1]
            }
        },
        Disconnect(PROTOCOL),
    ));
    out.extend(both(
        "PINGRESP sent by a client",
        AfterConnect,
        &|_| vec![0xD0, 0],
        Disconnect(PROTOCOL),
    ));
    // CONNECT ordering.
    out.extend(both(
        "second CONNECT [MQTT-3.1.0-2]",
        AfterConnect,
        &|v| encode(&Packet::Connect(Box::new(connect_packet(v, "again"))), v),
        Disconnect(PROTOCOL),
    ));
    out.extend(both(
        "PINGREQ before CONNECT [MQTT-3.1.0-1]",
        BeforeConnect,
        &|_| vec![0xC0, 0],
        Close,
    ));
    out.extend(both(
        "PUBLISH before CONNECT [MQTT-3.1.0-1]",
        BeforeConnect,
        &|v| raw_publish(v, b"t", &[]),
        Close,
    ));
    out.extend(both(
        "garbage before CONNECT",
        BeforeConnect,
        &|_| b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        Close,
    ));
    out.extend(both(
        "CONNECT reserved flag [MQTT-3.1.2-3]",
        BeforeConnect,
        &|v| {
            let mut b = encode(&Packet::Connect(Box::new(connect_packet(v, "r"))), v);
            b[9] |= 0x01; // connect flags: 1 type + 1 len + 6 name + 1 level
            b
        },
        CloseOrConnackError,
    ));
    out.push(Case {
        name: "3.1.1 CONNECT password without user name [MQTT-3.1.2-22]",
        version: V311,
        stage: BeforeConnect,
        bytes: pkt(
            0x10,
            &cat(&[&s(b"MQTT"), &[4, 0x42, 0, 60], &s(b"pw"), &s(b"secret")]),
        ),
        expect: CloseOrConnackError,
    });
    // Truncated packet: declared length longer than what is sent; the broker waits for the rest.
    out.extend(both(
        "truncated PUBLISH, then the client closes",
        AfterConnect,
        &|_| vec![0x30, 100, 0, 3, b'a', b'/', b'b', 1, 2, 3],
        Silent,
    ));
    out.push(Case {
        name: "AUTH in 3.1.1 [2.1.2]",
        version: V311,
        stage: AfterConnect,
        bytes: vec![0xF0, 0x00],
        expect: Disconnect(MALFORMED),
    });
    // v5 properties.
    out.push(v5(
        "duplicate property [MQTT-2.2.2-2]",
        raw_publish(V5, b"t", &[0x01, 0x01, 0x01, 0x00]),
        Disconnect(PROTOCOL),
    ));
    out.push(v5(
        "property not allowed in PUBLISH (Session Expiry) [2.2.2.2: malformed]",
        raw_publish(V5, b"t", &[0x11, 0, 0, 0, 5]),
        Disconnect(MALFORMED),
    ));
    out.push(v5(
        "unknown property identifier [2.2.2.2]",
        raw_publish(V5, b"t", &[0x7F, 0x00]),
        Disconnect(MALFORMED),
    ));
    out.push(v5(
        "property length beyond the packet [2.2.2.1]",
        pkt(0x30, &cat(&[&s(b"t"), &[10, 0x01]])),
        Disconnect(MALFORMED),
    ));
    out.push(v5(
        "subscription identifier in a client PUBLISH [MQTT-3.3.4-6]",
        raw_publish(V5, b"t", &[0x0B, 0x01]),
        Disconnect(PROTOCOL),
    ));
    out.push(v5(
        "topic alias 0 [MQTT-3.3.2-8]",
        raw_publish(V5, b"t", &[0x23, 0, 0]),
        Disconnect(&[0x94]),
    ));
    out.push(v5(
        "topic alias above Topic Alias Maximum [MQTT-3.3.2-9]",
        raw_publish(V5, b"t", &[0x23, 0, 11]),
        Disconnect(&[0x94]),
    ));
    out.push(v5(
        "unmapped topic alias with empty topic [5.0 §3.3.4]",
        raw_publish(V5, b"", &[0x23, 0, 3]),
        Disconnect(PROTOCOL),
    ));
    out.push(v5(
        "retain handling 3 [3.8.3.1]",
        pkt(0x82, &cat(&[&[0, 1], &[0], &s(b"t"), &[0x30]])),
        Disconnect(PROTOCOL),
    ));
    out.push(v5(
        "subscription identifier 0 [3.8.2.1.2]",
        pkt(0x82, &cat(&[&[0, 1], &[2, 0x0B, 0], &s(b"t"), &[0]])),
        Disconnect(PROTOCOL),
    ));
    out.push(v5(
        "no local on a shared subscription [MQTT-3.8.3-4]",
        pkt(0x82, &cat(&[&[0, 1], &[0], &s(b"$share/g/t"), &[0x04]])),
        Disconnect(PROTOCOL),
    ));
    out.push(v5(
        "PUBACK with an invalid reason code [3.4.2.1]",
        vec![0x40, 3, 0, 1, 0x05],
        Disconnect(&[0x81, 0x82]),
    ));
    out.push(v5(
        "DISCONNECT with an invalid reason code [3.14.2.1]",
        vec![0xE0, 1, 0x05],
        Disconnect(&[0x81, 0x82]),
    ));
    out
}

async fn run_case(case: Case) {
    let v = case.version;
    let b = TestBroker::start().await;
    let mut observer = b.client(v, "observer").await;
    observer.subscribe("alive/#", Q1).await;
    let mut victim = match case.stage {
        Stage::BeforeConnect => b.tcp(v).await,
        Stage::AfterConnect => b.client(v, "victim").await,
    };
    victim.send_raw(&case.bytes).await;
    match case.expect {
        Expect::Disconnect(codes) => {
            if v.is_v5() {
                match victim.recv(WAIT).await {
                    Some(Packet::Disconnect(d)) => {
                        assert!(
                            codes.contains(&d.reason.0),
                            "DISCONNECT reason {} not in {codes:02X?}",
                            d.reason
                        )
                    }
                    other => panic!("expected DISCONNECT {codes:02X?}, got {other:?}"),
                }
            }
            victim.expect_closed(WAIT).await;
        }
        Expect::Close => victim.expect_closed(WAIT).await,
        Expect::CloseOrConnackError => {
            match victim.recv(WAIT).await {
                None => {}
                Some(Packet::ConnectAck(a)) if a.reason.is_error() => {}
                Some(other) => panic!("expected close, got {other:?}"),
            }
            assert!(victim.is_closed_within(WAIT).await, "closed");
        }
        Expect::Silent => {
            assert!(
                !victim.is_closed_within(Duration::from_millis(300)).await,
                "broker closed a connection with a partial packet"
            );
            victim.drop_connection();
        }
    }
    // The broker keeps serving: the observer's round trip, and a new connection.
    observer
        .publish("alive/check", b"still here", Q1, false)
        .await;
    let m = observer.expect_publish_acked().await;
    assert_eq!(m.payload.as_ref(), b"still here");
    let mut fresh = b.client(v, "fresh").await;
    fresh.ping().await;
    b.stop().await;
}

// A table of malformed packets and protocol violations (2.1.2, 1.5.4, 2.2.1, 2.2.2, 3.x):
// [MQTT-4.8.0-1] (3.1.1) / 4.13 (5.0): the receiver of a malformed packet or protocol error closes
// the connection; 5.0 sends DISCONNECT with the reason code first. Every case is listed in the
// failure message, so one run reports all deviations.
#[tokio::test]
async fn malformed_table() {
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut set = tokio::task::JoinSet::new();
    for case in cases {
        let label = format!("{} ({:?})", case.name, case.version);
        set.spawn(async move {
            let r = tokio::spawn(run_case(case)).await;
            (label, r)
        });
    }
    let mut failures = Vec::new();
    let mut n = 0;
    while let Some(res) = set.join_next().await {
        let (label, r) = res.expect("wrapper task");
        n += 1;
        if let Err(e) = r {
            let msg = if e.is_panic() {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            } else {
                "cancelled".into()
            };
            failures.push(format!("{label}: {msg}"));
        }
    }
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {n} malformed-input cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
