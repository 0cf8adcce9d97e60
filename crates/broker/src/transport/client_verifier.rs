//! The client certificate verifier of a TLS listener with `cafile`: rustls' webpki verifier, plus
//! X.509 **version 1** end-entity certificates, which webpki refuses (`UnsupportedCertVersion`)
//! but OpenSSL, hence Mosquitto, accepts. `openssl x509 -req -CA ca.crt -CAkey ca.key` without
//! `-extfile` makes such certificates; it is the recipe of mosquitto-tls(7) and many tutorials.
//!
//! Everything goes to webpki first. Only when webpki refuses the end-entity certificate because
//! of its version, and that certificate is version 1, is it verified here, the way OpenSSL
//! verifies a leaf issued directly by a trusted CA (no intermediates: a v1 certificate cannot
//! say it is a CA, so nothing can chain through one):
//!
//! - it must be signed by a certificate of `cafile` whose subject is its issuer, with one of the
//!   signature algorithms webpki accepts (the ring provider's: RSA PKCS#1 / PSS with SHA-2 and
//!   keys of 2048 bits or more, ECDSA P-256 / P-384, Ed25519; no SHA-1, as OpenSSL 3 at its
//!   default security level);
//! - that CA certificate must be allowed to issue certificates: basicConstraints cA=true, or, as
//!   OpenSSL allows for trust anchors, a version 1 self-signed root (no extensions at all);
//!   a keyUsage without keyCertSign refuses it; it must be within its validity period (OpenSSL
//!   checks the anchor's dates too; webpki does not, so this is stricter than the v3 path);
//! - the leaf must be within its validity period;
//! - with `crlfile`, a CRL issued by that CA and signed with its key (keyUsage, if present, must
//!   allow cRLSign) must be in `crlfile` and must not list the leaf's serial number; no CRL for
//!   that CA means unknown status, refused (Mosquitto's `X509_V_FLAG_CRL_CHECK`, and what the
//!   webpki verifier is configured to do). As there, a CRL past its nextUpdate is still used.
//! - a version 1 certificate carries no extensions (RFC 5280 4.1.2.9), so it has no extended key
//!   usage to check against clientAuth; one that carries extensions anyway is malformed and
//!   refused.
//!
//! The TLS 1.2 / 1.3 handshake signatures are verified by webpki too; for a version 1 certificate
//! (which webpki cannot parse) with the same algorithm table, from its SubjectPublicKeyInfo.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, PeerMisbehaved,
    SignatureScheme,
};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, SubjectPublicKeyInfoDer, UnixTime,
};
use tracing::warn;
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Version;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_BIT_STRING: u8 = 0x03;

/// Why a version 1 client certificate was refused, when no [`CertificateError`] variant says it.
/// (rustls shows `CertificateError::Other` with `{:?}`, so Debug is the message too.)
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
enum V1Refusal {
    #[error("X.509 v1 client certificate carries extensions (only version 3 may)")]
    Extensions,
    #[error("X.509 v1 client certificate: its two signature algorithm fields differ")]
    AlgorithmMismatch,
    #[error("X.509 v1 client certificate: issuing CA certificate in cafile cannot issue: {0}")]
    IssuerNotCa(&'static str),
    #[error(
        "X.509 v1 client certificate: issuing CA certificate in cafile is expired or not yet valid"
    )]
    IssuerNotValidNow,
}

impl fmt::Debug for V1Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<V1Refusal> for Error {
    fn from(r: V1Refusal) -> Self {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(r))))
    }
}

/// A SubjectPublicKeyInfo split into its AlgorithmIdentifier's contents (what
/// `SignatureVerificationAlgorithm::public_key_alg_id` is compared with) and its key bits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spki {
    alg: Vec<u8>,
    key: Vec<u8>,
}

/// A certificate of `cafile`, as needed to verify a version 1 certificate it issued.
#[derive(Debug)]
struct Ca {
    /// The subject Name, DER.
    subject: Vec<u8>,
    spki: Spki,
    not_before: i64,
    not_after: i64,
    /// Why it may not issue certificates; None when it may.
    not_a_ca: Option<&'static str>,
    /// The serial numbers (DER INTEGER contents) revoked by the CRLs of `crlfile` that this CA
    /// issued and signed; None when `crlfile` holds no such CRL.
    revoked: Option<HashSet<Vec<u8>>>,
}

