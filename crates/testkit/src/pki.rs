//! A test PKI made with rcgen: a CA, a server certificate for localhost / 127.0.0.1, client
//! certificates (good, second identity, other CA, expired, revoked, SAN only), a CRL revoking the
//! revoked one, and a second CA with its own server certificate.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    date_time_ymd,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One certificate and its key.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The test PKI (see the module docs); everything in memory, [`Pki::write_to`] writes files.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_pem: String,
    /// CN "localhost", SANs localhost and 127.0.0.1, serial 1, signed by the CA.
    pub server: Leaf,
    /// CN "device-42", serial 10, signed by the CA.
    pub client: Leaf,
    /// CN "device-43", serial 15, signed by the CA (a second identity for ACL tests).
    pub client2: Leaf,
    /// CN "intruder", serial 11, signed by the other CA.
    pub foreign: Leaf,
    /// CN "old-device", serial 12, valid 2000-2001.
    pub expired: Leaf,
    /// CN "stolen-device", serial 13, listed in the CRL.
    pub revoked: Leaf,
    /// No CN, SAN "sensor.example.com", serial 14, signed by the CA.
    pub san_only: Leaf,
    /// The CA's CRL revoking serial 13.
    pub crl_pem: String,
    /// "Some Other CA".
    pub other_ca_pem: String,
    /// A server certificate for localhost / 127.0.0.1 (serial 2) signed by the other CA.
    pub other_server: Leaf,
}

fn make_ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

fn make_leaf(
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

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let (ca_pem, issuer) = make_ca("Hermod Test CA");
        let (other_ca_pem, other) = make_ca("Some Other CA");
        let localhost = ["localhost", "127.0.0.1"];
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
        Pki {
            server: make_leaf(&issuer, Some("localhost"), &localhost, 1, true, false),
            other_server: make_leaf(&other, Some("localhost"), &localhost, 2, true, false),
            client: make_leaf(&issuer, Some("device-42"), &[], 10, false, false),
            client2: make_leaf(&issuer, Some("device-43"), &[], 15, false, false),
            foreign: make_leaf(&other, Some("intruder"), &[], 11, false, false),
            expired: make_leaf(&issuer, Some("old-device"), &[], 12, false, true),
            revoked: make_leaf(&issuer, Some("stolen-device"), &[], 13, false, false),
            san_only: make_leaf(&issuer, None, &["sensor.example.com"], 14, false, false),
            crl_pem: crl.pem().expect("crl pem"),
            ca_pem,
            other_ca_pem,
        }
    }

    /// Writes certs/{ca.pem, ca.crl, server.pem, server.key, other-server.pem/.key,
    /// <client>.pem/.key} under `dir`.
    pub fn write_to(&self, dir: &Path) {
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).expect("mkdir certs");
        let w = |name: &str, text: &str| {
            std::fs::write(certs.join(name), text).expect("write cert file")
        };
        w("ca.pem", &self.ca_pem);
        w("ca.crl", &self.crl_pem);
        for (name, leaf) in [
            ("server", &self.server),
            ("other-server", &self.other_server),
            ("client", &self.client),
            ("client2", &self.client2),
            ("foreign", &self.foreign),
            ("expired", &self.expired),
            ("revoked", &self.revoked),
            ("san-only", &self.san_only),
        ] {
            w(&format!("{name}.pem"), &leaf.cert_pem);
            w(&format!("{name}.key"), &leaf.key_pem);
        }
    }
}

/// A rustls client configuration trusting `ca_pem`, presenting `cert` if given, offering `alpn`.
pub fn client_config(ca_pem: &str, cert: Option<&Leaf>, alpn: &[&[u8]]) -> ClientConfig {
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

/// [`client_config`] without ALPN, shared.
pub fn tls_client_config(ca_pem: &str, cert: Option<&Leaf>) -> Arc<ClientConfig> {
    Arc::new(client_config(ca_pem, cert, &[]))
}
