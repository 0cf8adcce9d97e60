//! Tests of the parent module.
use super::*;

const ACL: &str = "\
# anonymous clients
topic read $SYS/#
topic read public/#
topic deny public/private

user alice
topic readwrite home/alice/#
topic write cmd/+/set
topic deny home/alice/locked
topic read a/#

user bob
topic home/bob/#
topic read $SYS/broker/clients/#

user carol

pattern readwrite dev/%u/%c/#
pattern read in/%c
pattern deny dev/%u/blocked/#
pattern write $SYS/broker/connection/%c/state
";

fn acl() -> AclFile {
    AclFile::parse(ACL, "acl").expect("parse")
}

/// (case, username, client id, action `p`/`s`/`r`, topic or filter, expected)
type Case<'a> = (&'a str, Option<&'a str>, &'a str, char, &'a str, bool);

#[test]
fn acl_table() {
    let a = acl();
    let al = Some("alice");
    let bo = Some("bob");
    let ca = Some("carol");
    let cases: &[Case<'_>] = &[
        ("anon reads public", None, "c", 'r', "public/news", true),
        (
            "anon cannot write public",
            None,
            "c",
            'p',
            "public/news",
            false,
        ),
        ("anon deny wins", None, "c", 'r', "public/private", false),
        (
            "anon reads $SYS",
            None,
            "c",
            'r',
            "$SYS/broker/uptime",
            true,
        ),
        (
            "anon rules not for users",
            al,
            "c",
            'r',
            "public/news",
            false,
        ),
        ("user readwrite r", al, "c", 'r', "home/alice/t", true),
        ("user readwrite w", al, "c", 'p', "home/alice/t/x", true),
        ("user deny wins", al, "c", 'p', "home/alice/locked", false),
        (
            "user write-only not readable",
            al,
            "c",
            'r',
            "cmd/lamp/set",
            false,
        ),
        ("user write + wildcard", al, "c", 'p', "cmd/lamp/set", true),
        ("+ is one level", al, "c", 'p', "cmd/a/b/set", false),
        ("read-only not writable", al, "c", 'p', "a/b", false),
        ("other user's rules", bo, "c", 'p', "home/alice/t", false),
        (
            "no access word = readwrite",
            bo,
            "c",
            'p',
            "home/bob/x",
            true,
        ),
        (
            "no access word = readwrite r",
            bo,
            "c",
            'r',
            "home/bob",
            true,
        ),
        (
            "# does not match $SYS",
            al,
            "c",
            'r',
            "$SYS/broker/uptime",
            false,
        ),
        (
            "explicit $SYS read",
            bo,
            "c",
            'r',
            "$SYS/broker/clients/total",
            true,
        ),
        (
            "$SYS write refused even if allowed",
            bo,
            "c",
            'p',
            "$SYS/broker/clients/x",
            false,
        ),
        (
            "bridge state via %c pattern",
            al,
            "br1",
            'p',
            "$SYS/broker/connection/br1/state",
            true,
        ),
        (
            "bridge state other id",
            al,
            "br1",
            'p',
            "$SYS/broker/connection/br2/state",
            false,
        ),
        ("pattern %u/%c", ca, "c9", 'p', "dev/carol/c9/temp", true),
        (
            "pattern wrong client id",
            ca,
            "c9",
            'p',
            "dev/carol/c8/temp",
            false,
        ),
        (
            "pattern wrong user",
            ca,
            "c9",
            'p',
            "dev/alice/c9/temp",
            false,
        ),
        (
            "pattern deny %u wins",
            ca,
            "c9",
            'p',
            "dev/carol/blocked/x",
            false,
        ),
        ("pattern %c for anonymous", None, "c9", 'r', "in/c9", true),
        (
            "pattern %u skipped for anonymous",
            None,
            "c9",
            'p',
            "dev//c9/x",
            false,
        ),
        ("empty user block gets patterns", ca, "k", 'r', "in/k", true),
        (
            "unknown user gets patterns only",
            Some("zed"),
            "k",
            'r',
            "in/k",
            true,
        ),
        (
            "unknown user nothing else",
            Some("zed"),
            "k",
            'r',
            "public/news",
            false,
        ),
        (
            "'+' in client id: no patterns",
            ca,
            "c+",
            'r',
            "in/c+",
            false,
        ),
        (
            "'#' in username: no patterns",
            Some("x#"),
            "k",
            'r',
            "in/k",
            false,
        ),
        (
            "'+' in username: patterns off",
            Some("a+"),
            "k",
            'r',
            "in/k",
            false,
        ),
        (
            "'/' in client id not substituted",
            ca,
            "c9/x",
            'r',
            "in/c9/x",
            false,
        ),
        (
            "'/' in username not substituted",
            Some("carol/c9"),
            "k",
            'p',
            "dev/carol/c9/k/t",
            false,
        ),
        (
            "'/' in username: deny pattern fails closed",
            Some("a/b"),
            "k",
            'r',
            "in/k",
            false,
        ),
        // SUBSCRIBE: granted when some readable topic can match.
        ("subscribe # overlaps read rules", al, "c", 's', "#", true),
        (
            "subscribe narrower than read rule",
            al,
            "c",
            's',
            "a/b/+",
            true,
        ),
        ("subscribe + overlaps", al, "c", 's', "+/alice/t", true),
        ("subscribe shared", al, "c", 's', "$share/g/a/b", true),
        ("subscribe unreachable", None, "c", 's', "secret/#", false),
        (
            "subscribe other user's tree",
            al,
            "c",
            's',
            "home/bob/#",
            false,
        ),
        (
            "subscribe write-only topic",
            al,
            "c",
            's',
            "cmd/lamp/set",
            false,
        ),
        (
            "subscribe wholly denied",
            al,
            "c",
            's',
            "home/alice/locked",
            false,
        ),
        (
            "subscribe partly denied",
            al,
            "c",
            's',
            "home/alice/+",
            true,
        ),
        ("subscribe # is not $SYS", al, "c", 's', "$SYS/#", false),
        (
            "subscribe explicit $SYS",
            bo,
            "c",
            's',
            "$SYS/broker/clients/+",
            true,
        ),
        ("subscribe via pattern", None, "c9", 's', "in/c9", true),
        (
            "subscribe pattern for another id",
            None,
            "c9",
            's',
            "in/c8",
            false,
        ),
        (
            "subscribe pattern deny covers",
            ca,
            "c9",
            's',
            "dev/carol/blocked/#",
            false,
        ),
        ("subscribe pattern, '+' in id", ca, "c+", 's', "in/#", false),
        (
            "$share publish refused",
            al,
            "c",
            'p',
            "$share/g/home/alice/x",
            false,
        ),
    ];
    for (name, user, cid, action, topic, expected) in cases {
        let got = match action {
            'p' => a.check_publish(*user, cid, topic),
            's' => a.check_subscribe(*user, cid, topic),
            _ => a.check_receive(*user, cid, topic),
        };
        assert_eq!(
            got, *expected,
            "case '{name}': {user:?}/{cid} {action} {topic}"
        );
    }
}

