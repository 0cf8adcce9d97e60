//! `hermod ctl` end to end: each test starts `hermod serve -c FILE` (its own temporary folder,
//! free loopback ports for MQTT and the admin API), drives it with `hermod ctl` as a user would,
//! and watches the effect with a raw MQTT client. The broker is stopped by its PID (SIGKILL
//! through the child handle) when the test ends, pass or fail.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hermod_testkit::{Client, ReasonCode, V5, Via, connect_packet, tempdir, write};

const HERMOD: &str = env!("CARGO_BIN_EXE_hermod");
const START_WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `hermod serve -c FILE` child.
struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    mqtt: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Serve {
    /// Starts a broker with `extra` appended to its config; returns once `ctl status` says it
    /// is running.
    fn start(extra: &str) -> Serve {
        Serve::start_full(extra, false)
    }

    /// As [`Serve::start`], with the shadow service on when `shadows`.
    fn start_full(extra: &str, shadows: bool) -> Serve {
        let dir = tempdir();
        let mqtt: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = write(
            dir.path(),
            "hermod.toml",
            &format!(
                // No $SYS: its retained topics would count in `retained.count`. No shadow
                // service: its internal client `$hermod/shadow` would count among the clients.
                "sys_interval = 0\n[[listener]]\nbind = \"{mqtt}\"\n\n[store]\nsync = \"os\"\n\n\
                 [shadow]\nenabled = {shadows}\n\n[admin]\nbind = \"{admin}\"\n{extra}"
            ),
        );
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(HERMOD)
            .args(["serve", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hermod serve");
        let mut serve = Serve {
            child,
            dir,
            config,
            mqtt,
            admin,
        };
        let deadline = Instant::now() + START_WAIT;
        loop {
            let out = serve.ctl(&["status"]);
            if out.status.success() {
                break;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("hermod serve exited ({status}):\n{}", serve.log());
            }
            assert!(
                Instant::now() < deadline,
                "`ctl status` not 0 within {START_WAIT:?}: {}\n{}",
                text(&out),
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// `hermod ctl -c FILE ARGS`, run from another folder (the store path is relative to the
    /// config file's, not to the working directory).
    fn ctl(&self, args: &[&str]) -> Output {
        ctl_in(
            Path::new("/"),
            &[&["-c", self.config.to_str().unwrap()], args].concat(),
        )
    }

    /// `hermod ctl ARGS` that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "ctl {args:?} failed: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn url(&self) -> String {
        format!("http://{}", self.admin)
    }
}

fn ctl_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(HERMOD)
        .arg("ctl")
        .args(args)
        .current_dir(cwd)
        .env_remove("HERMOD_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run hermod ctl")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn status_without_a_broker_exits_1_with_one_clear_line() {
    let dir = tempdir();
    // No -c: the default store path, hermod-data, in the working directory.
    let out = ctl_in(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        "Error: cannot reach hermod at hermod-data/hermod.sock: no such file \
         (is `hermod serve` running with this config?)\n"
    );
    // With -c: the socket beside the config file, wherever ctl runs.
    let config = write(
        dir.path(),
        "h.toml",
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[store]\npath = \"data\"\n",
    );
    let out = ctl_in(
        Path::new("/"),
        &["-c", config.to_str().unwrap(), "clients", "list"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let sock = dir.path().join("data").join("hermod.sock");
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Nothing listening on --url either.
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = ctl_in(dir.path(), &["--url", &url, "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_list_show_kick_and_ban() {
    let serve = Serve::start("");
    let mut c = Client::connect_id(serve.mqtt, V5, "ctl-test-device").await;
    c.subscribe_one("sensors/+/temp", hermod_testkit::QoS::AtLeastOnce)
        .await;

    let status = serve.ok(&["status"]);
    assert!(
        status.starts_with(&format!(
            "hermod {} is running, uptime ",
            env!("CARGO_PKG_VERSION")
        )),
        "{status}"
    );
    assert!(
        status.trim_end().ends_with(", 1 client connected"),
        "{status}"
    );

    let list = serve.ok(&["clients", "list"]);
    let mut lines = list.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("CLIENT ID"), "{list}");
    let row = lines.next().unwrap();
    assert!(row.starts_with("ctl-test-device "), "{list}");
    assert!(row.contains("127.0.0.1:"), "{list}");
    // Columns are aligned: SUBS starts where its header does (right-aligned under it).
    let subs_end = header.find("SUBS").unwrap() + "SUBS".len();
    assert_eq!(&row[subs_end - 1..subs_end], "1", "{list}");

    let v = json(&serve.ok(&["clients", "list", "--json"]));
    assert_eq!(v["data"][0]["clientid"], "ctl-test-device", "{v}");
    assert_eq!(v["meta"]["count"], 1, "{v}");
    assert_eq!(
        serve.ok(&["clients", "list", "--like", "nobody"]),
        "no clients\n"
    );

    let show = serve.ok(&["clients", "show", "ctl-test-device"]);
    assert!(show.contains("sensors/+/temp"), "{show}");
    let subs = serve.ok(&["subscriptions", "list", "--clientid", "ctl-test-device"]);
    assert!(subs.contains("sensors/+/temp"), "{subs}");
    let topics = serve.ok(&["topics", "list"]);
    assert_eq!(topics, "TOPIC\nsensors/+/temp\n");

    let out = serve.ctl(&["clients", "kick", "no-such-client"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: no client no-such-client (CLIENTID_NOT_FOUND)\n"
    );

    assert_eq!(
        serve.ok(&["clients", "kick", "ctl-test-device"]),
        "client ctl-test-device disconnected\n"
    );
    c.expect_disconnect(ReasonCode::ADMINISTRATIVE_ACTION).await;

    // A ban refuses the next CONNECT, until it is lifted.
    let out = serve.ok(&[
        "banned",
        "add",
        "--clientid",
        "ctl-test-device",
        "--for",
        "1h",
        "--reason",
        "testing",
    ]);
    assert!(
        out.starts_with("banned clientid ctl-test-device until 20"),
        "{out}"
    );
    let reason =
        Client::connack(serve.mqtt, &Via::Tcp, connect_packet(V5, "ctl-test-device")).await;
    assert_eq!(reason, ReasonCode::BANNED);
    let list = serve.ok(&["banned", "list"]);
    assert!(list.starts_with("AS"), "{list}");
    assert!(
        list.contains("ctl-test-device") && list.contains("testing"),
        "{list}"
    );
    let v = json(&serve.ok(&["--json", "banned", "list"]));
    assert_eq!(v["data"][0]["who"], "ctl-test-device", "{v}");
    serve.ok(&["banned", "del", "clientid", "ctl-test-device"]);
    let _c = Client::connect_id(serve.mqtt, V5, "ctl-test-device").await;
    let out = serve.ctl(&["banned", "del", "clientid", "ctl-test-device"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_stats_and_json() {
    let serve = Serve::start("");
    let mut c = Client::connect_id(serve.mqtt, V5, "publisher").await;
    c.send(&hermod_testkit::Packet::Publish(hermod_testkit::publish(
        "home/lamp",
        b"on",
        hermod_testkit::QoS::AtMostOnce,
        true,
    )))
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let list = serve.ok(&["retained", "list"]);
        if list.contains("home/lamp") || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        list,
        "TOPIC      QOS  BYTES  PAYLOAD\nhome/lamp    0      2  on\n"
    );
    let v = json(&serve.ok(&["retained", "list", "home/#", "--json"]));
    assert_eq!(v["data"][0]["topic"], "home/lamp", "{v}");

    let stats = serve.ok(&["stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("retained.count") && l.ends_with(" 1")),
        "{stats}"
    );
    let v = json(&serve.ok(&["stats", "--json"]));
    assert_eq!(v["live_connections.count"], 1, "{v}");
    let v = json(&serve.ok(&["status", "--json"]));
    assert_eq!(v["status"], "running", "{v}");

    serve.ok(&["retained", "delete", "home/lamp"]);
    assert_eq!(serve.ok(&["retained", "list"]), "no retained messages\n");
    let out = serve.ctl(&["retained", "delete", "home/lamp"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn url_with_an_api_key() {
    let serve = Serve::start("");
    let v = json(&serve.ok(&["api-keys", "add", "ci", "--json"]));
    let key = format!(
        "{}:{}",
        v["api_key"].as_str().unwrap(),
        v["api_secret"].as_str().unwrap()
    );
    let url = serve.url();
    let dir = serve.dir.path();

    let out = ctl_in(dir, &["--url", &url, "--api-key", &key, "stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    json(&String::from_utf8_lossy(&out.stdout));
    let out = ctl_in(dir, &["--url", &url, "--api-key", &key, "status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 clients connected"),
        "{}",
        text(&out)
    );

    // Status needs no key; everything else does, and says so.
    let out = ctl_in(dir, &["--url", &url, "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ctl_in(dir, &["--url", &url, "clients", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-key"), "{err}");
    let out = ctl_in(
        dir,
        &["--url", &url, "--api-key", "bad:key", "clients", "list"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A viewer key reads but cannot kick.
    let v = json(&serve.ok(&["api-keys", "add", "ro", "--role", "viewer", "--json"]));
    let ro = format!(
        "{}:{}",
        v["api_key"].as_str().unwrap(),
        v["api_secret"].as_str().unwrap()
    );
    let out = ctl_in(dir, &["--url", &url, "--api-key", &ro, "clients", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ctl_in(
        dir,
        &["--url", &url, "--api-key", &ro, "clients", "kick", "x"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FORBIDDEN"),
        "{}",
        text(&out)
    );
    let list = serve.ok(&["api-keys", "list"]);
    assert!(list.contains("ci") && list.contains("viewer"), "{list}");
    assert!(!list.contains(v["api_secret"].as_str().unwrap()), "{list}");
}

#[test]
fn admins_add_passwd_del() {
    let serve = Serve::start("");
    let mut add = Command::new(HERMOD)
        .args(["ctl", "-c", serve.config.to_str().unwrap()])
        .args(["admins", "add", "ops", "--role", "viewer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        add.stdin
            .take()
            .unwrap()
            .write_all(b"correct horse battery\n")
            .unwrap();
    }
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let list = serve.ok(&["admins", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("ops ") && l.contains("viewer")),
        "{list}"
    );
    // A new password from stdin (no old one needed over the socket).
    let mut passwd = Command::new(HERMOD)
        .args(["ctl", "-c", serve.config.to_str().unwrap()])
        .args(["admins", "passwd", "ops"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        passwd
            .stdin
            .take()
            .unwrap()
            .write_all(b"another long one\n")
            .unwrap();
    }
    let out = passwd.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "password of ops changed\n"
    );
    serve.ok(&["admins", "del", "ops"]);
    let out = serve.ctl(&["admins", "del", "ops"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Error: no user ops\n");
}

#[test]
fn reload_applies_or_keeps_the_old_configuration() {
    let serve = Serve::start("");
    assert_eq!(serve.ok(&["reload"]), "configuration reloaded\n");
    // A config file that no longer parses: the reload fails, naming it, and nothing changes.
    let good = std::fs::read_to_string(&serve.config).unwrap();
    std::fs::write(&serve.config, format!("{good}no_such_key = 1\n")).unwrap();
    // ctl itself reads the config to find the socket: point it at a copy of the good one.
    let copy = write(serve.dir.path(), "copy.toml", &good);
    let out = ctl_in(Path::new("/"), &["-c", copy.to_str().unwrap(), "reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Error: reload failed, the previous configuration stays in force: "),
        "{err}"
    );
    assert!(
        err.contains("hermod.toml") && err.contains("RELOAD_FAILED"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::write(&serve.config, good).unwrap();
    serve.ok(&["reload"]);
}

#[test]
fn https_url_with_cacert() {
    let dir = tempdir();
    hermod_testkit::Pki::new().write_to(dir.path());
    let certs = dir.path().join("certs");
    let serve = Serve::start(&format!(
        "certfile = \"{}\"\nkeyfile = \"{}\"\n",
        certs.join("server.pem").display(),
        certs.join("server.key").display()
    ));
    let v = json(&serve.ok(&["api-keys", "add", "tls", "--json"]));
    let key = format!(
        "{}:{}",
        v["api_key"].as_str().unwrap(),
        v["api_secret"].as_str().unwrap()
    );
    let url = format!("https://localhost:{}", serve.admin.port());
    let ca = certs.join("ca.pem");
    let args = [
        "--url",
        &url,
        "--cacert",
        ca.to_str().unwrap(),
        "--api-key",
        &key,
    ];
    let out = ctl_in(dir.path(), &[&args[..], &["status"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is running"),
        "{}",
        text(&out)
    );
    let out = ctl_in(dir.path(), &[&args[..], &["clients", "list"]].concat());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no clients\n",
        "{}",
        text(&out)
    );
    // Without the CA the certificate is not trusted, and the error says what to do.
    let out = ctl_in(dir.path(), &["--url", &url, "--api-key", &key, "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cacert"),
        "{}",
        text(&out)
    );
    // http:// to a TLS listener, https:// to a plain one: clear failures, not hangs.
    let out = ctl_in(
        dir.path(),
        &["--url", &format!("http://{}", serve.admin), "status"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn no_socket_with_a_memory_store_or_the_api_off() {
    let dir = tempdir();
    for (extra, why) in [
        ("[store]\nsync = \"memory\"\n", "[store] sync = \"memory\""),
        ("[admin]\nenabled = false\n", "[admin] enabled = false"),
    ] {
        let config = write(
            dir.path(),
            "h.toml",
            &format!("[[listener]]\nbind = \"127.0.0.1:0\"\n{extra}"),
        );
        let out = ctl_in(dir.path(), &["-c", config.to_str().unwrap(), "status"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no ctl socket") && err.contains(why) && err.contains("--url"),
            "{err}"
        );
    }
}

/// `ctl shadow list`, `get`, `update` and `delete`: a device's update through the shadow
/// service, read back, changed and deleted through the admin API; a thing without a shadow and
/// a document that is not JSON exit 1 with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_list_and_get() {
    let serve = Serve::start_full("", true);
    let mut device = Client::connect_id(serve.mqtt, V5, "lamp-1").await;
    device
        .publish(
            "$hermod/things/lamp-1/shadow/update",
            br#"{"state":{"reported":{"on":true}}}"#,
            hermod_testkit::QoS::AtLeastOnce,
            false,
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let list = serve.ok(&["shadow", "list"]);
        if list.contains("lamp-1") || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(list, "THING   SHADOWS\nlamp-1  classic v1\n");
    let doc = json(&serve.ok(&["shadow", "get", "lamp-1"]));
    assert_eq!(doc["state"]["reported"]["on"], true, "{doc}");
    assert_eq!(doc["version"], 1, "{doc}");
    let doc = json(&serve.ok(&[
        "shadow",
        "update",
        "lamp-1",
        r#"{"state":{"desired":{"on":false}}}"#,
    ]));
    assert_eq!(doc["version"], 2, "{doc}");
    let doc = json(&serve.ok(&["shadow", "get", "lamp-1"]));
    assert_eq!(doc["state"]["delta"]["on"], false, "{doc}");
    assert_eq!(
        serve.ok(&["shadow", "delete", "lamp-1"]),
        "shadow of lamp-1 deleted (version 2)\n"
    );
    let out = serve.ctl(&["shadow", "update", "lamp-1", "not json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = serve.ctl(&["shadow", "get", "lamp-2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("thing lamp-2 has no shadow"),
        "{}",
        text(&out)
    );
}

#[test]
fn cluster_status_of_a_single_node() {
    let serve = Serve::start("");
    assert_eq!(
        serve.ok(&["cluster", "status"]),
        "this broker is not clustered (no [cluster] section in its config): a single node\n"
    );
    let v = json(&serve.ok(&["cluster", "status", "--json"]));
    assert_eq!(v["enabled"], false, "{v}");
    assert!(
        v["node"].as_str().is_some_and(|n| n.starts_with("hermod@")),
        "{v}"
    );
    assert_eq!(v["nodes"], serde_json::json!([]), "{v}");
    // The same over HTTP with a viewer's API key (read only is enough).
    let v = json(&serve.ok(&["api-keys", "add", "ops", "--role", "viewer", "--json"]));
    let key = format!(
        "{}:{}",
        v["api_key"].as_str().unwrap(),
        v["api_secret"].as_str().unwrap()
    );
    let out = ctl_in(
        serve.dir.path(),
        &[
            "--url",
            &serve.url(),
            "--api-key",
            &key,
            "cluster",
            "status",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("this broker is not clustered"),
        "{}",
        text(&out)
    );
}
