//! The admin API client of `hermod ctl`: HTTP/1.1 (hyper's connection-level client, one
//! connection per request) over the broker's Unix socket, TCP, or TLS (rustls, ring).
//!
//! Every failure is one line meant for a person: where we tried, what went wrong, and what to
//! check.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long one request (connect, send, read the answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is.
#[derive(Debug)]
pub(crate) enum Endpoint {
    /// `<store path>/hermod.sock`: no credentials, administrator.
    Unix(PathBuf),
    /// `--url http(s)://host:port[/prefix]`.
    Tcp {
        host: String,
        port: u16,
        /// The path the API is mounted under (empty, or `/prefix` without a trailing `/`).
        prefix: String,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

/// An admin API client: where, with which credentials, and how to name it in messages.
#[derive(Debug)]
pub(crate) struct Client {
    endpoint: Endpoint,
    /// The `Authorization` header value, if any.
    auth: Option<String>,
    /// The endpoint as the user gave it, for messages.
    shown: String,
}

/// A response: status and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Client {
    /// A client for the Unix socket at `path`.
    pub(crate) fn unix(path: PathBuf) -> Self {
        let shown = shown_path(&path);
        Client {
            endpoint: Endpoint::Unix(path),
            auth: None,
            shown,
        }
    }

    /// A client for `--url` with `Authorization: Basic base64(key:secret)` when `api_key` is
    /// given; `cafile` (PEM) is trusted for https, else the system's CA bundle.
    pub(crate) fn url(
        url: &str,
        api_key: Option<&str>,
        cafile: Option<&Path>,
    ) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!(
                "--url {url}: expected http://HOST:PORT or https://HOST:PORT, e.g. http://127.0.0.1:18083"
            ));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let bad = || format!("--url {url}: invalid host or port");
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if tls => 443,
            None => 80,
        };
        let tls = if tls {
            Some(Arc::new(crate::tls::client_config(
                &crate::tls::ClientTls::trusting(cafile, "--cacert"),
            )?))
        } else {
            None
        };
        let auth = api_key
            .map(|k| {
                if !k.contains(':') {
                    return Err(
                        "--api-key: expected KEY:SECRET (the api_key and api_secret of an API key)"
                            .to_owned(),
                    );
                }
                use base64::Engine as _;
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(k)
                ))
            })
            .transpose()?;
        Ok(Client {
            endpoint: Endpoint::Tcp {
                host: host.to_owned(),
                port,
                prefix: prefix.to_owned(),
                tls,
            },
            auth,
            shown: url.trim_end_matches('/').to_owned(),
        })
    }

    /// Whether requests go over the Unix socket (no credentials needed).
    pub(crate) fn is_socket(&self) -> bool {
        matches!(self.endpoint, Endpoint::Unix(_))
    }

    /// Whether requests carry credentials (an API key, or the socket).
    pub(crate) fn has_credentials(&self) -> bool {
        self.is_socket() || self.auth.is_some()
    }

    /// Sends one request; `path` starts with `/api/v5/`.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "hermod at {} did not answer within {} s",
                self.shown,
                REQUEST_TIMEOUT.as_secs()
            )),
        }
    }

    async fn send_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let (host_header, full_path) = match &self.endpoint {
            Endpoint::Unix(_) => ("localhost".to_owned(), path.to_owned()),
            Endpoint::Tcp {
                host, port, prefix, ..
            } => {
                let h = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                (h, format!("{prefix}{path}"))
            }
        };
        let mut req = Request::builder()
            .method(method)
            .uri(full_path)
            .header(header::HOST, host_header)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("hermod-ctl/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = &self.auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| format!("invalid request: {e}"))?;
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = connect_unix(path).await.map_err(|e| self.unreachable(&e))?;
                self.exchange(stream, req).await
            }
            Endpoint::Tcp {
                host, port, tls, ..
            } => {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| self.unreachable(&e))?;
                let _ = tcp.set_nodelay(true);
                match tls {
                    None => self.exchange(tcp, req).await,
                    Some(config) => {
                        let name = ServerName::try_from(host.clone())
                            .map_err(|_| format!("--url {}: invalid host name", self.shown))?;
                        let stream = tokio_rustls::TlsConnector::from(config.clone())
                            .connect(name, tcp)
                            .await
                            .map_err(|e| {
                                let hint = if e.to_string().contains("InvalidContentType") {
                                    "it does not speak TLS there: try http://"
                                } else {
                                    "a self-signed certificate or a private CA? pass it with \
                                     --cacert FILE"
                                };
                                format!("TLS handshake with {} failed: {e} ({hint})", self.shown)
                            })?;
                        self.exchange(stream, req).await
                    }
                }
            }
        }
    }

    async fn exchange<S>(&self, stream: S, req: Request<Full<Bytes>>) -> Result<Reply, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let broken = |e: &dyn std::fmt::Display| {
            format!("the connection to hermod at {} failed: {e}", self.shown)
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| broken(&e))?;
        let driver = tokio::spawn(conn);
        let response = sender.send_request(req).await.map_err(|e| broken(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| broken(&e))?
            .to_bytes();
        drop(sender);
        driver.abort();
        Ok(Reply { status, body })
    }

    /// One line for a connection that could not be made.
    fn unreachable(&self, e: &std::io::Error) -> String {
        use std::io::ErrorKind as K;
        let what = &self.shown;
        match (&self.endpoint, e.kind()) {
            (Endpoint::Unix(_), K::NotFound) => format!(
                "cannot reach hermod at {what}: no such file (is `hermod serve` running with this config?)"
            ),
            (Endpoint::Unix(_), K::ConnectionRefused) => format!(
                "cannot reach hermod at {what}: connection refused (the socket of a hermod that has stopped?)"
            ),
            (Endpoint::Unix(_), K::PermissionDenied) => format!(
                "cannot reach hermod at {what}: permission denied (only the user running hermod may use its socket)"
            ),
            (Endpoint::Unix(_), _) => format!("cannot reach hermod at {what}: {e}"),
            (Endpoint::Tcp { .. }, K::ConnectionRefused) => format!(
                "cannot reach hermod at {what}: connection refused (is `hermod serve` running, \
                 with [admin] bind on this address?)"
            ),
            (Endpoint::Tcp { .. }, _) => format!("cannot reach hermod at {what}: {e}"),
        }
    }

    /// Sends a request and returns the JSON answer of a 2xx response (`Value::Null` for an
    /// empty body such as 204), or the API's error as one line.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let reply = self.send(method, path, body).await?;
        if !reply.status.is_success() {
            return Err(self.api_error(&reply));
        }
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            format!(
                "hermod at {} answered {path} with something that is not JSON: {e}",
                self.shown
            )
        })
    }

    /// `GET path` as JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(Method::GET, path, None).await
    }

    /// The API's `{"code","message"}` error as one line, with a hint for credentials.
    pub(crate) fn api_error(&self, reply: &Reply) -> String {
        let parsed: Option<Value> = serde_json::from_slice(&reply.body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let code = field("code");
        let message = field("message").map(|m| one_line(&m)).or_else(|| {
            let text = String::from_utf8_lossy(&reply.body).trim().to_owned();
            (!text.is_empty() && parsed.is_none() && text.len() < 300).then_some(text)
        });
        let mut line = match (message, &code) {
            (Some(m), Some(c)) => format!("{m} ({c})"),
            (Some(m), None) => m,
            (None, Some(c)) => c.clone(),
            (None, None) => format!(
                "hermod answered {}",
                reply.status.canonical_reason().map_or_else(
                    || reply.status.as_str().to_owned(),
                    |r| format!("{} {r}", reply.status.as_str())
                )
            ),
        };
        match reply.status {
            StatusCode::UNAUTHORIZED if self.auth.is_none() => {
                "the admin API needs credentials: pass --api-key KEY:SECRET (or set \
                 HERMOD_API_KEY); `hermod ctl api-keys add NAME` on the broker's host makes one"
                    .to_owned()
            }
            StatusCode::UNAUTHORIZED => {
                line.push_str(" — check --api-key KEY:SECRET");
                line
            }
            _ => line,
        }
    }
}

