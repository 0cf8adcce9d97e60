//! X.509 version 1 client certificates, as `openssl x509 -req -CA ca.crt -CAkey ca.key
//! -CAcreateserial` makes them without `-extfile` (the mosquitto-tls(7) recipe). OpenSSL, hence
//! Mosquitto, accepts them; webpki alone refuses them (`UnsupportedCertVersion`). Every
//! certificate here is made by the `openssl` command at test time (skipped with a message when
//! it is missing): an RSA CA and an EC (prime256v1) CA in one cafile, so RSA and ECDSA certificate
//! signatures and handshake signatures (TLS 1.3 and 1.2) are all covered.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::ClientConfig;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::harness::*;

/// Listener indexes of [`config`].
const PLAIN: usize = 0;
/// require_certificate, crlfile (both CAs' CRLs), use_identity_as_username.
const CRL_ID: usize = 1;
/// require_certificate, no crlfile, no identity as username.
const REQUIRED: usize = 2;
/// cafile but require_certificate = false.
const OPTIONAL: usize = 3;

const ACL: &str = "\
user root
topic readwrite #

user v1-device
topic readwrite v1/device/#

user v1-ec-device
topic readwrite v1/ec/#
";

fn config() -> String {
    let tls = |extra: &str| {
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\ntransport = \"tls\"\ncertfile = \"certs/server.crt\"\n\
             keyfile = \"certs/server.key\"\ncafile = \"certs/cafile.pem\"\n{extra}"
        )
    };
    [
        "allow_anonymous = false\npassword_file = \"passwd\"\nacl_file = \"acl\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n"
            .to_owned(),
        tls("require_certificate = true\ncrlfile = \"certs/crl.pem\"\nuse_identity_as_username = true\n"),
        tls("require_certificate = true\n"),
        tls("require_certificate = false\n"),
    ]
    .concat()
}

/// The `openssl ca` configuration (for the expired certificate and the CRLs) and the CA
/// extensions (`req -x509 -extensions v3_ca`, as mosquitto-tls(7) does).
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[rsa_ca]
database = rsa-index.txt
serial = rsa-serial
crlnumber = rsa-crlnumber
certificate = ca.crt
private_key = ca.key
new_certs_dir = .
default_md = sha256
default_crl_days = 3650
unique_subject = no
policy = policy_any
[ec_ca]
database = ec-index.txt
serial = ec-serial
crlnumber = ec-crlnumber
certificate = ec-ca.crt
private_key = ec-ca.key
new_certs_dir = .
default_md = sha256
default_crl_days = 3650
unique_subject = no
policy = policy_any
[policy_any]
commonName = supplied
";

const SERVER_EXT: &str = "\
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost, IP:127.0.0.1
extendedKeyUsage = serverAuth
";

/// The certificates, made in `<broker dir>/certs` by the `openssl` command.
struct Certs {
    dir: PathBuf,
    openssl: PathBuf,
}

impl Certs {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Runs `openssl args...` in the certs folder; panics with its output on failure.
    fn openssl(&self, args: &[&str]) {
        let out = Command::new(&self.openssl)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A key (`rsa` or `ec`) and a CSR with subject CN=`cn`: `<name>.key`, `<name>.csr`.
    fn csr(&self, name: &str, cn: &str, ec: bool) {
        let (key, csr, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req", "-new", "-nodes", "-keyout", &key, "-out", &csr];
        args.extend(["-subj", &subj]);
        if ec {
            args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
        } else {
            args.extend(["-newkey", "rsa:2048"]);
        }
        self.openssl(&args);
    }

    /// A CA: `<name>.key`, `<name>.crt` (self-signed, basicConstraints CA:TRUE).
    fn ca(&self, name: &str, cn: &str, ec: bool) {
        let (key, crt, subj) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req", "-x509", "-new", "-nodes", "-config", "openssl.cnf"];
        args.extend(["-extensions", "v3_ca", "-days", "3650", "-subj", &subj]);
        args.extend(["-keyout", &key, "-out", &crt]);
        if ec {
            args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
        } else {
            args.extend(["-newkey", "rsa:2048"]);
        }
        self.openssl(&args);
    }

    /// The mosquitto-tls(7) recipe: `openssl x509 -req -in <name>.csr -CA <ca>.crt -CAkey <ca>.key
    /// -CAcreateserial -out <name>.crt -days 365` (version 1: no `-extfile`).
    fn sign_v1(&self, name: &str, ca: &str) {
        let (csr, crt, ca_crt, ca_key) = (
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{ca}.crt"),
            format!("{ca}.key"),
        );
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "365",
        ]);
    }

