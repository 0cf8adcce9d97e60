//! Tests of the store against real redb files: every op across a restart, queue paging, refcounted
//! messages, group commit, locking, repair and corruption handling.

#![allow(clippy::unwrap_used)]

use super::writer::read_slot;
use super::*;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn cfg(dir: &Path, sync: SyncMode) -> StoreConfig {
    StoreConfig {
        path: dir.join("hermod-data"),
        sync,
        on_corrupt: OnCorrupt::Fail,
    }
}

fn open(c: &StoreConfig) -> (Store, Recovered) {
    Store::open(c).unwrap()
}

fn session(level: u8) -> SessionRecord {
    SessionRecord {
        expiry: Some(60),
        disconnected_at_unix_ms: Some(1_700_000_000_000),
        protocol_level: level,
        subscriptions: vec![SubscriptionRecord {
            filter: "a/#".into(),
            qos: 1,
            no_local: false,
            retain_as_published: true,
            retain_handling: 1,
            subscription_id: Some(7),
        }],
        will: Some(WillRecord {
            topic: "w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: 1,
            retain: false,
            properties: Bytes::new(),
            delay_secs: 5,
        }),
        owner: crate::session::Owner::User("alice".into()),
    }
}

fn msg(topic: &str, payload: &[u8]) -> MessageRecord {
    MessageRecord {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos: 1,
        retain: false,
        properties: Bytes::from_static(&[0x01, 0x01]),
        received_at_unix_ms: 1000,
        expiry_at_unix_ms: Some(2000),
        publisher: None,
    }
}

fn entry(message_id: u64) -> QueueEntry {
    QueueEntry {
        message_id,
        qos: 1,
        retain: false,
        subscription_ids: vec![7],
        shared: None,
        state: QueueState::Queued,
    }
}

fn commit(store: &Store, ops: Vec<Op>) {
    store.submit(ops).wait().unwrap();
}

/// (message ids in `messages`, refs table) read straight from the file.
fn raw_messages(store: &Store) -> (Vec<u64>, Vec<(u64, u32)>) {
    let slot = read_slot(&store.inner.db);
    let txn = slot.as_ref().unwrap().begin_read().unwrap();
    let m = txn.open_table(MESSAGES).unwrap();
    let r = txn.open_table(MESSAGE_REFS).unwrap();
    let ids = m.iter().unwrap().map(|i| i.unwrap().0.value()).collect();
    let refs = r
        .iter()
        .unwrap()
        .map(|i| {
            let (k, v) = i.unwrap();
            (k.value(), v.value())
        })
        .collect();
    (ids, refs)
}

fn sorted<K: Ord, V>(mut v: Vec<(K, V)>) -> Vec<(K, V)> {
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn empty_store_opens_and_records_schema() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (store, rec) = open(&c);
    assert!(c.file().is_file(), "database created inside the directory");
    assert!(rec.sessions.is_empty() && rec.queues.is_empty() && rec.retained.is_empty());
    assert_eq!(rec.next_message_id, 0);
    let slot = read_slot(&store.inner.db);
    let txn = slot.as_ref().unwrap().begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    assert_eq!(
        meta.get(SCHEMA_KEY).unwrap().unwrap().value(),
        SCHEMA_VERSION
    );
}

#[test]
fn every_op_round_trips_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (store, _) = open(&c);
    let mut retained2 = msg("r/2", b"two");
    retained2.retain = true;
    commit(
        &store,
        vec![
            Op::PutSession("c1".into(), session(5)),
            Op::PutSession("c2".into(), session(4)),
            Op::PutSession("gone".into(), session(3)),
            Op::PutMessage(10, msg("t", b"m10"), 2),
            Op::Enqueue("c1".into(), 5, entry(10)),
            Op::Enqueue("c2".into(), 1, entry(10)),
            Op::PutMessage(11, msg("t", b"m11"), 1),
            Op::Enqueue("c1".into(), 6, entry(11)),
            Op::PutMessage(12, msg("t", b"m12"), 1),
            Op::Enqueue("c1".into(), 7, entry(12)),
            Op::PutInflightIn("c1".into(), 3),
            Op::PutInflightIn("c1".into(), 65535),
            Op::PutInflightIn("gone".into(), 9),
            Op::PutRetained("r/1".into(), msg("r/1", b"one")),
            Op::PutRetained("r/2".into(), retained2.clone()),
            Op::PutRetained("r/3".into(), msg("r/3", b"three")),
        ],
    );
    let mut sent = entry(11);
    sent.state = QueueState::Sent { packet_id: 42 };
    commit(
        &store,
        vec![
            Op::UpdateQueueEntry("c1".into(), 6, sent.clone()),
            Op::Dequeue("c1".into(), 7),
            Op::DeleteInflightIn("c1".into(), 3),
            Op::DeleteRetained("r/3".into()),
            Op::DeleteSession("gone".into()),
            Op::PutSession("c2".into(), session(5)),
        ],
    );
    assert_eq!(store.queue_len("c1").unwrap(), 2);
    store.close();

    let (store, rec) = open(&c);
    assert_eq!(
        sorted(rec.sessions.clone()),
        vec![
            ("c1".to_string(), session(5)),
            ("c2".to_string(), session(5))
        ]
    );
    assert_eq!(
        sorted(rec.inflight_in.clone()),
        vec![("c1".to_string(), 65535)]
    );
    assert_eq!(
        sorted(rec.retained.clone()),
        vec![
            ("r/1".to_string(), msg("r/1", b"one")),
            ("r/2".to_string(), retained2)
        ]
    );
    assert_eq!(
        rec.next_message_id, 12,
        "message 12 was deleted; 11 is the highest left"
    );
    let c1 = &rec.queues["c1"];
    assert_eq!((c1.len, c1.first_seq, c1.next_seq), (2, 5, 7));
    assert_eq!(
        c1.sizes.iter().map(|&(seq, _)| seq).collect::<Vec<_>>(),
        [5, 6],
        "one size per entry, by sequence number"
    );
    assert!(
        c1.sizes.iter().all(|&(_, size)| size > 3),
        "sizes of the stored records"
    );
    assert_eq!(rec.queues["c2"].len, 1);
    assert_eq!(rec.repairs, 0);

    let q = store.load_queue("c1", None, 100).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!((q[0].0, &q[0].1), (5, &entry(10)));
    assert_eq!(*q[0].2, msg("t", b"m10"));
    assert_eq!((q[1].0, &q[1].1), (6, &sent));
    assert_eq!(*q[1].2, msg("t", b"m11"));
    assert_eq!(raw_messages(&store), (vec![10, 11], vec![(10, 2), (11, 1)]));
}

