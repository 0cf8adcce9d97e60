//! Hermod's HTTP/1.1 client, shared by the rule engine's webhook sink and the `[auth.http]`
//! source.
//!
//! * **Client.** hyper 1 with hyper-util's pooled `Client`: keep-alive, idle connections reused
//!   and closed after [`ClientOptions::pool_idle_timeout`]. Redirects are not followed.
//! * **Transport.** TCP (no Nagle) for `http://`; TCP then rustls (the `ring` provider, TLS 1.2
//!   and 1.3) for `https://`, the server's certificate checked against a CA file if given, else
//!   against the system bundle (the first of the usual files that exists:
//!   `/etc/ssl/certs/ca-certificates.crt`, …); see [`tls_connector`]. A client built without a
//!   TLS connector refuses `https://` URLs (a connection error).
//! * **One call per exchange.** [`Client::request`] sends a request with a body, reads the
//!   whole answer (status, headers and at most [`ClientOptions::max_body`] bytes of body, see
//!   [`Oversize`]) within one deadline that covers connecting, the TLS handshake, sending and
//!   reading, and reports a failure as an [`Error`] that says what went wrong (hyper's errors
//!   with their sources).
//!
//! The client spawns its connection tasks on the current tokio runtime: call
//! [`Client::request`] from within one (building a [`Client`] needs no runtime).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::http::uri::Scheme;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

mod connect;

pub use connect::{RootsError, root_store, tls_connector};
pub use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
pub use hyper::{Method, StatusCode, Uri};
pub use tokio_rustls::TlsConnector;

use connect::Connector;

/// Parses `url` and checks that it is `http://` or `https://` with a host. The error says
/// what is wrong (without the URL: the caller names it).
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => {}
        _ => return Err("the URL must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(uri)
}

/// Whether `uri` is `https://`.
pub fn is_https(uri: &Uri) -> bool {
    uri.scheme() == Some(&Scheme::HTTPS)
}

/// What [`Client::request`] does with an answer whose body is longer than
/// [`ClientOptions::max_body`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Oversize {
    /// Stop reading and fail with [`Error::TooLarge`] (the connection is closed, not reused).
    #[default]
    Fail,
    /// Keep the first `max_body` bytes, read and discard the rest (within the deadline, so
    /// that the connection can be reused) and mark the answer [`Response::truncated`].
    Discard,
}

/// How a [`Client`] pools connections and reads answers.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long an idle pooled connection is kept before it is closed.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (at least 1).
    pub pool_max_idle_per_host: usize,
    /// Longest answer body kept, in bytes.
    pub max_body: usize,
    /// What a longer body does.
    pub oversize: Oversize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 16,
            max_body: 64 * 1024,
            oversize: Oversize::Fail,
        }
    }
}

/// Why an exchange got no (usable) answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The whole exchange did not finish within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, the TLS handshake, sending or reading failed, or the answer was not HTTP:
    /// the error and its sources, `: `-separated.
    #[error("{0}")]
    Transport(String),
    /// A connection was closed (or reset) after the request was sent, before the whole answer
    /// was read: the server hung up, or it had just closed a pooled idle connection as it was
    /// reused. Only an idempotent request may be sent again. The error and its sources.
    #[error("{0}")]
    Closed(String),
    /// The answer's body was longer than the limit (with [`Oversize::Fail`]).
    #[error("answer body larger than {0} bytes")]
    TooLarge(usize),
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, at most [`ClientOptions::max_body`] bytes.
    pub body: Bytes,
    /// The body was longer and cut to `max_body` bytes (only with [`Oversize::Discard`]).
    pub truncated: bool,
}

/// A pooled HTTP/1.1 client (see the crate docs). Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    max_body: usize,
    oversize: Oversize,
    https: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("max_body", &self.max_body)
            .field("oversize", &self.oversize)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `http://` and, given a TLS connector (see [`tls_connector`]), `https://`.
    pub fn new(tls: Option<TlsConnector>, options: &ClientOptions) -> Client {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = tls.is_some();
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.pool_max_idle_per_host.max(1))
            .build(Connector { http, tls });
        Client {
            inner,
            max_body: options.max_body,
            oversize: options.oversize,
            https,
        }
    }

    /// A client for requests to `uri`'s scheme: for `https://`, with the CA certificates of
    /// `ca_file` (else of the system bundle); for `http://`, `ca_file` is not read. The error
    /// (a CA file that cannot be read or holds no certificate) names the file.
    pub fn for_uri(
        uri: &Uri,
        ca_file: Option<&Path>,
        options: &ClientOptions,
    ) -> Result<Client, String> {
        let tls = if is_https(uri) {
            Some(tls_connector(ca_file)?)
        } else {
            None
        };
        Ok(Client::new(tls, options))
    }

    /// Sends `method uri` with `headers` and `body`, and reads the answer, all within
    /// `timeout`. Any status is an answer (`Ok`); only a failure to get one is an `Err`.
    /// `Host` and `Content-Length` are set by the client.
    pub async fn request(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, Error> {
        match tokio::time::timeout(timeout, self.exchange(method, uri, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Response, Error> {
        let mut builder = hyper::Request::builder().method(method).uri(uri.clone());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| Error::Transport(error_chain(&e)))?;
        let response = self.inner.request(request).await.map_err(|e| {
            if !e.is_connect() && closed_early(&e) {
                Error::Closed(error_chain(&e))
            } else {
                Error::Transport(error_chain(&e))
            }
        })?;
        let (parts, mut incoming) = response.into_parts();
        let mut body = BytesMut::new();
        let mut truncated = false;
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| {
                if closed_early(&e) {
                    Error::Closed(error_chain(&e))
                } else {
                    Error::Transport(error_chain(&e))
                }
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let room = self.max_body.saturating_sub(body.len());
            if data.len() > room {
                match self.oversize {
                    // Dropping the unread body closes the connection.
                    Oversize::Fail => return Err(Error::TooLarge(self.max_body)),
                    Oversize::Discard => {
                        body.extend_from_slice(&data[..room]);
                        truncated = true;
                    }
                }
            } else {
                body.extend_from_slice(&data);
            }
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: body.freeze(),
            truncated,
        })
    }
}

/// Whether `e` or one of its sources says the connection ended before the answer did.
fn closed_early(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// `e` and its sources, `: `-separated (hyper's errors say little at the top level).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
