//! Loading and checking the certificate chain, private key, CA and CRL files of a TLS listener;
//! each problem is reported naming the key, the file and what is wrong.

use std::path::Path;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs1KeyDer,
    PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use tracing::warn;

use crate::transport::{FileProblem, TransportError};

/// A file's PEM sections (all kinds), in order.
type Sections = Vec<(SectionKind, Vec<u8>)>;

/// Reads `path`; returns its bytes and its PEM sections.
fn read_pem(key: &'static str, path: &Path) -> Result<(Vec<u8>, Sections), TransportError> {
    let data = std::fs::read(path).map_err(|e| {
        let problem = if e.kind() == std::io::ErrorKind::NotFound {
            FileProblem::Missing
        } else {
            FileProblem::Unreadable(e.to_string())
        };
        TransportError::file(key, path, problem)
    })?;
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::file(key, path, FileProblem::NotPem(e.to_string())))?;
    if sections.is_empty() && !contains(&data, b"-----BEGIN ") {
        return Err(TransportError::file(
            key,
            path,
            FileProblem::NotPem(
                "no \"-----BEGIN\" line (a DER file must be converted to PEM)".into(),
            ),
        ));
    }
    Ok((data, sections))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn certificates(sections: Sections) -> Vec<CertificateDer<'static>> {
    sections
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect()
}

pub(super) fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let (_, sections) = read_pem("certfile", path)?;
    let chain = certificates(sections);
    let Some(leaf) = chain.first() else {
        return Err(TransportError::file(
            "certfile",
            path,
            FileProblem::NoCertificate,
        ));
    };
    for cert in &chain {
        if let Err(e) = x509_parser::parse_x509_certificate(cert.as_ref()) {
            return Err(TransportError::file(
                "certfile",
                path,
                FileProblem::BadCertificate(e.to_string()),
            ));
        }
    }
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf.as_ref())
        && !parsed.validity().is_valid()
    {
        warn!(certfile = %path.display(), not_after = %parsed.validity().not_after, "server certificate is not valid now (expired or not yet valid)");
    }
    Ok(chain)
}

pub(super) fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let (data, sections) = read_pem("keyfile", path)?;
    let key = sections.into_iter().find_map(|(kind, der)| match kind {
        SectionKind::PrivateKey => Some(PrivateKeyDer::from(PrivatePkcs8KeyDer::from(der))),
        SectionKind::RsaPrivateKey => Some(PrivateKeyDer::from(PrivatePkcs1KeyDer::from(der))),
        SectionKind::EcPrivateKey => Some(PrivateKeyDer::from(PrivateSec1KeyDer::from(der))),
        _ => None,
    });
    match key {
        Some(key) => Ok(key),
        None if contains(&data, b"ENCRYPTED") => Err(TransportError::file(
            "keyfile",
            path,
            FileProblem::EncryptedKey,
        )),
        None => Err(TransportError::file(
            "keyfile",
            path,
            FileProblem::NoPrivateKey,
        )),
    }
}

pub(super) fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    keyfile: &Path,
    provider: &CryptoProvider,
) -> Result<(), TransportError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            TransportError::file("keyfile", keyfile, FileProblem::BadKey(e.to_string()))
        })?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(
            TransportError::file("keyfile", keyfile, FileProblem::KeyMismatch),
        ),
        Err(e) => Err(TransportError::file(
            "keyfile",
            keyfile,
            FileProblem::BadKey(e.to_string()),
        )),
    }
}

/// The certificates of `cafile`.
pub(super) struct Roots {
    pub(super) store: RootCertStore,
    /// The CA subjects (raw DER) to sanity-check CRL issuers against.
    pub(super) subjects: Vec<Vec<u8>>,
    pub(super) certs: Vec<CertificateDer<'static>>,
}

pub(super) fn load_roots(path: &Path) -> Result<Roots, TransportError> {
    let (_, sections) = read_pem("cafile", path)?;
    let certs = certificates(sections);
    if certs.is_empty() {
        return Err(TransportError::file(
            "cafile",
            path,
            FileProblem::NoCaCertificates,
        ));
    }
    let mut roots = RootCertStore::empty();
    let mut subjects = Vec::with_capacity(certs.len());
    for cert in certs.iter().cloned() {
        match x509_parser::parse_x509_certificate(cert.as_ref()) {
            Ok((_, parsed)) => subjects.push(parsed.subject().as_raw().to_vec()),
            Err(e) => {
                return Err(TransportError::file(
                    "cafile",
                    path,
                    FileProblem::BadCertificate(e.to_string()),
                ));
            }
        }
        roots.add(cert).map_err(|e| {
            TransportError::file("cafile", path, FileProblem::BadCertificate(e.to_string()))
        })?;
    }
    Ok(Roots {
        store: roots,
        subjects,
        certs,
    })
}

pub(super) fn load_crls(
    path: &Path,
    ca_subjects: &[Vec<u8>],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TransportError> {
    let (_, sections) = read_pem("crlfile", path)?;
    let crls: Vec<CertificateRevocationListDer<'static>> = sections
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Crl)
        .map(|(_, der)| CertificateRevocationListDer::from(der))
        .collect();
    if crls.is_empty() {
        return Err(TransportError::file("crlfile", path, FileProblem::NoCrl));
    }
    for crl in &crls {
        let (_, parsed) = x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| {
            TransportError::file("crlfile", path, FileProblem::BadCrl(e.to_string()))
        })?;
        if !ca_subjects
            .iter()
            .any(|s| s.as_slice() == parsed.issuer().as_raw())
        {
            // Could be the CRL of an intermediate CA that clients send in their chain; but if it
            // is a mistake every client of that CA is refused (revocation status unknown).
            warn!(crlfile = %path.display(), issuer = %parsed.issuer(), "CRL issuer is not a certificate of cafile");
        }
        if let Some(next) = parsed.next_update()
            && next < x509_parser::time::ASN1Time::now()
        {
            warn!(crlfile = %path.display(), next_update = %next, "CRL is past its nextUpdate; still used, refresh it");
        }
    }
    Ok(crls)
}