/// webpki, plus version 1 end-entity certificates directly under a CA of `cafile`.
pub(super) struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    cas: Vec<Ca>,
    /// `crlfile` is set: the issuer of a v1 certificate must have a CRL in it.
    crl_check: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("webpki", &self.webpki)
            .field("cas", &self.cas.len())
            .field("crl_check", &self.crl_check)
            .finish_non_exhaustive()
    }
}

impl ClientVerifier {
    /// `webpki` is the verifier built from `cas` and `crls` (its `require_certificate` setting is
    /// what this verifier reports too); `algs` the provider's signature verification algorithms.
    pub(super) fn new(
        webpki: Arc<dyn ClientCertVerifier>,
        cas: &[CertificateDer<'_>],
        crls: &[CertificateRevocationListDer<'_>],
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        let cas = cas
            .iter()
            .filter_map(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
                Ca::from_cert(&cert, crls, &algs)
            })
            .collect();
        ClientVerifier {
            webpki,
            cas,
            crl_check: !crls.is_empty(),
            algs,
        }
    }

    /// Verifies a version 1 end-entity certificate (see the module documentation).
    fn verify_v1(
        &self,
        cert: &X509Certificate<'_>,
        der: &[u8],
        now: UnixTime,
    ) -> Result<(), Error> {
        if !cert.extensions().is_empty() {
            return Err(V1Refusal::Extensions.into());
        }
        let signed = split_signed(der).ok_or(CertificateError::BadEncoding)?;
        if cert.tbs_certificate.signature != cert.signature_algorithm {
            return Err(V1Refusal::AlgorithmMismatch.into());
        }
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        check_validity(
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
            now,
            now_secs,
        )?;
        let issuer = cert.issuer().as_raw();
        let mut error: Error = CertificateError::UnknownIssuer.into();
        for ca in self.cas.iter().filter(|ca| ca.subject == issuer) {
            // Only the CA whose key signed it says anything about it.
            if let Err(e) = verify_signed(&self.algs, &ca.spki, &signed) {
                error = e.into();
                continue;
            }
            if let Some(why) = ca.not_a_ca {
                return Err(V1Refusal::IssuerNotCa(why).into());
            }
            if !(ca.not_before..=ca.not_after).contains(&now_secs) {
                return Err(V1Refusal::IssuerNotValidNow.into());
            }
            if self.crl_check {
                match &ca.revoked {
                    None => return Err(CertificateError::UnknownRevocationStatus.into()),
                    Some(revoked) if revoked.contains(cert.raw_serial()) => {
                        return Err(CertificateError::Revoked.into());
                    }
                    Some(_) => {}
                }
            }
            return Ok(());
        }
        Err(error)
    }

    /// The end-entity certificate when it is version 1 and `error` is webpki refusing its version.
    fn v1_fallback<'a>(error: &Error, der: &'a [u8]) -> Option<X509Certificate<'a>> {
        if !is_unsupported_version(error) {
            return None;
        }
        match x509_parser::parse_x509_certificate(der) {
            Ok((rest, cert)) if rest.is_empty() && cert.version() == X509Version::V1 => Some(cert),
            _ => None,
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e) => match Self::v1_fallback(&e, end_entity.as_ref()) {
                Some(cert) => self
                    .verify_v1(&cert, end_entity.as_ref(), now)
                    .map(|()| ClientCertVerified::assertion()),
                None => Err(e),
            },
            ok => ok,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match self.webpki.verify_tls12_signature(message, cert, dss) {
            Err(e) => match Self::v1_fallback(&e, cert.as_ref()) {
                Some(parsed) => {
                    let spki =
                        split_spki(parsed.public_key().raw).ok_or(CertificateError::BadEncoding)?;
                    verify_tls12_with_spki(&self.algs, &spki, message, dss)
                }
                None => Err(e),
            },
            ok => ok,
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match self.webpki.verify_tls13_signature(message, cert, dss) {
            Err(e) => match Self::v1_fallback(&e, cert.as_ref()) {
                Some(parsed) => rustls::crypto::verify_tls13_signature_with_raw_key(
                    message,
                    &SubjectPublicKeyInfoDer::from(parsed.public_key().raw),
                    dss,
                    &self.algs,
                ),
                None => Err(e),
            },
            ok => ok,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.webpki.requires_raw_public_keys()
    }
}

/// Whether rustls' error is webpki's `UnsupportedCertVersion`: rustls has no variant for it and
/// wraps it as `InvalidCertificate(Other(OtherError(webpki::Error)))`.
fn is_unsupported_version(error: &Error) -> bool {
    match error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.as_ref().downcast_ref::<webpki::Error>()
                == Some(&webpki::Error::UnsupportedCertVersion)
        }
        _ => false,
    }
}

