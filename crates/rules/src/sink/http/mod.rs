//! The HTTP webhook sink (issue 12): each request is one `POST` (or `PUT`) of a body the caller
//! made (typically [`Template::render_json`](crate::Template::render_json)) to a fixed URL.
//!
//! * **Client.** [`hermod_http::Client`]: hyper 1 with hyper-util's pooled `Client`
//!   (keep-alive, idle connections reused, HTTP/1.1), over TCP for `http://` and rustls (the
//!   `ring` provider, TLS 1.2/1.3) for `https://`. The server certificate is checked against [`HttpOptions::ca_file`] if given,
//!   else against the system bundle (the first of the usual files that exists:
//!   `/etc/ssl/certs/ca-certificates.crt`, …). Redirects are not followed.
//! * **Runtime.** The sink runs on a tokio runtime given to [`HttpSink::start`] as a
//!   [`Handle`] (from a runtime's `handle()` or, inside one, [`Handle::current`]): one
//!   dispatcher task plus one task per request in flight. [`HttpSink::send`] is a plain
//!   synchronous function that never waits and may be called from anywhere, including from
//!   code that is not on a runtime thread; [`HttpSink::close`] is async, and
//!   [`HttpSink::close_blocking`] is its form for sync code. Taking a handle rather than
//!   owning a runtime lets the broker run its sinks on its own runtime (no extra threads),
//!   while a sync program can still build a small runtime and pass its handle.
//! * **Never blocks the caller.** `send` puts the request on a bounded queue with `try_send`; a
//!   full queue (the endpoint is slower than the traffic, or down and being retried) is an
//!   immediate [`HttpError::QueueFull`], and the request comes back in the [`HttpSendError`] so
//!   that the caller can buffer it elsewhere. At most [`HttpOptions::max_inflight`] requests
//!   are in flight (including those waiting for a retry); the dispatcher stops taking from the
//!   queue while that many are, so the queue fills and sends are refused rather than waiting.
//!   Requests run concurrently, so they may complete (and arrive) in any order.
//! * **Outcome per request**, through its callback ([`HttpRequest::on_done`]), exactly once:
//!   - a 2xx answer: `Ok(status)`;
//!   - a connection error (refused, reset, TLS handshake, timeout per attempt), a 5xx or a
//!     429: retried after a backoff (`retry_backoff`, doubled per attempt, at most
//!     `max_backoff`; longer if the answer has a `Retry-After` in seconds, but never beyond
//!     `max_backoff`), at most `retries` times; then [`HttpError::Status`] or
//!     [`HttpError::Transport`], naming the attempts;
//!   - any other answer (1xx, 3xx, 4xx but 429): failed at once with [`HttpError::Status`],
//!     not retried (the same request would get the same answer).
//!
//!   Delivery is **at-least-once**: a request whose answer was lost (a timeout, a connection
//!   dropped after the server took the body, a 5xx from a server that did store it) is sent
//!   again, so the endpoint may see a body twice; put an id (`${id}`) in the body to
//!   deduplicate.
//! * **Clean shutdown.** [`HttpSink::close`] refuses new requests, waits until every queued and
//!   in-flight request has been answered (or has failed its retries) and reported, and returns
//!   the counters. Dropping the sink without `close` lets the tasks finish in the background,
//!   unobserved; dropping the runtime drops unfinished requests, which report
//!   [`HttpError::Discarded`].

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hermod_http::header::{CONTENT_TYPE, RETRY_AFTER};
use hermod_http::{
    Client, ClientOptions, HeaderName, HeaderValue, Method, Oversize, StatusCode, Uri,
};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Longest answer body kept (the sink only looks at the status; the rest of a longer body is
/// read and discarded so that the connection can be reused).
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// The HTTP method of every request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
}

