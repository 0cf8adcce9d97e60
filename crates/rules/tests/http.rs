//! The HTTP webhook sink against a real HTTP(S) server on 127.0.0.1 (hyper, in this test).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_rules::sink::http::{HttpError, HttpMethod, HttpOptions, HttpRequest, HttpSink};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

/// One request the server got.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    headers: HeaderMap,
    body: Bytes,
}

/// Decides the status of the `n`th request (0-based); [`SLOW`] means 200 after a second.
const SLOW: u16 = 0;

type Respond = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

struct Server {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Requests are answered only while this is `true`.
    open: watch::Sender<bool>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(respond: Respond, tls: Option<TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::on(listener, respond, tls)
    }

    fn on(listener: TcpListener, respond: Respond, tls: Option<TlsAcceptor>) -> Server {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = watch::channel(true);
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        let h = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::Relaxed);
                let (hits, respond, gate, tls) =
                    (h.clone(), respond.clone(), gate.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (hits, respond, mut gate) =
                            (hits.clone(), respond.clone(), gate.clone());
                        async move {
                            let method = req.method().to_string();
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let _ = gate.wait_for(|open| *open).await;
                            let status = {
                                let mut hits = hits.lock().unwrap();
                                let n = hits.len();
                                hits.push(Hit {
                                    method,
                                    headers,
                                    body,
                                });
                                respond(n)
                            };
                            let status = if status == SLOW {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                200
                            } else {
                                status
                            };
                            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            if status == 429 {
                                response
                                    .headers_mut()
                                    .insert("retry-after", "1".parse().unwrap());
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Server {
            addr,
            hits,
            open,
            connections,
            task,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn options(url: String) -> HttpOptions {
    HttpOptions {
        url,
        timeout: Duration::from_secs(3),
        retries: 8,
        retry_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        ..HttpOptions::default()
    }
}

/// Sends `bodies` (from a plain thread, not the runtime: `send` is sync), returns their
/// outcomes in completion order.
async fn send_all(
    sink: &Arc<HttpSink>,
    bodies: Vec<String>,
) -> Vec<(String, Result<u16, HttpError>)> {
    let n = bodies.len();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let s = sink.clone();
    std::thread::spawn(move || {
        for body in bodies {
            let tx = tx.clone();
            let b = body.clone();
            s.send(HttpRequest::new(body).on_done(move |r| {
                let _ = tx.send((b, r));
            }))
            .unwrap();
        }
    })
    .join()
    .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an outcome within 10 s")
            .unwrap();
        out.push(r);
    }
    out
}

fn bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"i":{i},"topic":"dev/gw"}}"#))
        .collect()
}

fn received(hits: &[Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| String::from_utf8(h.body.to_vec()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_requests_arrive_exactly_once_with_method_and_headers() {
    let server = Server::start(Arc::new(|_| 200), None).await;
    let mut opts = options(format!("http://{}/hook", server.addr));
    opts.method = HttpMethod::Put;
    opts.headers = vec![("X-Token".into(), "s3cret".into())];
    opts.max_inflight = 4;
    let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
    let n = 300;
    let outcomes = send_all(&sink, bodies(n)).await;
    assert!(outcomes.iter().all(|(_, r)| matches!(r, Ok(200))));
    let hits = server.hits();
    assert_eq!(hits.len(), n, "exactly N requests");
    let got: BTreeSet<String> = received(&hits).into_iter().collect();
    let want: BTreeSet<String> = bodies(n).into_iter().collect();
    assert_eq!(got, want, "every body, in content");
    for h in &hits {
        assert_eq!(h.method, "PUT");
        assert_eq!(h.headers["content-type"], "application/json");
        assert_eq!(h.headers["x-token"], "s3cret");
    }
    // Keep-alive: the pool reuses its connections. About `max_inflight` of them; a few more
    // when a request starts before the connection of one just answered is back in the pool.
    let connections = server.connections.load(Ordering::Relaxed);
    assert!(
        connections <= 30,
        "{connections} connections for {n} requests"
    );
    let stats = sink.close().await.unwrap();
    assert_eq!(
        (stats.accepted, stats.succeeded, stats.failed, stats.retried),
        (n as u64, n as u64, 0, 0)
    );
}

/// The server stores every body it is sent, but answers 503 to the first K requests (as one
/// that wrote then failed): the sink retries them, so everything arrives, and the K retried
/// bodies arrive twice. That is the at-least-once contract: duplicates = retried requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_server_then_recovering_gets_everything_at_least_once() {
    const K: usize = 12;
    let server = Server::start(Arc::new(|n| if n < K { 503 } else { 200 }), None).await;
    let sink = Arc::new(
        HttpSink::start(
            options(format!("http://{}/", server.addr)),
            &Handle::current(),
        )
        .unwrap(),
    );
    let n = 100;
    let outcomes = send_all(&sink, bodies(n)).await;
    assert!(
        outcomes.iter().all(|(_, r)| matches!(r, Ok(200))),
        "{outcomes:?}"
    );
    let got = received(&server.hits());
    let distinct: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        distinct,
        bodies(n).into_iter().collect::<BTreeSet<_>>(),
        "everything arrives"
    );
    let duplicates = got.len() - distinct.len();
    assert_eq!(
        duplicates, K,
        "each 503 answered request is sent again once"
    );
    let stats = sink.close().await.unwrap();
    assert_eq!(
        (stats.succeeded, stats.failed, stats.retried),
        (n as u64, 0, K as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_fails_at_once_without_retry_but_429_is_retried() {
    let server = Server::start(
        Arc::new(|n| match n {
            0 => 400,
            1 => 429,
            _ => 200,
        }),
        None,
    )
    .await;
    let mut opts = options(format!("http://{}/", server.addr));
    opts.max_inflight = 1;
    let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
    let outcomes = send_all(&sink, vec!["bad".into()]).await;
    match &outcomes[0].1 {
        Err(HttpError::Status {
            status: 400,
            attempts: 1,
            ..
        }) => {}
        other => panic!("expected 400 after 1 attempt, got {other:?}"),
    }
    assert_eq!(server.hits().len(), 1, "not retried");
    let started = Instant::now();
    let outcomes = send_all(&sink, vec!["slow down".into()]).await;
    assert!(matches!(outcomes[0].1, Ok(200)), "{outcomes:?}");
    // `Retry-After: 1` honoured up to `max_backoff` (300 ms), not the 20 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits().len(), 3, "429 then 200");
    let stats = sink.close().await.unwrap();
    assert_eq!((stats.succeeded, stats.failed, stats.retried), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_at_first_then_started_gets_everything() {
    // Take a free port, then leave it closed: connections are refused until the server starts.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = Arc::new(
        HttpSink::start(
            options(format!("http://127.0.0.1:{port}/")),
            &Handle::current(),
        )
        .unwrap(),
    );
    let n = 20;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for body in bodies(n) {
        let tx = tx.clone();
        sink.send(HttpRequest::new(body).on_done(move |r| {
            let _ = tx.send(r);
        }))
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(sink.stats().retried > 0, "connections refused and retried");
    assert_eq!(sink.stats().succeeded, 0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let server = Server::on(listener, Arc::new(|_| 200), None);
    for _ in 0..n {
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(r, Ok(200)), "{r:?}");
    }
    let distinct: BTreeSet<String> = received(&server.hits()).into_iter().collect();
    assert_eq!(distinct, bodies(n).into_iter().collect::<BTreeSet<_>>());
    let stats = sink.close().await.unwrap();
    assert_eq!((stats.succeeded, stats.failed), (n as u64, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_report_a_transport_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = options(format!("http://127.0.0.1:{port}/"));
    opts.retries = 2;
    let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
    let outcomes = send_all(&sink, vec!["x".into()]).await;
    assert!(
        matches!(
            &outcomes[0].1,
            Err(HttpError::Transport { attempts: 3, .. })
        ),
        "{outcomes:?}"
    );
    let stats = sink.close().await.unwrap();
    assert_eq!((stats.failed, stats.retried), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_hands_the_request_back_without_waiting() {
    let server = Server::start(Arc::new(|_| 200), None).await;
    server.open.send(false).unwrap(); // the server holds every answer
    let mut opts = options(format!("http://{}/", server.addr));
    opts.max_inflight = 1;
    opts.queue = 3;
    let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (mut accepted, mut refused) = (0usize, Vec::new());
    let mut slowest = Duration::ZERO;
    for (i, body) in bodies(20).into_iter().enumerate() {
        let tx = tx.clone();
        let request = HttpRequest::new(body.clone()).on_done(move |r| {
            let _ = tx.send((i, r));
        });
        let started = Instant::now();
        let sent = sink.send(request);
        slowest = slowest.max(started.elapsed());
        match sent {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert!(
                    matches!(e.error, HttpError::QueueFull { capacity: 3, .. }),
                    "{e}"
                );
                assert_eq!(
                    e.request.body,
                    body.as_bytes(),
                    "the request comes back whole"
                );
                refused.push(e.request);
            }
        }
        // Let the dispatcher take the first request into flight (it has connected).
        if i == 0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while server.connections.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert!(
        slowest < Duration::from_millis(100),
        "send waited {slowest:?}"
    );
    // One in flight (waiting for its answer), three queued, the rest refused.
    assert_eq!(accepted, 4, "max_inflight + queue");
    assert_eq!(refused.len(), 16);
    // A refused request dropped by the caller reports Discarded to its callback.
    drop(refused.pop());
    let (i, r) = rx.recv().await.unwrap();
    assert!(
        i == 19 && matches!(r, Err(HttpError::Discarded { .. })),
        "{i} {r:?}"
    );
    server.open.send(true).unwrap();
    let stats = sink.close().await.unwrap();
    assert_eq!(
        (stats.accepted, stats.rejected, stats.succeeded),
        (4, 16, 4)
    );
    assert_eq!(server.hits().len(), 4);
    // Closed: refused, handed back.
    let e = sink.send(HttpRequest::new("late")).unwrap_err();
    assert!(matches!(e.error, HttpError::Closed { .. }));
    drop(refused);
}

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
fn test_pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, leaf.pem(), key.serialize_pem())
}

fn acceptor(cert_pem: &str, key_pem: &str) -> TlsAcceptor {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_test_ca() {
    let (ca_pem, cert_pem, key_pem) = test_pki();
    let (other_ca_pem, _, _) = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca_pem).unwrap();
    let server = Server::start(Arc::new(|_| 200), Some(acceptor(&cert_pem, &key_pem))).await;
    let port = server.addr.port();

    for host in ["localhost", "127.0.0.1"] {
        let mut opts = options(format!("https://{host}:{port}/hook"));
        opts.ca_file = Some(ca_file.clone());
        let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
        let outcomes = send_all(&sink, bodies(10)).await;
        assert!(
            outcomes.iter().all(|(_, r)| matches!(r, Ok(200))),
            "{host}: {outcomes:?}"
        );
        sink.close().await.unwrap();
    }
    assert_eq!(server.hits().len(), 20);

    // A server certificate from a CA not trusted: a TLS failure, retried, then reported.
    let mut opts = options(format!("https://localhost:{port}/hook"));
    opts.ca_file = Some(other_ca_file);
    opts.retries = 1;
    let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
    let outcomes = send_all(&sink, vec!["x".into()]).await;
    match &outcomes[0].1 {
        Err(HttpError::Transport {
            reason,
            attempts: 2,
            ..
        }) => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert_eq!(server.hits().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_at_start() {
    let h = Handle::current();
    for url in ["ftp://127.0.0.1/", "not a url", "http:///x"] {
        assert!(
            matches!(
                HttpSink::start(options(url.into()), &h),
                Err(HttpError::Config { .. })
            ),
            "{url}"
        );
    }
    let mut opts = options("http://127.0.0.1:1/".into());
    opts.headers = vec![("bad header".into(), "x".into())];
    assert!(matches!(
        HttpSink::start(opts, &h),
        Err(HttpError::Config { .. })
    ));
    let mut opts = options("https://127.0.0.1:1/".into());
    opts.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(matches!(
        HttpSink::start(opts, &h),
        Err(HttpError::Config { .. })
    ));
}

/// `close` refuses new requests and returns only once every queued and in-flight request has
/// been answered and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_the_queue() {
    let server = Server::start(Arc::new(|_| 200), None).await;
    server.open.send(false).unwrap();
    let mut opts = options(format!("http://{}/", server.addr));
    opts.max_inflight = 2;
    let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
    let reported = Arc::new(AtomicUsize::new(0));
    let n = 50;
    for body in bodies(n) {
        let reported = reported.clone();
        sink.send(HttpRequest::new(body).on_done(move |r| {
            assert!(matches!(r, Ok(200)));
            reported.fetch_add(1, Ordering::Relaxed);
        }))
        .unwrap();
    }
    let closing = {
        let sink = sink.clone();
        tokio::spawn(async move { sink.close().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!closing.is_finished(), "close waits for the answers");
    assert!(matches!(
        sink.send(HttpRequest::new("late")).unwrap_err().error,
        HttpError::Closed { .. }
    ));
    server.open.send(true).unwrap();
    let stats = closing.await.unwrap().unwrap();
    assert_eq!(
        reported.load(Ordering::Relaxed),
        n,
        "all reported when close returns"
    );
    assert_eq!((stats.succeeded, stats.rejected), (n as u64, 1));
    assert_eq!(server.hits().len(), n);
}

/// An answer that comes too late (the server stored the body, the sink timed out): the
/// request is sent again, so the body arrives twice (at-least-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_retried_and_the_body_arrives_twice() {
    let server = Server::start(Arc::new(|n| if n == 0 { SLOW } else { 200 }), None).await;
    let mut opts = options(format!("http://{}/", server.addr));
    opts.timeout = Duration::from_millis(300);
    let sink = Arc::new(HttpSink::start(opts, &Handle::current()).unwrap());
    let outcomes = send_all(&sink, vec!["once".into()]).await;
    assert!(matches!(outcomes[0].1, Ok(200)), "{outcomes:?}");
    assert_eq!(received(&server.hits()), ["once", "once"]);
    let stats = sink.close().await.unwrap();
    assert_eq!((stats.succeeded, stats.retried), (1, 1));
}

/// The whole sink driven from sync code: a runtime of its own, `send` and `close_blocking`
/// from a plain thread.
#[test]
fn usable_from_sync_code() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::start(Arc::new(|_| 200), None));
    let sink = HttpSink::start(options(format!("http://{}/", server.addr)), rt.handle()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for body in bodies(10) {
        let tx = tx.clone();
        sink.send(HttpRequest::new(body).on_done(move |r| tx.send(r).unwrap()))
            .unwrap();
    }
    let stats = sink.close_blocking().unwrap();
    assert_eq!(stats.succeeded, 10);
    drop(tx);
    assert_eq!(rx.iter().filter(|r| matches!(r, Ok(200))).count(), 10);
    assert_eq!(server.hits().len(), 10);
}
