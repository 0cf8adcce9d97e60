//! Reload (`Reloader::reload`, what SIGHUP calls in `hermod serve`) while clients stay
//! connected: a broken ACL or password file keeps the old rules (a client denied before is
//! still denied, an allowed one still allowed); a fixed file takes effect for the connections
//! already open (their next publish and delivery), without dropping them.

use crate::harness::*;

// Alice may read `shared/news` from the start, so that her `shared/#` subscription is granted
// (it can match a readable topic) while `shared/y` stays filtered until the fixed file.
const ACL_V1: &str = "\
user root
topic readwrite #

user alice
topic readwrite home/alice/#
topic read shared/news
";

const ACL_BROKEN: &str = "\
user root
topic readwrite #

user alice
topic readwrite home/alice/#
topic read shared/news
topic sometimes shared/#
";

const ACL_V2: &str = "\
user root
topic readwrite #

user alice
topic readwrite home/alice/#
topic readwrite shared/#
";

/// Alice's publish to `shared/x` (PUBACK reason) and whether root's `shared/y` reaches her.
async fn shared_access(alice: &mut Client, root: &mut Client, n: usize) -> (ReasonCode, bool) {
    let r = alice
        .publish("shared/x", format!("a{n}").as_bytes(), Q1, false)
        .await;
    root.publish("shared/y", format!("r{n}").as_bytes(), Q1, false)
        .await;
    root.publish("fence/alice", format!("f{n}").as_bytes(), Q1, false)
        .await;
    let mut delivered = false;
    loop {
        let p = alice.expect_publish().await;
        if let Some(id) = p.packet_id {
            alice.send(&Packet::PublishAck(PublishAck::new(id))).await;
        }
        if p.topic == "shared/y" && p.payload == format!("r{n}").as_bytes() {
            delivered = true;
        }
        if p.topic == "fence/alice" {
            return (r, delivered);
        }
    }
}

#[tokio::test]
async fn broken_acl_keeps_old_rules_fixed_acl_applies_to_open_connections() {
    let pki = Pki::new();
    // fence/alice readable by alice in every version of the file.
    let with_fence = |acl: &str| format!("{acl}topic read fence/alice\n");
    let b = example_broker(&pki, &with_fence(ACL_V1)).await;
    let mut root = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "root", "root")).await;
    let mut alice = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "alice", "alice")).await;
    assert_eq!(alice.subscribe_one("shared/#", Q1).await, ReasonCode(1));
    assert_eq!(alice.subscribe_one("fence/alice", Q1).await, ReasonCode(1));
    assert_eq!(
        shared_access(&mut alice, &mut root, 1).await,
        (ReasonCode::NOT_AUTHORIZED, false),
        "before: denied"
    );
    assert_ne!(
        alice.publish("home/alice/x", b"1", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "before: allowed"
    );

    // Broken file: reload fails, naming the file and line; old rules stay, for open and new connections.
    b.write("acl", &with_fence(ACL_BROKEN));
    let err = b.reloader.reload().expect_err("a broken ACL must not load");
    assert!(
        err.contains("acl") && err.contains(":7:"),
        "error names the file and line: {err}"
    );
    assert_eq!(
        shared_access(&mut alice, &mut root, 2).await,
        (ReasonCode::NOT_AUTHORIZED, false),
        "after a failed reload: still denied"
    );
    assert_ne!(
        alice.publish("home/alice/x", b"2", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "after a failed reload: still allowed"
    );
    let mut alice2 = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "alice-2", "alice")).await;
    assert_eq!(
        alice2.publish("shared/x", b"n", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "new connection: old rules"
    );
    assert_ne!(
        alice2.publish("home/alice/x", b"n", Q1, false).await,
        ReasonCode::NOT_AUTHORIZED,
        "new connection: old rules"
    );

    // Fixed file: applies at once to the same connection (publish and delivery).
    b.write("acl", &with_fence(ACL_V2));
    b.reloader.reload().expect("the fixed ACL loads");
    assert_eq!(
        shared_access(&mut alice, &mut root, 3).await,
        (ReasonCode::SUCCESS, true),
        "after the fix: same connection allowed"
    );
    alice.ping().await;
    root.ping().await;
    b.stop().await;
}

#[tokio::test]
async fn password_file_reload() {
    let pki = Pki::new();
    let b = example_broker(&pki, ACL_V1).await;
    let mut alice = Client::connect(b.addr(TCP), &Via::Tcp, login(V5, "alice", "alice")).await;
    let newcomer = || connect_auth(V5, "new", Some("newcomer"), Some(b"new-pw"));
    assert_eq!(
        Client::connack(b.addr(TCP), &Via::Tcp, newcomer()).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );

    // A broken password file: reload fails, the old users still log in.
    let mut text: String = USERS.iter().map(|(u, p)| passwd_line(u, p)).collect();
    b.write("passwd", &format!("{text}newcomer:$7$notahash\n"));
    assert!(
        b.reloader.reload().is_err(),
        "a broken password file must not load"
    );
    assert_eq!(
        Client::connack(b.addr(TCP), &Via::Tcp, login(V5, "bob", "bob")).await,
        ReasonCode::SUCCESS,
        "old file still in force"
    );
    assert_eq!(
        Client::connack(b.addr(TCP), &Via::Tcp, newcomer()).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );

    // Fixed: the new user logs in; connected clients are not dropped.
    text.push_str(&passwd_line("newcomer", "new-pw"));
    b.write("passwd", &text);
    b.reloader.reload().expect("fixed password file loads");
    assert_eq!(
        Client::connack(b.addr(TCP), &Via::Tcp, newcomer()).await,
        ReasonCode::SUCCESS,
        "new user after reload"
    );
    alice.ping().await;
    b.stop().await;
}
