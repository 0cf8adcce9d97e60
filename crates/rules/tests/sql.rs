//! The rule language end to end: a table of (SQL, input, expected row), the error messages,
//! templates on applied rows, and fuzzing that no input panics the parser or `apply`.

use std::collections::BTreeMap;

use hermod_rules::{Dialect, Event, Input, Rule, Source, Template, Value};
use proptest::prelude::*;
use serde_json::{Value as J, json};

fn msg(payload: &str) -> Input {
    Input {
        event: Event::Publish,
        clientid: "c1".into(),
        username: Some("u1".into()),
        peerhost: Some("10.0.0.7".into()),
        topic: "t/a".into(),
        qos: 1,
        retain: false,
        payload: payload.to_owned().into(),
        timestamp: 1_700_000_000_123,
        id: "0005E27C1D24E44F".into(),
        node: "hermod@host".into(),
        user_properties: vec![
            ("foo".into(), "bar".into()),
            ("User-Id".into(), "42".into()),
        ],
        event_fields: BTreeMap::new(),
    }
}

fn on_topic(topic: &str, payload: &str) -> Input {
    Input {
        topic: topic.into(),
        ..msg(payload)
    }
}

fn event(kind: Event, fields: &[(&str, Value)]) -> Input {
    Input {
        event: kind,
        payload: Default::default(),
        event_fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..msg("")
    }
}

fn run(sql: &str, input: &Input) -> Option<J> {
    let rule = Rule::parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    rule.apply(input)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .map(J::Object)
}

const P: &str = r#"{"temp": 21.5, "n": 3, "name": "Sensor-1", "a": {"b": [10, 20, {"c": "deep"}]}, "tags": ["x", "y"], "flag": true, "s": "{\"inner\": 7}", "nul": null}"#;

