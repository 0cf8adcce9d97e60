//! `[[banned]]` (issue 8, item 8): clients banned by client id, username or address (one
//! address or a CIDR network) get CONNACK 0x8A "Banned" (3.1.1: return code 5) before their
//! credentials are checked; an expired ban no longer applies; a reload adds and removes bans.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::harness::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Now + `d` in unix seconds (truncated) and as RFC 3339.
fn rfc3339_in(d: Duration) -> (i64, String) {
    let secs = hermod_broker::banned::unix_secs(SystemTime::now() + d);
    (secs, hermod_broker::banned::format_rfc3339(secs))
}

const BASE: &str = r#"allow_anonymous = true
password_file = "passwd"
[[listener]]
bind = "127.0.0.1:0"
"#;

fn users() -> String {
    format!(
        "{}{}",
        passwd_line("mallory", "mallory-pw"),
        passwd_line("alice", "alice-pw")
    )
}

#[tokio::test]
async fn banned_client_id_username_and_addresses() {
    let dir = tempdir();
    write(dir.path(), "passwd", &users());
    let (soon_secs, soon) = rfc3339_in(Duration::from_secs(4));
    let config = format!(
        r#"{BASE}
[[banned]]
client_id = "evil-device"
[[banned]]
username = "mallory"
[[banned]]
address = "127.0.0.2/32"
[[banned]]
address = "127.0.3.0/24"
[[banned]]
client_id = "long-gone"
until = "2020-01-01T00:00:00Z"
[[banned]]
client_id = "far-future"
until = 2999-01-01T00:00:00Z
[[banned]]
client_id = "soon-free"
until = "{soon}"
"#
    );
    let b = TestBroker::start_in(dir, &config).await;
    let addr = b.addr(0);
    let check = |src: &str, v, id: &str, user: Option<(&str, &str)>| {
        let c = connect_auth(v, id, user.map(|u| u.0), user.map(|u| u.1.as_bytes()));
        connack_from(ip(src), addr, c, WAIT)
    };
    let lo = "127.0.0.1";
    // First, while it surely still runs: a ban ending in a few seconds.
    assert_eq!(
        check(lo, V5, "soon-free", None).await,
        Ok(ReasonCode::BANNED)
    );

    // Client id: v5 0x8A, 3.1.1 return code 5.
    assert_eq!(
        check(lo, V5, "evil-device", None).await,
        Ok(ReasonCode::BANNED)
    );
    assert_eq!(
        check(lo, V311, "evil-device", None).await,
        Ok(ReasonCode::NOT_AUTHORIZED),
        "3.1.1: return code 5"
    );
    assert_eq!(
        check(lo, V5, "good-device", None).await,
        Ok(ReasonCode::SUCCESS)
    );
    // Username: refused before the (right) password is checked; the name as a client id is fine.
    assert_eq!(
        check(lo, V5, "m1", Some(("mallory", "mallory-pw"))).await,
        Ok(ReasonCode::BANNED)
    );
    assert_eq!(
        check(lo, V311, "m1", Some(("mallory", "mallory-pw"))).await,
        Ok(ReasonCode::NOT_AUTHORIZED)
    );
    assert_eq!(
        check(lo, V5, "mallory", None).await,
        Ok(ReasonCode::SUCCESS)
    );
    assert_eq!(
        check(lo, V5, "a1", Some(("alice", "alice-pw"))).await,
        Ok(ReasonCode::SUCCESS)
    );
    // Addresses: a single one and a /24, with the right password too.
    for src in ["127.0.0.2", "127.0.3.1", "127.0.3.254"] {
        assert_eq!(
            check(src, V5, "a2", Some(("alice", "alice-pw"))).await,
            Ok(ReasonCode::BANNED),
            "{src}"
        );
    }
    assert_eq!(
        check("127.0.3.9", V311, "a2", None).await,
        Ok(ReasonCode::NOT_AUTHORIZED),
        "3.1.1 from a banned network: return code 5"
    );
    for src in ["127.0.0.3", "127.0.2.255", "127.0.4.0"] {
        assert_eq!(
            check(src, V5, "a3", None).await,
            Ok(ReasonCode::SUCCESS),
            "{src} is outside the banned networks"
        );
    }
    // Expiry: past → no ban; far future → ban; a ban that ends during the test stops applying.
    assert_eq!(
        check(lo, V5, "long-gone", None).await,
        Ok(ReasonCode::SUCCESS)
    );
    assert_eq!(
        check(lo, V5, "far-future", None).await,
        Ok(ReasonCode::BANNED)
    );
    let now = hermod_broker::banned::unix_secs(SystemTime::now());
    let left = u64::try_from(soon_secs - now).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(left * 1000 + 1100)).await;
    assert_eq!(
        check(lo, V5, "soon-free", None).await,
        Ok(ReasonCode::SUCCESS),
        "the ban expired"
    );
    b.stop().await;
}

#[tokio::test]
async fn reload_adds_and_removes_bans() {
    let dir = tempdir();
    write(dir.path(), "passwd", &users());
    let b = TestBroker::start_in(dir, &format!("{BASE}[[banned]]\nclient_id = \"a\"\n")).await;
    let addr = b.addr(0);
    let check =
        |src: &str, id: &str| connack_from(ip(src), addr, connect_auth(V5, id, None, None), WAIT);
    assert_eq!(check("127.0.0.1", "a").await, Ok(ReasonCode::BANNED));
    assert_eq!(check("127.0.0.1", "b").await, Ok(ReasonCode::SUCCESS));

    // Reload: "a" is no longer banned; "b" and all of 127.0.0.1 are.
    b.write(
        "hermod.toml",
        &format!("{BASE}[[banned]]\nclient_id = \"b\"\n[[banned]]\naddress = \"127.0.0.1/32\"\n"),
    );
    b.reloader.reload().expect("reload");
    assert_eq!(check("127.0.0.2", "a").await, Ok(ReasonCode::SUCCESS));
    assert_eq!(check("127.0.0.2", "b").await, Ok(ReasonCode::BANNED));
    assert_eq!(check("127.0.0.1", "a").await, Ok(ReasonCode::BANNED));

    // A broken entry: the reload fails naming it, and the bans in force stay.
    b.write(
        "hermod.toml",
        &format!("{BASE}[[banned]]\naddress = \"127.0.0.1/33\"\n"),
    );
    let err = b.reloader.reload().expect_err("a bad ban must not load");
    assert!(
        err.contains("hermod.toml") && err.contains("banned[0]") && err.contains("127.0.0.1/33"),
        "the error names the file, entry and value: {err}"
    );
    assert_eq!(check("127.0.0.1", "a").await, Ok(ReasonCode::BANNED));

    // Reload without bans: everyone is back.
    b.write("hermod.toml", BASE);
    b.reloader.reload().expect("reload");
    assert_eq!(check("127.0.0.1", "a").await, Ok(ReasonCode::SUCCESS));
    assert_eq!(check("127.0.0.1", "b").await, Ok(ReasonCode::SUCCESS));
    b.stop().await;
}