    /// Makes everything; None (test skipped, with a message) without the `openssl` command.
    fn make(dir: &Path) -> Option<Certs> {
        let openssl = require_tool("openssl", "openssl")?;
        let certs = Certs {
            dir: dir.join("certs"),
            openssl,
        };
        std::fs::create_dir_all(&certs.dir).expect("mkdir certs");
        for (name, text) in [
            ("openssl.cnf", OPENSSL_CNF),
            ("server.ext", SERVER_EXT),
            ("rsa-index.txt", ""),
            ("ec-index.txt", ""),
            ("rsa-serial", "1000\n"),
            ("ec-serial", "2000\n"),
            ("rsa-crlnumber", "01\n"),
            ("ec-crlnumber", "01\n"),
        ] {
            std::fs::write(certs.path(name), text).expect("write");
        }
        certs.ca("ca", "Hermod v1 Test RSA CA", false);
        certs.ca("ec-ca", "Hermod v1 Test EC CA", true);
        certs.ca("other-ca", "Some Other CA", false);
        let cafile = certs.read("ca.crt") + &certs.read("ec-ca.crt");
        std::fs::write(certs.path("cafile.pem"), cafile).expect("write cafile");

        // The server: version 3 with the names the clients check.
        certs.csr("server", "localhost", false);
        certs.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "365",
            "-extfile",
            "server.ext",
        ]);

        // Good version 1 clients: RSA under the RSA CA, EC under the EC CA.
        certs.csr("client", "v1-device", false);
        certs.sign_v1("client", "ca");
        certs.csr("ec-client", "v1-ec-device", true);
        certs.sign_v1("ec-client", "ec-ca");

        // Expired (2000-2001): `openssl ca` without an extensions section also makes version 1.
        certs.csr("expired", "v1-expired", false);
        certs.openssl(&[
            "ca",
            "-batch",
            "-config",
            "openssl.cnf",
            "-name",
            "rsa_ca",
            "-notext",
            "-startdate",
            "20000101000000Z",
            "-enddate",
            "20010101000000Z",
            "-in",
            "expired.csr",
            "-out",
            "expired.crt",
        ]);

        // Revoked: signed as the good one, then revoked in the RSA CA's CRL.
        certs.csr("revoked", "v1-revoked", false);
        certs.sign_v1("revoked", "ca");
        certs.openssl(&[
            "ca",
            "-config",
            "openssl.cnf",
            "-name",
            "rsa_ca",
            "-revoke",
            "revoked.crt",
        ]);
        for (section, out) in [("rsa_ca", "ca.crl"), ("ec_ca", "ec-ca.crl")] {
            certs.openssl(&[
                "ca",
                "-config",
                "openssl.cnf",
                "-name",
                section,
                "-gencrl",
                "-out",
                out,
            ]);
        }
        let crls = certs.read("ca.crl") + &certs.read("ec-ca.crl");
        std::fs::write(certs.path("crl.pem"), crls).expect("write crl.pem");

        // Another CA's client, and a self-signed one.
        certs.csr("foreign", "v1-device", false);
        certs.sign_v1("foreign", "other-ca");
        certs.csr("selfsigned", "v1-device", false);
        certs.openssl(&[
            "x509",
            "-req",
            "-in",
            "selfsigned.csr",
            "-signkey",
            "selfsigned.key",
            "-out",
            "selfsigned.crt",
            "-days",
            "365",
        ]);

        // The good RSA client with one byte of its signature flipped.
        let der = CertificateDer::from_pem_slice(certs.read("client.crt").as_bytes())
            .expect("client.crt is PEM");
        let mut bytes = der.as_ref().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(certs.path("tampered.crt"), pem("CERTIFICATE", &bytes)).expect("write");
        std::fs::copy(certs.path("client.key"), certs.path("tampered.key")).expect("copy key");

        for name in [
            "client",
            "ec-client",
            "expired",
            "revoked",
            "foreign",
            "selfsigned",
        ] {
            let text = certs.read(&format!("{name}.crt"));
            let der = CertificateDer::from_pem_slice(text.as_bytes()).expect("PEM");
            assert!(is_v1(der.as_ref()), "{name}.crt must be X.509 version 1");
        }
        assert!(!is_v1(
            CertificateDer::from_pem_slice(certs.read("server.crt").as_bytes())
                .expect("PEM")
                .as_ref()
        ));
        Some(certs)
    }

    /// A rustls client trusting the RSA CA (the server's), presenting `<name>.crt`/`.key`.
    /// `with_client_auth_cert` cannot be used: it checks the key against the certificate with
    /// webpki, which cannot parse a version 1 certificate.
    fn client(&self, name: &str, tls12_only: bool) -> Via {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.read("ca.crt").as_bytes()).expect("ca"))
            .expect("root");
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.read(&format!("{name}.crt")).as_bytes())
                .map(|c| c.expect("cert PEM"))
                .collect();
        let key = PrivateKeyDer::from_pem_slice(self.read(&format!("{name}.key")).as_bytes())
            .expect("key PEM");
        let key = provider
            .key_provider
            .load_private_key(key)
            .expect("usable key");
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
                chain, key,
            ))));
        Via::Tls(Arc::new(config))
    }

    /// A rustls client trusting the server, without a client certificate.
    fn no_cert(&self) -> Via {
        Via::Tls(tls_client_config(&self.read("ca.crt"), None))
    }
}