#[test]
fn load_queue_pages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Os);
    let (store, _) = open(&c);
    let mut ops = vec![
        Op::PutSession("c".into(), session(5)),
        // Neighbours whose keys sort right around "c": must not leak into its queue.
        Op::PutSession("b".into(), session(5)),
        Op::PutSession("c\0".into(), session(5)),
        Op::PutSession("cc".into(), session(5)),
    ];
    for (i, seq) in [1u64, 2, 300, 256, 3, u64::MAX - 1].iter().enumerate() {
        ops.push(Op::PutMessage(i as u64, msg("t", &[i as u8]), 1));
        ops.push(Op::Enqueue("c".into(), *seq, entry(i as u64)));
    }
    for (k, other) in ["b", "c\0", "cc"].iter().enumerate() {
        let id = 100 + k as u64;
        ops.push(Op::PutMessage(id, msg("t", b"other"), 1));
        ops.push(Op::Enqueue((*other).into(), 4, entry(id)));
    }
    commit(&store, ops);
    let seqs = |v: Vec<(u64, QueueEntry, Arc<MessageRecord>)>| -> Vec<u64> {
        v.into_iter().map(|x| x.0).collect()
    };
    assert_eq!(
        seqs(store.load_queue("c", None, 100).unwrap()),
        vec![1, 2, 3, 256, 300, u64::MAX - 1]
    );
    assert_eq!(seqs(store.load_queue("c", None, 2).unwrap()), vec![1, 2]);
    assert_eq!(
        seqs(store.load_queue("c", Some(2), 2).unwrap()),
        vec![3, 256]
    );
    assert_eq!(
        seqs(store.load_queue("c", Some(256), 10).unwrap()),
        vec![300, u64::MAX - 1]
    );
    assert!(
        store
            .load_queue("c", Some(u64::MAX - 1), 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .load_queue("c", Some(u64::MAX), 10)
            .unwrap()
            .is_empty()
    );
    assert!(store.load_queue("nobody", None, 10).unwrap().is_empty());
    assert_eq!(store.queue_len("c").unwrap(), 6);
    assert_eq!(store.queue_len("cc").unwrap(), 1);
    // Entries of one message in one page share one Arc.
    commit(
        &store,
        vec![
            Op::PutSession("d".into(), session(5)),
            Op::PutMessage(50, msg("t", b"fan"), 2),
            Op::Enqueue("d".into(), 1, entry(50)),
            Op::Enqueue("d".into(), 2, entry(50)),
        ],
    );
    let d = store.load_queue("d", None, 10).unwrap();
    assert!(Arc::ptr_eq(&d[0].2, &d[1].2));
    // The payload comes back with the entry.
    let q = store.load_queue("c", Some(3), 1).unwrap();
    assert_eq!(q[0].2.payload, Bytes::from_static(&[3]));
}

