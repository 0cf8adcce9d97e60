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
    let Element {
        tag: TAG_SEQUENCE,
        contents: alg,
        rest,
        ..
    } = der_element(rest)?
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
    let (&0, signature) = bits.split_first()? else {
        return None;
    };
    Some(Signed {
        tbs,
        alg,
        signature,
    })
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
    let Element {
        tag: TAG_SEQUENCE,
        contents: alg,
        rest,
        ..
    } = der_element(body)?
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
    let (&0, key) = bits.split_first()? else {
        return None;
    };
    Some(Spki {
        alg: alg.to_vec(),
        key: key.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    //! Version 1 certificates are assembled here from DER pieces (rcgen only makes version 3)
    //! and signed with rcgen keys (ECDSA P-256); the integration tests use `openssl` (RSA too).

    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, PublicKeyData, RevokedCertParams, SerialNumber, SigningKey,
        date_time_ymd,
    };
    use rustls::RootCertStore;
    use rustls::server::WebPkiClientVerifier;

    use super::*;

    /// ecdsa-with-SHA256, the AlgorithmIdentifier of rcgen's default key type.
    const ECDSA_SHA256: &[u8] = &[
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];

    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(contents);
        out
    }

    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        der(TAG_SEQUENCE, &parts.concat())
    }

    /// `CN=<cn>`.
    fn name(cn: &str) -> Vec<u8> {
        let attr = seq(&[&der(0x06, &[0x55, 0x04, 0x03]), &der(0x0c, cn.as_bytes())]);
        seq(&[&der(0x31, &attr)])
    }

    /// UTCTime Jan 1st of `year` (1950..2049).
    fn jan1(year: u32) -> Vec<u8> {
        der(0x17, format!("{:02}0101000000Z", year % 100).as_bytes())
    }

    /// A CA: self-signed, version 3, basicConstraints cA=true (or not, per `ca`), and its key.
    struct TestCa {
        der: CertificateDer<'static>,
        key: KeyPair,
        params: CertificateParams,
    }

    impl TestCa {
        fn new(cn: &str, ca: IsCa, years: (i32, i32)) -> TestCa {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = ca;
            params.not_before = date_time_ymd(years.0, 1, 1);
            params.not_after = date_time_ymd(years.1, 1, 1);
            let der = params.self_signed(&key).expect("CA").der().clone();
            TestCa { der, key, params }
        }

        fn good(cn: &str) -> TestCa {
            TestCa::new(cn, IsCa::Ca(BasicConstraints::Unconstrained), (2020, 2049))
        }

        fn subject(&self) -> Vec<u8> {
            let (_, cert) = x509_parser::parse_x509_certificate(self.der.as_ref()).expect("CA");
            cert.subject().as_raw().to_vec()
        }

        fn crl(&self, revoked: &[u8]) -> CertificateRevocationListDer<'static> {
            CertificateRevocationListParams {
                this_update: date_time_ymd(2024, 1, 1),
                next_update: date_time_ymd(2040, 1, 1),
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: revoked
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from(u64::from(*s)),
                        revocation_time: date_time_ymd(2024, 1, 1),
                        reason_code: None,
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&Issuer::from_params(&self.params, &self.key))
            .expect("crl")
            .der()
            .clone()
        }
    }

    /// What a version 1 certificate is made of.
    struct V1<'a> {
        issuer: Vec<u8>,
        signer: &'a KeyPair,
        subject: Vec<u8>,
        key: &'a KeyPair,
        serial: u8,
        years: (u32, u32),
        extensions: Option<Vec<u8>>,
    }

    impl V1<'_> {
        fn build(&self) -> CertificateDer<'static> {
            let mut tbs = [
                der(0x02, &[self.serial]),
                ECDSA_SHA256.to_vec(),
                self.issuer.clone(),
                seq(&[&jan1(self.years.0), &jan1(self.years.1)]),
                self.subject.clone(),
                self.key.subject_public_key_info(),
            ]
            .concat();
            if let Some(ext) = &self.extensions {
                tbs.extend(der(0xa3, ext));
            }
            let tbs = der(TAG_SEQUENCE, &tbs);
            let sig = self.signer.sign(&tbs).expect("sign");
            let bits = [&[0u8][..], &sig].concat();
            CertificateDer::from(seq(&[&tbs, ECDSA_SHA256, &der(TAG_BIT_STRING, &bits)]))
        }
    }

    /// A v1 leaf "device-1" (serial 7, valid 2020..2049) signed by `ca`.
    fn v1_leaf<'a>(ca: &'a TestCa, key: &'a KeyPair) -> V1<'a> {
        V1 {
            issuer: ca.subject(),
            signer: &ca.key,
            subject: name("device-1"),
            key,
            serial: 7,
            years: (2020, 2049),
            extensions: None,
        }
    }

    fn verifier(
        cas: &[&CertificateDer<'static>],
        crls: &[CertificateRevocationListDer<'static>],
    ) -> ClientVerifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots.add((*ca).clone()).expect("root");
        }
        let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(crls.to_vec())
            .only_check_end_entity_revocation()
            .build()
            .expect("webpki verifier");
        let cas: Vec<CertificateDer<'static>> = cas.iter().map(|c| (*c).clone()).collect();
        ClientVerifier::new(
            webpki,
            &cas,
            crls,
            provider.signature_verification_algorithms,
        )
    }

    fn verify(v: &ClientVerifier, leaf: &CertificateDer<'_>) -> Result<(), Error> {
        v.verify_client_cert(leaf, &[], UnixTime::now()).map(|_| ())
    }

    fn refusal(e: &Error) -> Option<V1Refusal> {
        match e {
            Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.as_ref().downcast_ref::<V1Refusal>().cloned()
            }
            _ => None,
        }
    }

    #[test]
    fn webpki_refuses_v1_with_other_unsupported_cert_version() {
        let ca = TestCa::good("CA");
        let key = KeyPair::generate().expect("key");
        let leaf = v1_leaf(&ca, &key).build();
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).expect("parses");
        assert_eq!(parsed.version(), X509Version::V1);
        let err = verifier(&[&ca.der], &[])
            .webpki
            .verify_client_cert(&leaf, &[], UnixTime::now())
            .expect_err("webpki refuses v1");
        assert!(is_unsupported_version(&err), "{err:?}");
        assert_eq!(
            err.to_string(),
            "invalid peer certificate: Other(OtherError(UnsupportedCertVersion))"
        );
        assert!(!is_unsupported_version(
            &CertificateError::UnknownIssuer.into()
        ));
    }

    #[test]
    fn v1_leaf_directly_under_a_ca_is_accepted_and_v3_still_goes_to_webpki() {
        let ca = TestCa::good("CA");
        let key = KeyPair::generate().expect("key");
        let v = verifier(&[&ca.der], &[]);
        verify(&v, &v1_leaf(&ca, &key).build()).expect("v1 leaf accepted");
        assert!(v.client_auth_mandatory() && v.offer_client_auth());
        assert_eq!(v.root_hint_subjects().len(), 1);
        // A version 3 leaf (rcgen) of the same CA: webpki's answer.
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let v3 = params
            .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
            .expect("v3");
        verify(&v, v3.der()).expect("v3 leaf accepted by webpki");
        let other = TestCa::good("Other CA");
        let v3_other = params
            .signed_by(&key, &Issuer::from_params(&other.params, &other.key))
            .expect("v3");
        assert_eq!(
            verify(&v, v3_other.der()).expect_err("unknown CA"),
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn v1_leaf_refusals() {
        let ca = TestCa::good("CA");
        let other = TestCa::good("Other CA");
        let key = KeyPair::generate().expect("key");
        let v = verifier(&[&ca.der], &[]);

        let expired = V1 {
            years: (2000, 2001),
            ..v1_leaf(&ca, &key)
        };
        let err = verify(&v, &expired.build()).expect_err("expired");
        assert!(
            matches!(
                err,
                Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{err:?}"
        );
        let future = V1 {
            years: (2048, 2049),
            ..v1_leaf(&ca, &key)
        };
        assert!(matches!(
            verify(&v, &future.build()),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidYetContext { .. }
            ))
        ));

        // Signed by another CA under its own name, and under the trusted CA's name.
        assert_eq!(
            verify(&v, &v1_leaf(&other, &key).build()).expect_err("other CA"),
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        let forged = V1 {
            signer: &other.key,
            ..v1_leaf(&ca, &key)
        };
        assert_eq!(
            verify(&v, &forged.build()).expect_err("forged issuer name"),
            Error::InvalidCertificate(CertificateError::BadSignature)
        );

        // Self-signed, not in cafile.
        let self_signed = V1 {
            issuer: name("device-1"),
            signer: &key,
            ..v1_leaf(&ca, &key)
        };
        assert_eq!(
            verify(&v, &self_signed.build()).expect_err("self-signed"),
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );

        // One byte of the signature flipped.
        let mut tampered = v1_leaf(&ca, &key).build().as_ref().to_vec();
        let last = tampered.len() - 3;
        tampered[last] ^= 0x01;
        assert_eq!(
            verify(&v, &CertificateDer::from(tampered)).expect_err("tampered"),
            Error::InvalidCertificate(CertificateError::BadSignature)
        );

        // One byte of the signed part changed (the CN), signature unchanged.
        let good = v1_leaf(&ca, &key).build().as_ref().to_vec();
        let at = good
            .windows(8)
            .position(|w| w == b"device-1")
            .expect("CN in the DER");
        let mut renamed = good.clone();
        renamed[at + 7] = b'2';
        assert_eq!(
            verify(&v, &CertificateDer::from(renamed)).expect_err("renamed"),
            Error::InvalidCertificate(CertificateError::BadSignature)
        );

        // Extensions in a version 1 certificate (here a critical-less EKU serverAuth).
        let eku = seq(&[&seq(&[
            &der(0x06, &[0x55, 0x1d, 0x25]),
            &der(
                0x04,
                &seq(&[&der(
                    0x06,
                    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01],
                )]),
            ),
        ])]);
        let with_ext = V1 {
            extensions: Some(eku),
            ..v1_leaf(&ca, &key)
        };
        let err = verify(&v, &with_ext.build()).expect_err("extensions");
        assert_eq!(refusal(&err), Some(V1Refusal::Extensions), "{err:?}");

        // Truncated DER: webpki's BadEncoding, no fallback.
        let good = v1_leaf(&ca, &key).build();
        assert_eq!(
            verify(
                &v,
                &CertificateDer::from(&good.as_ref()[..good.as_ref().len() - 1])
            )
            .expect_err("truncated"),
            Error::InvalidCertificate(CertificateError::BadEncoding)
        );
    }

    #[test]
    fn issuing_ca_must_be_a_valid_ca() {
        let key = KeyPair::generate().expect("key");
        for (what, ca, expected) in [
            (
                "no basicConstraints",
                TestCa::new("CA", IsCa::NoCa, (2020, 2049)),
                V1Refusal::IssuerNotCa("no basicConstraints cA=true (and not a version 1 root)"),
            ),
            (
                "cA=false",
                TestCa::new("CA", IsCa::ExplicitNoCa, (2020, 2049)),
                V1Refusal::IssuerNotCa("basicConstraints cA is false"),
            ),
            (
                "expired CA",
                TestCa::new(
                    "CA",
                    IsCa::Ca(BasicConstraints::Unconstrained),
                    (2000, 2001),
                ),
                V1Refusal::IssuerNotValidNow,
            ),
        ] {
            let v = verifier(&[&ca.der], &[]);
            let err = verify(&v, &v1_leaf(&ca, &key).build()).expect_err(what);
            assert_eq!(refusal(&err), Some(expected), "{what}: {err:?}");
        }

        let mut with_ku = TestCa::good("CA");
        with_ku.params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        with_ku.der = with_ku
            .params
            .self_signed(&with_ku.key)
            .expect("CA")
            .der()
            .clone();
        let err = verify(
            &verifier(&[&with_ku.der], &[]),
            &v1_leaf(&with_ku, &key).build(),
        )
        .expect_err("keyUsage without keyCertSign");
        assert_eq!(
            refusal(&err),
            Some(V1Refusal::IssuerNotCa("keyUsage lacks keyCertSign"))
        );
    }

    #[test]
    fn version_1_self_signed_root_in_cafile_may_issue() {
        let root_key = KeyPair::generate().expect("key");
        let root = V1 {
            issuer: name("V1 Root"),
            signer: &root_key,
            subject: name("V1 Root"),
            key: &root_key,
            serial: 1,
            years: (2020, 2049),
            extensions: None,
        }
        .build();
        let key = KeyPair::generate().expect("key");
        let leaf = V1 {
            issuer: name("V1 Root"),
            signer: &root_key,
            subject: name("device-1"),
            key: &key,
            serial: 2,
            years: (2020, 2049),
            extensions: None,
        }
        .build();
        verify(&verifier(&[&root], &[]), &leaf).expect("leaf of a v1 root");
    }

    #[test]
    fn crlfile_revokes_and_requires_a_crl_of_the_issuer() {
        let ca = TestCa::good("CA");
        let other = TestCa::good("Other CA");
        let key = KeyPair::generate().expect("key");
        let leaf = v1_leaf(&ca, &key).build();

        let v = verifier(&[&ca.der], &[ca.crl(&[7])]);
        assert_eq!(
            verify(&v, &leaf).expect_err("revoked"),
            Error::InvalidCertificate(CertificateError::Revoked)
        );
        verify(&verifier(&[&ca.der], &[ca.crl(&[8, 9])]), &leaf).expect("not listed");
        // Only another CA's CRL: status unknown, refused as webpki does for v3.
        let v = verifier(&[&ca.der, &other.der], &[other.crl(&[])]);
        assert_eq!(
            verify(&v, &leaf).expect_err("no CRL for the issuer"),
            Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
        );
        // A CRL in the CA's name but signed by another key does not count: the other CA's CRL
        // with its issuer Name replaced by the CA's (signature left as it was).
        let other_crl = other.crl(&[]);
        let (other_name, ca_name) = (other.subject(), ca.subject());
        let body = der_element(other_crl.as_ref()).expect("crl").contents;
        let tbs = der_element(body).expect("tbs");
        let (tbs_body, after_tbs) = (tbs.contents, tbs.rest);
        let pos = tbs_body
            .windows(other_name.len())
            .position(|w| w == other_name.as_slice())
            .expect("issuer in the CRL");
        let tbs_body = [
            &tbs_body[..pos],
            &ca_name,
            &tbs_body[pos + other_name.len()..],
        ]
        .concat();
        let rebuilt = der(
            TAG_SEQUENCE,
            &[der(TAG_SEQUENCE, &tbs_body).as_slice(), after_tbs].concat(),
        );
        let v = verifier(&[&ca.der], &[CertificateRevocationListDer::from(rebuilt)]);
        assert_eq!(
            verify(&v, &leaf).expect_err("forged CRL ignored: status unknown"),
            Error::InvalidCertificate(CertificateError::UnknownRevocationStatus)
        );
    }

    #[test]
    fn der_reader_is_strict() {
        assert_eq!(
            der_element(&[0x04, 0x01, 0xaa, 0xbb]),
            Some(Element {
                tag: 0x04,
                contents: &[0xaa],
                whole: &[0x04, 0x01, 0xaa],
                rest: &[0xbb]
            })
        );
        let long = der(0x04, &[7u8; 200]);
        let e = der_element(&long).expect("long form");
        assert_eq!(
            (e.tag, e.contents.len(), e.whole.len(), e.rest.len()),
            (4, 200, 203, 0)
        );
        assert_eq!(
            der_element(&[0x04, 0x81, 0x05, 0, 0, 0, 0, 0]),
            None,
            "non-minimal"
        );
        assert_eq!(der_element(&[0x04, 0x80, 0x00, 0x00]), None, "indefinite");
        assert_eq!(der_element(&[0x04, 0x03, 0x00]), None, "truncated");
        assert_eq!(der_element(&[0x1f, 0x01, 0x00]), None, "high tag number");
        assert_eq!(der_element(&[]), None);
        assert!(split_signed(b"garbage").is_none());
        assert!(split_spki(&seq(&[&seq(&[]), &der(TAG_BIT_STRING, &[1, 0xff])])).is_none());
        assert_eq!(
            split_spki(&seq(&[&seq(&[&[5, 0]]), &der(TAG_BIT_STRING, &[0, 0xff])])),
            Some(Spki {
                alg: vec![5, 0],
                key: vec![0xff]
            })
        );
    }
}