/// Whether a DER certificate's TBSCertificate has no `[0] version` (version 1).
fn is_v1(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.version() == x509_parser::x509::X509Version::V1)
        .unwrap_or(false)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A broker with [`config`] and the certificates; None when `openssl` is missing.
async fn v1_broker() -> Option<(TestBroker, Certs)> {
    let dir = tempdir();
    let certs = Certs::make(dir.path())?;
    write(dir.path(), "passwd", &passwd_line("root", "root-pw"));
    write(dir.path(), "acl", ACL);
    let b = TestBroker::start_in(dir, &config()).await;
    Some((b, certs))
}

fn root(id: &str) -> Connect {
    connect_auth(V5, id, Some("root"), Some(b"root-pw"))
}

/// The CONNECT for `listener`: no credentials where the certificate is the identity, else
/// root's password (allow_anonymous = false).
fn connect_to(listener: usize, id: &str) -> Connect {
    if listener == CRL_ID {
        connect_auth(V5, id, None, None)
    } else {
        root(id)
    }
}

// Good version 1 certificates, RSA and EC, over TLS 1.3 and TLS 1.2 (the handshake signature
// of a version 1 certificate is checked from its public key, which webpki cannot do): CONNACK
// success, and the client can subscribe to and publish on its own topics.
#[tokio::test]
async fn v1_client_certificates_accepted_rsa_and_ec_over_tls13_and_tls12() {
    let Some((b, certs)) = v1_broker().await else {
        return;
    };
    for (name, topic) in [("client", "v1/device/t"), ("ec-client", "v1/ec/t")] {
        for tls12 in [false, true] {
            let what = format!("{name} (TLS 1.2 only: {tls12})");
            for listener in [CRL_ID, REQUIRED] {
                let (mut c, ack) = Client::try_connect(
                    b.addr(listener),
                    &certs.client(name, tls12),
                    connect_to(listener, name),
                )
                .await
                .unwrap_or_else(|e| {
                    panic!("{what} on listener {listener}: handshake refused: {e}")
                });
                assert_eq!(ack.reason, ReasonCode::SUCCESS, "{what}: {ack:?}");
                if listener == REQUIRED {
                    // No identity as username there: nothing to publish as.
                    c.disconnect().await;
                    continue;
                }
                assert_eq!(
                    c.subscribe_one(topic, Q1).await,
                    ReasonCode(1),
                    "{what}: SUBACK"
                );
                assert_eq!(
                    c.publish(topic, what.as_bytes(), Q1, false).await,
                    ReasonCode::SUCCESS,
                    "{what}: PUBACK"
                );
                assert_eq!(
                    got(&[c.expect_publish().await]),
                    vec![(topic.to_owned(), what.clone())]
                );
                c.disconnect().await;
            }
        }
    }
    b.stop().await;
}