/// What an [`HttpSink`] sends where, and how it queues and retries.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `http://host[:port]/path` or `https://…`.
    pub url: String,
    pub method: HttpMethod,
    /// Extra request headers. `content-type` defaults to `application/json`; a header given
    /// here replaces it.
    pub headers: Vec<(String, String)>,
    /// Longest one attempt may take, from connecting to the end of the answer's body; a
    /// timeout counts as a connection error (retried).
    pub timeout: Duration,
    /// Requests in flight at once (0 counts as 1, at most 65536), including those waiting
    /// for a retry.
    pub max_inflight: usize,
    /// Requests that can wait in the queue (0 counts as 1); a send beyond it is refused.
    pub queue: usize,
    /// Attempts of a retryable failure after the first one.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one, up to `max_backoff`.
    pub retry_backoff: Duration,
    pub max_backoff: Duration,
    /// PEM file of the CA certificates that may sign an `https://` server's certificate
    /// (instead of the system bundle).
    pub ca_file: Option<PathBuf>,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            url: String::new(),
            method: HttpMethod::Post,
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
            max_inflight: 16,
            queue: 10_000,
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            ca_file: None,
            pool_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What went wrong, naming the URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("http sink {url}: {reason}")]
    Config { url: Arc<str>, reason: String },
    #[error("http sink {url}: queue full ({capacity} requests waiting)")]
    QueueFull { url: Arc<str>, capacity: usize },
    #[error("http sink {url}: closed")]
    Closed { url: Arc<str> },
    /// A non-2xx answer: at once for one not worth retrying, else after `attempts` attempts.
    #[error("http sink {url}: answered {status} (after {attempts} attempts)")]
    Status {
        url: Arc<str>,
        status: u16,
        attempts: u32,
    },
    /// No answer: connection refused or reset, TLS failure, timeout; after `attempts` attempts.
    #[error("http sink {url}: {reason} (after {attempts} attempts)")]
    Transport {
        url: Arc<str>,
        reason: String,
        attempts: u32,
    },
    #[error("http sink {url}: request dropped before it was answered")]
    Discarded { url: Arc<str> },
}

/// Called once with a request's outcome (the 2xx status, or why it failed), on a runtime
/// thread: keep it short. A panic in it is caught.
pub type HttpDone = Box<dyn FnOnce(Result<u16, HttpError>) + Send + 'static>;

/// One request: its body, sent with the sink's URL, method and headers.
pub struct HttpRequest {
    pub body: Bytes,
    /// Reported exactly once: with the outcome, or with [`HttpError::Discarded`] if the
    /// request is dropped unanswered (an [`HttpSendError`] dropped by its caller, a runtime
    /// shut down).
    pub done: Option<HttpDone>,
    /// The sink's URL once taken, for `Discarded`.
    url: Option<Arc<str>>,
}

impl HttpRequest {
    pub fn new(body: impl Into<Bytes>) -> Self {
        HttpRequest {
            body: body.into(),
            done: None,
            url: None,
        }
    }

    /// Sets the callback that receives this request's outcome.
    pub fn on_done(mut self, done: impl FnOnce(Result<u16, HttpError>) + Send + 'static) -> Self {
        self.done = Some(Box::new(done));
        self
    }

    fn report(&mut self, result: Result<u16, HttpError>) {
        if let Some(done) = self.done.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || done(result)));
        }
    }
}

impl Drop for HttpRequest {
    fn drop(&mut self) {
        if self.done.is_some() {
            let url = self.url.clone().unwrap_or_else(|| Arc::from(""));
            self.report(Err(HttpError::Discarded { url }));
        }
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("body", &self.body.len())
            .field("done", &self.done.is_some())
            .finish()
    }
}

/// A request the sink did not take: why, and the request itself (its callback not called).
#[derive(Debug)]
pub struct HttpSendError {
    pub error: HttpError,
    pub request: HttpRequest,
}

impl fmt::Display for HttpSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for HttpSendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests taken by `send`.
    pub accepted: u64,
    /// Requests refused by `send` (queue full, closed).
    pub rejected: u64,
    /// Requests answered 2xx.
    pub succeeded: u64,
    /// Requests reported failed.
    pub failed: u64,
    /// Attempts after a retryable failure.
    pub retried: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

enum Msg {
    Request(HttpRequest),
    Close,
}

