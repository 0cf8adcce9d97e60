//! TLS for an https `--url`: rustls with the ring provider, trusting `--cacert` or the
//! system's CA bundle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;

/// Trust `cafile` (PEM: a CA, or a self-signed server certificate), else the system's bundle.
pub(super) fn client_config(cafile: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (file, from_system) = match cafile {
        Some(f) => (f.to_path_buf(), false),
        None => (system_bundle().ok_or_else(|| {
            "https: no CA bundle found on this system; pass the CA (or the server's self-signed \
             certificate) with --cacert FILE"
                .to_owned()
        })?, true),
    };
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("--cacert {}: {e}", file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--cacert {}: {e}", file.display()))?;
        // A system bundle may hold a certificate rustls cannot use; skip it there.
        if let Err(e) = roots.add(cert)
            && !from_system
        {
            return Err(format!("--cacert {}: {e}", file.display()));
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "--cacert {}: no PEM certificate in the file",
            file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
