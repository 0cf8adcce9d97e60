//! Tests of the parent module.
use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn cidr_v4() {
    let n = net("10.1.0.0/16");
    assert!(n.contains(ip("10.1.0.0")));
    assert!(n.contains(ip("10.1.255.255")));
    assert!(!n.contains(ip("10.2.0.0")));
    assert!(!n.contains(ip("9.255.255.255")));
    assert!(n.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped peer");
    assert!(!n.contains(ip("::a01:203")), "IPv6 never matches IPv4");
    // Host bits are cleared: 10.1.2.3/16 is 10.1.0.0/16.
    assert_eq!(net("10.1.2.3/16"), n);
    assert_eq!(net("10.1.2.3/16").to_string(), "10.1.0.0/16");
    let one = net("127.0.0.1/32");
    assert!(one.contains(ip("127.0.0.1")));
    assert!(!one.contains(ip("127.0.0.2")));
    assert_eq!(net("127.0.0.1"), one, "a bare address is a /32");
    let all = net("0.0.0.0/0");
    assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("0.0.0.0")));
    assert!(!all.contains(ip("::1")));
    assert!(net("10.0.0.0/9").contains(ip("10.127.0.1")));
    assert!(!net("10.0.0.0/9").contains(ip("10.128.0.1")));
}

#[test]
fn cidr_v6() {
    let n = net("2001:db8::/32");
    assert!(n.contains(ip("2001:db8::1")));
    assert!(n.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!n.contains(ip("2001:db9::")));
    assert!(!n.contains(ip("32.1.13.184")));
    let one = net("::1/128");
    assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
    assert_eq!(net("::1"), one, "a bare address is a /128");
    let all = net("::/0");
    assert!(all.contains(ip("ffff::")) && all.contains(ip("::")));
    assert!(!all.contains(ip("10.0.0.1")), "::/0 is IPv6 only");
    assert!(net("fe80::/10").contains(ip("febf::1")));
    assert!(!net("fe80::/10").contains(ip("fec0::1")));
}

#[test]
fn cidr_malformed() {
    for bad in [
        "",
        "10.1.0.0/33",
        "::/129",
        "10.1.0.0/",
        "10.1.0.0/x",
        "10.1.0.0/-1",
        "10.1.0/16",
        "10.1.0.0/16/2",
        "example.com",
        "300.1.1.1",
        "/8",
    ] {
        assert!(bad.parse::<IpNet>().is_err(), "{bad:?} must be refused");
    }
    let e = "10.1.0.0/33".parse::<IpNet>().expect_err("too long");
    assert!(e.contains("10.1.0.0/33") && e.contains("32"), "{e}");
}

#[test]
fn rfc3339() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_rfc3339("2027-01-01T00:00:00Z"), Ok(1_798_761_600));
    assert_eq!(
        parse_rfc3339("2027-01-01T02:00:00+02:00"),
        Ok(1_798_761_600)
    );
    assert_eq!(
        parse_rfc3339("2026-12-31T19:00:00.5-05:00"),
        Ok(1_798_761_600)
    );
    assert_eq!(parse_rfc3339("2024-02-29t12:00:00z"), Ok(1_709_208_000));
    assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1));
    for bad in [
        "2027-01-01",
        "2027-01-01T00:00:00",
        "2027-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2027-01-01T24:00:00Z",
        "2027-01-01T00:00:00+0200",
        "2027-01-01T00:00:00Zjunk",
        "27-01-01T00:00:00Z",
        "2027-01-01T00:00:00.Z",
        "next tuesday",
    ] {
        assert!(parse_rfc3339(bad).is_err(), "{bad:?} must be refused");
    }
    for t in [0, 1_798_761_600, 1_709_208_000, -1, 951_782_400] {
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t), "{t}");
    }
    assert_eq!(format_rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
}

#[test]
fn check_add_remove_replace_and_expiry() {
    let entry = |rule, until| BanEntry { rule, until };
    let b = Banned::new(&[
        entry(BanRule::ClientId("evil".into()), None),
        entry(BanRule::Address(net("10.1.0.0/16")), Some(2_000)),
    ]);
    let at = |s: u64| UNIX_EPOCH + std::time::Duration::from_secs(s);
    let home = ip("192.0.2.1");
    assert!(b.check("evil", None, home, at(0)).is_some());
    assert!(b.check("good", None, home, at(0)).is_none());
    assert!(b.check("good", None, ip("10.1.9.9"), at(1_999)).is_some());
    assert!(
        b.check("good", None, ip("10.1.9.9"), at(2_000)).is_none(),
        "expired"
    );
    b.add(entry(BanRule::Username("mallory".into()), None));
    assert!(b.check("x", Some("mallory"), home, at(0)).is_some());
    assert!(
        b.check("mallory", None, home, at(0)).is_none(),
        "username, not id"
    );
    // Reload: config entries replaced, run-time ones kept.
    b.replace_config(&[entry(BanRule::ClientId("other".into()), None)]);
    assert!(b.check("evil", None, home, at(0)).is_none());
    assert!(b.check("other", None, home, at(0)).is_some());
    assert!(b.check("x", Some("mallory"), home, at(0)).is_some());
    assert!(b.remove(&BanRule::Username("mallory".into())));
    assert!(!b.remove(&BanRule::Username("mallory".into())));
    assert!(b.check("x", Some("mallory"), home, at(0)).is_none());
    assert_eq!(b.list().len(), 1);
}

#[test]
fn toml_entries() {
    #[derive(Deserialize, Serialize)]
    struct F {
        banned: Vec<BanEntry>,
    }
    let f: F = toml::from_str(
        "[[banned]]\nclient_id = \"evil\"\n[[banned]]\naddress = \"10.1.0.0/16\"\nuntil = \"2027-01-01T00:00:00Z\"\n[[banned]]\nusername = \"u\"\nuntil = 2027-01-01T01:00:00+01:00\n",
    )
    .expect("parses");
    assert_eq!(f.banned[0].rule, BanRule::ClientId("evil".into()));
    assert_eq!(f.banned[1].rule, BanRule::Address(net("10.1.0.0/16")));
    assert_eq!(f.banned[1].until, Some(1_798_761_600));
    assert_eq!(
        f.banned[2].until,
        Some(1_798_761_600),
        "TOML date-time value"
    );
    let text = toml::to_string(&f).expect("serializes");
    let again: F = toml::from_str(&text).expect("round trip");
    assert_eq!(again.banned, f.banned);
    for (bad, needle) in [
        (
            "[[banned]]\nclient_id = \"a\"\nusername = \"b\"\n",
            "exactly one",
        ),
        (
            "[[banned]]\nuntil = \"2027-01-01T00:00:00Z\"\n",
            "exactly one",
        ),
        ("[[banned]]\naddress = \"10.0.0.0/40\"\n", "address"),
        ("[[banned]]\nclient_id = \"\"\n", "client_id"),
        (
            "[[banned]]\nclient_id = \"a\"\nuntil = \"tomorrow\"\n",
            "until",
        ),
        (
            "[[banned]]\nclient_id = \"a\"\nuntil = 2027-01-01T00:00:00\n",
            "until",
        ),
        ("[[banned]]\nclientid = \"a\"\n", "clientid"),
    ] {
        let e = toml::from_str::<F>(bad).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains(needle)),
            "{bad:?}: {e:?}"
        );
    }
}
