//! A fake HTTP service for `[auth.http]`: one response per connection, then close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

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
        )
        .await
    }

    /// Serves any request on `/auth` with the raw response `reply(request body)` (see
    /// [`json_response`]), or never answers when it is `None`.
    pub async fn raw(reply: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> AuthServer {
        Self::serve("/auth", Arc::new(move |_: &str, body: &str| reply(body))).await
    }

    async fn serve(path: &str, reply: Arc<Reply>) -> AuthServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind auth server");
        let url = format!("http://{}{path}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let log = requests.clone();
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read headers, then Content-Length bytes of body.
                    let (head, body) = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body =
                                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                            break (head, body);
                        }
                    };
                    let recorded = serde_json::from_str(&body)
                        .unwrap_or_else(|_| serde_json::Value::String(body.clone()));
                    log.lock().expect("log").push(recorded);
                    match reply(&head, &body) {
                        Some(response) => {
                            let _ = sock.write_all(response.as_bytes()).await;
                            let _ = sock.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
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

    /// The request bodies so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.requests.lock().expect("log").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
