//! A fake HTTP service for `[auth.http]`: by default one response per connection, then close;
//! [`AuthServer::raw_keep_alive`] and [`AuthServer::raw_tls`] answer every request on a
//! connection (HTTP/1.1 keep-alive), the latter over TLS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::Leaf;

type Reply = dyn Fn(&str, &str) -> Option<String> + Send + Sync;

/// The HTTP service. Every request body is recorded (as JSON; a body that is not JSON is recorded
/// as a JSON string), and every accepted connection counted.
pub struct AuthServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<serde_json::Value>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// A raw HTTP response with a JSON content type and a Content-Length.
pub fn json_response(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

impl AuthServer {
    /// Serves `POST /mqtt/auth` (any other request line fails the test): the answer is chosen by
    /// `decide(request JSON)`: `Some((status, JSON body))`, or `None` to never answer.
    pub async fn start(
        decide: impl Fn(&serde_json::Value) -> Option<(u16, String)> + Send + Sync + 'static,
    ) -> AuthServer {
        Self::serve(
            "/mqtt/auth",
            Arc::new(move |head: &str, body: &str| {
                assert!(head.starts_with("post /mqtt/auth "), "request line: {head}");
                let json: serde_json::Value =
                    serde_json::from_str(body).expect("request body is JSON");
                let (status, body) = decide(&json)?;
                Some(format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ))
            }),
            false,
            None,
        )
        .await
    }

    /// Serves any request on `/auth` with the raw response `reply(request body)` (see
    /// [`json_response`]), or never answers when it is `None`.
    pub async fn raw(reply: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> AuthServer {
        Self::serve(
            "/auth",
            Arc::new(move |_: &str, body: &str| reply(body)),
            false,
            None,
        )
        .await
    }

    /// [`AuthServer::raw`] with keep-alive: the connection stays open after a response (give
    /// it a Content-Length) and every request on it is answered.
    pub async fn raw_keep_alive(
        reply: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> AuthServer {
        Self::serve(
            "/auth",
            Arc::new(move |_: &str, body: &str| reply(body)),
            true,
            None,
        )
        .await
    }

    /// [`AuthServer::raw_keep_alive`] over TLS with `cert` (e.g. [`Pki::server`], valid for
    /// 127.0.0.1): the URL is `https://127.0.0.1:<port>/auth`. Connections are counted when
    /// accepted, before the handshake.
    ///
    /// [`Pki::server`]: crate::Pki::server
    pub async fn raw_tls(
        cert: &Leaf,
        reply: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> AuthServer {
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key pem");
        let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert pem");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
        Self::serve(
            "/auth",
            Arc::new(move |_: &str, body: &str| reply(body)),
            true,
            Some(TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn serve(
        path: &str,
        reply: Arc<Reply>,
        keep_alive: bool,
        tls: Option<TlsAcceptor>,
    ) -> AuthServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind auth server");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}{path}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let log = requests.clone();
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                let reply = reply.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            // A client that refuses the certificate ends here.
                            if let Ok(sock) = tls.accept(sock).await {
                                answer(sock, &log, &*reply, keep_alive).await;
                            }
                        }
                        None => answer(sock, &log, &*reply, keep_alive).await,
                    }
                });
            }
        });
        AuthServer {
            url,
            requests,
            connections,
            task,
        }
    }

    /// The request bodies so far (one per request).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests.lock().expect("log").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads requests on `sock` (headers, then Content-Length bytes of body) and answers them: only
/// the first one unless `keep_alive`, then closes.
async fn answer(
    mut sock: impl AsyncRead + AsyncWrite + Unpin,
    log: &Mutex<Vec<serde_json::Value>>,
    reply: &Reply,
    keep_alive: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let (head, body) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    buf.drain(..end + 4 + len);
                    break (head, body);
                }
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let recorded =
            serde_json::from_str(&body).unwrap_or_else(|_| serde_json::Value::String(body.clone()));
        log.lock().expect("log").push(recorded);
        match reply(&head, &body) {
            Some(response) => {
                if sock.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                if !keep_alive {
                    let _ = sock.shutdown().await;
                    return;
                }
            }
            None => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
        }
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