#[test]
fn message_stored_once_and_refcounted() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (store, _) = open(&c);
    let mut ops: Vec<Op> = ["a", "b", "c"]
        .iter()
        .map(|s| Op::PutSession((*s).into(), session(5)))
        .collect();
    ops.push(Op::PutMessage(1, msg("t", b"shared"), 3));
    for s in ["a", "b", "c"] {
        ops.push(Op::Enqueue(s.into(), 0, entry(1)));
    }
    commit(&store, ops);
    assert_eq!(
        raw_messages(&store),
        (vec![1], vec![(1, 3)]),
        "stored once, 3 refs"
    );
    commit(&store, vec![Op::Dequeue("a".into(), 0)]);
    assert_eq!(raw_messages(&store), (vec![1], vec![(1, 2)]));
    commit(
        &store,
        vec![
            Op::PutMessage(2, msg("t", b"x"), 1),
            Op::Enqueue("a".into(), 1, entry(2)),
        ],
    );
    assert_eq!(raw_messages(&store), (vec![1, 2], vec![(1, 2), (2, 1)]));
    commit(
        &store,
        vec![
            Op::PutMessage(3, msg("t", b"y"), 1),
            Op::Enqueue("a".into(), 1, entry(3)),
        ],
    );
    assert_eq!(
        raw_messages(&store),
        (vec![1, 3], vec![(1, 2), (3, 1)]),
        "replacing entry a/1 released (and deleted) message 2"
    );
    commit(&store, vec![Op::Dequeue("a".into(), 1)]);
    assert_eq!(
        raw_messages(&store),
        (vec![1], vec![(1, 2)]),
        "message 3 deleted at 0"
    );

    // Restart keeps the count.
    store.close();
    let (store, rec) = open(&c);
    assert_eq!(rec.repairs, 0);
    assert_eq!(raw_messages(&store), (vec![1], vec![(1, 2)]));
    commit(
        &store,
        vec![Op::Dequeue("c".into(), 0), Op::Dequeue("c".into(), 0)],
    );
    assert_eq!(
        raw_messages(&store),
        (vec![1], vec![(1, 1)]),
        "double dequeue is a no-op"
    );
    commit(&store, vec![Op::DeleteSession("b".into())]);
    assert_eq!(
        raw_messages(&store),
        (vec![], vec![]),
        "DeleteSession released the last ref"
    );

    // DeleteSession decrements and deletes its queue and inflight_in.
    commit(
        &store,
        vec![
            Op::PutMessage(5, msg("t", b"5"), 2),
            Op::Enqueue("a".into(), 10, entry(5)),
            Op::Enqueue("c".into(), 10, entry(5)),
            Op::PutInflightIn("a".into(), 1),
            Op::PutInflightIn("c".into(), 1),
        ],
    );
    commit(&store, vec![Op::DeleteSession("a".into())]);
    assert_eq!(raw_messages(&store), (vec![5], vec![(5, 1)]));
    assert_eq!(store.queue_len("a").unwrap(), 0);
    assert_eq!(store.queue_len("c").unwrap(), 1);
    store.close();
    let (_store, rec) = open(&c);
    assert_eq!(rec.inflight_in, vec![("c".to_string(), 1)]);
    assert_eq!(rec.sessions.len(), 1);
    assert_eq!(rec.repairs, 0);
}

#[test]
fn races_at_session_end_are_noops() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (store, _) = open(&c);
    commit(
        &store,
        vec![
            Op::PutSession("live".into(), session(5)),
            Op::PutMessage(1, msg("t", b"x"), 2),
            Op::Enqueue("live".into(), 0, entry(1)),
            // Session gone before the enqueue: no entry, and its reference is dropped.
            Op::Enqueue("dead".into(), 0, entry(1)),
            Op::Dequeue("dead".into(), 0),
            Op::UpdateQueueEntry("dead".into(), 0, entry(1)),
            Op::Enqueue("live".into(), 1, entry(999)),
        ],
    );
    assert_eq!(store.queue_len("dead").unwrap(), 0);
    assert_eq!(
        store.queue_len("live").unwrap(),
        1,
        "unknown message not enqueued"
    );
    assert_eq!(raw_messages(&store), (vec![1], vec![(1, 1)]));
}

#[test]
fn open_repairs_inconsistencies() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (store, _) = open(&c);
    commit(
        &store,
        vec![
            Op::PutSession("a".into(), session(5)),
            // Counted 3, but only one Enqueue ever arrived (e.g. a crash between two submits).
            Op::PutMessage(1, msg("t", b"x"), 3),
            Op::Enqueue("a".into(), 0, entry(1)),
            // Never enqueued at all.
            Op::PutMessage(2, msg("t", b"y"), 1),
        ],
    );
    store.close();
    let (store, rec) = open(&c);
    assert_eq!(rec.repairs, 2);
    assert_eq!(raw_messages(&store), (vec![1], vec![(1, 1)]));
    assert_eq!(
        rec.next_message_id, 3,
        "above every id seen, deleted ones included"
    );
    store.close();
    let (_s, rec) = open(&c);
    assert_eq!(rec.repairs, 0, "repairs were committed");
}

