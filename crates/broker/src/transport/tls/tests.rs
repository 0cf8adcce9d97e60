//! End-to-end tests of TLS listeners: handshakes, ALPN, client certificates, bad files, reload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsConnector;

use crate::transport::test_pki::{Pki, client_config};
use crate::transport::{
    Acceptor, FileProblem, PeerInfo, Transport, TransportError, TransportSettings,
};

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
    let name = rustls_pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
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