// use_identity_as_username with a version 1 certificate: its subject CN ("v1-device", it has no
// extensions, so no SAN) is the username the ACL sees, whatever the CONNECT says.
#[tokio::test]
async fn v1_identity_as_username_feeds_the_acl() {
    let Some((b, certs)) = v1_broker().await else {
        return;
    };
    let mut spy = Client::connect(b.addr(PLAIN), &Via::Tcp, root("spy")).await;
    spy.subscribe_one("v1/#", Q1).await;
    let (mut dev, ack) = Client::try_connect(
        b.addr(CRL_ID),
        &certs.client("client", false),
        root("claims-root"),
    )
    .await
    .expect("handshake with the v1 certificate");
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");
    assert_eq!(
        dev.publish("v1/device/temp", b"ok", Q1, false).await,
        ReasonCode::SUCCESS,
        "user v1-device may write v1/device/#"
    );
    assert_eq!(
        dev.publish("v1/ec/temp", b"no", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "another user's topic"
    );
    assert_eq!(
        dev.publish("v1/other", b"no", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "the CONNECT's username (root) is not used"
    );
    assert_eq!(
        got(&spy.drain(QUIET).await),
        vec![("v1/device/temp".into(), "ok".into())]
    );
    b.stop().await;
}

// Version 1 certificates that OpenSSL refuses too: expired, of another CA, self-signed, with a
// tampered signature; revoked by crlfile (and accepted where there is no crlfile, so the CRL
// is what refuses it). Each is refused during the TLS handshake: no CONNACK.
#[tokio::test]
async fn v1_client_certificates_refused() {
    let Some((b, certs)) = v1_broker().await else {
        return;
    };
    for (what, name, listener) in [
        ("expired", "expired", REQUIRED),
        ("signed by a CA not in cafile", "foreign", REQUIRED),
        ("self-signed", "selfsigned", REQUIRED),
        ("tampered signature", "tampered", REQUIRED),
        ("revoked by crlfile", "revoked", CRL_ID),
        (
            "signed by a CA not in cafile (crlfile listener)",
            "foreign",
            CRL_ID,
        ),
        ("a presented certificate is checked", "foreign", OPTIONAL),
    ] {
        for tls12 in [false, true] {
            let r = Client::try_connect(
                b.addr(listener),
                &certs.client(name, tls12),
                connect_to(listener, name),
            )
            .await;
            assert!(
                r.is_err(),
                "{what} (TLS 1.2 only: {tls12}): must be refused, got CONNACK {:?}",
                r.map(|(_, a)| a)
            );
        }
    }
    let (_c, ack) = Client::try_connect(
        b.addr(REQUIRED),
        &certs.client("revoked", false),
        root("revoked"),
    )
    .await
    .expect("without crlfile the revoked certificate is a good one");
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    b.stop().await;
}

// require_certificate = false with cafile: a version 1 certificate is accepted, and so is no
// certificate (the password file then applies).
#[tokio::test]
async fn v1_client_certificate_optional() {
    let Some((b, certs)) = v1_broker().await else {
        return;
    };
    let mut c = Client::connect(
        b.addr(OPTIONAL),
        &certs.client("ec-client", false),
        root("v1-optional"),
    )
    .await;
    c.ping().await;
    Client::connect(b.addr(OPTIONAL), &certs.no_cert(), root("no-cert")).await;
    let r = Client::try_connect(b.addr(REQUIRED), &certs.no_cert(), root("no-cert-2")).await;
    assert!(r.is_err(), "require_certificate = true still needs one");
    b.stop().await;
}

// Debian's mosquitto_pub, exactly as mosquitto-tls(7) has it: `--cafile ca.crt --cert client.crt
// --key client.key` with the version 1 certificate; the message reaches a subscriber.
#[tokio::test]
async fn mosquitto_pub_with_v1_client_certificate() {
    let Some(mpub) = require_tool("mosquitto_pub", "mosquitto-clients") else {
        return;
    };
    let Some((b, certs)) = v1_broker().await else {
        return;
    };
    let mut spy = Client::connect(b.addr(PLAIN), &Via::Tcp, root("spy")).await;
    spy.subscribe_one("v1/#", Q1).await;
    let mut cmd = Command::new(&mpub);
    cmd.args(["-h", "127.0.0.1", "-p", &b.addr(CRL_ID).port().to_string()])
        .arg("--cafile")
        .arg(certs.path("ca.crt"))
        .arg("--cert")
        .arg(certs.path("client.crt"))
        .arg("--key")
        .arg(certs.path("client.key"))
        .args([
            "-i",
            "mpub-v1",
            "-t",
            "v1/device/mosquitto",
            "-m",
            "hello v1",
        ])
        .args(["-q", "1"]);
    let (code, out, err) = run(&mut cmd, b.path(), "mpub-v1", Duration::from_secs(8)).await;
    assert_eq!(
        code,
        Some(0),
        "mosquitto_pub with a v1 certificate: {out} {err}"
    );
    let p = spy.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("v1/device/mosquitto", &b"hello v1"[..])
    );
    // And with the tampered one: refused at the TLS handshake.
    let mut cmd = Command::new(&mpub);
    cmd.args(["-h", "127.0.0.1", "-p", &b.addr(CRL_ID).port().to_string()])
        .arg("--cafile")
        .arg(certs.path("ca.crt"))
        .arg("--cert")
        .arg(certs.path("tampered.crt"))
        .arg("--key")
        .arg(certs.path("tampered.key"))
        .args(["-i", "mpub-bad", "-t", "v1/device/mosquitto", "-m", "bad"])
        .args(["-q", "1"]);
    let (code, out, err) = run(&mut cmd, b.path(), "mpub-bad", Duration::from_secs(8)).await;
    assert!(
        code.is_some_and(|c| c != 0),
        "tampered certificate must fail: {code:?} {out} {err}"
    );
    spy.expect_nothing(QUIET).await;
    b.stop().await;
}
