//! Round trips and hand-made damage of the record encodings.

use super::codec::RECORD_V1;
use super::*;

fn session() -> SessionRecord {
    SessionRecord {
        expiry: Some(3600),
        disconnected_at_unix_ms: Some(1_700_000_000_123),
        protocol_level: 5,
        subscriptions: vec![
            SubscriptionRecord {
                filter: "a/+/c".into(),
                qos: 2,
                no_local: true,
                retain_as_published: false,
                retain_handling: 2,
                subscription_id: Some(268_435_455),
            },
            SubscriptionRecord {
                filter: "$share/g/x/#".into(),
                qos: 0,
                no_local: false,
                retain_as_published: true,
                retain_handling: 0,
                subscription_id: None,
            },
        ],
        will: Some(WillRecord {
            topic: "will/ü".into(),
            payload: Bytes::from_static(b"\x00gone\xff"),
            qos: 1,
            retain: true,
            properties: Bytes::from_static(&[0x01, 0x01]),
            delay_secs: 30,
        }),
        owner: Owner::User("alice".into()),
    }
}

fn message() -> MessageRecord {
    MessageRecord {
        topic: "t/1".into(),
        payload: Bytes::from(vec![7u8; 300]),
        qos: 2,
        retain: false,
        properties: Bytes::from_static(&[0x02, 0, 0, 0, 60]),
        received_at_unix_ms: 42,
        expiry_at_unix_ms: Some(60_042),
        publisher: None,
    }
}

fn entries() -> Vec<QueueEntry> {
    vec![
        QueueEntry {
            message_id: u64::MAX,
            qos: 1,
            retain: true,
            subscription_ids: vec![1, 2, 268_435_455],
            shared: None,
            state: QueueState::Queued,
        },
        QueueEntry {
            message_id: 0,
            qos: 2,
            retain: false,
            subscription_ids: vec![],
            shared: Some(("g".into(), "x/#".into())),
            state: QueueState::Sent { packet_id: 65535 },
        },
        QueueEntry {
            message_id: 9,
            qos: 2,
            retain: false,
            subscription_ids: vec![5],
            shared: None,
            state: QueueState::Released { packet_id: 1 },
        },
    ]
}

#[test]
fn round_trips() {
    let s = session();
    assert_eq!(SessionRecord::decode(&s.encode()), Ok(s.clone()));
    let bare = SessionRecord {
        expiry: None,
        disconnected_at_unix_ms: None,
        protocol_level: 4,
        subscriptions: vec![],
        will: None,
        owner: Owner::Unknown,
    };
    assert_eq!(SessionRecord::decode(&bare.encode()), Ok(bare.clone()));
    for owner in [Owner::Anonymous, Owner::User("alice".into())] {
        let s = SessionRecord {
            owner,
            ..bare.clone()
        };
        assert_eq!(SessionRecord::decode(&s.encode()), Ok(s));
    }
    // An unknown owner tag is an error, not a silent "unknown".
    let mut bad = bare.encode();
    *bad.last_mut().expect("tag") = 7;
    assert!(SessionRecord::decode(&bad).is_err());
    // A version 1 record (written before owners were stored) decodes with an unknown owner.
    let mut v1 = bare.encode();
    v1[0] = RECORD_V1;
    v1.pop();
    assert_eq!(SessionRecord::decode(&v1), Ok(bare.clone()));
    let mut v1_alice = SessionRecord {
        owner: Owner::User("alice".into()),
        ..bare.clone()
    }
    .encode();
    v1_alice[0] = RECORD_V1;
    assert!(
        SessionRecord::decode(&v1_alice).is_err(),
        "v1 records end after the will"
    );
    let m = message();
    assert_eq!(MessageRecord::decode(&m.encode()), Ok(m.clone()));
    let m2 = MessageRecord {
        expiry_at_unix_ms: None,
        publisher: None,
        payload: Bytes::new(),
        properties: Bytes::new(),
        retain: true,
        ..m.clone()
    };
    assert_eq!(MessageRecord::decode(&m2.encode()), Ok(m2));
    // Without a publisher a message stays a version 1 record (builds before version 2 read
    // it); with one, version 2, and a version 1 reader's end of record is not version 2's.
    assert_eq!(m.encode()[0], RECORD_V1);
    let m3 = MessageRecord {
        publisher: Some(PublisherRecord {
            client_id: "dev-7".into(),
            username: Some("alice".into()),
            peer: Some("192.0.2.7:51234".into()),
        }),
        ..m.clone()
    };
    let v2 = m3.encode();
    assert_eq!(v2[0], message::MESSAGE_V2);
    assert_eq!(MessageRecord::decode(&v2), Ok(m3.clone()));
    let mut as_v1 = v2.clone();
    as_v1[0] = RECORD_V1;
    assert!(
        MessageRecord::decode(&as_v1).is_err(),
        "v1 records end after the expiry"
    );
    assert_eq!(
        MessageRecord::decode(&m.encode()).map(|r| r.publisher),
        Ok(None),
        "a version 1 record has no publisher"
    );
    for e in entries() {
        assert_eq!(QueueEntry::decode(&e.encode()), Ok(e));
    }
    for sub in session().subscriptions {
        assert_eq!(
            SubscriptionRecord::decode_row(&sub.filter, &sub.encode_row()),
            Ok(sub.clone())
        );
        let row = sub.encode_row();
        for cut in 0..row.len() {
            assert!(SubscriptionRecord::decode_row("f", &row[..cut]).is_err());
        }
    }
}

/// Every truncation and every single-byte corruption of a valid record decodes to an error
/// or to some value, never a panic; truncations and trailing bytes are always errors.
#[test]
fn garbage_never_panics() {
    type Check = fn(&[u8]) -> bool;
    let session_ok: Check = |b| SessionRecord::decode(b).is_ok();
    let message_ok: Check = |b| MessageRecord::decode(b).is_ok();
    let entry_ok: Check = |b| QueueEntry::decode(b).is_ok();
    let mut blobs = vec![
        (session().encode(), session_ok),
        (message().encode(), message_ok),
    ];
    blobs.extend(entries().iter().map(|e| (e.encode(), entry_ok)));
    for (blob, ok) in &blobs {
        assert!(ok(blob));
        for cut in 0..blob.len() {
            assert!(!ok(&blob[..cut]), "truncated at {cut} decoded");
        }
        let mut long = blob.clone();
        long.push(0);
        assert!(!ok(&long), "trailing byte accepted");
        for i in 0..blob.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = blob.clone();
                b[i] ^= flip;
                for check in [session_ok, message_ok, entry_ok] {
                    let _ = check(&b);
                }
            }
        }
    }
    // A huge declared length does not allocate or panic.
    let mut b = vec![RECORD_V1];
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(MessageRecord::decode(&b).is_err());
    assert!(SessionRecord::decode(&[RECORD_V1, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(QueueEntry::decode(&[2]).is_err(), "unknown record version");
    assert!(QueueEntry::decode(&[]).is_err());
}
