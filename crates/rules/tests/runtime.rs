//! Rules end to end: a broker in the test, the rules of a real config file started on it,
//! MQTT clients publishing, and the rows, requests and messages that come out — including
//! while a sink is away and across a broker restart.

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_proto::QoS;
use hermod_rules::{Rules, RulesConfig};
use hermod_testkit::{TestBroker, V5, tempdir};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const STORE: &str = "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:0\"\n[store]\npath = \"data\"\n[admin]\nenabled = false\n";

/// A broker on `dir` with `rules` appended to its config, and the rules started on it.
async fn start(dir: tempfile::TempDir, rules: &str) -> (TestBroker, Rules) {
    let b = TestBroker::start_in(dir, &format!("{STORE}{rules}")).await;
    let path = b.config_path.clone().expect("config path");
    let cfg = RulesConfig::load(&path).unwrap_or_else(|e| panic!("rules config: {e}"));
    let r = Rules::start(b.handle().clone(), &cfg)
        .await
        .unwrap_or_else(|e| panic!("rules start: {e}"));
    b.handle().add_metrics_source(r.metrics_source());
    for rule in &cfg.rules {
        let id = format!("$hermod/rule/{}", rule.name);
        wait_until("the rule subscribed", || {
            b.handle()
                .client(&id)
                .is_some_and(|c| c.subscriptions > 0 || c.online)
        })
        .await;
    }
    // The SUBACK: subscriptions are in place once the session lists them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (b, r)
}

/// A loopback port nothing listens on (yet): connections to it are refused.
async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rows(db: &std::path::Path, sql: &str) -> Vec<Vec<String>> {
    let c = rusqlite::Connection::open(db).expect("open");
    let mut st = c.prepare(sql).expect("prepare");
    let n = st.column_count();
    st.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get_ref(i).map(|v| match v {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    rusqlite::types::ValueRef::Real(f) => f.to_string(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                })
            })
            .collect()
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

fn count(db: &std::path::Path, table: &str) -> usize {
    rows(db, &format!("SELECT count(*) FROM {table}"))[0][0]
        .parse()
        .expect("count")
}

const COLLECTOR: &str = r#"
[[connector]]
name = "local"
kind = "sqlite"
path = "rules.db"
batch_size = 200
init = ["CREATE TABLE IF NOT EXISTS messages(id TEXT UNIQUE, clientid TEXT, username TEXT, topic TEXT, payload TEXT, temp REAL, ts INTEGER)"]

[[rule]]
name = "collector"
sql = 'SELECT id, clientid, username, topic, payload, payload.sensor.temp AS temp, timestamp FROM "dev/#" WHERE payload.sensor.temp > 20 OR topic =~ "dev/raw/#"'
[[rule.action]]
connector = "local"
statement = "INSERT INTO messages(id, clientid, username, topic, payload, temp, ts) VALUES (${id}, ${clientid}, ${username}, ${topic}, ${payload}, ${temp}, ${timestamp})"
"#;