impl Ca {
    fn from_cert(
        cert: &X509Certificate<'_>,
        crls: &[CertificateRevocationListDer<'_>],
        algs: &WebPkiSupportedAlgorithms,
    ) -> Option<Ca> {
        let spki = split_spki(cert.public_key().raw)?;
        let subject = cert.subject().as_raw().to_vec();
        let v1_root = cert.version() == X509Version::V1
            && cert.extensions().is_empty()
            && cert.issuer().as_raw() == cert.subject().as_raw();
        let key_usage = cert.key_usage();
        let not_a_ca = match (cert.basic_constraints(), &key_usage) {
            (Err(_), _) | (_, Err(_)) => Some("malformed basicConstraints or keyUsage"),
            (_, Ok(Some(ku))) if !ku.value.key_cert_sign() => Some("keyUsage lacks keyCertSign"),
            (Ok(Some(bc)), _) if bc.value.ca => None,
            (Ok(Some(_)), _) => Some("basicConstraints cA is false"),
            (Ok(None), _) if v1_root => None,
            (Ok(None), _) => Some("no basicConstraints cA=true (and not a version 1 root)"),
        };
        let may_sign_crls = !matches!(&key_usage, Ok(Some(ku)) if !ku.value.crl_sign());
        let mut revoked: Option<HashSet<Vec<u8>>> = None;
        for crl_der in crls {
            let Ok((_, crl)) = x509_parser::parse_x509_crl(crl_der.as_ref()) else {
                continue;
            };
            if crl.issuer().as_raw() != subject.as_slice() {
                continue;
            }
            let verified = split_signed(crl_der.as_ref())
                .is_some_and(|signed| verify_signed(algs, &spki, &signed).is_ok());
            if !verified || !may_sign_crls {
                warn!(issuer = %cert.subject(), "crlfile: a CRL names this CA as issuer but is not signed by it (or its keyUsage lacks cRLSign); ignored for X.509 v1 client certificates");
                continue;
            }
            revoked.get_or_insert_with(HashSet::new).extend(
                crl.iter_revoked_certificates()
                    .map(|r| r.raw_serial().to_vec()),
            );
        }
        Some(Ca {
            subject,
            spki,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            not_a_ca,
            revoked,
        })
    }
}

fn check_validity(
    not_before: i64,
    not_after: i64,
    now: UnixTime,
    now_secs: i64,
) -> Result<(), Error> {
    let at = |secs: i64| {
        u64::try_from(secs)
            .ok()
            .map(|s| UnixTime::since_unix_epoch(Duration::from_secs(s)))
    };
    if now_secs < not_before {
        return Err(match at(not_before) {
            Some(not_before) => CertificateError::NotValidYetContext {
                time: now,
                not_before,
            },
            None => CertificateError::NotValidYet,
        }
        .into());
    }
    if now_secs > not_after {
        return Err(match at(not_after) {
            Some(not_after) => CertificateError::ExpiredContext {
                time: now,
                not_after,
            },
            None => CertificateError::Expired,
        }
        .into());
    }
    Ok(())
}

/// A signed structure (certificate or CRL): the to-be-signed part (whole DER element), the
/// signature AlgorithmIdentifier's contents and the signature bits.
#[derive(Debug)]
struct Signed<'a> {
    tbs: &'a [u8],
    alg: &'a [u8],
    signature: &'a [u8],
}

