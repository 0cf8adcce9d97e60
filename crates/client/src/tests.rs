//! Unit tests against a tokio `TcpListener` that plays the broker with canned bytes.

#![allow(clippy::unwrap_used)]

use super::*;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use hermod_proto::{Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// CONNECT v3.1.1, clean session, keep alive 60, client id "c1".
const CONNECT_C1: &[u8] = &[
    0x10, 14, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x02, b'c', b'1',
];

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    tokio::time::timeout(T, s.read_exact(&mut v))
        .await
        .unwrap()
        .unwrap();
    v
}

#[tokio::test]
async fn connect_accepted() {
    let (l, addr) = listener().await;
    let broker = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let got = read_exactly(&mut s, CONNECT_C1.len()).await;
        assert_eq!(got, CONNECT_C1);
        s.write_all(&[0x20, 0x02, 0x01, 0x00]).await.unwrap();
        // Then a DISCONNECT from the client and EOF.
        let got = read_exactly(&mut s, 2).await;
        assert_eq!(got, [0xE0, 0x00]);
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    });
    let (mut conn, ack) = connect(addr, &ConnectOptions::new("c1")).await.unwrap();
    assert!(ack.session_present);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    conn.disconnect().await.unwrap();
    broker.await.unwrap();
}

#[tokio::test]
async fn connect_refused_maps_reason() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = read_exactly(&mut s, CONNECT_C1.len()).await;
        s.write_all(&[0x20, 0x02, 0x00, 0x05]).await.unwrap();
    });
    let err = connect(addr, &ConnectOptions::new("c1")).await.unwrap_err();
    assert_eq!(
        err.refused_reason(),
        Some(ReasonCode::NOT_AUTHORIZED),
        "{err:?}"
    );
    assert_eq!(v3_return_code(err.refused_reason().unwrap()), 5);
}

#[tokio::test]
async fn connect_closed_before_connack() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = read_exactly(&mut s, CONNECT_C1.len()).await;
        drop(s);
    });
    let err = connect(addr, &ConnectOptions::new("c1")).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Closed | ClientError::Io(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn connect_timeout() {
    let (l, addr) = listener().await;
    let hold = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(s);
    });
    let mut opts = ConnectOptions::new("c1");
    opts.connect_timeout = Duration::from_millis(100);
    let err = connect(addr, &opts).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    hold.abort();
}

#[tokio::test]
async fn first_packet_not_connack_is_protocol_error() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = read_exactly(&mut s, CONNECT_C1.len()).await;
        s.write_all(&[0xD0, 0x00]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let err = connect(addr, &ConnectOptions::new("c1")).await.unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
}

/// PUBLISH QoS 1, topic "a/b", packet id 7, payload "hello" (v3.1.1).
const PUBLISH_Q1: &[u8] = &[
    0x32, 12, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, b'h', b'e', b'l', b'l', b'o',
];

#[tokio::test]
async fn recv_is_cancel_safe_across_partial_reads() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        // Dribble two packets one byte at a time, slower than the select timer below.
        for chunk in [PUBLISH_Q1, &[0xD0, 0x00][..]] {
            for b in chunk {
                s.write_all(&[*b]).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let mut conn = Connection::open(addr, ProtocolVersion::V311).await.unwrap();
    let mut got = Vec::new();
    let mut ticks = 0u32;
    let deadline = tokio::time::Instant::now() + T;
    while got.len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            p = conn.recv() => got.push(p.unwrap().unwrap()),
            () = tokio::time::sleep(Duration::from_millis(1)) => ticks += 1,
        }
    }
    assert!(
        ticks > 0,
        "the timer branch should have cancelled some recv calls"
    );
    assert_eq!(got.len(), 2);
    match &got[0] {
        Packet::Publish(p) => {
            assert_eq!(p.topic, "a/b");
            assert_eq!(p.packet_id, NonZeroU16::new(7));
            assert_eq!(&p.payload[..], b"hello");
            assert_eq!(p.qos, hermod_proto::QoS::AtLeastOnce);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(got[1], Packet::PingResponse);
}

#[tokio::test]
async fn clean_eof_is_none_and_mid_packet_eof_is_closed() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&[0xD0, 0x00]).await.unwrap();
        drop(s);
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&PUBLISH_Q1[..5]).await.unwrap();
        drop(s);
    });
    let mut conn = Connection::open(addr, ProtocolVersion::V311).await.unwrap();
    assert_eq!(
        conn.recv_timeout(T).await.unwrap(),
        Some(Packet::PingResponse)
    );
    assert_eq!(conn.recv_timeout(T).await.unwrap(), None);

    let mut conn = Connection::open(addr, ProtocolVersion::V311).await.unwrap();
    let err = conn.recv_timeout(T).await.unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err:?}");
}

#[tokio::test]
async fn recv_timeout_keeps_partial_bytes() {
    let (l, addr) = listener().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&PUBLISH_Q1[..6]).await.unwrap();
        let _ = rx.await;
        s.write_all(&PUBLISH_Q1[6..]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let mut conn = Connection::open(addr, ProtocolVersion::V311).await.unwrap();
    let err = conn
        .recv_timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout));
    tx.send(()).unwrap();
    let p = conn.recv_timeout(T).await.unwrap().unwrap();
    assert!(matches!(p, Packet::Publish(_)), "{p:?}");
}

#[tokio::test]
async fn queued_packets_are_coalesced_and_raw_bytes_pass_through() {
    let (l, addr) = listener().await;
    let broker = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        read_exactly(&mut s, 7).await
    });
    let mut conn = Connection::open(addr, ProtocolVersion::V311).await.unwrap();
    conn.queue(&Packet::PingRequest).unwrap();
    conn.queue(&Packet::PingRequest).unwrap();
    assert_eq!(conn.pending_write(), 4);
    conn.flush().await.unwrap();
    assert_eq!(conn.pending_write(), 0);
    conn.send_raw(&[0xFF, 0xFF, 0xFF]).await.unwrap();
    assert_eq!(
        broker.await.unwrap(),
        [0xC0, 0x00, 0xC0, 0x00, 0xFF, 0xFF, 0xFF]
    );
}

#[tokio::test]
async fn malformed_input_is_a_decode_error() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        // Reserved packet type 0.
        s.write_all(&[0x00, 0x00]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let mut conn = Connection::open(addr, ProtocolVersion::V311).await.unwrap();
    let err = conn.recv_timeout(T).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn split_halves_work_independently() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let got = read_exactly(&mut s, 2).await;
        assert_eq!(got, [0xC0, 0x00]);
        s.write_all(&[0xD0, 0x00]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let conn = Connection::open(addr, ProtocolVersion::V311).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    w.send(&Packet::PingRequest).await.unwrap();
    assert_eq!(r.recv_timeout(T).await.unwrap(), Some(Packet::PingResponse));
}
