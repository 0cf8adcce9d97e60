//! Randomised tests of what Hermod itself parses in the WebSocket path: the subprotocol choice,
//! the path check (the HTTP request and the frames are tungstenite's, exercised here through
//! `accept` on an in-memory stream), and the adapter that turns binary messages into a byte
//! stream. Generated upgrade requests and frame sequences have an expected outcome; mutated ones
//! must end in a clean error, never a panic or a hang.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};

use super::{accept, choose_subprotocol};
use crate::fuzz_support::{fuzz_config, mutated};
use crate::transport::TransportError;

const PATH: &str = "/mqtt";
const MAX_MESSAGE: usize = 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// Subprotocol tokens, ours among others, in the case and spacing clients use.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("mqtt".to_owned()),
        Just("mqttv3.1".to_owned()),
        Just("MQTT".to_owned()),
        Just("mqttv5".to_owned()),
        Just(String::new()),
        "[a-z0-9.]{1,8}",
    ]
}

/// One `Sec-WebSocket-Protocol` header value: tokens joined by commas with optional spaces.
fn protocol_value() -> impl Strategy<Value = String> {
    vec(
        (
            token(),
            prop_oneof![Just(","), Just(", "), Just(" ,"), Just(" , ")],
        ),
        1..4,
    )
    .prop_map(|parts| {
        let mut s = String::new();
        for (i, (t, sep)) in parts.iter().enumerate() {
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(t);
        }
        s
    })
}

/// What the module doc promises: "mqtt" if offered anywhere, else "mqttv3.1", none if nothing
/// was offered, else a refusal.
fn expected_protocol(values: &[String]) -> Result<Option<&'static str>, ()> {
    let offered: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if offered.is_empty() {
        Ok(None)
    } else if offered.contains(&"mqtt") {
        Ok(Some("mqtt"))
    } else if offered.contains(&"mqttv3.1") {
        Ok(Some("mqttv3.1"))
    } else {
        Err(())
    }
}

/// A generated upgrade request and what the server must answer.
#[derive(Debug, Clone)]
struct Upgrade {
    text: Vec<u8>,
    path_ok: bool,
    protocol: Result<Option<&'static str>, ()>,
}

