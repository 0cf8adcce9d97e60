#![allow(clippy::unwrap_used)]

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A keep-alive HTTP/1.1 server answering every request with `answer(request body)` (a raw
/// response; `None` never answers; `"CLOSE"` hangs up). Returns its address and the count of accepted connections.
async fn server(
    answer: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let accepted = count.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + 4 + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    buf.drain(..end + 4 + len);
                    match answer(&body) {
                        Some(response) if response == "CLOSE" => return,
                        Some(response) => {
                            if sock.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        None => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, count)
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Test: yes\r\n\r\n{body}",
        body.len()
    )
}

fn post(
    client: &Client,
    uri: &Uri,
    body: &'static str,
) -> impl Future<Output = Result<Response, Error>> {
    let headers = [(
        HeaderName::from_static("content-type"),
        HeaderValue::from_static("text/plain"),
    )];
    let client = client.clone();
    let uri = uri.clone();
    async move {
        client
            .request(
                Method::POST,
                &uri,
                &headers,
                Bytes::from_static(body.as_bytes()),
                Duration::from_secs(3),
            )
            .await
    }
}

#[tokio::test]
async fn answers_reuse_one_pooled_connection() {
    let (addr, connections) = server(|body| Some(ok(&format!("echo {body}")))).await;
    let uri = parse_url(&format!("http://{addr}/x")).unwrap();
    let client = Client::for_uri(&uri, None, &ClientOptions::default()).unwrap();
    for i in 0..5 {
        let body: &'static str = ["a", "b", "c", "d", "e"][i];
        let r = post(&client, &uri, body).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, format!("echo {body}"));
        assert_eq!(r.headers["x-test"], "yes");
        assert!(!r.truncated);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn non_2xx_is_an_answer_and_garbage_is_not() {
    let (addr, _) = server(|body| {
        Some(match body {
            "teapot" => "HTTP/1.1 418 X\r\nContent-Length: 0\r\n\r\n".to_owned(),
            "hang up" => "CLOSE".to_owned(),
            _ => "SSH-2.0-nope\r\n\r\n".to_owned(),
        })
    })
    .await;
    let uri = parse_url(&format!("http://{addr}/")).unwrap();
    let client = Client::new(None, &ClientOptions::default());
    let r = post(&client, &uri, "teapot").await.unwrap();
    assert_eq!(r.status.as_u16(), 418);
    assert!(matches!(
        post(&client, &uri, "x").await,
        Err(Error::Transport(_))
    ));
    assert!(matches!(
        post(&client, &uri, "hang up").await,
        Err(Error::Closed(_))
    ));
}

#[tokio::test]
async fn timeout_covers_the_whole_exchange() {
    let (addr, _) = server(|_| None).await;
    let uri = parse_url(&format!("http://{addr}/")).unwrap();
    let client = Client::new(None, &ClientOptions::default());
    let started = std::time::Instant::now();
    let r = client
        .request(
            Method::GET,
            &uri,
            &[],
            Bytes::new(),
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(r.unwrap_err(), Error::Timeout(Duration::from_millis(200)));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn oversized_bodies_fail_or_are_cut() {
    let (addr, connections) = server(|_| Some(ok(&"x".repeat(100_000)))).await;
    let uri = parse_url(&format!("http://{addr}/")).unwrap();
    let fail = Client::new(
        None,
        &ClientOptions {
            max_body: 1000,
            ..ClientOptions::default()
        },
    );
    assert_eq!(
        post(&fail, &uri, "a").await.unwrap_err(),
        Error::TooLarge(1000)
    );
    let discard = Client::new(
        None,
        &ClientOptions {
            max_body: 1000,
            oversize: Oversize::Discard,
            ..ClientOptions::default()
        },
    );
    for _ in 0..2 {
        let r = post(&discard, &uri, "a").await.unwrap();
        assert_eq!((r.body.len(), r.truncated), (1000, true));
    }
    // One connection for the failed read (closed), one reused by the discarding client.
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn https_needs_a_tls_connector() {
    let (addr, _) = server(|_| Some(ok(""))).await;
    let uri = parse_url(&format!("https://{addr}/")).unwrap();
    let client = Client::new(None, &ClientOptions::default());
    let e = post(&client, &uri, "a").await.unwrap_err();
    assert!(e.to_string().contains("https is not configured"), "{e}");
}

#[test]
fn url_checks() {
    assert!(parse_url("http://h/x").is_ok());
    assert!(is_https(&parse_url("https://[::1]:8443/").unwrap()));
    for (url, why) in [
        ("ftp://h/", "must start with"),
        ("/x", "must start with"),
        ("not a url", "invalid URL"),
        ("http:///x", "invalid URL"),
    ] {
        let e = parse_url(url).unwrap_err();
        assert!(e.contains(why), "{url}: {e}");
    }
    let e = Client::for_uri(
        &parse_url("https://h/").unwrap(),
        Some(Path::new("/nonexistent/ca.pem")),
        &ClientOptions::default(),
    )
    .unwrap_err();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    // http:// does not read the CA file.
    assert!(
        Client::for_uri(
            &parse_url("http://h/").unwrap(),
            Some(Path::new("/nonexistent/ca.pem")),
            &ClientOptions::default(),
        )
        .is_ok()
    );
}
