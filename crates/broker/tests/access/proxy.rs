//! PROXY protocol v1 on a `proxy_protocol = true` listener: a raw TCP client sends the header
//! then CONNECT and is served; without the header the connection is closed. The address from
//! the header is what auth sources see (checked through the HTTP auth request's peer_address).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

async fn broker(server: &AuthServer) -> TestBroker {
    let config = format!(
        "allow_anonymous = false\n[auth.http]\nurl = \"{}\"\ncache_ttl_secs = 0\n\n[[listener]]\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n",
        server.url
    );
    TestBroker::start_in(tempdir(), &config).await
}

/// Everything the broker sends until it closes or `WAIT` passes.
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return out,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() >= 4 {
                    return out;
                }
            }
        }
    }
}

#[tokio::test]
async fn v1_header_then_connect_is_served() {
    let server = AuthServer::start(|_| Some((200, r#"{"result":"allow"}"#.into()))).await;
    let b = broker(&server).await;
    let connect = encode(
        &Packet::Connect(Box::new(connect_auth(
            V311,
            "proxied",
            Some("u"),
            Some(b"p"),
        ))),
        V311,
    );

    let mut s = TcpStream::connect(b.addr(0)).await.expect("tcp");
    s.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 1883\r\n")
        .await
        .expect("write");
    s.write_all(&connect).await.expect("write");
    assert_eq!(
        read_all(&mut s).await,
        vec![0x20, 0x02, 0x00, 0x00],
        "CONNACK accepted after a PROXY v1 header"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["peer_address"], "203.0.113.7:5555",
        "the header's address is the client's: {}",
        requests[0]
    );

    // Header and CONNECT in one write (as HAProxy does) works too.
    let mut s = TcpStream::connect(b.addr(0)).await.expect("tcp");
    let mut bytes = b"PROXY TCP4 198.51.100.1 127.0.0.1 4000 1883\r\n".to_vec();
    bytes.extend(&connect);
    s.write_all(&bytes).await.expect("write");
    assert_eq!(
        read_all(&mut s).await,
        vec![0x20, 0x02, 0x00, 0x00],
        "header + CONNECT in one segment"
    );
    b.stop().await;
}

#[tokio::test]
async fn without_the_header_the_connection_is_closed() {
    let server = AuthServer::start(|_| Some((200, r#"{"result":"allow"}"#.into()))).await;
    let b = broker(&server).await;
    let connect = encode(
        &Packet::Connect(Box::new(connect_auth(
            V311,
            "direct",
            Some("u"),
            Some(b"p"),
        ))),
        V311,
    );
    let mut s = TcpStream::connect(b.addr(0)).await.expect("tcp");
    s.write_all(&connect).await.expect("write");
    let t = std::time::Instant::now();
    let got = read_all(&mut s).await;
    assert!(
        got.is_empty(),
        "no CONNACK without a PROXY header, got {got:?}"
    );
    assert!(
        t.elapsed() < WAIT,
        "closed promptly, not left open until the handshake timeout"
    );
    assert!(server.requests().is_empty(), "never authenticated");
    b.stop().await;
}
