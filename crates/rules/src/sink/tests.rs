//! Tests of the SQLite sink and of `Param`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::json;

use super::*;

const CREATE: &str =
    "CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload)";
const INSERT: &str = "INSERT INTO messages(topic, payload) VALUES (?, ?)";

type Outcomes = Arc<Mutex<Vec<(usize, Result<(), SinkError>)>>>;

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.db");
    (dir, path)
}

fn options() -> SinkOptions {
    SinkOptions {
        init: vec![CREATE.to_owned()],
        ..SinkOptions::default()
    }
}

fn insert(i: usize) -> Write {
    Write::new(
        Arc::from(INSERT),
        vec![Param::Text(format!("t/{i}")), Param::Int(i as i64)],
    )
}

/// `write` reporting its outcome into `outcomes` under `index`.
fn tracked(write: Write, index: usize, outcomes: &Outcomes) -> Write {
    let outcomes = outcomes.clone();
    write.on_done(move |r| outcomes.lock().unwrap().push((index, r)))
}

fn count(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn n_writes_make_exactly_n_rows() {
    let (_dir, path) = temp_db();
    let sink = SqliteSink::open(&path, options()).unwrap();
    let outcomes = Outcomes::default();
    const N: usize = 3_000;
    for i in 0..N {
        sink.send(tracked(insert(i), i, &outcomes)).unwrap();
    }
    let stats = sink.close().unwrap();
    assert_eq!(count(&path), N as i64);
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), N);
    assert!(outcomes.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(
        (stats.accepted, stats.written, stats.failed, stats.rejected),
        (3_000, 3_000, 0, 0)
    );
    // Each row holds what was bound, in order.
    let conn = Connection::open(&path).unwrap();
    let (topic, payload): (String, i64) = conn
        .query_row(
            "SELECT topic, payload FROM messages WHERE id = 1234",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((topic.as_str(), payload), ("t/1233", 1233));
    // The file is in WAL mode.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn writes_are_batched() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        batch_size: 100,
        batch_time: Duration::from_millis(200),
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    for i in 0..2_000 {
        sink.send(insert(i)).unwrap();
    }
    let stats = sink.close().unwrap();
    assert_eq!(stats.written, 2_000);
    assert!(
        (20..=40).contains(&stats.batches),
        "2000 writes by batches of at most 100 took {} transactions",
        stats.batches
    );
    assert_eq!(count(&path), 2_000);
}

#[test]
fn a_lone_write_waits_no_longer_than_batch_time() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        batch_time: Duration::from_millis(30),
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    sink.send(insert(0).on_done(move |r| tx.send(r).unwrap()))
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(count(&path), 1);
    assert_eq!(sink.stats().batches, 1);
    sink.close().unwrap();
}

#[test]
fn an_injection_attempt_is_stored_verbatim() {
    let (_dir, path) = temp_db();
    let sink = SqliteSink::open(&path, options()).unwrap();
    let evil = "'); DROP TABLE messages; --";
    let (tx, rx) = mpsc::channel();
    let write = Write::new(
        Arc::from(INSERT),
        vec![Param::from(evil), Param::from(&json!(evil))],
    );
    sink.send(write.on_done(move |r| tx.send(r).unwrap()))
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    sink.send(insert(1)).unwrap();
    sink.close().unwrap();
    let conn = Connection::open(&path).unwrap();
    let (topic, payload): (String, String) = conn
        .query_row(
            "SELECT topic, payload FROM messages WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((topic.as_str(), payload.as_str()), (evil, evil));
    assert_eq!(count(&path), 2, "the table survives and takes later rows");
}

/// One batch with writes that fail on their own statement: each is reported failed, with its
/// statement named, and every other write of the batch is committed.
#[test]
fn a_failing_statement_fails_only_its_write() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        batch_time: Duration::from_millis(300),
        init: vec![
            CREATE.to_owned(),
            "CREATE TABLE uniq(k TEXT PRIMARY KEY)".to_owned(),
            "INSERT INTO uniq VALUES ('taken')".to_owned(),
        ],
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    let outcomes = Outcomes::default();
    let bad: [(usize, Write); 5] = [
        (
            2,
            Write::new(
                Arc::from("INSERT INTO uniq VALUES (?)"),
                vec![Param::from("taken")],
            ),
        ),
        (
            4,
            Write::new(
                Arc::from("INSERT INTO nowhere VALUES (?)"),
                vec![Param::Int(1)],
            ),
        ),
        (
            6,
            Write::new(
                Arc::from("INSRT INTO messages VALUES (?)"),
                vec![Param::Int(1)],
            ),
        ),
        (
            8,
            Write::new(Arc::from(INSERT), vec![Param::from("too few")]),
        ),
        // Its conflict clause rolls the whole transaction back: it is started again without it.
        (
            10,
            Write::new(
                Arc::from("INSERT OR ROLLBACK INTO uniq VALUES (?)"),
                vec!["taken".into()],
            ),
        ),
    ];
    let mut bad = bad.into_iter().peekable();
    for i in 0..12 {
        let write = match bad.next_if(|(at, _)| *at == i) {
            Some((_, write)) => write,
            None => insert(i),
        };
        sink.send(tracked(write, i, &outcomes)).unwrap();
    }
    let stats = sink.close().unwrap();
    assert_eq!(count(&path), 7);
    assert_eq!(
        (stats.written, stats.failed, stats.batches, stats.retried),
        (7, 5, 1, 0)
    );
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 12);
    for (i, result) in outcomes.iter() {
        match result {
            Ok(()) => assert!(
                ![2, 4, 6, 8, 10].contains(i),
                "write {i} should have failed"
            ),
            Err(e) => {
                assert!([2, 4, 6, 8, 10].contains(i), "write {i} failed: {e}");
                assert!(matches!(e, SinkError::Statement { .. }), "{e}");
                let text = e.to_string();
                assert!(
                    text.contains("rules.db") && text.contains(" INTO "),
                    "{text}"
                );
            }
        }
    }
    let text = outcomes
        .iter()
        .find(|(i, _)| *i == 4)
        .unwrap()
        .1
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("INSERT INTO nowhere") && text.contains("no such table"),
        "{text}"
    );
}

