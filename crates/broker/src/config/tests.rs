//! Unit tests of parsing and validating whole configuration files.

use std::path::Path;
use std::time::Duration;

use super::Config;
use crate::auth::ThrottleSettings;

#[test]
fn defaults_round_trip_through_print_default_config() {
    let text = Config::default_toml();
    let mut cfg = Config::parse(&text, Path::new("default.toml")).expect("defaults parse");
    assert_eq!(
        cfg.base_dir.as_deref(),
        Some(Path::new("")),
        "relative paths resolve against the file's folder"
    );
    cfg.base_dir = None;
    assert_eq!(cfg, Config::default());
}

#[test]
fn unknown_key_is_rejected_with_file_and_key() {
    let err = Config::parse(
        "max_keepalive = 60\nmax_keepalvie = 5\n[[listener]]\nbind = \"127.0.0.1:1\"\n",
        Path::new("/etc/hermod.toml"),
    )
    .expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("/etc/hermod.toml"), "{msg}");
    assert!(msg.contains("max_keepalvie"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn wrong_type_names_the_key() {
    let err =
        Config::parse("max_inflight_messages = \"lots\"\n", Path::new("h.toml")).expect_err("type");
    assert!(err.to_string().contains("max_inflight_messages"), "{err}");
}

#[test]
fn bad_bind_names_the_listener() {
    let err = Config::parse("[[listener]]\nbind = \"localhost\"\n", Path::new("h.toml"))
        .expect_err("bind");
    assert!(err.to_string().contains("listener[0].bind"), "{err}");
    // Host names are accepted (resolved at bind), as Mosquitto does.
    for ok in [
        "localhost:1883",
        "mqtt.example.com:8883",
        "[::1]:1883",
        "0.0.0.0:1",
    ] {
        let text = format!("[[listener]]\nbind = \"{ok}\"\n");
        assert!(Config::parse(&text, Path::new("h.toml")).is_ok(), "{ok}");
    }
    for bad in ["localhost:", ":1883", "local host:1883", "localhost:99999"] {
        let text = format!("[[listener]]\nbind = \"{bad}\"\n");
        assert!(Config::parse(&text, Path::new("h.toml")).is_err(), "{bad}");
    }
}

#[test]
fn a_file_without_listeners_is_refused() {
    let err = Config::parse("max_keepalive = 60\n", Path::new("h.toml")).expect_err("no listener");
    assert!(err.to_string().contains("listener"), "{err}");
}

#[test]
fn auth_failures_and_banned_entries() {
    let base = "[[listener]]\nbind = \"127.0.0.1:1\"\n";
    let cfg = Config::parse(
        &format!("{base}[auth_failures]\nmax = 3\nwindow = \"10s\"\nblock = \"2m\"\n[[banned]]\nclient_id = \"evil\"\n[[banned]]\naddress = \"10.1.0.0/16\"\nuntil = \"2027-01-01T00:00:00Z\"\n"),
        Path::new("h.toml"),
    )
    .expect("parses");
    assert_eq!(
        cfg.throttle_settings(),
        ThrottleSettings {
            max_failures: 3,
            window: Duration::from_secs(10),
            block: Duration::from_secs(120),
            max_addresses: 10_000,
            exempt_loopback: true,
        }
    );
    assert_eq!(cfg.banned.len(), 2);
    assert_eq!(cfg.banned[1].until, Some(1_798_761_600));
    for (text, needles) in [
        (
            "[[banned]]\nclient_id = \"a\"\n[[banned]]\naddress = \"10.0.0.0/33\"\n",
            &["h.toml", "banned[1]", "`address`", "10.0.0.0/33"][..],
        ),
        (
            "[[banned]]\nclient_id = \"a\"\nusername = \"b\"\n",
            &["banned[0]", "exactly one", "client_id, username"][..],
        ),
        (
            "[[banned]]\nclient_id = \"a\"\nuntil = \"2027-01-01\"\n",
            &["line 5", "`until`"][..],
        ),
        (
            "[auth_failures]\nwindow = \"1 min\"\n",
            &["auth_failures.window"][..],
        ),
        ("[auth_failures]\nmax_adresses = 5\n", &["max_adresses"][..]),
    ] {
        let e = Config::parse(&format!("{base}{text}"), Path::new("h.toml"))
            .expect_err(text)
            .to_string();
        for n in needles {
            assert!(e.contains(n), "{text:?}: {n:?} not in {e}");
        }
    }
}

#[test]
fn admin_and_metrics_sections() {
    let cfg = Config::parse(
        "sys_interval = 5\n[[listener]]\nbind = \"127.0.0.1:1883\"\n[admin]\nbind = \"0.0.0.0:18083\"\ntoken_expiry = \"30m\"\n[metrics]\nbind = \"127.0.0.1:9234\"\n",
        Path::new("h.toml"),
    )
    .expect("valid");
    assert_eq!(cfg.sys_interval, 5);
    assert_eq!(cfg.admin.bind, "0.0.0.0:18083");
    assert!(cfg.admin.enabled && cfg.admin.socket);
    assert_eq!(cfg.metrics.bind.as_deref(), Some("127.0.0.1:9234"));
    for (text, key) in [
        ("[admin]\nbind = \"nowhere\"\n", "admin.bind"),
        ("[admin]\ncertfile = \"c.pem\"\n", "admin.certfile"),
        ("[admin]\ntoken_expiry = \"0s\"\n", "admin.token_expiry"),
        ("[admin]\ntoken_expiry = \"soon\"\n", "admin.token_expiry"),
        ("[metrics]\nbind = \"9234\"\n", "metrics.bind"),
    ] {
        let text = format!("[[listener]]\nbind = \"127.0.0.1:1883\"\n{text}");
        let err = Config::parse(&text, Path::new("h.toml"))
            .expect_err(key)
            .to_string();
        assert!(err.contains(key) && err.contains("h.toml"), "{err}");
    }
}

/// `[shadow] access` is the broker's (the default rule on things' topics); the section's other
/// keys are hermod-shadow's and pass through.
#[test]
fn shadow_access_is_read_and_the_rest_let_through() {
    let c = Config::parse(
        "[shadow]\naccess = \"username\"\naws_compat = true\n[[listener]]\nbind = \"127.0.0.1:1\"\n",
        Path::new("h.toml"),
    )
    .expect("parses");
    assert_eq!(
        c.auth_settings().thing_access,
        crate::auth::ThingAccess::Username
    );
    let default = Config::parse(
        "[[listener]]\nbind = \"127.0.0.1:1\"\n",
        Path::new("h.toml"),
    )
    .expect("parses");
    assert_eq!(
        default.auth_settings().thing_access,
        crate::auth::ThingAccess::Clientid
    );
    let err = Config::parse(
        "[shadow]\naccess = \"serial\"\n[[listener]]\nbind = \"127.0.0.1:1\"\n",
        Path::new("h.toml"),
    )
    .expect_err("bad access");
    let msg = err.to_string();
    assert!(
        msg.contains("h.toml") && msg.contains("access") && msg.contains("serial"),
        "{msg}"
    );
}
