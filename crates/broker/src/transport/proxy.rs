//! PROXY protocol v1 (text) and v2 (binary) headers, as sent by HAProxy, AWS NLB, nginx
//! `proxy_protocol on`, etc. Only used when the listener has `proxy_protocol = true`; then a
//! connection must start with a valid header or it is refused.
//!
//! Exactly the header's bytes are read from the socket, never more, so the stream that follows
//! (TLS ClientHello, HTTP upgrade or MQTT CONNECT) is untouched and no buffer has to be handed
//! on: v2 carries its length in bytes 15-16; v1 ends at CRLF and is read in steps that cannot
//! pass it (at most 107 bytes).

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::TransportError;

const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 header, CRLF included ("PROXY TCP6 " + 2 × 39 + 2 × 5 + 3 spaces + CRLF).
const V1_MAX_LEN: usize = 107;
/// Shortest v1 header ("PROXY UNKNOWN\r\n"); reading this many first never passes a v1 header.
const V1_MIN_LEN: usize = 15;
/// v2 fixed part: 12-byte signature, version/command, family/protocol, 2-byte length.
const V2_FIXED_LEN: usize = 16;

fn refused(reason: impl Into<String>) -> TransportError {
    TransportError::Proxy(reason.into())
}

/// Reads the PROXY header at the start of `io`; returns the client address it carries, or
/// `socket_peer` for headers without one (v1 `UNKNOWN`, v2 `LOCAL` health checks, v2 UNSPEC /
/// UNIX families).
pub(super) async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
    socket_peer: SocketAddr,
) -> Result<SocketAddr, TransportError> {
    let mut buf = Vec::with_capacity(V1_MAX_LEN);
    buf.resize(V1_MIN_LEN, 0);
    read_exact(io, &mut buf[..]).await?;
    if buf.starts_with(V1_PREFIX) {
        read_v1_rest(io, &mut buf).await?;
        parse_v1(&buf, socket_peer)
    } else if buf
        .starts_with(&ppp::v2::PROTOCOL_PREFIX[..V1_MIN_LEN.min(ppp::v2::PROTOCOL_PREFIX.len())])
    {
        buf.resize(V2_FIXED_LEN, 0);
        read_exact(io, &mut buf[V1_MIN_LEN..]).await?;
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        buf.resize(V2_FIXED_LEN + len, 0);
        read_exact(io, &mut buf[V2_FIXED_LEN..]).await?;
        parse_v2(&buf, socket_peer)
    } else {
        Err(refused(
            "connection does not start with a PROXY protocol header (proxy_protocol = true)",
        ))
    }
}

async fn read_exact<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut [u8],
) -> Result<(), TransportError> {
    match io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(refused(
            "connection closed inside the PROXY protocol header",
        )),
        Err(e) => Err(TransportError::Io(e)),
    }
}

/// Reads up to and including the CRLF. While the last byte is not CR at least two bytes ("\r\n")
/// remain, so two are read; after a CR only one.
async fn read_v1_rest<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
) -> Result<(), TransportError> {
    loop {
        match buf.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(pos) if buf[pos] == b'\n' => {
                return Err(refused(
                    "PROXY v1 header: line feed without carriage return",
                ));
            }
            Some(pos) if pos + 1 < buf.len() => {
                return if buf[pos + 1] == b'\n' && pos + 2 == buf.len() {
                    Ok(())
                } else {
                    Err(refused("PROXY v1 header: malformed line end"))
                };
            }
            _ => {}
        }
        if buf.len() >= V1_MAX_LEN {
            return Err(refused(format!(
                "PROXY v1 header: no CRLF within {V1_MAX_LEN} bytes"
            )));
        }
        let step = if buf.last() == Some(&b'\r') { 1 } else { 2 };
        let start = buf.len();
        buf.resize(start + step, 0);
        read_exact(io, &mut buf[start..]).await?;
    }
}