/// Checks `signed` with the issuer's key, using the algorithm whose identifiers match both the
/// signature's and the key's (as webpki does).
fn verify_signed(
    algs: &WebPkiSupportedAlgorithms,
    issuer: &Spki,
    signed: &Signed<'_>,
) -> Result<(), CertificateError> {
    let mut known = false;
    for alg in algs.all {
        if alg.signature_alg_id().as_ref() != signed.alg {
            continue;
        }
        known = true;
        if alg.public_key_alg_id().as_ref() != issuer.alg.as_slice() {
            continue;
        }
        return alg
            .verify_signature(&issuer.key, signed.tbs, signed.signature)
            .map_err(|_| CertificateError::BadSignature);
    }
    Err(if known {
        CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id: signed.alg.to_vec(),
            public_key_algorithm_id: issuer.alg.clone(),
        }
    } else {
        CertificateError::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: signed.alg.to_vec(),
            supported_algorithms: algs.all.iter().map(|a| a.signature_alg_id()).collect(),
        }
    })
}

/// The TLS 1.2 CertificateVerify signature with the key of a certificate webpki cannot parse:
/// every algorithm of the scheme whose key type matches is tried, as rustls does.
fn verify_tls12_with_spki(
    algs: &WebPkiSupportedAlgorithms,
    spki: &Spki,
    message: &[u8],
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    let candidates = algs
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, candidates)| *candidates)
        .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
    for alg in candidates {
        if alg.public_key_alg_id().as_ref() != spki.alg.as_slice() {
            continue;
        }
        return alg
            .verify_signature(&spki.key, message, dss.signature())
            .map(|()| HandshakeSignatureValid::assertion())
            .map_err(|_| CertificateError::BadSignature.into());
    }
    Err(
        CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id: Vec::new(),
            public_key_algorithm_id: spki.alg.clone(),
        }
        .into(),
    )
}

/// One DER element at the start of some input.
#[derive(Debug, PartialEq, Eq)]
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    /// The whole element: tag, length and contents.
    whole: &'a [u8],
    /// The input after it.
    rest: &'a [u8],
}

/// The DER element at the start of `input`. Definite lengths only (DER), low tag numbers only
/// (all that certificates use here).
fn der_element(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, after_len) = after_tag.split_first()?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), after_len)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_len.len() < n {
            return None;
        }
        let (bytes, body) = after_len.split_at(n);
        if bytes.first() == Some(&0) {
            return None;
        }
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        (len, body)
    };
    if body.len() < len {
        return None;
    }
    let (contents, rest) = body.split_at(len);
    let whole = &input[..input.len() - rest.len()];
    Some(Element {
        tag,
        contents,
        whole,
        rest,
    })
}

/// `SEQUENCE { tbs SEQUENCE, signatureAlgorithm SEQUENCE, signature BIT STRING }`, the shape of
/// both a Certificate and a CertificateList, filling all of `der`.
fn split_signed(der: &[u8]) -> Option<Signed<'_>> {
    let Element {
        tag: TAG_SEQUENCE,
        contents: body,
        rest: [],
        ..
    } = der_element(der)?
    else {
        return None;
    };
    let Element {
        tag: TAG_SEQUENCE,
        whole: tbs,
        rest,
        ..
    } = der_element(body)?
    else {
        return None;
    };
    let (alg, signature) = algorithm_and_bits(rest)?;
    Some(Signed {
        tbs,
        alg,
        signature,
    })
}

/// `algorithm SEQUENCE, BIT STRING` filling all of `der` (the tail of a signed structure and
/// the whole body of a SubjectPublicKeyInfo): the algorithm's contents and the bit string's
/// bytes (whole bytes only, as signatures and keys are).
fn algorithm_and_bits(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let Element {
        tag: TAG_SEQUENCE,
        contents: alg,
        rest,
        ..
    } = der_element(der)?
    else {
        return None;
    };
    let Element {
        tag: TAG_BIT_STRING,
        contents: bits,
        rest: [],
        ..
    } = der_element(rest)?
    else {
        return None;
    };
    let (&0, bytes) = bits.split_first()? else {
        return None;
    };
    Some((alg, bytes))
}

/// `SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`.
fn split_spki(der: &[u8]) -> Option<Spki> {
    let Element {
        tag: TAG_SEQUENCE,
        contents: body,
        rest: [],
        ..
    } = der_element(der)?
    else {
        return None;
    };
    let (alg, key) = algorithm_and_bits(body)?;
    Some(Spki {
        alg: alg.to_vec(),
        key: key.to_vec(),
    })
}

#[cfg(test)]
#[path = "client_verifier_tests.rs"]
mod tests;