fn upgrade() -> impl Strategy<Value = Upgrade> {
    let path = prop_oneof![
        4 => Just(PATH.to_owned()),
        1 => Just("/".to_owned()),
        1 => Just("/mqtt/".to_owned()),
        1 => Just("/MQTT".to_owned()),
        1 => "/[a-z]{0,6}",
    ];
    let query = prop_oneof![Just(String::new()), "\\?[a-z=&]{0,8}"];
    (
        path,
        query,
        vec(protocol_value(), 0..3),
        any::<bool>(),
        vec(("X-[A-Za-z]{1,6}", "[ -~]{0,12}"), 0..3),
    )
        .prop_map(|(path, query, protocols, lower, extra)| {
            let name = |n: &str| {
                if lower {
                    n.to_ascii_lowercase()
                } else {
                    n.to_owned()
                }
            };
            let mut text = format!("GET {path}{query} HTTP/1.1\r\n");
            for (k, v) in [
                ("Host", "localhost:8083"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ] {
                text.push_str(&format!("{}: {v}\r\n", name(k)));
            }
            for p in &protocols {
                text.push_str(&format!("{}: {p}\r\n", name("Sec-WebSocket-Protocol")));
            }
            for (k, v) in &extra {
                text.push_str(&format!("{k}: {}\r\n", v.trim()));
            }
            text.push_str("\r\n");
            Upgrade {
                text: text.into_bytes(),
                path_ok: path == PATH,
                protocol: expected_protocol(&protocols),
            }
        })
}

/// Sends `request` on an in-memory connection (then ends the client's writing half) and runs the
/// server handshake; returns its result and the bytes the server answered.
async fn handshake(
    request: &[u8],
) -> (
    Result<super::WsStream<DuplexStream>, TransportError>,
    DuplexStream,
) {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    client
        .write_all(request)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    client
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
    let result = tokio::time::timeout(Duration::from_secs(10), accept(server, PATH, MAX_MESSAGE))
        .await
        .unwrap_or_else(|_| panic!("handshake hung"));
    (result, client)
}

async fn response(client: &mut DuplexStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no response"))
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A WebSocket message as a client sends it.
#[derive(Debug, Clone)]
enum Msg {
    /// Binary data, in `fragments` frames (the first binary, the rest continuations).
    Binary(Vec<u8>, usize),
    Text(String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close,
}

/// A masked client frame (RFC 6455 5.2; a server must refuse unmasked client frames).
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | u8::try_from(n).unwrap_or(125)),
        n @ 126..=65_535 => {
            f.push(0x80 | 126);
            f.extend(u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend(u64::try_from(n).unwrap_or(u64::MAX).to_be_bytes());
        }
    }
    f.extend(mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn encode(msgs: &[Msg], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        match m {
            Msg::Binary(data, fragments) => {
                let n = (*fragments).clamp(1, data.len().max(1));
                let size = data.len().div_ceil(n).max(1);
                let chunks: Vec<&[u8]> = if data.is_empty() {
                    vec![&[][..]]
                } else {
                    data.chunks(size).collect()
                };
                for (i, c) in chunks.iter().enumerate() {
                    let opcode = if i == 0 { 0x2 } else { 0x0 };
                    out.extend(frame(i + 1 == chunks.len(), opcode, c, mask));
                }
            }
            Msg::Text(t) => out.extend(frame(true, 0x1, t.as_bytes(), mask)),
            Msg::Ping(p) => out.extend(frame(true, 0x9, p, mask)),
            Msg::Pong(p) => out.extend(frame(true, 0xA, p, mask)),
            Msg::Close => out.extend(frame(true, 0x8, &[0x03, 0xE8], mask)),
        }
    }
    out
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        6 => (vec(any::<u8>(), 0..300), 1usize..4).prop_map(|(d, n)| Msg::Binary(d, n)),
        1 => (vec(any::<u8>(), 900..1300), 1usize..4).prop_map(|(d, n)| Msg::Binary(d, n)),
        1 => "[a-z]{0,8}".prop_map(Msg::Text),
        1 => vec(any::<u8>(), 0..20).prop_map(Msg::Ping),
        1 => vec(any::<u8>(), 0..20).prop_map(Msg::Pong),
        1 => Just(Msg::Close),
    ]
}

/// How reading the server's stream must end.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    Error,
}

/// The byte stream the adapter must deliver: binary payloads in order [MQTT-6.0.0-2], until a
/// text message (an error [MQTT-6.0.0-1]), a close (EOF), or a message over the size bound
/// (an error). A connection that just stops, without a close, is an error too.
fn expected(msgs: &[Msg]) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    for m in msgs {
        match m {
            Msg::Binary(d, _) if d.len() > MAX_MESSAGE => return (out, End::Error),
            Msg::Binary(d, _) => out.extend(d),
            Msg::Text(_) => return (out, End::Error),
            Msg::Close => return (out, End::Eof),
            Msg::Ping(_) | Msg::Pong(_) => {}
        }
    }
    (out, End::Error)
}

/// Reads the server side to its end in reads of `chunk` bytes.
async fn drain(stream: &mut super::WsStream<DuplexStream>, chunk: usize) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("read hung"));
        match read {
            Ok(0) => return (out, End::Eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, End::Error),
        }
    }
}

/// A completed handshake, then `frames` from the client (a client waits for the 101 before it
/// sends frames: tungstenite refuses bytes that follow the request too early), then the end of
/// the client's writing half.
async fn upgraded(frames: &[u8]) -> (super::WsStream<DuplexStream>, DuplexStream) {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    client
        .write_all(GOOD_REQUEST)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let stream = tokio::time::timeout(Duration::from_secs(10), accept(server, PATH, MAX_MESSAGE))
        .await
        .unwrap_or_else(|_| panic!("handshake hung"))
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    client
        .write_all(frames)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    client
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
    (stream, client)
}

const GOOD_REQUEST: &[u8] = b"GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