fn parse_v1(buf: &[u8], socket_peer: SocketAddr) -> Result<SocketAddr, TransportError> {
    // "For UNKNOWN, the rest of the line before the CRLF may be omitted by the sender, and the
    // receiver must ignore anything presented before the CRLF is found" (proxy-protocol.txt 2.1).
    // ppp refuses an UNKNOWN line with more than four further words, so UNKNOWN is handled here.
    if let Some(rest) = buf.strip_prefix(b"PROXY UNKNOWN")
        && (rest.starts_with(b" ") || rest.starts_with(b"\r"))
    {
        let one_line = rest
            .strip_suffix(b"\r\n")
            .is_some_and(|ignored| !ignored.iter().any(|&b| b == b'\r' || b == b'\n'));
        return if one_line && buf.len() <= V1_MAX_LEN {
            Ok(socket_peer)
        } else {
            Err(refused(
                "invalid PROXY v1 header: UNKNOWN line longer than 107 bytes or not ended by its only CRLF",
            ))
        };
    }
    let header = ppp::v1::Header::try_from(buf)
        .map_err(|e| refused(format!("invalid PROXY v1 header: {e}")))?;
    if header.header.len() != buf.len() {
        return Err(refused("invalid PROXY v1 header: trailing bytes"));
    }
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        ppp::v1::Addresses::Tcp6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        ppp::v1::Addresses::Unknown => socket_peer,
    })
}

