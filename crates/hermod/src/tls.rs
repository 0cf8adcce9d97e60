//! Client-side TLS configurations (rustls, ring provider) for `hermod ctl` (an https `--url`)
//! and `hermod bench` (`--cafile`, `--cert`/`--key`, `--insecure`, as mosquitto_pub's).
//!
//! Every error is one line naming the flag and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;

/// What to trust and what to present.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientTls<'a> {
    /// PEM CA certificates (or a self-signed server certificate); `None`: the system's bundle.
    pub(crate) cafile: Option<&'a Path>,
    /// The flag that names the CA file, for messages (`--cacert`, `--cafile`).
    pub(crate) ca_flag: &'a str,
    /// Client certificate chain and its private key (PEM), for mutual TLS.
    pub(crate) identity: Option<(&'a Path, &'a Path)>,
    /// Verify the server's chain but not that it names the host (mosquitto's `--insecure`).
    pub(crate) insecure: bool,
}

impl<'a> ClientTls<'a> {
    /// Trust `cafile`, else the system's bundle; no client certificate; host names checked.
    pub(crate) fn trusting(cafile: Option<&'a Path>, ca_flag: &'a str) -> Self {
        Self {
            cafile,
            ca_flag,
            identity: None,
            insecure: false,
        }
    }
}

/// Builds the rustls client configuration for `tls`.
pub(crate) fn client_config(tls: &ClientTls<'_>) -> Result<rustls::ClientConfig, String> {
    let flag = tls.ca_flag;
    let (file, from_system) = match tls.cafile {
        Some(f) => (f.to_path_buf(), false),
        None => (
            system_bundle().ok_or_else(|| {
                format!(
                    "no CA bundle found on this system; pass the CA (or the server's self-signed \
                 certificate) with {flag} FILE"
                )
            })?,
            true,
        ),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("{flag} {}: {e}", file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{flag} {}: {e}", file.display()))?;
        // A system bundle may hold a certificate rustls cannot use; skip it there.
        if let Err(e) = roots.add(cert)
            && !from_system
        {
            return Err(format!("{flag} {}: {e}", file.display()));
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM certificate in the file",
            file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let builder = if tls.insecure {
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("{flag} {}: {e}", file.display()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyHostName(verifier)))
    } else {
        builder.with_root_certificates(roots)
    };
    match tls.identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = load_chain(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    format!("--key {}: no PEM private key in the file", key.display())
                }
                e => format!("--key {}: {e}", key.display()),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--cert {} / --key: {e}", cert.display()))
        }
    }
}

/// The client certificate chain of `--cert`.
fn load_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--cert {}: no PEM certificate in the file",
            cert.display()
        ));
    }
    Ok(chain)
}

/// `SSL_CERT_FILE`, else the usual CA bundle locations.
fn system_bundle() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(f));
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
        "/etc/ssl/ca-bundle.pem",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// `--insecure`: the chain must lead to a trusted CA as usual; only a certificate that does not
/// name the host we connected to is accepted anyway.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