/// N messages in, the N that pass WHERE out as rows with the right columns; a payload that
/// tries SQL injection is stored as text and the table stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_collector_writes_each_message_once_with_its_fields() {
    let (b, rules) = start(tempdir(), COLLECTOR).await;
    let db = b.path().join("rules.db");
    let mut c = b
        .connect_with(hermod_testkit::connect_auth(
            V5,
            "sensor-7",
            Some("alice"),
            None,
        ))
        .await
        .0;
    let n = 400;
    for i in 0..n {
        let temp = if i % 2 == 0 { 30 } else { 10 };
        let payload = format!(r#"{{"sensor": {{"temp": {temp}, "i": {i}}}}}"#);
        c.publish("dev/gw", payload.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let evil = "x'); DROP TABLE messages; --";
    c.publish("dev/raw/1", evil.as_bytes(), QoS::AtLeastOnce, false)
        .await;
    let want = n / 2 + 1;
    wait_until("every row written", || {
        rules.stats()[0].acked == n as u64 + 1
    })
    .await;
    assert_eq!(count(&db, "messages"), want);
    let got = rows(
        &db,
        "SELECT clientid, username, topic, temp FROM messages WHERE topic = 'dev/gw' LIMIT 1",
    );
    assert_eq!(got, [["sensor-7", "alice", "dev/gw", "30"]]);
    let raw = rows(
        &db,
        "SELECT payload, temp FROM messages WHERE topic = 'dev/raw/1'",
    );
    assert_eq!(raw, [[evil, "NULL"]]);
    let s = &rules.stats()[0];
    assert_eq!(
        (s.matched, s.passed, s.no_result, s.failed),
        (n as u64 + 1, want as u64, (n / 2) as u64, 0)
    );
    assert_eq!(s.actions[0].succeeded, want as u64);
    // Each id once: the unique column never refused a row.
    assert_eq!(s.actions[0].failed, 0);
    let text = b.handle().prometheus_text();
    assert!(
        text.contains("hermod_rule_passed_total{rule=\"collector\"} 201"),
        "{text}"
    );
    hermod_testkit::promtool_accepts(&text);
    rules.shutdown().await;
    b.stop().await;
}

/// `republish` sends the row to a local topic; a rule reading `#` does not see what it
/// republishes itself (no loop). Its buffer is in memory (a clean session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_reaches_subscribers_without_looping() {
    let rules = r##"
[[rule]]
name = "relay"
buffer = "memory"
sql = 'SELECT clientid, payload.v AS v FROM "#" WHERE v > 1'
[[rule.action]]
republish = "alerts/${clientid}"
payload = "v=${v}"
qos = 1
"##;
    let (b, rules) = start(tempdir(), rules).await;
    let mut sub = b.client(V5, "watcher").await;
    sub.subscribe("alerts/#", QoS::AtLeastOnce).await;
    let mut p = b.client(V5, "dev1").await;
    for v in 0..4 {
        p.publish(
            "t",
            format!(r#"{{"v": {v}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = sub.expect_publish_acked().await;
        got.push((
            m.topic.clone(),
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
    }
    assert_eq!(
        got,
        [
            ("alerts/dev1".to_owned(), "v=2".to_owned()),
            ("alerts/dev1".to_owned(), "v=3".to_owned())
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 4 from dev1, none of its own 2 republished messages.
    assert_eq!(rules.stats()[0].matched, 4);
    rules.shutdown().await;
    b.stop().await;
}

/// A webhook receiver that records bodies and answers by a function of the request count.
struct Hook {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn on(listener: TcpListener, status: Arc<dyn Fn(usize) -> u16 + Send + Sync>) -> Hook {
        let addr = listener.local_addr().expect("addr");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = bodies.clone();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (b, status, seen) = (b.clone(), status.clone(), seen.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (b, status, seen) = (b.clone(), status.clone(), seen.clone());
                        async move {
                            let body = req.into_body().collect().await.map(|c| c.to_bytes());
                            let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let code = status(n);
                            if code == 200
                                && let Ok(body) = body
                            {
                                b.lock().expect("lock").push(body);
                            }
                            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *r.status_mut() = StatusCode::from_u16(code).expect("status");
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Hook { addr, bodies, task }
    }

    /// The distinct `i` values of the JSON bodies received.
    fn received(&self) -> BTreeSet<i64> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .filter_map(|v| v["i"].as_i64())
            .collect()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hook_rules(port: u16) -> String {
    format!(
        r#"
[[connector]]
name = "hook"
kind = "http"
url = "http://127.0.0.1:{port}/ingest"
timeout = "2s"

[[rule]]
name = "forward"
sql = 'SELECT payload.i AS i, clientid FROM "m/#"'
[[rule.action]]
connector = "hook"
body = '{{"i": ${{i}}, "from": "${{clientid}}"}}'
"#
    )
}

/// A webhook that answers 503 for a while, then recovers: every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_fails_then_recovers_gets_everything() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = Hook::on(listener, Arc::new(|n| if n < 150 { 503 } else { 200 })).await;
    let (b, rules) = start(tempdir(), &hook_rules(hook.addr.port())).await;
    let mut p = b.client(V5, "pub").await;
    let n = 300;
    for i in 0..n {
        p.publish(
            "m/x",
            format!(r#"{{"i": {i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    wait_until("every message at the webhook", || {
        hook.received().len() == n
    })
    .await;
    assert_eq!(hook.received(), (0..n as i64).collect());
    let s = &rules.stats()[0];
    assert_eq!(s.actions[0].failed, 0, "{s:?}");
    assert!(s.actions[0].retried > 0, "{s:?}");
    rules.shutdown().await;
    b.stop().await;
}

/// The webhook is down; messages wait in the rule's session in the store; the broker is
/// restarted (shut down, started again on the same store) and the webhook comes back: every
/// message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_messages_survive_a_broker_restart() {
    let port = free_port().await;
    let dir = tempdir();
    let keep = dir.path().to_path_buf();
    let (mut b, rules) = start(dir, &hook_rules(port)).await;
    let mut p = b.client(V5, "pub").await;
    let n = 200;
    for i in 0..n {
        p.publish(
            "m/x",
            format!(r#"{{"i": {i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    wait_until("all buffered", || rules.stats()[0].buffered == n as u64).await;
    rules.shutdown().await;
    let dir = b.dir.take().expect("dir");
    drop(p);
    b.stop().await;
    // Back on the same store, with the webhook up.
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind again");
    let hook = Hook::on(listener, Arc::new(|_| 200)).await;
    let config = std::fs::read_to_string(keep.join("hermod.toml")).expect("config");
    let rules_part = config.split_at(STORE.len()).1.to_owned();
    let (b, rules) = start(dir, &rules_part).await;
    wait_until("every message at the webhook", || {
        hook.received().len() == n
    })
    .await;
    assert_eq!(hook.received(), (0..n as i64).collect());
    // Read back from the store, each still says who published it (the store keeps the
    // publisher; it once came back empty).
    let from: BTreeSet<String> = hook
        .bodies
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .filter_map(|v| v["from"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(from, BTreeSet::from(["pub".to_owned()]));
    rules.shutdown().await;
    b.stop().await;
}

/// PostgreSQL stopped in the middle of 10,000 QoS 1 messages and started again: every message
/// is in the table once the buffer drains, each once (`${id}` in a unique column).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_in_the_middle_loses_nothing() {
    let Some(bin) = common::pg::find_bin() else {
        eprintln!("SKIP: no PostgreSQL server installed (Debian's postgresql package)");
        return;
    };
    let mut pg = common::pg::Server::init(bin);
    pg.start();
    let rules = format!(
        r#"
[[connector]]
name = "pg"
kind = "postgres"
url = "{}"
pool_size = 2
init = ["CREATE TABLE IF NOT EXISTS readings(id TEXT PRIMARY KEY, i BIGINT, clientid TEXT)"]

[[rule]]
name = "to_pg"
sql = 'SELECT id, payload.i AS i, clientid FROM "r/#"'
[[rule.action]]
connector = "pg"
statement = "INSERT INTO readings(id, i, clientid) VALUES (${{id}}, ${{i}}, ${{clientid}}) ON CONFLICT (id) DO NOTHING"
"#,
        pg.url()
    );
    let (b, rules) = start(tempdir(), &rules).await;
    let url = pg.url();
    let n: i64 = std::env::var("HERMOD_PG_OUTAGE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut p = b.client(V5, "pub").await;
    for i in 0..n {
        if i == n / 3 {
            tokio::task::block_in_place(|| pg.stop());
        }
        if i == 2 * n / 3 {
            tokio::task::block_in_place(|| pg.start());
        }
        p.publish(
            "r/1",
            format!(r#"{{"i": {i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    wait_until("the buffer drained", || rules.stats()[0].acked == n as u64).await;
    let got = tokio::task::spawn_blocking(move || {
        common::pg::query(
            &url,
            "SELECT count(*), count(DISTINCT i), min(i), max(i) FROM readings",
        )
    })
    .await
    .expect("query");
    let row = &got[0];
    let (all, distinct, min, max): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((all, distinct, min, max), (n, n, 0, n - 1));
    let s = &rules.stats()[0];
    assert_eq!(s.actions[0].failed, 0, "{s:?}");
    assert!(s.actions[0].retried > 0, "the outage was seen: {s:?}");
    rules.shutdown().await;
    b.stop().await;
}

/// A rule whose sink is away holds what it has under way, buffers `max_buffered` more, and
/// drops (and counts) the rest: with `drop_oldest` the newest survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_and_counts() {
    let port = free_port().await;
    let rules = format!(
        r#"
[[connector]]
name = "hook"
kind = "http"
url = "http://127.0.0.1:{port}/ingest"

[[rule]]
name = "forward"
sql = 'SELECT payload.i AS i FROM "m/#"'
max_buffered = 10
on_full = "drop_oldest"
[[rule.action]]
connector = "hook"
"#
    );
    let (b, r) = start(tempdir(), &rules).await;
    let mut p = b.client(V5, "pub").await;
    let (under_way, n) = (2000_u64, 2100_u64);
    for i in 0..n {
        p.publish(
            "m/x",
            format!(r#"{{"i": {i}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    wait_until("the overflow dropped", || {
        r.stats()[0].dropped == n - under_way - 10
    })
    .await;
    assert_eq!(r.stats()[0].buffered, under_way + 10);
    assert!(b.handle().prometheus_text().contains(&format!(
        "hermod_rule_dropped_total{{rule=\"forward\"}} {}",
        n - under_way - 10
    )));
    // The webhook comes back: what was under way and the newest 10 arrive.
    let hook = Hook::on(
        TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind again"),
        Arc::new(|_| 200),
    )
    .await;
    let want: BTreeSet<i64> = (0..under_way as i64)
        .chain(n as i64 - 10..n as i64)
        .collect();
    wait_until("the rest at the webhook", || hook.received() == want).await;
    r.shutdown().await;
    b.stop().await;
}

/// `max_buffer_bytes` bounds the buffer by size too (memory and disk together): with room for
/// 20 messages of this size, the 21st is dropped and counted though `max_buffered` is far off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_full_by_bytes_drops_and_counts() {
    let port = free_port().await;
    let payload = |i: u64| {
        format!(
            r#"{{"i": {}, "pad": "{}"}}"#,
            1_000_000 + i,
            "x".repeat(1000)
        )
    };
    // `Message::size`: 16 bytes of headers, the topic and the payload.
    let size = 16 + "m/x".len() + payload(0).len();
    let rules = format!(
        r#"
[[connector]]
name = "hook"
kind = "http"
url = "http://127.0.0.1:{port}/ingest"

[[rule]]
name = "forward"
sql = 'SELECT payload.i AS i FROM "m/#"'
max_buffer_bytes = {limit}
[[rule.action]]
connector = "hook"
"#,
        limit = 20 * size
    );
    let (b, r) = start(tempdir(), &rules).await;
    let mut p = b.client(V5, "pub").await;
    let (under_way, n) = (2000_u64, 2100_u64);
    for i in 0..n {
        p.publish("m/x", payload(i).as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    wait_until("the overflow dropped", || {
        r.stats()[0].dropped == n - under_way - 20
    })
    .await;
    assert_eq!(r.stats()[0].buffered, under_way + 20);
    r.shutdown().await;
    b.stop().await;
}

/// A rule FROM an event (`$events/client_connected`) runs when a client connects; the rule's
/// own connection is not an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_rule_sees_clients_connect() {
    let rules = r#"
[[rule]]
name = "presence"
sql = 'SELECT clientid, username, peerhost FROM "$events/client_connected" WHERE clientid != "watcher"'
[[rule.action]]
republish = "presence/${clientid}"
payload = "${username} from ${peerhost}"
qos = 1
"#;
    let (b, rules) = start(tempdir(), rules).await;
    let mut watcher = b.client(V5, "watcher").await;
    watcher.subscribe("presence/#", QoS::AtLeastOnce).await;
    let _dev = b
        .connect_with(hermod_testkit::connect_auth(V5, "dev-9", Some("bob"), None))
        .await;
    let m = watcher.expect_publish_acked().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("presence/dev-9", &b"bob from 127.0.0.1"[..])
    );
    assert_eq!(rules.stats()[0].passed, 1);
    rules.shutdown().await;
    b.stop().await;
}

/// A republish topic built from a message cannot put words in the broker's mouth: a `$` topic
/// fails that message's action (counted), the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_refuses_dollar_topics_built_from_messages() {
    let rules = r#"
[[rule]]
name = "echo"
sql = 'SELECT payload.t AS t FROM "in/#"'
[[rule.action]]
republish = "${t}"
payload = "spoofed"
"#;
    let (b, rules) = start(tempdir(), rules).await;
    let mut sub = b.client(V5, "watcher").await;
    sub.subscribe("$SYS/fake", QoS::AtMostOnce).await;
    sub.subscribe("ok/#", QoS::AtMostOnce).await;
    let mut p = b.client(V5, "attacker").await;
    p.publish("in/1", br#"{"t": "$SYS/fake"}"#, QoS::AtLeastOnce, false)
        .await;
    p.publish("in/1", br#"{"t": "ok/1"}"#, QoS::AtLeastOnce, false)
        .await;
    let m = sub.expect_publish().await;
    assert_eq!(m.topic, "ok/1", "only the plain topic is republished");
    sub.expect_nothing(Duration::from_millis(300)).await;
    let s = &rules.stats()[0];
    assert_eq!(
        (s.actions[0].succeeded, s.actions[0].failed),
        (1, 1),
        "{s:?}"
    );
    rules.shutdown().await;
    b.stop().await;
}