fn parse_v2(buf: &[u8], socket_peer: SocketAddr) -> Result<SocketAddr, TransportError> {
    let header = ppp::v2::Header::try_from(buf)
        .map_err(|e| refused(format!("invalid PROXY v2 header: {e}")))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(socket_peer);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        ppp::v2::Addresses::IPv6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => socket_peer,
    })
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use ppp::v2::{Builder, Command, Protocol, Version};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;

    use super::super::test_pki::{Pki, client_config};
    use super::super::{
        Acceptor, MqttStream, PeerInfo, Transport, TransportError, TransportSettings,
    };
    use super::*;

    const CONNECT: &[u8] = &[
        0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
    ];

    fn proxied(transport: Transport) -> TransportSettings {
        TransportSettings {
            transport,
            proxy_protocol: true,
            ..Default::default()
        }
    }

    /// Sends `chunks` (with small pauses, so the header may arrive in pieces) on a fresh
    /// connection to a `settings` acceptor; returns accept's result and the client socket.
    async fn send(
        settings: &TransportSettings,
        chunks: &[&[u8]],
    ) -> (
        Result<(Box<dyn MqttStream>, PeerInfo), TransportError>,
        TcpStream,
        SocketAddr,
    ) {
        let acceptor = Arc::new(Acceptor::new(settings).expect("acceptor"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let client_addr = client.local_addr().expect("local addr");
        let (tcp, peer) = listener.accept().await.expect("accept");
        let server = tokio::spawn(async move { acceptor.accept(tcp, peer).await });
        for chunk in chunks {
            client.write_all(chunk).await.expect("write");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let result = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("accept timed out");
        (result.expect("join"), client, client_addr)
    }

    async fn rest_is_connect(stream: &mut Box<dyn MqttStream>) {
        let mut buf = vec![0u8; CONNECT.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("read timed out")
            .expect("read");
        assert_eq!(
            buf, CONNECT,
            "the MQTT bytes after the header are untouched"
        );
    }

    #[tokio::test]
    async fn v1_tcp4_and_tcp6_give_the_real_address() {
        let (result, _c, _) = send(
            &proxied(Transport::Tcp),
            &[b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n", CONNECT],
        )
        .await;
        let (mut stream, info) = result.expect("accepted");
        assert_eq!(
            info.addr,
            "203.0.113.7:51234".parse::<SocketAddr>().expect("addr")
        );
        rest_is_connect(&mut stream).await;

        // Header and CONNECT in one segment, header split oddly.
        let mut one = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 1883\r\n".to_vec();
        one.extend_from_slice(CONNECT);
        let (result, _c, _) = send(
            &proxied(Transport::Tcp),
            &[&one[..3], &one[3..20], &one[20..]],
        )
        .await;
        let (mut stream, info) = result.expect("accepted");
        assert_eq!(
            info.addr,
            "[2001:db8::1]:4000".parse::<SocketAddr>().expect("addr")
        );
        rest_is_connect(&mut stream).await;
    }

    /// Found by `prop_tests`: ppp refused `PROXY UNKNOWN` followed by five or more words,
    /// which the spec says the receiver must ignore.
    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        let peer: SocketAddr = "127.0.0.9:40000".parse().expect("peer");
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN 0 a . 0 A\r\n",
            b"PROXY UNKNOWN ffff:f:f:f:f:f:f:f ffff:f:f:f:f:f:f:f 65535 65535 and more\r\n",
        ] {
            assert_eq!(parse_v1(line, peer).ok(), Some(peer), "{line:?}");
        }
        for line in [
            &b"PROXY UNKNOWNX\r\n"[..],
            b"PROXY UNKNOWN a\rb\r\n",
            b"PROXY UNKNOWN a\nb\r\n",
            b"PROXY UNKNOWN a",
        ] {
            assert!(parse_v1(line, peer).is_err(), "{line:?}");
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100], b"\r\n"].concat();
        assert!(parse_v1(&long, peer).is_err(), "longer than 107 bytes");
    }

    #[tokio::test]
    async fn v1_unknown_keeps_the_socket_address() {
        let (result, _c, client_addr) =
            send(&proxied(Transport::Tcp), &[b"PROXY UNKNOWN\r\n", CONNECT]).await;
        let (mut stream, info) = result.expect("accepted");
        assert_eq!(info.addr, client_addr);
        rest_is_connect(&mut stream).await;
    }

    #[tokio::test]
    async fn v2_gives_the_real_address_and_skips_tlvs() {
        let src: SocketAddr = "198.51.100.9:61000".parse().expect("src");
        let dst: SocketAddr = "10.0.0.1:1883".parse().expect("dst");
        let header =
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
                .write_tlv(ppp::v2::Type::Authority, b"mqtt.example.com")
                .expect("tlv")
                .build()
                .expect("header");
        let (result, _c, _) = send(
            &proxied(Transport::Tcp),
            &[&header[..10], &header[10..], CONNECT],
        )
        .await;
        let (mut stream, info) = result.expect("accepted");
        assert_eq!(info.addr, src);
        rest_is_connect(&mut stream).await;

        let src6: SocketAddr = "[2001:db8::7]:5555".parse().expect("src6");
        let dst6: SocketAddr = "[2001:db8::1]:1883".parse().expect("dst6");
        let mut header = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (src6, dst6),
        )
        .build()
        .expect("header");
        header.extend_from_slice(CONNECT);
        let (result, _c, _) = send(&proxied(Transport::Tcp), &[&header]).await;
        let (mut stream, info) = result.expect("accepted");
        assert_eq!(info.addr, src6);
        rest_is_connect(&mut stream).await;
    }

    #[tokio::test]
    async fn v2_local_keeps_the_socket_address() {
        let header = Builder::new(Version::Two | Command::Local, 0)
            .build()
            .expect("header");
        let (result, _c, client_addr) = send(&proxied(Transport::Tcp), &[&header, CONNECT]).await;
        let (mut stream, info) = result.expect("accepted");
        assert_eq!(info.addr, client_addr);
        rest_is_connect(&mut stream).await;
    }

    fn proxy_error(result: Result<(Box<dyn MqttStream>, PeerInfo), TransportError>) -> String {
        match result {
            Err(e @ TransportError::Proxy(_)) => e.to_string(),
            Err(other) => panic!("expected a PROXY error, got {other}"),
            Ok((_, info)) => panic!("expected a refusal, got {info:?}"),
        }
    }

    #[tokio::test]
    async fn missing_or_garbage_header_is_refused() {
        let (result, _c, _) = send(
            &proxied(Transport::Tcp),
            &[CONNECT, b"more bytes to reach 15"],
        )
        .await;
        assert!(proxy_error(result).contains("does not start"));
        let (result, _c, _) = send(
            &proxied(Transport::Tcp),
            &[b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n", CONNECT],
        )
        .await;
        assert!(proxy_error(result).contains("v1"));
        let (result, _c, _) = send(
            &proxied(Transport::Tcp),
            &[b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", CONNECT],
        )
        .await;
        proxy_error(result);
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        let (result, _c, _) = send(&proxied(Transport::Tcp), &[&long]).await;
        assert!(proxy_error(result).contains("107"));
        let mut bad_v2 = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (
                "1.2.3.4:1".parse::<SocketAddr>().expect("a"),
                "5.6.7.8:2".parse::<SocketAddr>().expect("b"),
            ),
        )
        .build()
        .expect("header");
        bad_v2[12] = 0x31; // version 3
        let (result, _c, _) = send(&proxied(Transport::Tcp), &[&bad_v2, CONNECT]).await;
        assert!(proxy_error(result).contains("v2"));
    }

    #[tokio::test]
    async fn closed_inside_the_header_is_refused() {
        let acceptor = Acceptor::new(&proxied(Transport::Tcp)).expect("acceptor");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        client
            .write_all(b"PROXY TCP4 1.2.3.4")
            .await
            .expect("write");
        client.shutdown().await.expect("shutdown");
        let (tcp, peer) = listener.accept().await.expect("accept");
        let err = acceptor.accept(tcp, peer).await.expect_err("refused");
        assert!(matches!(err, TransportError::Proxy(_)), "{err}");
    }

    #[tokio::test]
    async fn without_proxy_protocol_a_header_is_just_data() {
        let settings = TransportSettings::default();
        let (result, _c, client_addr) = send(&settings, &[b"PROXY UNKNOWN\r\n"]).await;
        let (mut stream, info) = result.expect("accepted");
        assert_eq!(info.addr, client_addr);
        let mut buf = [0u8; 15];
        stream.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"PROXY UNKNOWN\r\n");
    }

    #[tokio::test]
    async fn proxy_header_then_tls() {
        let pki = Pki::new();
        let settings = TransportSettings {
            proxy_protocol: true,
            ..pki.tls_settings(false)
        };
        let acceptor = Arc::new(Acceptor::new(&settings).expect("acceptor"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.expect("accept");
            let (mut stream, info) = acceptor.accept(tcp, peer).await.expect("accepted");
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.expect("read");
            (info, buf)
        });
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"PROXY TCP4 192.0.2.55 10.0.0.1 40000 8883\r\n")
            .await
            .expect("header");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = TlsConnector::from(Arc::new(client_config(&pki.ca_pem, None, &[b"mqtt"])))
            .connect(name, tcp)
            .await
            .expect("tls after proxy header");
        tls.write_all(b"mqtt").await.expect("write");
        tls.flush().await.expect("flush");
        let (info, buf) = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("timeout")
            .expect("join");
        assert_eq!(&buf, b"mqtt");
        assert_eq!(
            info.addr,
            "192.0.2.55:40000".parse::<SocketAddr>().expect("addr")
        );
        assert!(info.tls);
    }

    #[tokio::test]
    async fn proxy_header_then_websocket() {
        let settings = proxied(Transport::Ws);
        let acceptor = Arc::new(Acceptor::new(&settings).expect("acceptor"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.expect("accept");
            acceptor.accept(tcp, peer).await.expect("accepted").1
        });
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let src: SocketAddr = "[2001:db8::99]:1234".parse().expect("src");
        let dst: SocketAddr = "[2001:db8::1]:8083".parse().expect("dst");
        let header =
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
                .build()
                .expect("header");
        tcp.write_all(&header).await.expect("header");
        let (_ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/mqtt"), tcp)
            .await
            .expect("ws handshake");
        let info = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("timeout")
            .expect("join");
        assert_eq!(info.addr, src);
    }
}