#[test]
fn group_commit_shares_transactions() {
    for sync in [SyncMode::Batch, SyncMode::Os] {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), sync);
        let (store, _) = open(&c);
        commit(&store, vec![Op::PutSession("s".into(), session(5))]);
        let before = store.stats();
        let threads = 16;
        let per_thread = 40u64;
        std::thread::scope(|s| {
            for t in 0..threads {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..per_thread {
                        let id = t * 1000 + i;
                        store
                            .submit(vec![
                                Op::PutMessage(id, msg("t", b"payload"), 1),
                                Op::Enqueue("s".into(), id, entry(id)),
                            ])
                            .wait()
                            .unwrap();
                    }
                });
            }
        });
        let after = store.stats();
        let submissions = threads * per_thread;
        assert_eq!(after.submissions - before.submissions, submissions);
        let commits = after.commits - before.commits;
        assert!(
            commits < submissions / 2,
            "{sync:?}: {commits} commits for {submissions} submissions"
        );
        assert_eq!(store.queue_len("s").unwrap(), submissions as usize);
        match sync {
            SyncMode::Batch => assert!(after.fsyncs - before.fsyncs >= commits, "{after:?}"),
            SyncMode::Os => assert_eq!(after.fsyncs, 0, "os mode never fsyncs"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_is_a_future() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (store, _) = open(&c);
    let commits: Vec<Commit> = (0..100)
        .map(|i| store.submit(vec![Op::PutSession(format!("c{i}"), session(5))]))
        .collect();
    for c in commits {
        c.await.unwrap();
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s2 = store.clone();
    std::thread::spawn(move || {
        let _ = tx.send(s2.submit(vec![Op::DeleteSession("c0".into())]).wait());
    });
    rx.await.unwrap().unwrap();
    assert!(store.stats().commits < 100);
}

#[test]
fn closed_store_refuses_and_flushes_pending() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (store, _) = open(&c);
    let other = store.clone();
    let pending: Vec<Commit> = (0..50)
        .map(|i| store.submit(vec![Op::PutSession(format!("c{i}"), session(5))]))
        .collect();
    store.close();
    for p in pending {
        p.wait().unwrap();
    }
    assert_eq!(other.submit(vec![]).wait(), Err(StoreError::Closed));
    drop(other);
    let (_s, rec) = open(&c);
    assert_eq!(rec.sessions.len(), 50);
}

#[test]
fn file_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    let (_store, _) = open(&c);
    let quarantine = StoreConfig {
        on_corrupt: OnCorrupt::Quarantine,
        ..c.clone()
    };
    let err = Store::open(&quarantine).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains(DB_FILE_NAME), "{err}");
    assert!(c.file().exists(), "a file in use is never quarantined");
}

/// Commits, then drops the handle without `close` (Drop must flush), then reopens.
#[test]
fn drop_without_close_keeps_commits() {
    for sync in [SyncMode::Batch, SyncMode::Os] {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), sync);
        let (store, _) = open(&c);
        commit(&store, vec![Op::PutSession("acked".into(), session(5))]);
        let _not_awaited = store.submit(vec![Op::PutSession("pending".into(), session(5))]);
        drop(store);
        let (_s, rec) = open(&c);
        let mut ids: Vec<String> = rec.sessions.into_iter().map(|s| s.0).collect();
        ids.sort();
        assert_eq!(ids, vec!["acked", "pending"], "{sync:?}");
    }
}

// ---- corruption ------------------------------------------------------------------------------

fn make_populated(c: &StoreConfig) {
    let (store, _) = open(c);
    let mut ops = vec![Op::PutSession("a".into(), session(5))];
    for i in 0..200u64 {
        ops.push(Op::PutMessage(i, msg("t", &[7u8; 500]), 1));
        ops.push(Op::Enqueue("a".into(), i, entry(i)));
    }
    commit(&store, ops);
    store.close();
}

fn check_corrupt(c: &StoreConfig, what: &str) {
    let err = Store::open(c).unwrap_err();
    println!("{what}: {err}");
    assert!(
        matches!(err, StoreError::Corrupt { ref file, .. } if *file == c.file()),
        "{what}: {err:?}"
    );
    assert!(
        err.to_string().contains(&c.file().display().to_string()),
        "{what}: {err}"
    );
    assert!(c.file().exists(), "{what}: Fail leaves the file in place");

    let q = StoreConfig {
        on_corrupt: OnCorrupt::Quarantine,
        ..c.clone()
    };
    let (store, rec) = Store::open(&q).unwrap_or_else(|e| panic!("{what}: {e}"));
    let bad = c.path.join(format!("{DB_FILE_NAME}.bad"));
    assert_eq!(rec.quarantined.as_deref(), Some(bad.as_path()), "{what}");
    assert!(bad.exists(), "{what}");
    assert!(rec.sessions.is_empty(), "{what}: starts empty");
    commit(&store, vec![Op::PutSession("new".into(), session(5))]);
    store.close();
    let (_s, rec) = open(c);
    assert_eq!(rec.sessions.len(), 1, "{what}: the new store works");
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    std::fs::create_dir_all(&c.path).unwrap();
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(c.file(), garbage).unwrap();
    check_corrupt(&c, "garbage");
}

#[test]
fn truncated_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    make_populated(&c);
    let len = std::fs::metadata(c.file()).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.file())
        .unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    check_corrupt(&c, "truncated");
}

#[test]
fn damaged_pages_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    make_populated(&c);
    let mut bytes = std::fs::read(c.file()).unwrap();
    let len = bytes.len();
    // Damage every page past the header region, as a bad disk would; keep the header intact.
    for i in (8192..len).step_by(512) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(c.file(), bytes).unwrap();
    check_corrupt(&c, "damaged pages");
}

#[test]
fn flipped_payload_byte_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    make_populated(&c);
    let mut bytes = std::fs::read(c.file()).unwrap();
    // The payloads are runs of 7s: flip one byte inside one.
    let at = bytes
        .windows(64)
        .position(|w| w.iter().all(|b| *b == 7))
        .unwrap()
        + 32;
    bytes[at] = 8;
    std::fs::write(c.file(), bytes).unwrap();
    check_corrupt(&c, "flipped payload byte");
}

