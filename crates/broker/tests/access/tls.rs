//! TLS listeners with the configuration example: server-only TLS (`--cafile`), client
//! certificates required (`--cert/--key`), refused certificates (unknown CA, expired, revoked
//! by the CRL), and `use_identity_as_username` feeding the ACL. Rust clients (rustls) and
//! Debian's mosquitto_pub / mosquitto_sub (skipped with a message when not installed).

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const ACL: &str = "\
user root
topic readwrite #

user alice
topic readwrite home/alice/#

user device-42
topic readwrite devices/device-42/#
";

fn mtls(pki: &Pki, leaf: Option<&Leaf>) -> Via {
    Via::Tls(tls_client_config(&pki.ca_pem, leaf))
}

// The example config loads with Config::load and every relative path (passwd, acl, certs/...)
// resolves against the config file's folder, not the working directory.
#[tokio::test]
async fn example_config_resolves_relative_paths_against_its_folder() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    assert_ne!(
        std::env::current_dir().expect("cwd"),
        b.path(),
        "the test must not run inside the config folder"
    );
    assert_eq!(b.addrs.len(), 5);
    // Password file and ACL from the folder: alice logs in and may publish to her topics only.
    let mut c = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "alice-tcp", "alice")).await;
    assert_ne!(
        c.publish("home/alice/x", b"1", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        c.publish("home/bob/x", b"1", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // certs/ from the folder: a TLS handshake with the generated CA works.
    Client::connect(
        b.addr(TLS),
        &Via::Tls(tls_client_config(&pki.ca_pem, None)),
        login(V5, "alice-tls", "alice"),
    )
    .await;
    b.stop().await;
}

// TLS without client certificates: the server chain verifies against the generated CA; the
// password file still applies on that listener.
#[tokio::test]
async fn server_only_tls_with_ca() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let via = Via::Tls(tls_client_config(&pki.ca_pem, None));
    let mut c = Client::connect(b.addr(TLS), &via, login(V5, "alice-tls", "alice")).await;
    assert_eq!(c.subscribe_one("home/alice/#", Q1).await, ReasonCode(1));
    c.publish("home/alice/t", b"over tls", Q1, false).await;
    assert_eq!(
        got(&[c.expect_publish().await]),
        vec![("home/alice/t".into(), "over tls".into())]
    );
    let bad = connect_auth(V5, "alice-bad", Some("alice"), Some(b"wrong"));
    assert_eq!(
        Client::connack(b.addr(TLS), &via, bad).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // A client trusting another CA refuses the server.
    let other = Pki::new();
    let r = Client::try_connect(
        b.addr(TLS),
        &Via::Tls(tls_client_config(&other.ca_pem, None)),
        login(V5, "x", "alice"),
    )
    .await;
    assert!(
        r.is_err(),
        "a client that does not trust the server's CA cannot connect"
    );
    b.stop().await;
}

// require_certificate = true: a certificate from cafile is accepted; none, one from another CA,
// an expired one and one revoked by crlfile are each refused during the handshake (no CONNACK).
#[tokio::test]
async fn client_certificates_required_and_checked() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let addr = b.addr(MTLS);
    let c = connect_auth(V5, "dev", None, None);
    for (what, leaf) in [
        ("no certificate", None),
        ("certificate of an unknown CA", Some(&pki.foreign)),
        ("expired certificate", Some(&pki.expired)),
        ("revoked certificate (CRL)", Some(&pki.revoked)),
    ] {
        let r = Client::try_connect(addr, &mtls(&pki, leaf), c.clone()).await;
        assert!(
            r.is_err(),
            "{what}: must be refused, got CONNACK {:?}",
            r.map(|(_, a)| a)
        );
    }
    // The good certificate: identity "device-42" becomes the username; no password needed, as in
    // Mosquitto ("If use_identity_as_username is true, the password_file option will not be used
    // for this listener").
    let (_client, ack) = Client::try_connect(addr, &mtls(&pki, Some(&pki.client)), c.clone())
        .await
        .expect("a certificate signed by cafile passes the handshake");
    assert_eq!(
        ack.reason,
        ReasonCode::SUCCESS,
        "client certificate device-42 on the require_certificate listener: {ack:?}"
    );
    b.stop().await;
}

// use_identity_as_username: the certificate's CN is the username the ACL sees ("user device-42"
// allows devices/device-42/#), whatever username the CONNECT carries.
#[tokio::test]
async fn identity_as_username_feeds_the_acl() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL).await;
    let mut spy = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "spy", "root")).await;
    spy.subscribe_one("devices/#", Q1).await;
    spy.subscribe_one("home/#", Q1).await;

    // CONNECT claims to be alice (with her password): the certificate's identity wins.
    let as_alice = login(V5, "dev42", "alice");
    let (mut dev, ack) =
        Client::try_connect(b.addr(MTLS), &mtls(&pki, Some(&pki.client)), as_alice)
            .await
            .expect("handshake with a good client certificate");
    assert_eq!(
        ack.reason,
        ReasonCode::SUCCESS,
        "certificate client refused: {ack:?}"
    );
    assert_ne!(
        dev.publish("devices/device-42/temp", b"ok", Q1, false)
            .await,
        ReasonCode::NOT_AUTHORIZED,
        "own topic allowed"
    );
    assert_eq!(
        dev.publish("devices/device-43/temp", b"no", Q1, false)
            .await,
        ReasonCode::NOT_AUTHORIZED,
        "other device denied"
    );
    assert_eq!(
        dev.publish("home/alice/x", b"no", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "CONNECT username ignored"
    );
    assert_eq!(
        got(&spy.drain(QUIET).await),
        vec![("devices/device-42/temp".into(), "ok".into())]
    );

    // Reads are checked against the identity too.
    assert_eq!(dev.subscribe_one("devices/#", Q1).await, ReasonCode(1));
    spy.publish("devices/device-43/temp", b"not for 42", Q1, false)
        .await;
    spy.publish("devices/device-42/cmd", b"for 42", Q1, false)
        .await;
    assert_eq!(
        got(&dev.drain(QUIET).await),
        vec![("devices/device-42/cmd".into(), "for 42".into())]
    );
    b.stop().await;
}

