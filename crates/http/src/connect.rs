//! The connector under the client: TCP for `http://`, rustls (ring) for `https://`, and where
//! the CA certificates come from.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper::http::uri::Scheme;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where the system's CA bundle is looked for when no `ca_file` is given (Debian/Ubuntu,
/// Fedora/RHEL, Alpine/macOS-style, openSUSE).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Why [`root_store`] has no CA certificates to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootsError {
    /// No CA file was given and none of the system bundles exists.
    NoSystemBundle,
    /// The file cannot be read or holds a malformed PEM block.
    File { path: PathBuf, reason: String },
    /// The file holds no certificate rustls can use.
    Empty { path: PathBuf },
}

/// The CA certificates that may sign a server's certificate: from `ca_file`, else from the
/// system bundle (the first of the usual bundle paths that exists). Shared by every TLS client
/// of Hermod (webhooks, `[auth.http]`, bridges).
///
/// # Errors
/// [`RootsError`], naming the file.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, RootsError> {
    let path: PathBuf = match ca_file {
        Some(path) => path.to_owned(),
        None => SYSTEM_CA_FILES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(RootsError::NoSystemBundle)?,
    };
    let file_error = |e: &dyn std::fmt::Display| RootsError::File {
        path: path.clone(),
        reason: e.to_string(),
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path).map_err(|e| file_error(&e))?;
    for cert in certs {
        let cert = cert.map_err(|e| file_error(&e))?;
        // A system bundle may hold a certificate rustls cannot parse: skip it, as the
        // native-certs loaders do; an empty store is refused below.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(RootsError::Empty { path });
    }
    Ok(roots)
}

/// Reads the CA certificates (the given file, else the system bundle) into a TLS connector
/// (the `ring` provider, TLS 1.2 and 1.3, no client certificate). The error names the file.
pub fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, String> {
    let roots = root_store(ca_file).map_err(|e| match e {
        RootsError::NoSystemBundle => {
            "https with no CA file given, and no system CA bundle found".to_owned()
        }
        RootsError::File { path, reason } => format!("CA file {}: {reason}", path.display()),
        RootsError::Empty { path } => format!("CA file {}: no usable certificate", path.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// TCP for `http://`, TCP then rustls for `https://`.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) http: HttpConnector,
    pub(crate) tls: Option<TlsConnector>,
}

impl tower::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let tls = self.tls.clone();
        let tcp = self.http.call(uri.clone());
        Box::pin(async move {
            let tcp = tcp.await?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let tls = tls.ok_or("https is not configured")?;
            let host = uri.host().ok_or("the URL has no host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())?;
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

pub(crate) enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(s) => s.connected(),
            Stream::Tls(_) => Connected::new(),
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