#[test]
fn missing_or_invalid_schema_is_corrupt_newer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    make_populated(&c);
    let set_version = |v: Option<u32>| {
        let db = Database::create(c.file()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            match v {
                Some(v) => meta.insert(SCHEMA_KEY, v).unwrap(),
                None => meta.remove(SCHEMA_KEY).unwrap(),
            };
        }
        txn.commit().unwrap();
    };

    set_version(Some(SCHEMA_VERSION + 1));
    for on_corrupt in [OnCorrupt::Fail, OnCorrupt::Quarantine] {
        let err = Store::open(&StoreConfig {
            on_corrupt,
            ..c.clone()
        })
        .unwrap_err();
        assert_eq!(
            err,
            StoreError::UnsupportedSchema {
                file: c.file(),
                found: SCHEMA_VERSION + 1,
                supported: SCHEMA_VERSION
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{err}"
        );
        assert!(c.file().exists());
    }

    set_version(Some(0));
    let err = Store::open(&c).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

    set_version(None);
    check_corrupt(&c, "no schema version");
}

#[test]
fn corrupt_record_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    make_populated(&c);
    {
        let db = Database::create(c.file()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SESSIONS)
            .unwrap()
            .insert("a", [9u8, 9, 9].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&c).unwrap_err();
    match &err {
        StoreError::Corrupt { detail, .. } => assert!(detail.contains("session record"), "{err}"),
        e => panic!("{e:?}"),
    }
    // A second quarantine picks a fresh name.
    std::fs::write(c.path.join(format!("{DB_FILE_NAME}.bad")), b"old").unwrap();
    let q = StoreConfig {
        on_corrupt: OnCorrupt::Quarantine,
        ..c.clone()
    };
    let (_s, rec) = Store::open(&q).unwrap();
    assert_eq!(
        rec.quarantined,
        Some(c.path.join(format!("{DB_FILE_NAME}.1.bad")))
    );
}

#[test]
fn unopenable_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let c = StoreConfig::new(blocker.join("sub"));
    let err = Store::open(&c).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("sub"), "{err}");
}

// ---- crash safety: kill -9 of a child process ------------------------------------------------

const CRASH_DIR_ENV: &str = "HERMOD_STORE_CRASH_DIR";
const CRASH_SYNC_ENV: &str = "HERMOD_STORE_CRASH_SYNC";

/// The child half of `kill_9_keeps_acknowledged_commits`: commits, reports each acknowledged
/// commit on stdout, and keeps going until killed. Does nothing when run on its own.
#[test]
#[ignore = "run as a child process by kill_9_keeps_acknowledged_commits"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let sync = match std::env::var(CRASH_SYNC_ENV).as_deref() {
        Ok("os") => SyncMode::Os,
        _ => SyncMode::Batch,
    };
    let c = StoreConfig {
        path: PathBuf::from(dir),
        sync,
        on_corrupt: OnCorrupt::Fail,
    };
    let (store, _) = open(&c);
    commit(&store, vec![Op::PutSession("s".into(), session(5))]);
    for i in 0u64.. {
        commit(
            &store,
            vec![
                Op::PutMessage(i, msg("t", &i.to_be_bytes()), 1),
                Op::Enqueue("s".into(), i, entry(i)),
            ],
        );
        println!("ACK {i}");
    }
}

#[test]
fn kill_9_keeps_acknowledged_commits() {
    for sync in ["batch", "os"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("hermod-data");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::tests::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, &data)
            .env(CRASH_SYNC_ENV, sync)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last_acked = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Some(line) = lines.next() else { break };
            if let Some(n) = line.unwrap().strip_prefix("ACK ") {
                let n: u64 = n.trim().parse().unwrap();
                last_acked = Some(n);
                if n >= 30 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last = last_acked.unwrap_or_else(|| panic!("{sync}: child acknowledged nothing"));
        assert!(last >= 30, "{sync}: only {last} acks before the deadline");

        let (store, rec) = open(&StoreConfig::new(&data));
        assert_eq!(rec.sessions.len(), 1, "{sync}");
        let q = store.load_queue("s", None, usize::MAX).unwrap();
        assert!(
            q.len() as u64 > last,
            "{sync}: {} entries survived, {} were acknowledged",
            q.len(),
            last + 1
        );
        for (i, (seq, e, m)) in q.iter().enumerate() {
            assert_eq!((*seq, e.message_id), (i as u64, i as u64), "{sync}");
            assert_eq!(m.payload.as_ref(), (i as u64).to_be_bytes(), "{sync}");
        }
    }
}

// ---- a real disk fault: RLIMIT_FSIZE on a child process -------------------------------------

const FSIZE_DIR_ENV: &str = "HERMOD_STORE_FSIZE_DIR";

