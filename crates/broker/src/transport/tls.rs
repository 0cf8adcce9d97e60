//! TLS: loading and checking certificate / key / CA / CRL files, building rustls server
//! configurations (ring provider, TLS 1.3 and 1.2 only), the handshake, and the client
//! certificate's identity.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs1KeyDer,
    PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::warn;

use super::client_verifier::ClientVerifier;
use super::{FileProblem, TransportError, TransportSettings};

const ALPN_MQTT: &[u8] = b"mqtt";
const ALPN_HTTP11: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configurations of one TLS listener, identical but for the ALPN protocol they
/// select. ALPN is chosen per connection from the ClientHello, so that "mqtt" is selected when
/// offered but never required: rustls refuses a client whose offered protocols miss all of the
/// configured ones (`no_application_protocol`), which would shut out clients offering e.g.
/// "x-amzn-mqtt-ca", and browsers on `wss` offering "http/1.1" / "h2".
pub(super) struct TlsConfigs {
    /// No ALPN protocol selected.
    plain: Arc<ServerConfig>,
    /// Selects "mqtt".
    mqtt: Arc<ServerConfig>,
    /// Selects "http/1.1" (for `wss`; "h2" is never selected: the upgrade is HTTP/1.1).
    http11: Arc<ServerConfig>,
}

/// The client certificate's names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ClientIdentity {
    pub(super) cn: Option<String>,
    pub(super) identity: Option<String>,
}

impl TlsConfigs {
    /// Loads and checks every file named in `settings` (which must have passed `validate`).
    pub(super) fn load(settings: &TransportSettings) -> Result<Self, TransportError> {
        let provider = provider();
        let (certfile, keyfile) = match (&settings.certfile, &settings.keyfile) {
            (Some(c), Some(k)) => (c.as_path(), k.as_path()),
            _ => {
                return Err(TransportError::TlsConfig(
                    "certfile and keyfile are required".into(),
                ));
            }
        };
        let chain = load_cert_chain(certfile)?;
        let key = load_private_key(keyfile)?;
        check_key_matches(&chain, &key, keyfile, &provider)?;

        let verifier: Arc<dyn ClientCertVerifier> = match &settings.cafile {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(cafile) => {
                let roots = load_roots(cafile)?;
                let crls = match &settings.crlfile {
                    Some(crlfile) => load_crls(crlfile, &roots.subjects)?,
                    None => Vec::new(),
                };
                let mut builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots.store),
                    provider.clone(),
                )
                // Mosquitto sets X509_V_FLAG_CRL_CHECK (leaf only), not CRL_CHECK_ALL; a leaf
                // whose issuer has no CRL in crlfile is refused (unknown status), as OpenSSL does.
                .with_crls(crls.clone())
                .only_check_end_entity_revocation();
                if !settings.require_certificate {
                    builder = builder.allow_unauthenticated();
                }
                let webpki = builder.build().map_err(|e| match (e, &settings.crlfile) {
                    (rustls::server::VerifierBuilderError::InvalidCrl(e), Some(crlfile)) => {
                        TransportError::file(
                            "crlfile",
                            crlfile,
                            FileProblem::BadCrl(format!("{e:?}")),
                        )
                    }
                    (e, _) => TransportError::TlsConfig(e.to_string()),
                })?;
                // webpki refuses X.509 v1 client certificates; OpenSSL (Mosquitto) accepts them.
                Arc::new(ClientVerifier::new(
                    webpki,
                    &roots.certs,
                    &crls,
                    provider.signature_verification_algorithms,
                ))
            }
        };

        let base = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TransportError::TlsConfig(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
        let with_alpn = |proto: &[u8]| {
            let mut c = base.clone();
            c.alpn_protocols = vec![proto.to_vec()];
            Arc::new(c)
        };
        Ok(TlsConfigs {
            mqtt: with_alpn(ALPN_MQTT),
            http11: with_alpn(ALPN_HTTP11),
            plain: Arc::new(base),
        })
    }

    /// Picks the configuration for this ClientHello's ALPN offer: "mqtt" for `tls` when offered,
    /// "http/1.1" for `wss` when offered, else none (ALPN is optional for MQTT).
    fn choose<'a>(
        &self,
        offered: Option<impl Iterator<Item = &'a [u8]>>,
        websocket: bool,
    ) -> Arc<ServerConfig> {
        let wanted = if websocket { ALPN_HTTP11 } else { ALPN_MQTT };
        let selected = offered.is_some_and(|mut protocols| protocols.any(|p| p == wanted));
        match (selected, websocket) {
            (false, _) => self.plain.clone(),
            (true, false) => self.mqtt.clone(),
            (true, true) => self.http11.clone(),
        }
    }

    /// The TLS handshake; returns the stream and the verified client certificate's names.
    pub(super) async fn accept(
        &self,
        tcp: TcpStream,
        websocket: bool,
    ) -> Result<(TlsStream<TcpStream>, ClientIdentity), TransportError> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(TransportError::TlsHandshake)?;
        let config = self.choose(start.client_hello().alpn(), websocket);
        let stream = start
            .into_stream(config)
            .await
            .map_err(TransportError::TlsHandshake)?;
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| client_identity(leaf.as_ref()))
            .unwrap_or_default();
        Ok((stream, identity))
    }
}

