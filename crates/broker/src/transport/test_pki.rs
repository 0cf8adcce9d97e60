//! Test certificates made with rcgen: a CA, a server certificate for localhost / 127.0.0.1,
//! client certificates (good, other CA, expired, revoked, SAN only), a CRL, and a second CA with
//! its own server certificate (for reload tests). Files are written to a temporary folder.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    date_time_ymd,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Transport, TransportSettings};

/// One end-entity certificate and its key.
pub(crate) struct Leaf {
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca_pem: String,
    pub(crate) other_ca_pem: String,
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
    pub(crate) ca_path: PathBuf,
    pub(crate) crl_path: PathBuf,
    other_cert_path: PathBuf,
    other_key_path: PathBuf,
    pub(crate) client: Leaf,
    pub(crate) foreign_client: Leaf,
    pub(crate) expired_client: Leaf,
    pub(crate) revoked_client: Leaf,
    pub(crate) san_only_client: Leaf,
}

fn ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: Option<&str>,
    sans: &[&str],
    serial: u64,
    server: bool,
    expired: bool,
) -> Leaf {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.serial_number = Some(SerialNumber::from(serial));
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    if expired {
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("sign");
    Leaf {
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, issuer) = ca("Hermod Test CA");
        let (other_ca_pem, other_issuer) = ca("Some Other CA");
        let server = leaf(
            &issuer,
            Some("localhost"),
            &["localhost", "127.0.0.1"],
            1,
            true,
            false,
        );
        let other_server = leaf(
            &other_issuer,
            Some("localhost"),
            &["localhost", "127.0.0.1"],
            2,
            true,
            false,
        );
        let client = leaf(&issuer, Some("device-42"), &[], 10, false, false);
        let foreign_client = leaf(&other_issuer, Some("intruder"), &[], 11, false, false);
        let expired_client = leaf(&issuer, Some("old-device"), &[], 12, false, true);
        let revoked_client = leaf(&issuer, Some("stolen-device"), &[], 13, false, false);
        let san_only_client = leaf(&issuer, None, &["sensor.example.com"], 14, false, false);

        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(13u64),
                revocation_time: date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("crl");

        let mut pki = Pki {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            ca_path: PathBuf::new(),
            crl_path: PathBuf::new(),
            other_cert_path: PathBuf::new(),
            other_key_path: PathBuf::new(),
            dir,
            ca_pem,
            other_ca_pem,
            client,
            foreign_client,
            expired_client,
            revoked_client,
            san_only_client,
        };
        pki.cert_path = pki.write("server.pem", &server.cert_pem);
        pki.key_path = pki.write("server.key", &server.key_pem);
        pki.ca_path = pki.write("ca.pem", &pki.ca_pem.clone());
        pki.crl_path = pki.write("ca.crl", &crl.pem().expect("crl pem"));
        pki.other_cert_path = pki.write("other-server.pem", &other_server.cert_pem);
        pki.other_key_path = pki.write("other-server.key", &other_server.key_pem);
        pki
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    /// `tls` (or `wss` if `ws`) with the server certificate, no client certificates.
    pub(crate) fn tls_settings(&self, ws: bool) -> TransportSettings {
        TransportSettings {
            transport: if ws { Transport::Wss } else { Transport::Tls },
            certfile: Some(self.cert_path.clone()),
            keyfile: Some(self.key_path.clone()),
            ..Default::default()
        }
    }

    /// `tls` with cafile + crlfile; `require` sets require_certificate and
    /// use_identity_as_username.
    pub(crate) fn mtls_settings(&self, require: bool) -> TransportSettings {
        TransportSettings {
            cafile: Some(self.ca_path.clone()),
            crlfile: Some(self.crl_path.clone()),
            require_certificate: require,
            use_identity_as_username: require,
            ..self.tls_settings(false)
        }
    }

    /// `tls` with the server certificate of the other CA.
    pub(crate) fn second_server_settings(&self) -> TransportSettings {
        TransportSettings {
            certfile: Some(self.other_cert_path.clone()),
            keyfile: Some(self.other_key_path.clone()),
            ..self.tls_settings(false)
        }
    }
}

/// A rustls client trusting `ca_pem`, presenting `cert` if given, offering `alpn`.
pub(crate) fn client_config(ca_pem: &str, cert: Option<&Leaf>, alpn: &[&[u8]]) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("ca pem")).expect("add root");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("versions")
            .with_root_certificates(roots);
    let mut config = match cert {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.cert_der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key pem"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