/// The child half of `file_size_limit_fails_commits_until_lifted`: commits 16 KiB messages
/// until one fails (the parent has capped its file size), then waits for the cap to be lifted,
/// for the store to heal, and commits once more. Reports on stdout; does nothing on its own.
#[test]
#[ignore = "run as a child process by file_size_limit_fails_commits_until_lifted"]
fn fsize_child() {
    let Ok(dir) = std::env::var(FSIZE_DIR_ENV) else {
        return;
    };
    let c = StoreConfig::new(PathBuf::from(dir));
    let (store, _) = open(&c);
    commit(&store, vec![Op::PutSession("s".into(), session(5))]);
    let mut stdin = std::io::stdin().lines();
    println!("READY {}", std::fs::metadata(c.file()).unwrap().len());
    stdin.next().unwrap().unwrap(); // the file size is capped now
    let payload = vec![7u8; 16 * 1024];
    let mut i = 0u64;
    loop {
        assert!(i < 100_000, "the file size limit never made a commit fail");
        let r = store
            .submit(vec![
                Op::PutMessage(i, msg("t", &payload), 1),
                Op::Enqueue("s".into(), i, entry(i)),
            ])
            .wait();
        match r {
            Ok(()) => println!("ACK {i}"),
            Err(e) => {
                println!("FAILED {i} {e}");
                break;
            }
        }
        i += 1;
    }
    println!("HEALTHY {}", store.healthy());
    stdin.next().unwrap().unwrap(); // the cap is lifted
    wait_healthy(&store, true, Duration::from_secs(30));
    let next = i + 1;
    commit(
        &store,
        vec![
            Op::PutMessage(next, msg("t", &payload), 1),
            Op::Enqueue("s".into(), next, entry(next)),
        ],
    );
    println!("ACK {next}");
    store.close();
    println!("DONE");
}

