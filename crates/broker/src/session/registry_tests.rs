//! Unit tests of the session registry: takeover, hand-off, ownership, expiry.
use super::*;

fn session(id: &str, persistent: bool) -> Session {
    let mut s = Session::new(id.into(), 10, false);
    s.expiry = if persistent {
        None
    } else {
        Some(Duration::ZERO)
    };
    s
}

#[tokio::test]
async fn takeover_hands_the_session_to_the_new_connection() {
    let reg = Registry::default();
    let id: ClientId = "c".into();
    let old_kick = CancellationToken::new();
    assert!(matches!(
        reg.attach(&id, 1, old_kick.clone(), &Owner::Anonymous),
        Attached::New
    ));
    let Attached::TakingOver(rx) = reg.attach(&id, 2, CancellationToken::new(), &Owner::Anonymous)
    else {
        panic!("expected takeover")
    };
    assert!(old_kick.is_cancelled(), "old connection told to close");
    let mut s = session("c", true);
    s.subscriptions.insert(
        "a".into(),
        super::super::SubscriptionEntry {
            options: Default::default(),
            id: None,
        },
    );
    assert!(
        matches!(reg.detach(&id, 1, s), Detached::HandedOver),
        "handed over, not cleaned up"
    );
    let got = rx.await.expect("hand-off");
    assert!(got.subscriptions.contains_key("a"));
    assert_eq!(
        reg.status("c"),
        Some(true),
        "new connection still owns the slot"
    );
}

#[test]
fn a_waiter_that_gives_up_leaves_the_session_with_its_holder() {
    for abandon_first in [true, false] {
        let reg = Registry::default();
        let id: ClientId = "c".into();
        reg.attach(&id, 1, CancellationToken::new(), &Owner::Anonymous);
        let rx = reg.attach(&id, 2, CancellationToken::new(), &Owner::Anonymous);
        drop(rx); // connection 2 timed out waiting for the hand-off
        if abandon_first {
            reg.abandon(&id, 2);
        }
        assert!(
            matches!(
                reg.detach(&id, 1, session("c", true)),
                Detached::Offline(None)
            ),
            "kept, not ended (abandon first: {abandon_first})"
        );
        reg.abandon(&id, 2); // late: a no-op
        assert_eq!(reg.status("c"), Some(false), "persistent session offline");
    }
}

#[tokio::test]
async fn the_hand_off_goes_to_the_newest_connection() {
    let reg = Registry::default();
    let id: ClientId = "c".into();
    reg.attach(&id, 1, CancellationToken::new(), &Owner::Anonymous);
    let Attached::TakingOver(rx2) = reg.attach(&id, 2, CancellationToken::new(), &Owner::Anonymous)
    else {
        panic!("expected takeover")
    };
    let kick3 = CancellationToken::new();
    let Attached::TakingOver(rx3) = reg.attach(&id, 3, kick3, &Owner::Anonymous) else {
        panic!("expected takeover")
    };
    assert!(rx2.await.is_err(), "connection 2 is superseded");
    let mut s = session("c", true);
    s.subscriptions.insert(
        "keep".into(),
        super::super::SubscriptionEntry {
            options: Default::default(),
            id: None,
        },
    );
    assert!(matches!(reg.detach(&id, 1, s), Detached::HandedOver));
    let got = rx3.await.expect("connection 3 gets the session");
    assert!(got.subscriptions.contains_key("keep"));
    assert_eq!(reg.status("c"), Some(true));
    assert!(matches!(reg.detach(&id, 3, got), Detached::Offline(None)));
}

#[test]
fn expiry_only_removes_the_generation_it_was_armed_for() {
    let reg = Registry::default();
    let id: ClientId = "c".into();
    reg.attach(&id, 1, CancellationToken::new(), &Owner::Anonymous);
    reg.detach(&id, 1, session("c", true));
    reg.attach(&id, 2, CancellationToken::new(), &Owner::Anonymous);
    reg.detach(&id, 2, session("c", true));
    assert!(reg.expire(&id, 1).is_none(), "stale timer");
    assert!(reg.expire(&id, 2).is_some());
    assert_eq!(reg.status("c"), None);
}

fn user(name: &str) -> Owner {
    Owner::User(name.into())
}

#[test]
fn another_identity_is_refused_and_changes_nothing() {
    let reg = Registry::default();
    let id: ClientId = "alice-1".into();
    let alice_kick = CancellationToken::new();
    assert!(matches!(
        reg.attach(&id, 1, alice_kick.clone(), &user("alice")),
        Attached::New
    ));
    // Online: bob is refused and alice's connection is not kicked.
    let r = reg.attach(&id, 2, CancellationToken::new(), &user("bob"));
    assert!(matches!(r, Attached::Refused(o) if o == user("alice")));
    assert!(!alice_kick.is_cancelled());
    // Anonymous is another identity too.
    assert!(matches!(
        reg.attach(&id, 3, CancellationToken::new(), &Owner::Anonymous),
        Attached::Refused(_)
    ));
    // Offline: still alice's.
    let mut s = session("alice-1", true);
    s.owner = user("alice");
    assert!(matches!(reg.detach(&id, 1, s), Detached::Offline(None)));
    assert!(matches!(
        reg.attach(&id, 4, CancellationToken::new(), &user("bob")),
        Attached::Refused(_)
    ));
    assert_eq!(reg.status("alice-1"), Some(false), "still offline, intact");
    assert!(matches!(
        reg.attach(&id, 5, CancellationToken::new(), &user("alice")),
        Attached::Resumed(_)
    ));
}

#[tokio::test]
async fn another_identity_cannot_cancel_a_pending_will() {
    let reg = Registry::default();
    let id: ClientId = "c".into();
    let task = tokio::spawn(std::future::pending::<()>());
    reg.add_pending_will(id.clone(), 1, task.abort_handle(), user("alice"));
    assert!(matches!(
        reg.attach(&id, 2, CancellationToken::new(), &user("bob")),
        Attached::Refused(_)
    ));
    assert!(reg.take_pending_will(&id, 1), "the will is still pending");
}

#[test]
fn a_session_of_unknown_owner_is_claimed() {
    let reg = Registry::default();
    let id: ClientId = "c".into();
    reg.restore(session("c", true), 1);
    assert!(matches!(
        reg.attach(&id, 2, CancellationToken::new(), &user("bob")),
        Attached::Resumed(_)
    ));
}

#[test]
fn clean_session_ends_on_detach() {
    let reg = Registry::default();
    let id: ClientId = "c".into();
    reg.attach(&id, 1, CancellationToken::new(), &Owner::Anonymous);
    assert!(matches!(
        reg.detach(&id, 1, session("c", false)),
        Detached::Ended(_)
    ));
    assert_eq!(reg.status("c"), None);
}
