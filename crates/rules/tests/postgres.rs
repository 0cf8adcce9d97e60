//! The PostgreSQL sink against a real server: Debian's `postgresql` package
//! (`/usr/lib/postgresql/<version>/bin/{initdb,postgres}`), started here in a temp dir on a
//! free loopback port, its Unix socket in the temp dir. Skipped, with a message, when no
//! server is installed. As root, the server runs as the `postgres` user (`setpriv`), since
//! `initdb` and `postgres` refuse to run as root.
//!
//! The server process is our child (no `pg_ctl` daemon): it is stopped by its PID, and a
//! guard stops it on panic too.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hermod_rules::sink::postgres::{PgError, PgOptions, PostgresSink};
use hermod_rules::sink::{Param, SinkError, Write};
use hermod_rules::{Dialect, Template};

mod common;
use common::pg::{Server, find_bin, query};

/// Sends `write`, waiting (bounded) while the queue is full; never loses it.
fn send_all(sink: &PostgresSink, mut write: Write) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match sink.send(write) {
            Ok(()) => return,
            Err(refused) => {
                assert!(
                    matches!(&refused.error, SinkError::Postgres(e) if matches!(**e, PgError::QueueFull { .. })),
                    "unexpected refusal: {}",
                    refused.error
                );
                assert!(Instant::now() < deadline, "queue full for a minute");
                write = refused.write;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

type Outcome = (i64, Result<(), SinkError>);

fn write(statement: &Arc<str>, params: Vec<Param>, id: i64, tx: &mpsc::Sender<Outcome>) -> Write {
    let tx = tx.clone();
    Write::new(statement.clone(), params).on_done(move |r| {
        let _ = tx.send((id, r));
    })
}

#[test]
fn postgres_sink_against_a_real_server() {
    let Some(bin) = find_bin() else {
        eprintln!(
            "SKIP postgres_sink_against_a_real_server: no PostgreSQL server under \
             /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
        );
        return;
    };
    let started = Instant::now();
    let mut server = Server::init(bin);
    server.start();
    let url = server.url();

    let options = PgOptions {
        pool_size: 3,
        batch_size: 100,
        batch_time: Duration::from_millis(5),
        queue: 500,
        init: vec![
            "CREATE TABLE IF NOT EXISTS messages (run INT4 NOT NULL, id INT8 NOT NULL, \
             clientid TEXT, payload TEXT, f FLOAT8, b BYTEA, n INT8)"
                .into(),
        ],
        retries: 3,
        retry_backoff: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
    };

    // 1. N writes → exactly N rows, every type stored as given; a bad write fails alone.
    {
        let sink = PostgresSink::open(&url, options.clone()).expect("opens");
        let statement: Arc<str> = Arc::from(
            "INSERT INTO messages (run, id, clientid, payload, f, b, n) VALUES (1, $1, $2, $3, $4, $5, $6)",
        );
        let bad: Arc<str> = Arc::from("INSERT INTO messages (run, id) VALUES (1, $1)");
        let (tx, rx) = mpsc::channel();
        const N: i64 = 1000;
        for id in 0..N {
            let params = vec![
                Param::Int(id),
                Param::Text(format!("c{id}")),
                Param::Text(format!("p{id}")),
                Param::Float(id as f64 + 0.5),
                Param::Blob(vec![0, 1, 2, (id % 256) as u8]),
                Param::Null,
            ];
            send_all(&sink, write(&statement, params, id, &tx));
            if id == 500 {
                // Text into an INT8 column: this write fails, its batch does not.
                send_all(&sink, write(&bad, vec![Param::Text("x".into())], -1, &tx));
                // A syntax error: fails at prepare.
                let broken: Arc<str> = Arc::from("INSERT INTO nowhere VALUES ($1)");
                send_all(&sink, write(&broken, vec![Param::Int(1)], -2, &tx));
            }
        }
        let stats = sink.close().expect("closes");
        drop(tx);
        let outcomes: BTreeMap<i64, Result<(), SinkError>> = rx.iter().collect();
        assert_eq!(outcomes.len() as i64, N + 2, "every write reported once");
        for (id, r) in &outcomes {
            match id {
                -1 | -2 => assert!(
                    matches!(r, Err(SinkError::Postgres(e)) if matches!(**e, PgError::Statement { .. })),
                    "write {id}: {r:?}"
                ),
                _ => assert!(r.is_ok(), "write {id}: {r:?}"),
            }
        }
        assert_eq!((stats.written, stats.failed), (N as u64, 2), "{stats:?}");
        let rows = query(
            &url,
            "SELECT count(*), count(DISTINCT id), sum(id)::int8, sum(f), count(n), \
             bool_and(encode(b, 'hex') = '000102' || lpad(to_hex(id % 256), 2, '0')), \
             bool_and(clientid = 'c' || id AND payload = 'p' || id) FROM messages WHERE run = 1",
        );
        let r = &rows[0];
        assert_eq!(r.get::<_, i64>(0), N, "exactly N rows");
        assert_eq!(r.get::<_, i64>(1), N);
        assert_eq!(r.get::<_, i64>(2), N * (N - 1) / 2, "ids");
        assert_eq!(
            r.get::<_, f64>(3),
            (N * (N - 1) / 2) as f64 + N as f64 * 0.5
        );
        assert_eq!(r.get::<_, i64>(4), 0, "NULLs stored as NULL");
        assert!(r.get::<_, bool>(5), "bytes stored verbatim");
        assert!(r.get::<_, bool>(6), "text stored verbatim");
        eprintln!("phase 1: {N} writes, {stats:?}, {:?}", started.elapsed());
    }

    // 2. The injection payload, bound through a rule template, is stored verbatim.
    {
        let sink = PostgresSink::open(&url, options.clone()).expect("opens");
        let template = Template::parse(
            "INSERT INTO messages (run, id, clientid, payload) VALUES (2, ${id}, ${clientid}, ${payload})",
        )
        .expect("template");
        let evil = "x'); DROP TABLE messages; -- \"; $1 ${payload} \\ ' ü 🦀";
        let mut row = serde_json::Map::new();
        row.insert("id".into(), 7.into());
        row.insert("clientid".into(), "c'7".into());
        row.insert("payload".into(), evil.into());
        let (sql, values) = template
            .to_sql_params(&row, Dialect::Postgres)
            .expect("binds");
        assert!(!sql.contains("DROP"));
        let params: Vec<Param> = values
            .into_iter()
            .map(|v| Param::from(serde_json::Value::from(v)))
            .collect();
        let (tx, rx) = mpsc::channel();
        send_all(&sink, write(&Arc::from(sql), params, 7, &tx));
        sink.close().expect("closes");
        drop(tx);
        let outcomes: Vec<Outcome> = rx.iter().collect();
        assert!(matches!(outcomes.as_slice(), [(7, Ok(()))]), "{outcomes:?}");
        let rows = query(&url, "SELECT clientid, payload FROM messages WHERE run = 2");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>(0), "c'7");
        assert_eq!(rows[0].get::<_, String>(1), evil);
        let rows = query(&url, "SELECT count(*) FROM messages WHERE run = 1");
        assert_eq!(rows[0].get::<_, i64>(0), 1000, "the table is still there");
    }

    // 3. The server stops in the middle of 2,000 writes and comes back: every write is
    //    reported written (and is in the table) or failed; with retries long enough, all
    //    are written.
    {
        let sink = PostgresSink::open(
            &url,
            PgOptions {
                retries: 30,
                retry_backoff: Duration::from_millis(50),
                ..options.clone()
            },
        )
        .expect("opens");
        let statement: Arc<str> =
            Arc::from("INSERT INTO messages (run, id, payload) VALUES (3, $1, $2)");
        let (tx, rx) = mpsc::channel();
        const M: i64 = 2000;
        let send = |id: i64| {
            send_all(
                &sink,
                write(
                    &statement,
                    vec![Param::Int(id), Param::Text(format!("m{id}"))],
                    id,
                    &tx,
                ),
            );
        };
        (0..=700).for_each(send);
        // Fast shutdown: the server ends every connection, mid-transaction. It comes back a
        // second later (on another thread, so that sending goes on meanwhile, up to the
        // queue's bound).
        server.stop();
        let restarter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            server.start();
            server
        });
        (701..M).for_each(send);
        server = restarter.join().expect("the server restarts");
        let stats = sink.close().expect("closes");
        drop(tx);
        let outcomes: Vec<Outcome> = rx.iter().collect();
        assert_eq!(
            outcomes.len() as i64,
            M,
            "every write reported exactly once"
        );
        let written: std::collections::BTreeSet<i64> = outcomes
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(id, _)| *id)
            .collect();
        let failed: Vec<&Outcome> = outcomes.iter().filter(|(_, r)| r.is_err()).collect();
        assert_eq!(written.len() + failed.len(), M as usize);
        let rows = query(
            &url,
            "SELECT id, count(*) FROM messages WHERE run = 3 GROUP BY id ORDER BY id",
        );
        let in_table: BTreeMap<i64, i64> = rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .collect();
        for id in &written {
            assert!(
                in_table.contains_key(id),
                "write {id} reported written, not in the table"
            );
        }
        let duplicates = in_table.values().filter(|&&n| n > 1).count();
        eprintln!(
            "phase 3: {stats:?}, connects {}, written {}, failed {}, rows {}, duplicated ids {duplicates}, {:?}",
            sink.connects(),
            written.len(),
            failed.len(),
            in_table.len(),
            started.elapsed()
        );
        assert!(
            failed.is_empty(),
            "with retries long enough, none fails: {:?}",
            failed.first()
        );
        assert_eq!(in_table.len() as i64, M, "all arrive");
        assert!(stats.retried > 0, "the outage was seen: {stats:?}");
        assert!(sink.connects() > 3, "reconnected after the restart");
    }

    // 4. The server down for good, few retries: every write is reported failed (a
    //    transaction error), none written, none lost silently.
    {
        let sink = PostgresSink::open(
            &url,
            PgOptions {
                retries: 2,
                retry_backoff: Duration::from_millis(20),
                ..options.clone()
            },
        )
        .expect("opens");
        server.stop();
        let statement: Arc<str> = Arc::from("INSERT INTO messages (run, id) VALUES (4, $1)");
        let (tx, rx) = mpsc::channel();
        for id in 0..50 {
            send_all(&sink, write(&statement, vec![Param::Int(id)], id, &tx));
        }
        let stats = sink.close().expect("closes");
        drop(tx);
        let outcomes: Vec<Outcome> = rx.iter().collect();
        assert_eq!(outcomes.len(), 50, "every write reported");
        for (id, r) in &outcomes {
            assert!(
                matches!(r, Err(SinkError::Postgres(e)) if matches!(**e, PgError::Transaction { attempts: 3, .. })),
                "write {id}: {r:?}"
            );
        }
        assert_eq!((stats.written, stats.failed), (0, 50), "{stats:?}");
        if let Some((_, Err(e))) = outcomes.first() {
            eprintln!("phase 4: {e}");
        }
        server.start();
        let rows = query(&url, "SELECT count(*) FROM messages WHERE run = 4");
        assert_eq!(rows[0].get::<_, i64>(0), 0);
    }

    server.stop();
    eprintln!("total {:?}", started.elapsed());
}