#[test]
fn topic_lines_before_user_are_anonymous_only() {
    let a = AclFile::parse("topic x\nuser u\ntopic y\n", "t").expect("parse");
    assert!(a.check_publish(None, "c", "x"));
    assert!(!a.check_publish(None, "c", "y"));
    assert!(!a.check_publish(Some("u"), "c", "x"));
    assert!(a.check_publish(Some("u"), "c", "y"));
}

#[test]
fn empty_file_denies_everything() {
    let a = AclFile::parse("# nothing\n\n", "t").expect("parse");
    assert!(!a.check_publish(None, "c", "a"));
    assert!(!a.check_receive(Some("u"), "c", "a"));
}

#[test]
fn topics_with_spaces_and_repeated_user_blocks() {
    let a = AclFile::parse(
        "user u v\ntopic read a b/c\nuser w\nuser u v\ntopic write d\n",
        "t",
    )
    .expect("parse");
    assert!(a.check_receive(Some("u v"), "c", "a b/c"));
    assert!(a.check_publish(Some("u v"), "c", "d"));
}

#[test]
fn parse_errors_name_file_and_line() {
    for (text, line) in [
        ("topic read a\nbogus x\n", 2),
        ("\n\ntopic\n", 3),
        ("topic sometimes a/b\n", 1),
        ("topic a b\n", 1), // a topic with a space needs an access word, as in Mosquitto
        ("topic read a/#/b\n", 1),
        ("user\n", 1),
        ("pattern read a+\n", 1),
    ] {
        let e = AclFile::parse(text, "/etc/acl").expect_err(text);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("/etc/acl:{line}:")),
            "{text:?}: {msg}"
        );
    }
    let e = AclFile::load(Path::new("/nonexistent/acl")).expect_err("error");
    assert!(e.to_string().contains("/nonexistent/acl"));
}