/// The subject CN (first one, as Mosquitto's `X509_NAME_get_index_by_NID(.., NID_commonName, -1)`)
/// and the identity used as username: the CN, else the first DNS or e-mail SAN.
pub(super) fn client_identity(der: &[u8]) -> ClientIdentity {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return ClientIdentity::default();
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|ext| {
            ext.value.general_names.iter().find_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(s)
                | x509_parser::extensions::GeneralName::RFC822Name(s)
                    if !s.is_empty() =>
                {
                    Some((*s).to_owned())
                }
                _ => None,
            })
        });
    ClientIdentity {
        identity: cn.clone().or(san),
        cn,
    }
}

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

fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
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

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
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

fn check_key_matches(
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
struct Roots {
    store: RootCertStore,
    /// The CA subjects (raw DER) to sanity-check CRL issuers against.
    subjects: Vec<Vec<u8>>,
    certs: Vec<CertificateDer<'static>>,
}

fn load_roots(path: &Path) -> Result<Roots, TransportError> {
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

fn load_crls(
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use rustls::ClientConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;

    use super::super::test_pki::{Pki, client_config};
    use super::super::{Acceptor, PeerInfo, Transport, TransportError, TransportSettings};
    use super::*;

    /// Serves one connection with `acceptor`, echoing 4 bytes back; returns what accept said.
    async fn serve_one(
        acceptor: Arc<Acceptor>,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<Result<PeerInfo, String>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.map_err(|e| e.to_string())?;
            let (mut stream, info) = acceptor
                .accept(tcp, peer)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            stream
                .read_exact(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            stream.write_all(&buf).await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            Ok(info)
        });
        (addr, task)
    }

    /// Connects with `config`, sends 4 bytes and expects them back.
    async fn client_roundtrip(
        addr: SocketAddr,
        config: ClientConfig,
    ) -> Result<Option<Vec<u8>>, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name =
            rustls_pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        // With TLS 1.3 a refused client certificate only shows up on the first read.
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if &buf != b"ping" {
            return Err(format!("echo mismatch: {buf:?}"));
        }
        Ok(alpn)
    }

    async fn run(
        settings: &TransportSettings,
        config: ClientConfig,
    ) -> (Result<Option<Vec<u8>>, String>, Result<PeerInfo, String>) {
        let acceptor = Arc::new(Acceptor::new(settings).expect("acceptor"));
        let (addr, server) = serve_one(acceptor).await;
        let client = tokio::time::timeout(Duration::from_secs(10), client_roundtrip(addr, config))
            .await
            .expect("client timed out");
        let server = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server timed out");
        (client, server.expect("join"))
    }

    #[tokio::test]
    async fn tls_handshake_without_client_certificates() {
        let pki = Pki::new();
        let (client, server) = run(
            &pki.tls_settings(false),
            client_config(&pki.ca_pem, None, &[]),
        )
        .await;
        assert_eq!(
            client.expect("client ok"),
            None,
            "no ALPN offered, none selected"
        );
        let info = server.expect("server ok");
        assert!(info.tls);
        assert_eq!(info.cert_identity, None);
        assert_eq!(info.cert_cn, None);
        assert!(!info.use_identity_as_username);
    }

    #[tokio::test]
    async fn alpn_mqtt_selected_when_offered_and_not_required() {
        let pki = Pki::new();
        let (client, _) = run(
            &pki.tls_settings(false),
            client_config(&pki.ca_pem, None, &[b"mqtt"]),
        )
        .await;
        assert_eq!(client.expect("mqtt offered"), Some(b"mqtt".to_vec()));
        let (client, _) = run(
            &pki.tls_settings(false),
            client_config(&pki.ca_pem, None, &[b"x-amzn-mqtt-ca", b"h2"]),
        )
        .await;
        assert_eq!(client.expect("other ALPN offered: still accepted"), None);
    }

    #[tokio::test]
    async fn client_certificate_accepted_and_identity_extracted() {
        let pki = Pki::new();
        let settings = pki.mtls_settings(true);
        let (client, server) = run(
            &settings,
            client_config(&pki.ca_pem, Some(&pki.client), &[]),
        )
        .await;
        client.expect("client ok");
        let info = server.expect("server ok");
        assert_eq!(info.cert_cn.as_deref(), Some("device-42"));
        assert_eq!(info.cert_identity.as_deref(), Some("device-42"));
        assert!(info.use_identity_as_username);
    }

    #[tokio::test]
    async fn require_certificate_refuses_no_certificate() {
        let pki = Pki::new();
        let (client, server) = run(
            &pki.mtls_settings(true),
            client_config(&pki.ca_pem, None, &[]),
        )
        .await;
        assert!(client.is_err(), "client without certificate must fail");
        let err = server.expect_err("server must refuse");
        assert!(err.contains("TLS handshake"), "{err}");
    }

    #[tokio::test]
    async fn require_certificate_refuses_unknown_ca_expired_and_revoked() {
        let pki = Pki::new();
        for (what, cert) in [
            ("other CA", &pki.foreign_client),
            ("expired", &pki.expired_client),
            ("revoked", &pki.revoked_client),
        ] {
            let (client, server) = run(
                &pki.mtls_settings(true),
                client_config(&pki.ca_pem, Some(cert), &[]),
            )
            .await;
            assert!(client.is_err(), "{what}: client must fail");
            let err = server.expect_err("server must refuse");
            assert!(err.contains("TLS handshake"), "{what}: {err}");
        }
        // The same revoked certificate passes without the CRL: the CRL is what refuses it.
        let mut no_crl = pki.mtls_settings(true);
        no_crl.crlfile = None;
        let (client, _) = run(
            &no_crl,
            client_config(&pki.ca_pem, Some(&pki.revoked_client), &[]),
        )
        .await;
        client.expect("revoked cert accepted without a CRL");
    }

    #[tokio::test]
    async fn optional_client_certificate() {
        let pki = Pki::new();
        let settings = pki.mtls_settings(false);
        let (client, server) = run(&settings, client_config(&pki.ca_pem, None, &[])).await;
        client.expect("no cert is fine when not required");
        assert_eq!(server.expect("server ok").cert_identity, None);
        let (client, server) = run(
            &settings,
            client_config(&pki.ca_pem, Some(&pki.client), &[]),
        )
        .await;
        client.expect("valid cert");
        assert_eq!(
            server.expect("server ok").cert_cn.as_deref(),
            Some("device-42")
        );
        let (client, _) = run(
            &settings,
            client_config(&pki.ca_pem, Some(&pki.foreign_client), &[]),
        )
        .await;
        assert!(client.is_err(), "a presented cert must still verify");
    }

    #[test]
    fn identity_falls_back_to_san_without_cn() {
        let pki = Pki::new();
        let id = client_identity(pki.san_only_client.cert_der.as_ref());
        assert_eq!(id.cn, None);
        assert_eq!(id.identity.as_deref(), Some("sensor.example.com"));
        let id = client_identity(pki.client.cert_der.as_ref());
        assert_eq!(id.cn.as_deref(), Some("device-42"));
        assert_eq!(client_identity(b"garbage"), ClientIdentity::default());
    }

    fn file_problem(err: TransportError) -> (&'static str, FileProblem) {
        match err {
            TransportError::File { key, problem, .. } => (key, problem),
            other => panic!("expected a File error, got {other}"),
        }
    }

    #[test]
    fn bad_files_give_precise_errors() {
        let pki = Pki::new();
        let dir = &pki.dir;
        let base = pki.mtls_settings(true);

        let mut s = base.clone();
        s.certfile = Some(dir.path().join("nope.pem"));
        let err = Acceptor::new(&s).expect_err("missing");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        assert_eq!(file_problem(err), ("certfile", FileProblem::Missing));

        let garbage = pki.write("garbage.pem", "this is not a certificate\n");
        let mut s = base.clone();
        s.certfile = Some(garbage.clone());
        assert!(matches!(
            file_problem(Acceptor::new(&s).expect_err("not pem")),
            ("certfile", FileProblem::NotPem(_))
        ));

        let mut s = base.clone();
        s.certfile = Some(pki.key_path.clone());
        assert_eq!(
            file_problem(Acceptor::new(&s).expect_err("key as cert")),
            ("certfile", FileProblem::NoCertificate)
        );

        let mut s = base.clone();
        s.keyfile = Some(pki.cert_path.clone());
        assert_eq!(
            file_problem(Acceptor::new(&s).expect_err("cert as key")),
            ("keyfile", FileProblem::NoPrivateKey)
        );

        let mut s = base.clone();
        s.keyfile = Some(pki.write("other.key", &pki.client.key_pem));
        let err = Acceptor::new(&s).expect_err("mismatch");
        assert!(err.to_string().contains("does not match"), "{err}");
        assert_eq!(file_problem(err), ("keyfile", FileProblem::KeyMismatch));

        let mut s = base.clone();
        s.keyfile = Some(pki.write(
            "enc.key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
        ));
        assert_eq!(
            file_problem(Acceptor::new(&s).expect_err("encrypted")),
            ("keyfile", FileProblem::EncryptedKey)
        );

        let mut s = base.clone();
        s.cafile = Some(pki.key_path.clone());
        assert_eq!(
            file_problem(Acceptor::new(&s).expect_err("ca empty")),
            ("cafile", FileProblem::NoCaCertificates)
        );

        let mut s = base.clone();
        s.crlfile = Some(pki.cert_path.clone());
        assert_eq!(
            file_problem(Acceptor::new(&s).expect_err("no crl")),
            ("crlfile", FileProblem::NoCrl)
        );

        let mut s = base.clone();
        s.crlfile = Some(pki.write(
            "bad.crl",
            "-----BEGIN X509 CRL-----\nAAECAwQF\n-----END X509 CRL-----\n",
        ));
        assert!(matches!(
            file_problem(Acceptor::new(&s).expect_err("bad crl")),
            ("crlfile", FileProblem::BadCrl(_))
        ));

        let mut s = base.clone();
        s.crlfile = Some(garbage);
        assert!(matches!(
            file_problem(Acceptor::new(&s).expect_err("crl not pem")),
            ("crlfile", FileProblem::NotPem(_))
        ));

        let s = TransportSettings {
            transport: Transport::Tls,
            ..Default::default()
        };
        assert!(matches!(
            Acceptor::new(&s).expect_err("validate first"),
            TransportError::Invalid {
                key: "certfile",
                ..
            }
        ));

        Acceptor::new(&base).expect("the good files load");
    }

    #[tokio::test]
    async fn reload_swaps_on_success_and_keeps_old_config_on_failure() {
        let pki = Pki::new();
        let first = pki.tls_settings(false);
        let acceptor = Arc::new(Acceptor::new(&first).expect("acceptor"));

        // A broken reload is refused and the old server certificate stays.
        let mut broken = first.clone();
        broken.keyfile = Some(pki.write("other.key", &pki.client.key_pem));
        assert!(matches!(
            acceptor.reload(&broken),
            Err(TransportError::File { key: "keyfile", .. })
        ));
        assert_eq!(acceptor.settings(), first);
        let (addr, server) = serve_one(acceptor.clone()).await;
        client_roundtrip(addr, client_config(&pki.ca_pem, None, &[]))
            .await
            .expect("old config serves");
        server.await.expect("join").expect("server ok");

        // A good reload with a certificate from another CA: clients trusting only the first CA
        // now fail, clients trusting the second succeed.
        let second = pki.second_server_settings();
        acceptor.reload(&second).expect("reload ok");
        assert_eq!(acceptor.settings(), second);
        let (addr, server) = serve_one(acceptor.clone()).await;
        assert!(
            client_roundtrip(addr, client_config(&pki.ca_pem, None, &[]))
                .await
                .is_err(),
            "old CA no longer matches"
        );
        let _ = server.await;
        let (addr, server) = serve_one(acceptor.clone()).await;
        client_roundtrip(addr, client_config(&pki.other_ca_pem, None, &[]))
            .await
            .expect("new cert served");
        server.await.expect("join").expect("server ok");

        // Reload can turn on client certificates.
        acceptor
            .reload(&pki.mtls_settings(true))
            .expect("reload mtls");
        let (addr, server) = serve_one(acceptor.clone()).await;
        assert!(
            client_roundtrip(addr, client_config(&pki.ca_pem, None, &[]))
                .await
                .is_err()
        );
        assert!(server.await.expect("join").is_err());
    }

    #[tokio::test]
    async fn handshake_timeout_bounds_a_silent_client() {
        let pki = Pki::new();
        let mut s = pki.tls_settings(false);
        s.handshake_timeout = Duration::from_millis(200);
        let acceptor = Arc::new(Acceptor::new(&s).expect("acceptor"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (tcp, peer) = listener.accept().await.expect("accept");
        let started = std::time::Instant::now();
        let err = acceptor.accept(tcp, peer).await.expect_err("must time out");
        assert!(matches!(err, TransportError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
