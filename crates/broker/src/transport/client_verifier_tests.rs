//! Tests of the parent module.
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