/// `stdbuf -oL tool`: mosquitto_sub does not flush its -d lines itself.
fn line_buffered(tool: &std::path::Path) -> Command {
    match which("stdbuf") {
        Some(stdbuf) => {
            let mut c = Command::new(stdbuf);
            c.arg("-oL").arg(tool);
            c
        }
        None => Command::new(tool),
    }
}

fn mosquitto(tool: &str) -> Option<std::path::PathBuf> {
    require_tool(tool, "mosquitto-clients")
}

struct Mosq {
    mpub: std::path::PathBuf,
    msub: std::path::PathBuf,
    b: TestBroker,
}

impl Mosq {
    async fn start() -> Option<(Mosq, Pki)> {
        let (Some(mpub), Some(msub)) = (mosquitto("mosquitto_pub"), mosquitto("mosquitto_sub"))
        else {
            return None;
        };
        let pki = Pki::new();
        let b = example_broker(&pki, ACL).await;
        Some((Mosq { mpub, msub, b }, pki))
    }

    fn port(&self, i: usize) -> String {
        self.b.addr(i).port().to_string()
    }

    fn cert(&self, name: &str) -> std::path::PathBuf {
        self.b.path().join("certs").join(name)
    }

    /// mosquitto_pub --cafile --cert/--key with certs/<leaf>.pem/.key to the mTLS listener.
    async fn cert_pub(&self, leaf: &str, topic: &str) -> (Option<i32>, String, String) {
        let mut c = Command::new(&self.mpub);
        c.args(["-h", "127.0.0.1", "-p", &self.port(MTLS), "--cafile"])
            .arg(self.cert("ca.pem"))
            .arg("--cert")
            .arg(self.cert(&format!("{leaf}.pem")))
            .arg("--key")
            .arg(self.cert(&format!("{leaf}.key")))
            .args(["-i", leaf, "-t", topic, "-m", leaf, "-q", "1"]);
        run(
            &mut c,
            self.b.path(),
            &format!("mpub-{leaf}"),
            Duration::from_secs(8),
        )
        .await
    }
}

