//! The remote side's byte stream: TCP, or rustls (ring) over TCP, with the TLS files read once
//! at start-up so that a bad file is a start-up error.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hermod_http::RootsError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::BridgeError;
use super::config::{BridgeConfig, Transport, split_address};

/// How long the TCP connect and the TLS handshake may take together.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the remote: its address and, for TLS, the connector and server name.
#[derive(Clone)]
pub(crate) struct Dialer {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// Reads the TLS files (relative to `base_dir`) of a validated config.
    pub(crate) fn new(config: &BridgeConfig, base_dir: &Path) -> Result<Self, BridgeError> {
        let (host, port) = split_address(&config.address)
            .ok_or_else(|| config.error("address", "not host:port"))?;
        let tls = match config.transport {
            Transport::Tcp => None,
            Transport::Tls => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| config.error("address", format!("not a TLS server name: {e}")))?;
                Some((connector(config, base_dir)?, name))
            }
        };
        Ok(Self { host, port, tls })
    }

    /// Connects (TCP, then TLS if configured), bounded by [`DIAL_TIMEOUT`].
    pub(crate) async fn dial(&self) -> io::Result<RemoteStream> {
        let work = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            match &self.tls {
                None => Ok(RemoteStream::Tcp(tcp)),
                Some((connector, name)) => {
                    let tls = connector.connect(name.clone(), tcp).await?;
                    Ok(RemoteStream::Tls(Box::new(tls)))
                }
            }
        };
        match tokio::time::timeout(DIAL_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }
}

fn tls_error(config: &BridgeConfig, path: &Path, message: impl std::fmt::Display) -> BridgeError {
    BridgeError::Tls {
        bridge: config.name.clone(),
        file: path.to_owned(),
        message: message.to_string(),
    }
}

fn connector(config: &BridgeConfig, base_dir: &Path) -> Result<TlsConnector, BridgeError> {
    let ca: Option<PathBuf> = config.cafile.as_ref().map(|p| base_dir.join(p));
    let roots = hermod_http::root_store(ca.as_deref()).map_err(|e| match e {
        RootsError::NoSystemBundle => {
            config.error("cafile", "no cafile and no system CA bundle found")
        }
        RootsError::File { path, reason } => tls_error(config, &path, reason),
        RootsError::Empty { path } => tls_error(config, &path, "no usable CA certificate"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config.error("transport", format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let tls = match (&config.certfile, &config.keyfile) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (base_dir.join(cert), base_dir.join(key));
            let chain = CertificateDer::pem_file_iter(&cert)
                .map_err(|e| tls_error(config, &cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_error(config, &cert, e))?;
            if chain.is_empty() {
                return Err(tls_error(config, &cert, "no certificate"));
            }
            let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| tls_error(config, &key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config.error("keyfile", format!("TLS client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(tls)))
}

/// The remote connection's stream.
#[derive(Debug)]
pub(crate) enum RemoteStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for RemoteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RemoteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
