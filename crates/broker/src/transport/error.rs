//! [`TransportError`] (bad settings, unusable files, failed handshakes) and [`FileProblem`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(doc)]
use super::{Acceptor, TransportSettings};

/// What is wrong with a certificate, key or CRL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// The file does not exist.
    Missing,
    /// It exists but could not be read.
    Unreadable(String),
    /// No PEM section in it, or malformed PEM.
    NotPem(String),
    /// No `CERTIFICATE` section (certfile).
    NoCertificate,
    /// No `PRIVATE KEY` / `RSA PRIVATE KEY` / `EC PRIVATE KEY` section (keyfile).
    NoPrivateKey,
    /// The private key is encrypted: not supported (Mosquitto would prompt for a passphrase).
    EncryptedKey,
    /// The key could not be used (unsupported algorithm, malformed).
    BadKey(String),
    /// The key is not the one of the certificate's public key.
    KeyMismatch,
    /// A certificate does not parse.
    BadCertificate(String),
    /// No `CERTIFICATE` section (cafile).
    NoCaCertificates,
    /// No `X509 CRL` section (crlfile).
    NoCrl,
    /// A CRL does not parse.
    BadCrl(String),
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Missing => f.write_str("file not found"),
            FileProblem::Unreadable(e) => write!(f, "cannot read: {e}"),
            FileProblem::NotPem(e) => write!(f, "not PEM: {e}"),
            FileProblem::NoCertificate => {
                f.write_str("no certificate (-----BEGIN CERTIFICATE-----) in file")
            }
            FileProblem::NoPrivateKey => {
                f.write_str("no private key (-----BEGIN PRIVATE KEY----- / RSA / EC) in file")
            }
            FileProblem::EncryptedKey => {
                f.write_str("private key is encrypted; passphrase-protected keys are not supported")
            }
            FileProblem::BadKey(e) => write!(f, "unusable private key: {e}"),
            FileProblem::KeyMismatch => {
                f.write_str("private key does not match the certificate (certfile)")
            }
            FileProblem::BadCertificate(e) => write!(f, "invalid certificate: {e}"),
            FileProblem::NoCaCertificates => {
                f.write_str("no CA certificate (-----BEGIN CERTIFICATE-----) in file")
            }
            FileProblem::NoCrl => f.write_str("no CRL (-----BEGIN X509 CRL-----) in file"),
            FileProblem::BadCrl(e) => write!(f, "CRL cannot be parsed: {e}"),
        }
    }
}

/// Errors of configuration ([`TransportSettings::validate`], [`Acceptor::new`],
/// [`Acceptor::reload`]) and of one connection's handshake ([`Acceptor::accept`]).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A bad key combination in the listener table.
    #[error("{key}: {reason}")]
    Invalid {
        /// The config key at fault.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A certificate / key / CA / CRL file is unusable.
    #[error("{key} {}: {problem}", path.display())]
    File {
        /// `certfile`, `keyfile`, `cafile` or `crlfile`.
        key: &'static str,
        /// The path as given (resolved by the caller).
        path: PathBuf,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// rustls refused the assembled configuration (files individually fine).
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// The handshake (PROXY + TLS + WebSocket) did not finish in time.
    #[error("handshake not completed within {0:?}")]
    Timeout(Duration),
    /// Missing or invalid PROXY protocol header.
    #[error("PROXY protocol: {0}")]
    Proxy(String),
    /// TLS handshake failed (bad client certificate, no common version, not TLS at all...).
    #[error("TLS handshake: {0}")]
    TlsHandshake(io::Error),
    /// WebSocket upgrade refused or failed.
    #[error("WebSocket handshake: {0}")]
    WebSocket(String),
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

impl TransportError {
    pub(super) fn file(key: &'static str, path: &Path, problem: FileProblem) -> Self {
        TransportError::File {
            key,
            path: path.to_owned(),
            problem,
        }
    }

    /// Whether this is a TLS handshake that one side refused: rustls refused the client (its
    /// certificate, no common protocol version or cipher suite, not TLS at all...) or the client
    /// refused the server (an alert, e.g. it does not trust the server's certificate). Worth a
    /// warning: the client is misconfigured or the listener is. A connection closed or reset
    /// before the handshake ended (port scanners, TCP health checks) is not a refusal, nor is a
    /// timeout, a PROXY header or a WebSocket upgrade problem.
    pub fn is_tls_refusal(&self) -> bool {
        match self {
            TransportError::TlsHandshake(e) => {
                e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_level_errors_are_refusals() {
        let refused = TransportError::TlsHandshake(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(refused.is_tls_refusal());
        let alert = TransportError::TlsHandshake(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        ));
        assert!(alert.is_tls_refusal(), "the client refused the server");
        for quiet in [
            TransportError::TlsHandshake(io::ErrorKind::UnexpectedEof.into()),
            TransportError::TlsHandshake(io::ErrorKind::ConnectionReset.into()),
            TransportError::Timeout(Duration::from_secs(10)),
            TransportError::Proxy("x".into()),
            TransportError::WebSocket("x".into()),
            TransportError::Io(io::ErrorKind::BrokenPipe.into()),
        ] {
            assert!(!quiet.is_tls_refusal(), "{quiet}");
        }
    }
}
