//! The PostgreSQL sink against a real server: Debian's `postgresql` package
//! (`/usr/lib/postgresql/<version>/bin/{initdb,postgres}`), started here in a temp dir on a
//! free loopback port, its Unix socket in the temp dir. Skipped, with a message, when no
//! server is installed. As root, the server runs as the `postgres` user (`setpriv`), since
//! `initdb` and `postgres` refuse to run as root.
//!
//! The server process is our child (no `pg_ctl` daemon): it is stopped by its PID, and a
//! guard stops it on panic too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hermod_rules::sink::postgres::{PgError, PgOptions, PostgresSink};
use hermod_rules::sink::{Param, SinkError, Write};
use hermod_rules::{Dialect, Template};

/// The newest `/usr/lib/postgresql/*/bin` with `initdb` and `postgres`.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A PostgreSQL server in a temp dir; stopped (by PID) when dropped.
struct Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    child: Option<Child>,
}

impl Server {
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ]);
            c.arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn init(bin: PathBuf) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the temp dir to postgres");
        }
        let server = Server {
            bin,
            dir,
            port: free_port(),
            as_postgres,
            child: None,
        };
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        server
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("log"))
            .expect("log file");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        // Ready when pg_isready says so (bounded).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("postgres exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Stops the server by its PID: `signal` (INT = fast shutdown, QUIT = immediate), then
    /// KILL if it has not exited within 10 s.
    fn stop_with(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn stop(&mut self) {
        self.stop_with("INT");
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=2",
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_with("QUIT");
    }
}

/// A query on a fresh connection (the test's own runtime), for checking what is stored.
fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let io = tokio::spawn(conn);
        let rows = client.query(sql, &[]).await.expect("query");
        drop(client);
        let _ = io.await;
        rows
    })
}

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