// Debian's mosquitto_sub / mosquitto_pub with --cafile on the server-only TLS listener.
#[tokio::test]
async fn mosquitto_clients_tls_cafile() {
    let Some((m, _pki)) = Mosq::start().await else {
        return;
    };
    let dir = m.b.path().to_owned();
    let mut sub = Bg::spawn(
        line_buffered(&m.msub)
            .args(["-h", "127.0.0.1", "-p", &m.port(TLS), "--cafile"])
            .arg(m.cert("ca.pem"))
            .args([
                "-u",
                "alice",
                "-P",
                "alice-pw",
                "-i",
                "msub-tls",
                "-t",
                "home/alice/#",
                "-C",
                "1",
                "-W",
                "8",
                "-v",
                "-d",
            ]),
        &dir,
        "msub-tls",
    );
    assert!(
        sub.wait_output("SUBACK", Duration::from_secs(5)).await,
        "mosquitto_sub --cafile subscribed: {} {}",
        sub.stdout(),
        sub.stderr()
    );
    let (code, out, err) = run(
        Command::new(&m.mpub)
            .args(["-h", "127.0.0.1", "-p", &m.port(TLS), "--cafile"])
            .arg(m.cert("ca.pem"))
            .args([
                "-u",
                "alice",
                "-P",
                "alice-pw",
                "-i",
                "mpub-tls",
                "-t",
                "home/alice/t",
                "-m",
                "hello tls",
                "-q",
                "1",
            ]),
        &dir,
        "mpub-tls",
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(code, Some(0), "mosquitto_pub --cafile: {out} {err}");
    assert_eq!(
        sub.wait(Duration::from_secs(8)).await,
        Some(0),
        "mosquitto_sub -C 1 got its message: {}",
        sub.stderr()
    );
    assert!(
        sub.stdout().contains("home/alice/t hello tls"),
        "mosquitto_sub output: {}",
        sub.stdout()
    );
    // Wrong password over TLS: refused.
    let (code, out, err) = run(
        Command::new(&m.mpub)
            .args(["-h", "127.0.0.1", "-p", &m.port(TLS), "--cafile"])
            .arg(m.cert("ca.pem"))
            .args([
                "-u",
                "alice",
                "-P",
                "nope",
                "-i",
                "mpub-bad",
                "-t",
                "home/alice/t",
                "-m",
                "x",
                "-q",
                "1",
            ]),
        &dir,
        "mpub-bad",
        Duration::from_secs(8),
    )
    .await;
    assert!(
        code.is_some_and(|c| c != 0),
        "wrong password must fail: {code:?} {out} {err}"
    );
    m.b.stop().await;
}

// mosquitto_pub / mosquitto_sub with --cert/--key on the listener requiring certificates
// (the example): identity device-42 becomes the username and the ACL applies to it.
#[tokio::test]
async fn mosquitto_clients_tls_client_certificate() {
    let Some((m, _pki)) = Mosq::start().await else {
        return;
    };
    let dir = m.b.path().to_owned();
    let mut spy = Client::connect(m.b.addr(TCP), &Via::Tcp, login(V5, "spy", "root")).await;
    spy.subscribe_one("devices/#", Q1).await;
    let (code, out, err) = m.cert_pub("client", "devices/device-42/t").await;
    assert_eq!(
        code,
        Some(0),
        "mosquitto_pub --cert/--key with a good certificate: {out} {err}"
    );
    let p = spy.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("devices/device-42/t", &b"client"[..])
    );

    let mut sub = Bg::spawn(
        line_buffered(&m.msub)
            .args(["-h", "127.0.0.1", "-p", &m.port(MTLS), "--cafile"])
            .arg(m.cert("ca.pem"))
            .arg("--cert")
            .arg(m.cert("client.pem"))
            .arg("--key")
            .arg(m.cert("client.key"))
            .args([
                "-i",
                "msub-cert",
                "-t",
                "devices/#",
                "-C",
                "1",
                "-W",
                "8",
                "-v",
                "-d",
            ]),
        &dir,
        "msub-cert",
    );
    assert!(
        sub.wait_output("SUBACK", Duration::from_secs(5)).await,
        "mosquitto_sub --cert subscribed: {} {}",
        sub.stdout(),
        sub.stderr()
    );
    spy.publish("devices/device-43/t", b"not for 42", Q1, false)
        .await;
    spy.publish("devices/device-42/t", b"for 42", Q1, false)
        .await;
    assert_eq!(
        sub.wait(Duration::from_secs(8)).await,
        Some(0),
        "mosquitto_sub --cert got a message: {}",
        sub.stderr()
    );
    let out = sub.stdout();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed (mid"))
        .collect();
    assert_eq!(
        lines,
        vec!["devices/device-42/t for 42"],
        "only its identity's topic is delivered"
    );
    m.b.stop().await;
}

// mosquitto_pub with a certificate of an unknown CA, an expired one or a revoked one (CRL):
// the handshake fails and mosquitto_pub exits non-zero; nothing is published.
#[tokio::test]
async fn mosquitto_clients_tls_refused_certificates() {
    let Some((m, _pki)) = Mosq::start().await else {
        return;
    };
    let mut spy = Client::connect(m.b.addr(TCP), &Via::Tcp, login(V5, "spy", "root")).await;
    spy.subscribe_one("#", Q1).await;
    for (leaf, what) in [
        ("foreign", "unknown CA"),
        ("expired", "expired"),
        ("revoked", "revoked (CRL)"),
    ] {
        let (code, out, err) = m.cert_pub(leaf, &format!("devices/{leaf}/t")).await;
        assert!(
            code.is_some_and(|c| c != 0),
            "mosquitto_pub with a {what} certificate must fail: exit {code:?} {out} {err}"
        );
        // Refused by the TLS handshake, not by a CONNACK after it.
        assert!(
            !format!("{out}{err}").contains("Connection Refused"),
            "{what}: refused at TLS, not at CONNECT: {out} {err}"
        );
    }
    spy.expect_nothing(QUIET).await;
    m.b.stop().await;
}