/// The HTTP webhook sink: see the module documentation. `Send + Sync`: share it with an `Arc`.
#[derive(Debug)]
pub struct HttpSink {
    url: Arc<str>,
    tx: mpsc::Sender<Msg>,
    capacity: usize,
    closed: AtomicBool,
    counters: Arc<Counters>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    runtime: Handle,
}

impl HttpSink {
    /// Checks the options (URL, headers, CA file), builds the client and starts the
    /// dispatcher on `runtime`. Connects lazily: an endpoint that is down is not an error here.
    pub fn start(options: HttpOptions, runtime: &Handle) -> Result<HttpSink, HttpError> {
        let url: Arc<str> = Arc::from(options.url.as_str());
        let config = |reason: String| HttpError::Config {
            url: url.clone(),
            reason,
        };
        let uri = hermod_http::parse_url(&options.url).map_err(config)?;
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| config(format!("header name `{name}`: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| config(format!("header `{name}` value: {e}")))?;
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
        let max_inflight = options.max_inflight.clamp(1, 1 << 16);
        let client = Client::for_uri(
            &uri,
            options.ca_file.as_deref(),
            &ClientOptions {
                pool_idle_timeout: options.pool_idle_timeout,
                pool_max_idle_per_host: max_inflight,
                max_body: MAX_ANSWER_BODY,
                oversize: Oversize::Discard,
            },
        )
        .map_err(config)?;
        let capacity = options.queue.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            client,
            uri,
            url: url.clone(),
            method: match options.method {
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
            },
            headers,
            timeout: options.timeout,
            retries: options.retries,
            retry_backoff: options.retry_backoff,
            max_backoff: options.max_backoff,
            counters: counters.clone(),
        });
        let dispatcher = runtime.spawn(dispatch(shared, rx, max_inflight));
        Ok(HttpSink {
            url,
            tx,
            capacity,
            closed: AtomicBool::new(false),
            counters,
            dispatcher: Mutex::new(Some(dispatcher)),
            runtime: runtime.clone(),
        })
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues `request` without ever waiting (callable from sync and async code alike): a
    /// full queue or a closed sink gives the request back in the error.
    pub fn send(&self, mut request: HttpRequest) -> Result<(), HttpSendError> {
        let refused = |error: HttpError, request: HttpRequest| {
            add(&self.counters.rejected);
            Err(HttpSendError { error, request })
        };
        if self.closed.load(Ordering::Acquire) {
            let url = self.url.clone();
            return refused(HttpError::Closed { url }, request);
        }
        request.url = Some(self.url.clone());
        match self.tx.try_send(Msg::Request(request)) {
            Ok(()) => {
                add(&self.counters.accepted);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(msg)) => refused(
                HttpError::QueueFull {
                    url: self.url.clone(),
                    capacity: self.capacity,
                },
                unsent(msg),
            ),
            Err(mpsc::error::TrySendError::Closed(msg)) => refused(
                HttpError::Closed {
                    url: self.url.clone(),
                },
                unsent(msg),
            ),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> HttpStats {
        let c = &*self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpStats {
            accepted: get(&c.accepted),
            rejected: get(&c.rejected),
            succeeded: get(&c.succeeded),
            failed: get(&c.failed),
            retried: get(&c.retried),
        }
    }

    /// Refuses further requests, then waits until every queued and in-flight request has been
    /// reported (which, with an endpoint down, takes up to its retries' backoffs). Async: from
    /// sync code, `runtime.block_on(sink.close())` (not on a runtime thread). Calling it again
    /// returns the counters.
    pub async fn close(&self) -> Result<HttpStats, HttpError> {
        self.closed.store(true, Ordering::Release);
        let dispatcher = match self.dispatcher.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(dispatcher) = dispatcher {
            // Waits for room if the queue is full; an error means the dispatcher is gone.
            let _ = self.tx.send(Msg::Close).await;
            if dispatcher.await.is_err() {
                return Err(HttpError::Closed {
                    url: self.url.clone(),
                });
            }
        }
        Ok(self.stats())
    }
}

impl HttpSink {
    /// [`close`](Self::close) for sync code: blocks the calling thread on the sink's runtime
    /// until the sink is drained. Panics if called on a thread that runs async code (use
    /// `close().await` there); with a current-thread runtime, only works while another
    /// thread drives that runtime.
    pub fn close_blocking(&self) -> Result<HttpStats, HttpError> {
        self.runtime.clone().block_on(self.close())
    }
}

fn unsent(msg: Msg) -> HttpRequest {
    match msg {
        Msg::Request(request) => request,
        Msg::Close => unreachable!("HttpSink::send queues only requests"),
    }
}

/// What every request task needs.
struct Shared {
    client: Client,
    uri: Uri,
    url: Arc<str>,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    max_backoff: Duration,
    counters: Arc<Counters>,
}

/// Takes requests off the queue, at most `max_inflight` at a time, each in a task of its own;
/// on close, runs what is still queued and waits for all of them.
async fn dispatch(shared: Arc<Shared>, mut rx: mpsc::Receiver<Msg>, max_inflight: usize) {
    let permits = Arc::new(Semaphore::new(max_inflight));
    let mut closing = false;
    loop {
        // The permit first, then the request: a request is either queued (counted against
        // `queue`) or in flight (against `max_inflight`), never held in between.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let msg = if closing {
            match rx.try_recv() {
                Ok(msg) => msg,
                Err(_) => break,
            }
        } else {
            match rx.recv().await {
                Some(msg) => msg,
                None => break,
            }
        };
        let request = match msg {
            Msg::Request(request) => request,
            Msg::Close => {
                closing = true;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            run(&shared, request).await;
            drop(permit);
        });
    }
    // Every request task holds a permit until it has reported.
    let all = u32::try_from(max_inflight).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// Why one attempt did not succeed.
enum Attempt {
    /// Retryable: 5xx, 429, or no answer; with the answer's `Retry-After`, if in seconds.
    Retry(Result<StatusCode, String>, Option<Duration>),
    /// Not retryable: the answer's status.
    Fail(StatusCode),
}

/// Sends `request` until it succeeds, fails for good, or runs out of retries; reports it.
async fn run(shared: &Shared, mut request: HttpRequest) {
    // Held apart from `request`, whose callback is `Send` but not `Sync`.
    let body = request.body.clone();
    let mut backoff = shared.retry_backoff;
    let mut attempts = 0u32;
    let result = loop {
        attempts += 1;
        match attempt(shared, &body).await {
            Ok(status) => break Ok(status.as_u16()),
            Err(Attempt::Fail(status)) => {
                break Err(HttpError::Status {
                    url: shared.url.clone(),
                    status: status.as_u16(),
                    attempts,
                });
            }
            Err(Attempt::Retry(why, retry_after)) => {
                if attempts > shared.retries {
                    break Err(match why {
                        Ok(status) => HttpError::Status {
                            url: shared.url.clone(),
                            status: status.as_u16(),
                            attempts,
                        },
                        Err(reason) => HttpError::Transport {
                            url: shared.url.clone(),
                            reason,
                            attempts,
                        },
                    });
                }
                add(&shared.counters.retried);
                // The server's `Retry-After` if longer, within `max_backoff`.
                let wait = retry_after.map_or(backoff, |after| after.max(backoff));
                tokio::time::sleep(wait.min(shared.max_backoff)).await;
                backoff = backoff.saturating_mul(2).min(shared.max_backoff);
            }
        }
    };
    add(if result.is_ok() {
        &shared.counters.succeeded
    } else {
        &shared.counters.failed
    });
    request.report(result);
}

/// One attempt, within the timeout: the request, then the whole answer body (read so that the
/// connection goes back to the pool).
async fn attempt(shared: &Shared, body: &Bytes) -> Result<StatusCode, Attempt> {
    let response = shared
        .client
        .request(
            shared.method.clone(),
            &shared.uri,
            &shared.headers,
            body.clone(),
            shared.timeout,
        )
        .await
        .map_err(|e| Attempt::Retry(Err(e.to_string()), None))?;
    let status = response.status;
    if status.is_success() {
        Ok(status)
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = response
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Attempt::Retry(Ok(status), retry_after))
    } else {
        Err(Attempt::Fail(status))
    }
}