#[test]
#[rustfmt::skip] // one case a line
fn table() {
    let connected = event(
        Event::ClientConnected,
        &[("peername", Value::from("10.0.0.7:50000")), ("keepalive", Value::Int(60)), ("proto_ver", Value::Int(5))],
    );
    let disconnected = event(Event::ClientDisconnected, &[("reason", Value::from("keepalive_timeout"))]);
    let dropped = Input { event: Event::MessageDropped, event_fields: [("reason".to_owned(), Value::from("no_subscribers"))].into(), ..msg(P) };
    let cases: Vec<(&str, Input, Option<J>)> = vec![
        // SELECT fields, aliases, FROM filters
        ("SELECT clientid, username, peerhost, topic, qos, retain FROM \"t/#\"", msg(P),
            Some(json!({"clientid": "c1", "username": "u1", "peerhost": "10.0.0.7", "topic": "t/a", "qos": 1, "retain": false}))),
        ("SELECT timestamp, id, node FROM \"t/#\"", msg(P),
            Some(json!({"timestamp": 1_700_000_000_123_i64, "id": "0005E27C1D24E44F", "node": "hermod@host"}))),
        ("SELECT payload FROM \"t/a\"", msg("hello"), Some(json!({"payload": "hello"}))),
        ("SELECT clientid AS cid, topic as t FROM \"t/+\"", msg(P), Some(json!({"cid": "c1", "t": "t/a"}))),
        ("SELECT clientid FROM \"x/#\"", msg(P), None),
        ("SELECT clientid FROM \"x/#\", \"t/+\"", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"#\"", on_topic("$SYS/x", P), None),
        ("SELECT clientid FROM \"$SYS/#\"", on_topic("$SYS/x", P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/+\"", on_topic("t/a/b", P), None),
        // payload paths: nested, indexed, negative, JSON inside a string, missing is null
        ("SELECT payload.temp AS t, payload.a.b[2] AS b, payload.a.b[-1].c AS c, payload.tags[1] AS tag FROM \"t/#\"", msg(P),
            Some(json!({"t": 21.5, "b": 20, "c": "deep", "tag": "x"}))),
        ("SELECT payload.s.inner AS i, payload.missing.x AS m, payload.a.b[0] AS z FROM \"t/#\"", msg(P),
            Some(json!({"i": 7, "m": null, "z": null}))),
        ("SELECT payload.temp, payload.a.b[1] FROM \"t/#\"", msg(P),
            Some(json!({"payload": {"temp": 21.5}, "payload.a.b[1]": 10}))),
        ("SELECT payload.x AS x FROM \"t/#\"", msg("not json"), Some(json!({"x": null}))),
        ("SELECT payload.x AS x FROM \"t/#\"", msg(""), Some(json!({"x": null}))),
        // user properties, as EMQX's pub_props
        ("SELECT pub_props.'User-Property'.foo AS foo, pub_props.'User-Property'.`User-Id` AS uid FROM \"t/#\"", msg(P),
            Some(json!({"foo": "bar", "uid": "42"}))),
        ("SELECT pub_props.'User-Property'.'User-Id' AS uid, pub_props.'User-Property-Pairs'[1].key AS k FROM \"t/#\"", msg(P),
            Some(json!({"uid": "42", "k": "foo"}))),
        // SELECT *
        ("SELECT * FROM \"t/#\" WHERE qos = 1", msg("{\"x\":1}"), Some(json!({
            "event": "message.publish", "clientid": "c1", "username": "u1", "peerhost": "10.0.0.7",
            "timestamp": 1_700_000_000_123_i64, "node": "hermod@host", "id": "0005E27C1D24E44F", "topic": "t/a",
            "qos": 1, "retain": false, "flags": {"retain": false}, "payload": "{\"x\":1}",
            "publish_received_at": 1_700_000_000_123_i64,
            "pub_props": {"User-Property": {"foo": "bar", "User-Id": "42"},
                          "User-Property-Pairs": [{"key": "foo", "value": "bar"}, {"key": "User-Id", "value": "42"}]}}))),
        ("SELECT *, payload.n AS n FROM \"t/#\" WHERE n = 3", msg(P), {
            let mut all = run("SELECT * FROM \"t/#\"", &msg(P)).expect("row");
            all["n"] = json!(3);
            Some(all)
        }),
        // WHERE: comparisons, AND/OR/NOT, parentheses, literals
        ("SELECT clientid FROM \"t/#\" WHERE payload.temp > 20 AND payload.name = 'Sensor-1'", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE payload.temp >= 21.5 AND payload.temp <= 21.5 AND payload.n < 4", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE payload.temp > 30", msg(P), None),
        ("SELECT clientid FROM \"t/#\" WHERE payload.n != 3 OR payload.n <> 3", msg(P), None),
        ("SELECT clientid FROM \"t/#\" WHERE NOT (payload.n = 4 OR payload.flag = false)", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE (payload.n = 3 OR qos = 2) AND retain = false", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE payload.flag = true AND payload.nul = null", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE payload.name = \"Sensor-1\"", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE payload.n = '3'", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE payload.missing != 1", msg(P), None),
        ("SELECT clientid FROM \"t/#\" WHERE payload.missing", msg(P), None),
        ("select clientid from \"t/#\" where topic =~ 't/+' and not topic =~ 'x/#'", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE is_null(payload.missing) AND is_not_null(payload.temp)", msg(P), Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"t/#\" WHERE is_null(username)", Input { username: None, ..msg(P) }, Some(json!({"clientid": "c1"}))),
        // WHERE sees SELECT aliases, as EMQX
        ("SELECT payload.temp AS t FROM \"t/#\" WHERE t > 21", msg(P), Some(json!({"t": 21.5}))),
        ("SELECT payload.temp AS t FROM \"t/#\" WHERE t > 22", msg(P), None),
        // functions
        ("SELECT lower(payload.name) AS l, upper(clientid) AS u FROM \"t/#\"", msg(P), Some(json!({"l": "sensor-1", "u": "C1"}))),
        ("SELECT concat(clientid, '/', payload.n, '/', payload.temp) AS c FROM \"t/#\"", msg(P), Some(json!({"c": "c1/3/21.5"}))),
        ("SELECT substr(payload.name, 2) AS a, substr(payload.name, 0, 6) AS b FROM \"t/#\"", msg(P), Some(json!({"a": "nsor-1", "b": "Sensor"}))),
        ("SELECT nth(2, payload.tags) AS a, nth(5, payload.tags) AS b, nth(1, [7, 8]) AS c FROM \"t/#\"", msg(P), Some(json!({"a": "y", "b": "", "c": 7}))),
        ("SELECT json_decode(payload.s) AS x FROM \"t/#\"", msg(P), Some(json!({"x": {"inner": 7}}))),
        ("SELECT json_encode(payload.a) AS j, json_decode('[1,2]') AS d FROM \"t/#\"", msg(P), Some(json!({"j": "{\"b\":[10,20,{\"c\":\"deep\"}]}", "d": [1, 2]}))),
        ("SELECT str(payload.n) AS s, int(payload.temp) AS i, float(payload.n) AS f, int('12') AS j FROM \"t/#\"", msg(P), Some(json!({"s": "3", "i": 21, "f": 3.0, "j": 12}))),
        ("SELECT lower(clientid) FROM \"t/#\"", msg(P), Some(json!({"lower(clientid)": "c1"}))),
        ("SELECT payload.n * 2 + 1 AS x, 'a' + 'b' AS s, -payload.n AS neg, 7 div 2 AS d, 7 mod 2 AS m FROM \"t/#\"", msg(P), Some(json!({"x": 7, "s": "ab", "neg": -3, "d": 3, "m": 1}))),
        // events: FROM, EMQX's field names
        ("SELECT clientid, peername, keepalive, proto_ver, event FROM \"$events/client_connected\"", connected.clone(),
            Some(json!({"clientid": "c1", "peername": "10.0.0.7:50000", "keepalive": 60, "proto_ver": 5, "event": "client.connected"}))),
        ("SELECT clientid FROM \"$events/client_connected\"", msg(P), None),
        ("SELECT clientid FROM \"t/#\"", connected.clone(), None),
        ("SELECT topic, payload FROM \"$events/client_connected\"", connected.clone(), Some(json!({"topic": null, "payload": null}))),
        ("SELECT clientid, reason FROM \"$events/client_disconnected\" WHERE reason = 'keepalive_timeout'", disconnected.clone(),
            Some(json!({"clientid": "c1", "reason": "keepalive_timeout"}))),
        ("SELECT reason, topic, payload.n AS n FROM \"$events/message_dropped\"", dropped.clone(),
            Some(json!({"reason": "no_subscribers", "topic": "t/a", "n": 3}))),
        ("SELECT clientid FROM \"t/#\", \"$events/client_disconnected\"", disconnected, Some(json!({"clientid": "c1"}))),
        ("SELECT clientid FROM \"$events/client/connected\"", connected, Some(json!({"clientid": "c1"}))),
    ];
    for (sql, input, want) in cases {
        assert_eq!(run(sql, &input), want, "{sql}");
    }
}

#[test]
#[rustfmt::skip] // one case a line
fn parse_errors_name_the_position() {
    let cases = [
        ("", "expected SELECT, found end of input at 1:1"),
        ("SELEC * FROM \"t\"", "expected SELECT, found `SELEC` at 1:1"),
        ("SELECT clientid \"t/#\"", "expected FROM, found \"t/#\" at 1:17"),
        ("SELECT clientid,\n  topic WHERE qos = 1", "expected FROM, found `WHERE` at 2:9"),
        ("SELECT * FROM", "expected a double-quoted topic filter or event, found end of input at 1:14"),
        ("SELECT * FROM 't/#'", "expected a double-quoted topic filter or event, found 't/#' at 1:15"),
        ("SELECT * FROM \"t/#/x\"", "invalid topic filter \"t/#/x\" at 1:15"),
        ("SELECT * FROM \"\"", "invalid topic filter \"\" at 1:15"),
        ("SELECT * FROM \"$events/session_subscribed\"", "unknown event source \"$events/session_subscribed\" at 1:15"),
        ("SELECT * FROM \"t\" WHERE", "expected an expression, found end of input at 1:24"),
        ("SELECT * FROM \"t\" WHERE a = ", "expected an expression, found end of input at 1:29"),
        ("SELECT * FROM \"t\" WHERE (a = 1", "expected `)`, found end of input at 1:31"),
        ("SELECT * FROM \"t\" WHERE a = 'x", "unterminated string literal at 1:29"),
        ("SELECT * FROM \"t\" WHERE a ! 1", "unexpected character '!' at 1:27"),
        ("SELECT * FROM \"t\" WHERE a = 1x", "invalid number `1x` at 1:29"),
        ("SELECT * FROM \"t\" WHERE a = 1 b", "unexpected `b` after the end of the statement at 1:31"),
        ("SELECT sum(qos) FROM \"t\"", "unknown function `sum` at 1:8"),
        ("SELECT substr(clientid) FROM \"t\"", "`substr` takes 2 to 3 arguments, not 1 at 1:8"),
        ("SELECT now_timestamp(1, 2) FROM \"t\"", "`now_timestamp` takes 0 to 1 arguments, not 2 at 1:8"),
        ("SELECT lower(a, b) FROM \"t\"", "`lower` takes 1 argument, not 2 at 1:8"),
        ("SELECT concat(a b) FROM \"t\"", "expected `,` or `)`, found `b` at 1:17"),
        ("SELECT payload. FROM \"t\"", "expected a field name after `.`, found `FROM` at 1:17"),
        ("SELECT payload.a[x] FROM \"t\"", "expected an integer index, found `x` at 1:18"),
        ("SELECT a AS FROM \"t\"", "expected a column name after AS, found `FROM` at 1:13"),
        ("SELECT `a FROM \"t\"", "unterminated quoted identifier at 1:8"),
    ];
    for (sql, want) in cases {
        let e = Rule::parse(sql).expect_err(sql);
        assert_eq!(e.to_string(), want, "{sql}");
    }
    let e = Rule::parse("SELECT *\nFROM \"t\"\nWHERE (").expect_err("position");
    assert_eq!((e.line, e.column), (3, 8));
    let deep = format!("SELECT {}1{} FROM \"t\"", "(".repeat(500), ")".repeat(500));
    assert!(Rule::parse(&deep).expect_err("deep").message.contains("nested too deeply"));
}

#[test]
#[rustfmt::skip] // one case a line
fn eval_errors_fail_the_message_not_the_rule() {
    let cases = [
        ("SELECT lower(payload.n) AS x FROM \"t/#\"", "lower(): expected a string, got integer"),
        ("SELECT lower(payload.missing) AS x FROM \"t/#\"", "lower(): expected a string, got null"),
        ("SELECT nth(0, payload.tags) AS x FROM \"t/#\"", "nth(): index 0 is out of range"),
        ("SELECT json_decode(payload.name) AS x FROM \"t/#\"", "json_decode(): the argument is not JSON"),
        ("SELECT int(payload.name) AS x FROM \"t/#\"", "int(): cannot convert 'Sensor-1'"),
        ("SELECT * FROM \"t/#\" WHERE payload.n > payload.name", "cannot compare a number with the non-numeric string 'Sensor-1'"),
        ("SELECT payload.n / 0 AS x FROM \"t/#\"", "division by zero"),
    ];
    for (sql, want) in cases {
        let rule = Rule::parse(sql).expect(sql);
        let e = rule.apply(&msg(P)).expect_err(sql);
        assert!(e.to_string().starts_with(want), "{sql}: {e}");
        // The next message goes through the same rule.
        assert!(Rule::parse("SELECT clientid FROM \"t/#\"").expect("ok").apply(&msg(P)).is_ok());
    }
}

#[test]
fn sources_and_topic_matching() {
    let rule =
        Rule::parse("SELECT * FROM \"dev/+/gw\", \"$events/message_dropped\"").expect("parses");
    assert_eq!(
        rule.sources(),
        &[
            Source::Topic("dev/+/gw".into()),
            Source::Event(Event::MessageDropped)
        ]
    );
    assert!(rule.matches_topic("dev/1/gw"));
    assert!(!rule.matches_topic("dev/1/gw/x"));
    assert!(rule.matches_event(Event::MessageDropped));
    assert!(!rule.matches_event(Event::ClientConnected));
    assert_eq!(
        rule.sql(),
        "SELECT * FROM \"dev/+/gw\", \"$events/message_dropped\""
    );
}

#[test]
fn collector_statement_binds_an_injection_payload() {
    // The issue's collector: the payload that tries SQL injection is a parameter, not SQL.
    let rule =
        Rule::parse("SELECT clientid, topic, payload, timestamp FROM \"dev/gw\"").expect("parses");
    let evil = "'); DROP TABLE messages; --";
    let row = rule
        .apply(&on_topic("dev/gw", evil))
        .expect("applies")
        .expect("matches");
    let statement = Template::parse(
        "INSERT INTO messages(clientid, topic, payload, ts) VALUES (${clientid}, ${topic}, ${payload}, ${timestamp})",
    )
    .expect("template");
    let (sql, params) = statement
        .to_sql_params(&row, Dialect::Sqlite)
        .expect("binds");
    assert_eq!(
        sql,
        "INSERT INTO messages(clientid, topic, payload, ts) VALUES (?, ?, ?, ?)"
    );
    assert_eq!(
        params,
        vec![
            Value::from("c1"),
            Value::from("dev/gw"),
            Value::from(evil),
            Value::Int(1_700_000_000_123)
        ]
    );
    let (sql, _) = statement
        .to_sql_params(&row, Dialect::Postgres)
        .expect("binds");
    assert!(sql.ends_with("VALUES ($1, $2, $3, $4)"));
    assert!(!sql.contains("DROP"));
}

#[test]
fn templates_read_nested_rows() {
    let rule = Rule::parse("SELECT payload.a.b, payload, clientid FROM \"t/#\"").expect("parses");
    let row = rule.apply(&msg(P)).expect("applies").expect("matches");
    let t = Template::parse("${clientid}/${payload.a.b[3].c}/${payload.temp}").expect("template");
    assert_eq!(t.render_text(&row), "c1/deep/21.5");
    let body =
        Template::parse(r#"{"c": ${clientid}, "b": ${payload.a.b}, "msg": "t=${payload.temp}"}"#)
            .expect("template");
    assert_eq!(
        body.render_json(&row),
        r#"{"c": "c1", "b": [10,20,{"c":"deep"}], "msg": "t=21.5"}"#
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics_on_any_string(s in "\\PC{0,200}") {
        let _ = Rule::parse(&s);
    }

    #[test]
    fn parser_never_panics_on_token_soup(parts in proptest::collection::vec(prop_oneof![
        Just("SELECT"), Just("FROM"), Just("WHERE"), Just("AS"), Just("AND"), Just("OR"), Just("NOT"),
        Just("*"), Just(","), Just("."), Just("("), Just(")"), Just("["), Just("]"), Just("-"), Just("+"),
        Just("="), Just("=~"), Just("<>"), Just("<="), Just("div"), Just("payload"), Just("a"), Just("1"),
        Just("-1"), Just("2.5"), Just("'s'"), Just("\"t/#\""), Just("\"$events/client_connected\""),
        Just("lower"), Just("nth"), Just("substr"), Just("concat"), Just("null"), Just("true"), Just("'"),
    ], 0..40)) {
        let sql = parts.join(" ");
        if let Ok(rule) = Rule::parse(&sql) {
            let _ = rule.apply(&msg(P));
        }
    }

    #[test]
    fn apply_never_panics_on_any_payload(payload in proptest::collection::vec(any::<u8>(), 0..300), json in "[\\[\\]{}\":,0-9a-z. -]{0,80}") {
        let rules = [
            "SELECT * FROM \"#\"",
            "SELECT payload.a.b[1] AS x, payload.a[-1], nth(2, payload.a) AS n FROM \"#\" WHERE x = 1 OR NOT is_null(n)",
            "SELECT concat(payload, payload.a) AS c, substr(str(payload.a), 1, 3) AS s FROM \"#\" WHERE payload.a > 1",
            "SELECT json_encode(json_decode(payload)) AS j, int(payload.a) AS i, float(payload.b) AS f FROM \"#\"",
            "SELECT payload.a * 2 + payload.b / 3 - payload.c div 2 AS m, payload.a, payload FROM \"#\" WHERE payload.a =~ 't/#'",
        ];
        for sql in rules {
            let rule = Rule::parse(sql).expect("parses");
            let _ = rule.apply(&Input { payload: payload.clone().into(), ..msg("") });
            let _ = rule.apply(&Input { payload: json.clone().into(), ..msg("") });
        }
    }
}