proptest! {
    #![proptest_config(fuzz_config(1000, 0x4845_524D_4F44_0201))]

    /// The subprotocol choice on generated header values (several headers, commas, spaces,
    /// case, empty tokens) and on arbitrary header bytes (not ASCII text: refused).
    #[test]
    fn subprotocol_choice_follows_the_rule(
        values in vec(protocol_value(), 0..3),
        raw in proptest::option::of(vec(any::<u8>(), 0..12)),
    ) {
        let mut request = Request::builder().uri(PATH);
        for v in &values {
            request = request.header(header::SEC_WEBSOCKET_PROTOCOL, v.as_str());
        }
        let mut request = request.body(()).unwrap_or_else(|e| panic!("request: {e}"));
        let mut want = expected_protocol(&values);
        if let Some(raw) = raw
            && let Ok(value) = HeaderValue::from_bytes(&raw)
        {
            match value.to_str() {
                Ok(text) => {
                    let mut all = values.clone();
                    all.push(text.to_owned());
                    want = expected_protocol(&all);
                }
                Err(_) => want = Err(()),
            }
            request.headers_mut().append(header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        prop_assert_eq!(choose_subprotocol(&request).map_err(|_| ()), want);
    }

    /// Generated upgrade requests: 101 with the chosen subprotocol when the path is ours and a
    /// subprotocol we speak (or none) was offered; else 404 (path) or 400 (subprotocol).
    #[test]
    fn generated_upgrades_get_the_right_answer(up in upgrade()) {
        let rt = runtime();
        rt.block_on(async {
            let (result, mut client) = handshake(&up.text).await;
            let ok = up.path_ok && up.protocol.is_ok();
            let answer = response(&mut client).await;
            match result {
                Ok(_) => {
                    prop_assert!(ok, "accepted: {:?}", up);
                    prop_assert!(answer.starts_with("HTTP/1.1 101"), "{}", answer);
                    let chosen = answer
                        .lines()
                        .find_map(|l| l.strip_prefix("sec-websocket-protocol: "));
                    prop_assert_eq!(chosen, up.protocol.ok().flatten());
                }
                Err(TransportError::WebSocket(_)) => {
                    prop_assert!(!ok, "refused: {:?}", up);
                    let status = if up.path_ok { "HTTP/1.1 400" } else { "HTTP/1.1 404" };
                    prop_assert!(answer.starts_with(status), "{}", answer);
                }
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            }
            Ok(())
        })?;
    }

    /// Mutated upgrade requests: accepted (then the answer is a 101) or refused with a
    /// WebSocket error, always promptly.
    #[test]
    fn mutated_upgrades_end_cleanly(text in upgrade().prop_flat_map(|u| mutated(u.text))) {
        let rt = runtime();
        rt.block_on(async {
            let (result, mut client) = handshake(&text).await;
            match result {
                Ok(_) => {
                    let answer = response(&mut client).await;
                    prop_assert!(answer.starts_with("HTTP/1.1 101"), "{}", answer);
                }
                Err(TransportError::WebSocket(_)) => {}
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            }
            Ok(())
        })?;
    }

    /// Generated frame sequences after a good handshake: the stream delivers exactly the binary
    /// payloads, whatever the fragmentation, pings and read sizes, and ends as `expected` says.
    #[test]
    fn frames_become_the_expected_byte_stream(
        msgs in vec(msg(), 0..8),
        mask in any::<[u8; 4]>(),
        chunk in 1usize..600,
    ) {
        let rt = runtime();
        rt.block_on(async {
            let (mut stream, _client) = upgraded(&encode(&msgs, mask)).await;
            let (got, end) = drain(&mut stream, chunk).await;
            let (want, want_end) = expected(&msgs);
            prop_assert_eq!(got, want);
            prop_assert_eq!(end, want_end);
            Ok(())
        })?;
    }

    /// Mutated frames: the stream delivers some bytes and ends (EOF or error), never panics or
    /// hangs.
    #[test]
    fn mutated_frames_end_cleanly(
        frames in (vec(msg(), 1..6), any::<[u8; 4]>())
            .prop_flat_map(|(msgs, mask)| mutated(encode(&msgs, mask))),
        chunk in 1usize..600,
    ) {
        let rt = runtime();
        rt.block_on(async {
            let (mut stream, _client) = upgraded(&frames).await;
            let _ = drain(&mut stream, chunk).await;
            Ok::<(), TestCaseError>(())
        })?;
    }
}