/// A real disk fault, not an injected one: the store's process gets a file size limit
/// (RLIMIT_FSIZE, SIGXFSZ ignored, as a full disk looks to redb: a failed write or `set_len`).
/// A commit fails and the store reports itself unavailable; once the limit is lifted it heals
/// without a restart, writes the failed batch and takes new commits; every acknowledged commit
/// is on disk. Needs `sh` and util-linux's `prlimit`.
#[test]
fn file_size_limit_fails_commits_until_lifted() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hermod-data");
    let mut child = Command::new("sh")
        .args(["-c", r#"trap "" XFSZ; exec "$0" "$@""#])
        .arg(std::env::current_exe().unwrap())
        .args([
            "store::tests::fsize_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FSIZE_DIR_ENV, &data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // A child that hangs is killed (its own pid) after a minute, so the test fails, not hangs.
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    let watched = pid.clone();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").args(["-9", &watched]).status();
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // (The first report shares its line with libtest's "test ... " prefix.)
    let mut next_line = |want: &str| -> String {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(at) = line.find(want) {
                return line[at..].to_owned();
            }
        }
        panic!("the child ended before printing {want}");
    };
    let prlimit = |limit: &str| {
        let st = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={limit}")])
            .status()
            .expect("util-linux prlimit runs");
        assert!(st.success(), "prlimit --fsize={limit}");
    };
    let size: u64 = next_line("READY ")[6..].trim().parse().unwrap();
    prlimit(&format!("{size}:unlimited"));
    writeln!(stdin, "go").unwrap();
    let failed = next_line("FAILED ");
    let failed_at: u64 = failed.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(failed.contains("unavailable"), "{failed}");
    assert_eq!(next_line("HEALTHY "), "HEALTHY false");
    prlimit("unlimited:unlimited");
    writeln!(stdin, "go").unwrap();
    let last = next_line("ACK ");
    assert_eq!(last, format!("ACK {}", failed_at + 1));
    next_line("DONE");
    assert!(child.wait().unwrap().success());
    let _ = done.send(());

    // Every commit acknowledged before the fault, the failed one (retried) and the one after it.
    let (store, rec) = open(&StoreConfig::new(&data));
    assert_eq!(rec.repairs, 0);
    let q: Vec<u64> = store
        .load_queue("s", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|x| x.0)
        .collect();
    let want: Vec<u64> = (0..=failed_at + 1).collect();
    assert_eq!(q, want);
    store.close();
}

// ---- micro-benchmark -------------------------------------------------------------------------

/// `cargo test -p hermod-broker --release --lib store::tests::bench_group_commit -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn bench_group_commit() {
    let threads: u64 = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let base = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    for sync in [SyncMode::Batch, SyncMode::Os] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let c = cfg(dir.path(), sync);
        let (store, _) = open(&c);
        commit(&store, vec![Op::PutSession("s".into(), session(5))]);
        let before = store.stats();
        let start = Instant::now();
        let stop = start + Duration::from_secs(secs);
        let done: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let store = store.clone();
                    s.spawn(move || {
                        let mut n = 0u64;
                        let payload = [0x5au8; 100];
                        while Instant::now() < stop {
                            let id = (t << 40) | n;
                            store
                                .submit(vec![
                                    Op::PutMessage(id, msg("bench/topic", &payload), 1),
                                    Op::Enqueue("s".into(), id, entry(id)),
                                ])
                                .wait()
                                .unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let el = start.elapsed().as_secs_f64();
        let st = store.stats();
        println!(
            "redb {sync:?}: {threads} threads, {done} messages in {el:.2}s = {:.0} msg/s; {} commits ({:.1} msgs/commit), {} fsyncs",
            done as f64 / el,
            st.commits - before.commits,
            done as f64 / (st.commits - before.commits) as f64,
            st.fsyncs - before.fsyncs,
        );
    }
}

/// Waits (bounded) until the store reports `healthy`.
fn wait_healthy(store: &Store, healthy: bool, within: Duration) {
    let deadline = Instant::now() + within;
    while store.healthy() != healthy {
        assert!(
            Instant::now() < deadline,
            "store never became healthy = {healthy}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Issue 9, item 7: one disk error used to disable the store until a restart (redb latches it).
/// Now: the commit fails, the store reports itself unavailable, and once the fault clears it
/// reopens the database, writes the failed batch, and later commits succeed, with nothing
/// committed before lost and the file consistent.
#[test]
fn disk_fault_makes_the_store_unavailable_until_the_disk_heals() {
    for sync in [SyncMode::Batch, SyncMode::Os] {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), sync);
        std::fs::create_dir_all(&c.path).unwrap();
        let fault = fault_switch(&c.file());
        let (store, _) = open(&c);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        store.on_health_change(move |h| s2.lock().unwrap().push(h));
        commit(
            &store,
            vec![
                Op::PutSession("a".into(), session(5)),
                Op::PutMessage(1, msg("t", b"m1"), 1),
                Op::Enqueue("a".into(), 1, entry(1)),
                Op::PutRetained("r".into(), msg("r", b"kept")),
            ],
        );

        fault.set_failing(true);
        // The commit fails with the disk: its waiter is not told success; it waits (bounded) for
        // a retry, then learns the store is unavailable.
        let t0 = Instant::now();
        let r = store
            .submit(vec![
                Op::PutMessage(2, msg("t", b"m2"), 1),
                Op::Enqueue("a".into(), 2, entry(2)),
            ])
            .wait();
        assert!(
            matches!(r, Err(StoreError::Unavailable { .. })),
            "failed commit: {r:?}"
        );
        assert!(t0.elapsed() >= FAILED_COMMIT_WAIT - Duration::from_millis(50));
        assert!(!store.healthy(), "the store says it cannot write");
        assert!(fault.failures() > 0, "the fault was hit");
        // While unavailable, a submission is refused at once (and still written later).
        let t1 = Instant::now();
        let r = store
            .submit(vec![
                Op::Dequeue("a".into(), 1),
                Op::DeleteRetained("r".into()),
            ])
            .wait();
        assert!(matches!(r, Err(StoreError::Unavailable { .. })), "{r:?}");
        assert!(t1.elapsed() < Duration::from_millis(500));
        // Still failing after several retries.
        std::thread::sleep(Duration::from_millis(400));
        assert!(!store.healthy());

        // The disk works again: no restart, the store heals by itself...
        fault.set_failing(false);
        wait_healthy(&store, true, RETRY_MAX + Duration::from_secs(5));
        // ...and later commits succeed.
        commit(
            &store,
            vec![
                Op::PutMessage(3, msg("t", b"m3"), 1),
                Op::Enqueue("a".into(), 3, entry(3)),
            ],
        );
        assert_eq!(*seen.lock().unwrap(), [true, false, true], "{sync:?}");
        let stats = store.stats();
        assert!(stats.reopens >= 1 && stats.io_failures >= 1, "{stats:?}");
        // The failed batch and the one refused while down were written after all, in order:
        // m1 dequeued, m2 and m3 queued; the file's counts agree with the queue.
        let q: Vec<u64> = store
            .load_queue("a", None, 10)
            .unwrap()
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(q, [2, 3]);
        assert_eq!(raw_messages(&store), (vec![2, 3], vec![(2, 1), (3, 1)]));
        assert_eq!(store.message_bytes(), {
            let m = msg("t", b"m2").encode().len() + msg("t", b"m3").encode().len();
            m as u64
        });
        store.close();

        // Nothing to repair at the next open, nothing lost.
        let (store, rec) = open(&c);
        assert_eq!(rec.repairs, 0);
        assert_eq!(rec.sessions.len(), 1);
        assert_eq!(rec.queues["a"].len, 2);
        assert!(rec.retained.is_empty(), "DeleteRetained was written");
        store.close();
    }
}

/// A batch retried after a disk error may, in principle, have reached the file (an fsync that
/// failed after its writes): applying it twice leaves the same state as once.
#[test]
fn replaying_a_batch_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Os);
    let (store, _) = open(&c);
    commit(
        &store,
        vec![
            Op::PutSession("a".into(), session(5)),
            Op::PutSession("b".into(), session(5)),
            Op::PutMessage(1, msg("t", b"old"), 1),
            Op::Enqueue("a".into(), 1, entry(1)),
        ],
    );
    let batch = vec![
        Op::Dequeue("a".into(), 1),
        Op::PutMessage(5, msg("t", b"fan"), 2),
        Op::Enqueue("a".into(), 2, entry(5)),
        Op::Enqueue("b".into(), 1, entry(5)),
        Op::Dequeue("a".into(), 2),
        Op::PutInflightIn("a".into(), 7),
        Op::PutRetained("r".into(), msg("r", b"x")),
    ];
    commit(&store, batch.clone());
    let once = (
        raw_messages(&store),
        store.queue_len("a").unwrap(),
        store.queue_len("b").unwrap(),
        store.message_bytes(),
    );
    assert_eq!(once.0, (vec![5], vec![(5, 1)]));
    commit(&store, batch);
    let twice = (
        raw_messages(&store),
        store.queue_len("a").unwrap(),
        store.queue_len("b").unwrap(),
        store.message_bytes(),
    );
    assert_eq!(once, twice);
    store.close();
    let (store, rec) = open(&c);
    assert_eq!(rec.repairs, 0, "consistent on disk too");
    store.close();
}

/// Closing while the disk still fails does not hang: the writer makes one last attempt, logs
/// what it could not write, and every waiter is answered.
#[test]
fn close_while_unavailable_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    std::fs::create_dir_all(&c.path).unwrap();
    let fault = fault_switch(&c.file());
    let (store, _) = open(&c);
    commit(&store, vec![Op::PutSession("a".into(), session(5))]);
    fault.set_failing(true);
    let first = store.submit(vec![Op::PutSession("b".into(), session(5))]);
    wait_healthy(&store, false, Duration::from_secs(5));
    let t0 = Instant::now();
    let other = store.clone();
    store.close();
    assert!(t0.elapsed() < Duration::from_secs(5), "close did not hang");
    assert!(first.wait().is_err(), "never acknowledged");
    assert!(matches!(
        other.submit(vec![Op::DeleteSession("a".into())]).wait(),
        Err(StoreError::Closed)
    ));
    drop(other);
    fault.set_failing(false);
    let (store, rec) = open(&c);
    let ids: Vec<&str> = rec.sessions.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(ids, ["a"], "what was committed before the fault is there");
    store.close();
}

/// Schema 2 keeps one row per subscription (a SUBSCRIBE writes one row, not the whole session
/// record); a schema-1 store, whose session records hold their subscriptions, is migrated when
/// opened and nothing is lost.
#[test]
fn subscriptions_are_rows_and_schema_1_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    {
        let (store, _) = open(&c);
        let mut s = session(5);
        s.subscriptions.clear();
        commit(&store, vec![Op::PutSession("a".into(), s)]);
        let sub = |f: &str| SubscriptionRecord {
            filter: f.into(),
            qos: 1,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            subscription_id: None,
        };
        let ops: Vec<Op> = (0..3000)
            .map(|i| Op::PutSubscription("a".into(), sub(&format!("t/{i}"))))
            .collect();
        commit(&store, ops);
        commit(
            &store,
            vec![
                Op::DeleteSubscription("a".into(), "t/7".into()),
                Op::PutSubscription("ghost".into(), sub("x")), // no such session
            ],
        );
        store.close();
    }
    let (store, r) = open(&c);
    let subs = &r
        .sessions
        .iter()
        .find(|(id, _)| id == "a")
        .unwrap()
        .1
        .subscriptions;
    assert_eq!(subs.len(), 2999);
    assert!(!subs.iter().any(|s| s.filter == "t/7"));
    assert_eq!(r.repairs, 1, "the row of an unknown session is removed");
    commit(&store, vec![Op::DeleteSession("a".into())]);
    store.close();
    let (store, r) = open(&c);
    assert!(r.sessions.is_empty());
    store.close();

    // A schema-1 store: the session record holds the subscriptions.
    {
        let db = Database::create(c.file()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(SCHEMA_KEY, 1).unwrap();
            let mut sessions = txn.open_table(SESSIONS).unwrap();
            sessions
                .insert("old", session(4).encode().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let (store, r) = open(&c);
    let old = &r.sessions.iter().find(|(id, _)| id == "old").unwrap().1;
    assert_eq!(old.subscriptions, session(4).subscriptions);
    store.close();
    let (store, r) = open(&c);
    let old = &r.sessions.iter().find(|(id, _)| id == "old").unwrap().1;
    assert_eq!(old.subscriptions, session(4).subscriptions, "kept as rows");
    assert_eq!(r.repairs, 0, "migrated once");
    store.close();
    let db = Database::create(c.file()).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    assert_eq!(
        meta.get(SCHEMA_KEY).unwrap().map(|v| v.value()),
        Some(SCHEMA_VERSION)
    );
}

#[test]
fn commit_delay_holds_every_commit_before_its_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncMode::Batch);
    std::fs::create_dir_all(&c.path).unwrap();
    let fault = fault_switch(&c.file());
    let (store, _) = open(&c);
    let delay = Duration::from_millis(150);
    fault.set_commit_delay(Some(delay));
    for i in 0..2u64 {
        let t0 = Instant::now();
        commit(
            &store,
            vec![Op::PutRetained(format!("r{i}"), msg("r", b"x"))],
        );
        assert!(
            t0.elapsed() >= delay,
            "commit {i} took {:?}, less than the injected delay",
            t0.elapsed()
        );
    }
    fault.set_commit_delay(None);
    let t0 = Instant::now();
    commit(&store, vec![Op::DeleteRetained("r0".into())]);
    assert!(t0.elapsed() < delay, "no delay once it is lifted");
    assert_eq!(fault.failures(), 0);
    store.close();
}