#[test]
fn a_full_queue_refuses_without_blocking() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        queue: 4,
        batch_size: 1,
        batch_time: Duration::ZERO,
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    // The first write's callback holds the writer thread until released.
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    sink.send(insert(0).on_done(move |_| {
        entered_tx.send(()).unwrap();
        release_rx.recv().unwrap();
    }))
    .unwrap();
    entered.recv_timeout(Duration::from_secs(5)).unwrap();
    for i in 1..=4 {
        sink.send(insert(i)).unwrap();
    }
    let start = Instant::now();
    let refused = sink.send(insert(5)).unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(100));
    assert!(
        matches!(refused.error, SinkError::QueueFull { capacity: 4, .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("queue full"), "{refused}");
    // The refused write comes back whole, to be kept elsewhere or sent again.
    assert_eq!(refused.write.params[1], Param::Int(5));
    release.send(()).unwrap();
    let stats = sink.close().unwrap();
    assert_eq!((stats.accepted, stats.rejected, stats.written), (5, 1, 5));
    assert_eq!(count(&path), 5);
}

#[test]
fn close_drains_the_queue_then_refuses() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        batch_time: Duration::from_secs(3600),
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    let outcomes = Outcomes::default();
    for i in 0..5_000 {
        sink.send(tracked(insert(i), i, &outcomes)).unwrap();
    }
    let start = Instant::now();
    let stats = sink.close().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "close waited for batch_time"
    );
    assert_eq!(stats.written, 5_000);
    assert_eq!(outcomes.lock().unwrap().len(), 5_000);
    assert_eq!(count(&path), 5_000);
    let refused = sink.send(insert(0)).unwrap_err();
    assert!(
        matches!(refused.error, SinkError::Closed { .. }),
        "{refused}"
    );
    assert_eq!(
        sink.close().unwrap().written,
        5_000,
        "close again: the counters"
    );
}

#[test]
fn a_refused_write_dropped_reports_discarded() {
    let (_dir, path) = temp_db();
    let sink = SqliteSink::open(&path, options()).unwrap();
    sink.close().unwrap();
    let (tx, rx) = mpsc::channel();
    let refused = sink
        .send(insert(0).on_done(move |r| tx.send(r).unwrap()))
        .unwrap_err();
    assert!(
        rx.try_recv().is_err(),
        "not reported while the caller holds it"
    );
    drop(refused);
    let e = rx
        .recv_timeout(Duration::from_secs(1))
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, SinkError::Discarded { .. }), "{e}");
}

#[test]
fn a_panicking_callback_does_not_stop_the_sink() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        batch_size: 1,
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    sink.send(insert(0).on_done(|_| panic!("callback panics (expected in this test)")))
        .unwrap();
    for i in 1..10 {
        sink.send(insert(i)).unwrap();
    }
    assert_eq!(sink.close().unwrap().written, 10);
    assert_eq!(count(&path), 10);
}

#[test]
fn an_unusable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist.
    let missing = dir.path().join("no/such/dir/rules.db");
    let e = SqliteSink::open(&missing, options()).unwrap_err();
    assert!(matches!(e, SinkError::Open { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&*missing.to_string_lossy()) && text.contains("open"),
        "{text}"
    );
    // A directory where the file should be.
    let e = SqliteSink::open(dir.path(), options()).unwrap_err();
    assert!(
        e.to_string().contains(&*dir.path().to_string_lossy()),
        "{e}"
    );
    // A file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let e = SqliteSink::open(&junk, options()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("junk.db") && text.contains("not a database"),
        "{text}"
    );
    // A file without write permission (not checkable as root, who may write anyway).
    let ro = dir.path().join("ro.db");
    drop(SqliteSink::open(&ro, options()).unwrap().close());
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&ro, perms).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&ro).is_err() {
        let e = SqliteSink::open(&ro, options()).unwrap_err();
        assert!(
            e.to_string().contains("ro.db") && e.to_string().contains("read-only"),
            "{e}"
        );
    }
}