/// A multi-line message (toml's parse errors quote the line with a `^` under it) as one line:
/// the quoted source lines dropped, the rest joined with ": ".
fn one_line(message: &str) -> String {
    let is_quote = |l: &str| {
        let t = l.trim_start();
        let t = t
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        t.starts_with('|')
    };
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_quote(l))
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(unix)]
async fn connect_unix(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    tokio::net::UnixStream::connect(path).await
}

#[cfg(not(unix))]
async fn connect_unix(_path: &Path) -> std::io::Result<TcpStream> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "Unix sockets are not available here: use --url and --api-key",
    ))
}

/// A path for messages: relative paths without a leading `./`.
fn shown_path(path: &Path) -> String {
    let s = path.display().to_string();
    s.strip_prefix("./").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = Client::url("http://127.0.0.1:18083/", Some("k:s"), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(c.endpoint, Endpoint::Tcp { ref host, port: 18083, ref prefix, tls: None } if host == "127.0.0.1" && prefix.is_empty())
        );
        assert_eq!(c.auth.as_deref(), Some("Basic azpz"));
        let c =
            Client::url("http://[::1]:8080/hermod", None, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(c.endpoint, Endpoint::Tcp { ref host, port: 8080, ref prefix, .. } if host == "::1" && prefix == "/hermod")
        );
        assert!(Client::url("127.0.0.1:18083", None, None).is_err());
        assert!(Client::url("http://h:x", None, None).is_err());
        assert!(Client::url("http://h:1", Some("nocolon"), None).is_err());
    }

    #[test]
    fn multi_line_messages_become_one() {
        assert_eq!(
            one_line(
                "h.toml: TOML parse error at line 9, column 1\n  |\n9 | x = 1\n  | ^\nunknown field `x`\n"
            ),
            "h.toml: TOML parse error at line 9, column 1: unknown field `x`"
        );
        assert_eq!(one_line("plain"), "plain");
    }
}