#[test]
fn a_failing_init_statement_is_named() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        init: vec!["CREATE TABLE t(".to_owned()],
        ..options()
    };
    let e = SqliteSink::open(&path, opts).unwrap_err();
    assert!(matches!(e, SinkError::Init { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("rules.db") && text.contains("CREATE TABLE t("),
        "{text}"
    );
}

/// Another process holding the write lock: the transaction is retried with backoff, then
/// every write of the batch is reported failed and counted.
#[test]
fn a_locked_database_is_retried_then_reported() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        busy_timeout: Duration::from_millis(10),
        retries: 2,
        retry_backoff: Duration::from_millis(5),
        batch_time: Duration::from_millis(50),
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let outcomes = Outcomes::default();
    for i in 0..3 {
        sink.send(tracked(insert(i), i, &outcomes)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while outcomes.lock().unwrap().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for (_, result) in outcomes.lock().unwrap().iter() {
        let e = result.as_ref().unwrap_err();
        assert!(
            matches!(e, SinkError::Transaction { attempts: 3, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("rules.db") && e.to_string().contains("locked"),
            "{e}"
        );
    }
    let stats = sink.stats();
    assert_eq!((stats.failed, stats.retried, stats.written), (3, 2, 0));
    // Once the lock is gone, writes go through again.
    other.execute_batch("COMMIT").unwrap();
    sink.send(insert(3)).unwrap();
    assert_eq!(sink.close().unwrap().written, 1);
    assert_eq!(count(&path), 1);
}

/// The lock released during the retries: everything is written, once.
#[test]
fn a_transaction_retried_after_an_outage_writes_each_row_once() {
    let (_dir, path) = temp_db();
    let opts = SinkOptions {
        busy_timeout: Duration::from_millis(10),
        retries: 100,
        retry_backoff: Duration::from_millis(5),
        ..options()
    };
    let sink = SqliteSink::open(&path, opts).unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 0..100 {
        sink.send(insert(i)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.stats().retried < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    other.execute_batch("COMMIT").unwrap();
    let stats = sink.close().unwrap();
    assert!(stats.retried >= 2, "{stats:?}");
    assert_eq!((stats.written, stats.failed), (100, 0));
    assert_eq!(count(&path), 100);
    let conn = Connection::open(&path).unwrap();
    let distinct: i64 = conn
        .query_row("SELECT count(DISTINCT payload) FROM messages", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(distinct, 100);
}

#[test]
fn json_values_become_params() {
    let cases = [
        (json!(null), Param::Null),
        (json!(true), Param::Int(1)),
        (json!(false), Param::Int(0)),
        (json!(-42), Param::Int(-42)),
        (json!(u64::MAX), Param::Float(u64::MAX as f64)),
        (json!(2.5), Param::Float(2.5)),
        (json!("dev/gw"), Param::Text("dev/gw".into())),
        (json!({"t": [1, 2]}), Param::Text(r#"{"t":[1,2]}"#.into())),
        (json!([1, "a"]), Param::Text(r#"[1,"a"]"#.into())),
    ];
    for (value, param) in cases {
        assert_eq!(Param::from(&value), param, "{value}");
        assert_eq!(Param::from(value.clone()), param, "{value} by value");
    }
    assert_eq!(Param::from(None::<i64>), Param::Null);
    assert_eq!(Param::from(Some("x")), Param::Text("x".into()));
}

/// Every SQLite storage class goes in and comes back as bound.
#[test]
fn params_keep_their_types() {
    let (_dir, path) = temp_db();
    let sink = SqliteSink::open(&path, options()).unwrap();
    let values = [
        Param::Null,
        Param::Int(i64::MIN),
        Param::Float(-0.125),
        Param::Text("é\0x".into()),
        Param::Blob(vec![0, 255, 1]),
    ];
    for v in &values {
        sink.send(Write::new(Arc::from(INSERT), vec!["t".into(), v.clone()]))
            .unwrap();
    }
    sink.close().unwrap();
    let conn = Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare("SELECT payload FROM messages ORDER BY id")
        .unwrap();
    let got: Vec<Param> = stmt
        .query_map([], |r| {
            Ok(match r.get_ref(0)? {
                rusqlite::types::ValueRef::Null => Param::Null,
                rusqlite::types::ValueRef::Integer(i) => Param::Int(i),
                rusqlite::types::ValueRef::Real(f) => Param::Float(f),
                rusqlite::types::ValueRef::Text(t) => {
                    Param::Text(String::from_utf8_lossy(t).into())
                }
                rusqlite::types::ValueRef::Blob(b) => Param::Blob(b.to_vec()),
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, values);
}
