//! The AWS flows end to end through [`Engine::handle`], with a map of stored bytes standing in
//! for the caller's store (so every shadow also goes through `to_bytes`/`from_bytes`).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::document::TOMBSTONE_SECS;
use crate::model::ModelSpec;
use crate::topic;

type Key = (String, Option<String>);

struct Harness {
    engine: Engine,
    store: HashMap<Key, Vec<u8>>,
    now: i64,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Engine::default())
    }

    fn with(engine: Engine) -> Harness {
        Harness {
            engine,
            store: HashMap::new(),
            now: 1_000,
        }
    }

    fn stored(&self, thing: &str, shadow: Option<&str>) -> Option<Shadow> {
        let key = (thing.to_owned(), shadow.map(str::to_owned));
        let bytes = self.store.get(&key)?;
        match Shadow::from_bytes(bytes) {
            Ok(s) => Some(s),
            Err(e) => panic!("stored shadow unreadable: {e}"),
        }
    }

    /// Publishes `payload` on `topic` as the service would handle it.
    fn send(&mut self, topic: &str, payload: &str) -> Outcome {
        let Some(request) = topic::parse(topic) else {
            panic!("not a request topic: {topic}");
        };
        let current = self.stored(&request.thing, request.shadow.as_deref());
        let outcome = self
            .engine
            .handle(&request, payload.as_bytes(), current.as_ref(), self.now);
        if let Some(StoreChange::Put(shadow)) = &outcome.store {
            self.store.insert(
                (request.thing.clone(), request.shadow.clone()),
                shadow.to_bytes(),
            );
        }
        self.now += 1;
        outcome
    }
}

fn body(reply: &Reply) -> Value {
    match serde_json::from_slice(&reply.payload) {
        Ok(v) => v,
        Err(e) => panic!("reply is not JSON: {e}"),
    }
}

fn topics(outcome: &Outcome) -> Vec<&str> {
    outcome.replies.iter().map(|r| r.topic.as_str()).collect()
}

/// The single reply's body, asserting its topic.
fn only(outcome: &Outcome, topic: &str) -> Value {
    assert_eq!(topics(outcome), vec![topic]);
    body(&outcome.replies[0])
}

/// The body of the reply on `topic`.
fn on(outcome: &Outcome, topic: &str) -> Value {
    match outcome.replies.iter().find(|r| r.topic == topic) {
        Some(r) => body(r),
        None => panic!("no reply on {topic}: {:?}", topics(outcome)),
    }
}

const T: &str = "$hermod/things/lamp/shadow";

fn rejected(outcome: &Outcome, op: &str) -> (u64, String) {
    let doc = only(outcome, &format!("{T}/{op}/rejected"));
    assert!(outcome.store.is_none());
    assert!(!outcome.is_accepted());
    (
        doc["code"].as_u64().unwrap_or_default(),
        doc["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn update_desired_publishes_accepted_delta_and_documents() {
    let mut h = Harness::new();
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"color": "red", "light": {"on": true}}}}"#,
    );
    assert!(out.is_accepted());
    assert_eq!(
        topics(&out),
        vec![
            format!("{T}/update/accepted"),
            format!("{T}/update/delta"),
            format!("{T}/update/documents"),
        ]
    );
    assert_eq!(
        body(&out.replies[0]),
        json!({
            "state": {"desired": {"color": "red", "light": {"on": true}}},
            "metadata": {"desired": {"color": {"timestamp": 1000},
                                     "light": {"on": {"timestamp": 1000}}}},
            "version": 1,
            "timestamp": 1000,
        })
    );
    assert_eq!(
        body(&out.replies[1]),
        json!({
            "version": 1,
            "timestamp": 1000,
            "state": {"color": "red", "light": {"on": true}},
            "metadata": {"color": {"timestamp": 1000}, "light": {"on": {"timestamp": 1000}}},
        })
    );
    assert_eq!(
        body(&out.replies[2]),
        json!({
            "previous": null,
            "current": {
                "state": {"desired": {"color": "red", "light": {"on": true}}},
                "metadata": {"desired": {"color": {"timestamp": 1000},
                                         "light": {"on": {"timestamp": 1000}}}},
                "version": 1,
            },
            "timestamp": 1000,
        })
    );
    let stored = h.stored("lamp", None);
    assert_eq!(stored.as_ref().map(|s| s.version), Some(1));
    assert_eq!(stored.map(|s| s.timestamp), Some(1000));
}

#[test]
fn device_reporting_the_desired_values_gets_no_delta() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"color": "red"}}}"#,
    );
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"color": "red"}}}"#,
    );
    assert_eq!(
        topics(&out),
        vec![
            format!("{T}/update/accepted"),
            format!("{T}/update/documents")
        ]
    );
    let accepted = body(&out.replies[0]);
    assert_eq!(accepted["version"], 2);
    assert_eq!(accepted["state"], json!({"reported": {"color": "red"}}));
    let documents = body(&out.replies[1]);
    assert_eq!(documents["previous"]["version"], 1);
    assert_eq!(
        documents["previous"]["state"],
        json!({"desired": {"color": "red"}})
    );
    assert_eq!(documents["current"]["version"], 2);
    assert_eq!(
        documents["current"]["state"],
        json!({"desired": {"color": "red"}, "reported": {"color": "red"}})
    );
    assert_eq!(
        documents["current"]["metadata"],
        json!({"desired": {"color": {"timestamp": 1000}},
               "reported": {"color": {"timestamp": 1001}}})
    );
}

#[test]
fn delta_only_when_the_update_has_desired() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1, "b": 2}}}"#,
    );
    // A report that leaves a difference publishes no delta: the device already knows.
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"a": 1}}}"#,
    );
    assert!(!topics(&out).iter().any(|t| t.ends_with("/delta")));
    // A desired update publishes the whole difference, not only the keys it touched.
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"c": 3}}}"#,
    );
    let delta = on(&out, &format!("{T}/update/delta"));
    assert_eq!(delta["state"], json!({"b": 2, "c": 3}));
    assert_eq!(
        delta["metadata"],
        json!({"b": {"timestamp": 1000}, "c": {"timestamp": 1002}})
    );
    assert_eq!(delta["version"], 3);
    // Desired set to what is reported: nothing to publish on delta.
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"b": null, "c": null}}}"#,
    );
    assert!(!topics(&out).iter().any(|t| t.ends_with("/delta")));
}

#[test]
fn get_returns_the_document_with_delta_only_when_non_empty() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"color": "red"}, "reported": {"color": "blue"}}}"#,
    );
    let out = h.send(&format!("{T}/get"), "");
    assert!(out.store.is_none());
    assert_eq!(
        only(&out, &format!("{T}/get/accepted")),
        json!({
            "state": {"desired": {"color": "red"}, "reported": {"color": "blue"},
                      "delta": {"color": "red"}},
            "metadata": {"desired": {"color": {"timestamp": 1000}},
                         "reported": {"color": {"timestamp": 1000}}},
            "version": 1,
            "timestamp": 1001,
        })
    );
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"color": "red"}}}"#,
    );
    let doc = only(
        &h.send(&format!("{T}/get"), "{}"),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(
        doc["state"],
        json!({"desired": {"color": "red"}, "reported": {"color": "red"}})
    );
    assert_eq!(doc["version"], 2);
}

#[test]
fn get_of_a_missing_shadow_is_404() {
    let mut h = Harness::new();
    let out = h.send(&format!("{T}/get"), "");
    assert_eq!(
        rejected(&out, "get"),
        (404, "No shadow exists with name: 'lamp'".into())
    );
    let out = h.send("$hermod/things/lamp/shadow/name/cfg/get", "");
    let doc = only(&out, "$hermod/things/lamp/shadow/name/cfg/get/rejected");
    assert_eq!(doc["message"], "No shadow exists with name: 'cfg'");
}

#[test]
fn version_conflict_is_409() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 2}}, "version": 5, "clientToken": "c"}"#,
    );
    assert_eq!(rejected(&out, "update"), (409, "Version conflict".into()));
    assert_eq!(body(&out.replies[0])["clientToken"], "c");
    assert_eq!(h.stored("lamp", None).map(|s| s.version), Some(1));

    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 2}}, "version": 1}"#,
    );
    assert_eq!(on(&out, &format!("{T}/update/accepted"))["version"], 2);
    // A first update may state version 0; any other is a conflict.
    let out = h.send(
        "$hermod/things/new/shadow/update",
        r#"{"state": {"reported": {"a": 1}}, "version": 3}"#,
    );
    assert!(!out.is_accepted());
    let out = h.send(
        "$hermod/things/new/shadow/update",
        r#"{"state": {"reported": {"a": 1}}, "version": 0}"#,
    );
    assert!(out.is_accepted());
}

#[test]
fn delete_then_get_404_then_update_continues_the_version() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"a": 1}}}"#,
    );
    let out = h.send(&format!("{T}/delete"), r#"{"clientToken": "d"}"#);
    assert_eq!(
        only(&out, &format!("{T}/delete/accepted")),
        json!({"version": 2, "timestamp": 1002, "clientToken": "d"})
    );
    let tomb = h.stored("lamp", None);
    assert_eq!(
        tomb.as_ref().map(|s| (s.deleted, s.version)),
        Some((true, 2))
    );
    assert_eq!(tomb.and_then(|s| s.desired), None);

    assert_eq!(rejected(&h.send(&format!("{T}/get"), ""), "get").0, 404);
    assert_eq!(
        rejected(&h.send(&format!("{T}/delete"), ""), "delete").0,
        404
    );

    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"b": 1}}}"#,
    );
    let accepted = on(&out, &format!("{T}/update/accepted"));
    assert_eq!(accepted["version"], 3);
    let documents = on(&out, &format!("{T}/update/documents"));
    assert_eq!(documents["previous"], Value::Null);
    // The old state is gone.
    assert_eq!(documents["current"]["state"], json!({"reported": {"b": 1}}));
}

#[test]
fn update_of_a_tombstone_checks_its_version() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    h.send(&format!("{T}/delete"), "");
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}, "version": 0}"#,
    );
    assert_eq!(rejected(&out, "update").0, 409);
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}, "version": 1}"#,
    );
    assert_eq!(on(&out, &format!("{T}/update/accepted"))["version"], 2);
}

#[test]
fn an_old_tombstone_is_forgotten() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    h.send(&format!("{T}/delete"), "");
    h.now += TOMBSTONE_SECS + 10;
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    assert_eq!(on(&out, &format!("{T}/update/accepted"))["version"], 1);
}

#[test]
fn delete_with_a_wrong_version_is_409() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    let out = h.send(&format!("{T}/delete"), r#"{"version": 7}"#);
    assert_eq!(rejected(&out, "delete").0, 409);
    let out = h.send(&format!("{T}/delete"), r#"{"version": 1}"#);
    assert!(out.is_accepted());
}

#[test]
fn named_and_classic_shadows_are_independent() {
    let mut h = Harness::new();
    let named = "$hermod/things/lamp/shadow/name/cfg";
    let out = h.send(
        &format!("{named}/update"),
        r#"{"state": {"desired": {"mode": "eco"}}}"#,
    );
    assert_eq!(
        topics(&out),
        vec![
            format!("{named}/update/accepted"),
            format!("{named}/update/delta"),
            format!("{named}/update/documents"),
        ]
    );
    assert_eq!(rejected(&h.send(&format!("{T}/get"), ""), "get").0, 404);

    h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"on": true}}}"#,
    );
    let doc = only(
        &h.send(&format!("{named}/get"), ""),
        &format!("{named}/get/accepted"),
    );
    assert_eq!(doc["state"]["desired"], json!({"mode": "eco"}));
    assert_eq!(doc["state"].get("reported"), None);
    assert_eq!(doc["version"], 1);

    // Deleting the named shadow leaves the classic one alone.
    h.send(&format!("{named}/delete"), "");
    let doc = only(
        &h.send(&format!("{T}/get"), ""),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(doc["state"], json!({"reported": {"on": true}}));
    // And another named shadow is separate from both.
    let out = h.send("$hermod/things/lamp/shadow/name/other/get", "");
    assert!(!out.is_accepted());
}

#[test]
fn aws_prefix_replies_under_aws() {
    let mut h = Harness::new();
    let out = h.send(
        "$aws/things/lamp/shadow/update",
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    assert_eq!(
        topics(&out),
        vec![
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/update/delta",
            "$aws/things/lamp/shadow/update/documents",
        ]
    );
    // Both roots address the same stored shadow: the store key is (thing, shadow name).
    let doc = only(
        &h.send(&format!("{T}/get"), ""),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(doc["version"], 1);
}

#[test]
fn client_token_is_echoed_everywhere() {
    let mut h = Harness::new();
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}, "clientToken": "tok-1"}"#,
    );
    assert_eq!(out.replies.len(), 3);
    for reply in &out.replies {
        assert_eq!(body(reply)["clientToken"], "tok-1", "{}", reply.topic);
    }
    let out = h.send(&format!("{T}/get"), r#"{"clientToken": "tok-2"}"#);
    assert_eq!(body(&out.replies[0])["clientToken"], "tok-2");

    for (topic, payload) in [
        (format!("{T}/update"), r#"{"clientToken": "tok-3"}"#),
        (
            format!("{T}/update"),
            r#"{"state": {"x": 1}, "clientToken": "tok-3"}"#,
        ),
        (
            format!("{T}/update"),
            r#"{"state": {"desired": 1}, "clientToken": "tok-3"}"#,
        ),
        (
            format!("{T}/update"),
            r#"{"state": {}, "version": 9, "clientToken": "tok-3"}"#,
        ),
        (
            "$hermod/things/none/shadow/get".to_owned(),
            r#"{"clientToken": "tok-3"}"#,
        ),
        (
            "$hermod/things/none/shadow/delete".to_owned(),
            r#"{"clientToken": "tok-3"}"#,
        ),
    ] {
        let out = h.send(&topic, payload);
        assert!(!out.is_accepted(), "{topic} {payload}");
        assert_eq!(body(&out.replies[0])["clientToken"], "tok-3", "{payload}");
    }

    let out = h.send(&format!("{T}/delete"), r#"{"clientToken": "tok-4"}"#);
    assert_eq!(body(&out.replies[0])["clientToken"], "tok-4");
    // No token, no echo.
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1}}}"#,
    );
    for reply in &out.replies {
        assert_eq!(body(reply).get("clientToken"), None);
    }
}

#[test]
fn a_too_long_client_token_is_400() {
    let mut h = Harness::new();
    let payload = format!(
        r#"{{"state": {{"desired": {{"a": 1}}}}, "clientToken": "{}"}}"#,
        "x".repeat(65)
    );
    let out = h.send(&format!("{T}/update"), &payload);
    assert_eq!(
        rejected(&out, "update"),
        (400, "Invalid clientToken".into())
    );
}

#[test]
fn null_removes_keys_nested_and_sections() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": 1, "b": {"c": 1, "d": {"e": 1}}},
                      "reported": {"a": 1}}}"#,
    );
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": null, "b": {"d": {"e": null}}}}}"#,
    );
    let accepted = on(&out, &format!("{T}/update/accepted"));
    // The request is echoed as given, nulls included, each with a timestamp.
    assert_eq!(
        accepted["state"],
        json!({"desired": {"a": null, "b": {"d": {"e": null}}}})
    );
    assert_eq!(
        accepted["metadata"],
        json!({"desired": {"a": {"timestamp": 1001},
                           "b": {"d": {"e": {"timestamp": 1001}}}}})
    );
    let stored = h.stored("lamp", None).unwrap_or_default();
    assert_eq!(stored.state_json()["desired"], json!({"b": {"c": 1}}));
    assert_eq!(
        stored.metadata_json()["desired"],
        json!({"b": {"c": {"timestamp": 1000}}})
    );

    let out = h.send(&format!("{T}/update"), r#"{"state": {"desired": null}}"#);
    assert!(out.is_accepted());
    assert_eq!(
        on(&out, &format!("{T}/update/accepted"))["metadata"],
        json!({"desired": {"timestamp": 1002}})
    );
    let doc = only(
        &h.send(&format!("{T}/get"), ""),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(doc["state"], json!({"reported": {"a": 1}}));
    assert_eq!(
        doc["metadata"],
        json!({"reported": {"a": {"timestamp": 1000}}})
    );

    // Deleting the last reported key leaves an existing shadow with an empty state.
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"a": null}}}"#,
    );
    let doc = only(
        &h.send(&format!("{T}/get"), ""),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(doc["state"], json!({}));
    assert_eq!(doc["metadata"], json!({}));
    assert_eq!(doc["version"], 4);
}

#[test]
fn arrays_replace_whole() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"colors": ["red", "green", "blue"]}}}"#,
    );
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"colors": ["cyan"]}}}"#,
    );
    assert_eq!(
        on(&out, &format!("{T}/update/accepted"))["metadata"],
        json!({"reported": {"colors": [{"timestamp": 1001}]}})
    );
    let doc = only(
        &h.send(&format!("{T}/get"), ""),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(doc["state"]["reported"], json!({"colors": ["cyan"]}));
}

#[test]
fn an_array_differing_in_one_element_is_a_delta_of_the_whole_array() {
    let mut h = Harness::new();
    h.send(
        &format!("{T}/update"),
        r#"{"state": {"reported": {"l": [1, 2]}, "desired": {"l": [1, 3]}}}"#,
    );
    let doc = only(
        &h.send(&format!("{T}/get"), ""),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(doc["state"]["delta"], json!({"l": [1, 3]}));
}

#[test]
fn an_oversized_request_is_413() {
    let mut h = Harness::new();
    let big = "x".repeat(8 * 1024);
    let out = h.send(
        &format!("{T}/update"),
        &format!(r#"{{"state": {{"desired": {{"a": "{big}"}}}}, "clientToken": "big"}}"#),
    );
    assert_eq!(
        rejected(&out, "update"),
        (413, "The payload exceeds the maximum size allowed".into())
    );
    assert_eq!(body(&out.replies[0])["clientToken"], "big");
}

#[test]
fn an_oversized_result_is_413() {
    let mut h = Harness::new();
    let chunk = "x".repeat(3000);
    for key in ["a", "b"] {
        let out = h.send(
            &format!("{T}/update"),
            &format!(r#"{{"state": {{"desired": {{"{key}": "{chunk}"}}}}}}"#),
        );
        assert!(out.is_accepted());
    }
    let out = h.send(
        &format!("{T}/update"),
        &format!(r#"{{"state": {{"reported": {{"c": "{chunk}"}}}}}}"#),
    );
    assert_eq!(rejected(&out, "update").0, 413);
    assert_eq!(h.stored("lamp", None).map(|s| s.version), Some(2));
}

#[test]
fn depth_over_the_limit_is_400() {
    let mut h = Harness::new();
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": {"7": 1}}}}}}}}}"#,
    );
    let (code, message) = rejected(&out, "update");
    assert_eq!(code, 400);
    assert!(message.contains("maximum is 6"), "{message}");
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": 1}}}}}}}}"#,
    );
    assert!(out.is_accepted());
}

#[test]
fn limits_are_configurable() {
    let engine = Engine::new(
        Limits {
            max_document_bytes: 64,
            max_depth: 2,
        },
        Models::none(),
    );
    let mut h = Harness::with(engine);
    let out = h.send(
        &format!("{T}/update"),
        r#"{"state": {"desired": {"a": {"b": {"c": 1}}}}}"#,
    );
    assert_eq!(
        rejected(&out, "update").1,
        "JSON contains too many levels of nesting; maximum is 2"
    );
    let out = h.send(
        &format!("{T}/update"),
        &format!(
            r#"{{"state": {{"desired": {{"a": "{}"}}}}}}"#,
            "x".repeat(64)
        ),
    );
    assert_eq!(rejected(&out, "update").0, 413);
}

#[test]
fn invalid_json_and_missing_state() {
    let mut h = Harness::new();
    for payload in ["", "not json", "{\"state\": ", "[]", "42"] {
        let out = h.send(&format!("{T}/update"), payload);
        assert_eq!(
            rejected(&out, "update"),
            (400, "Invalid JSON".into()),
            "{payload:?}"
        );
    }
    let out = h.send(&format!("{T}/update"), r#"{"desired": {"a": 1}}"#);
    assert_eq!(
        rejected(&out, "update"),
        (400, "Missing required node: state".into())
    );
    let out = h.send(&format!("{T}/get"), "not json");
    assert_eq!(rejected(&out, "get"), (400, "Invalid JSON".into()));
    assert!(h.store.is_empty());
}

#[test]
fn binary_payloads_are_415() {
    let h = Harness::new();
    let Some(request) = topic::parse(&format!("{T}/update")) else {
        panic!("topic");
    };
    let out = h.engine.handle(&request, b"\xff\xfe", None, 1);
    assert_eq!(body(&out.replies[0])["code"], 415);
}

fn thermostat_engine() -> Engine {
    let spec = ModelSpec {
        type_name: "thermostat".into(),
        things: vec!["thermo-*".into()],
        schema: json!({
            "type": "object",
            "properties": {
                "temperature": {"type": "number", "maximum": 100},
                "target": {"type": "number", "minimum": 5, "maximum": 30},
            },
        }),
    };
    match Models::new(vec![spec]) {
        Ok(models) => Engine::new(Limits::default(), models),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn thing_model_accepts_valid_and_rejects_invalid_reports() {
    let mut h = Harness::with(thermostat_engine());
    let topic = "$hermod/things/thermo-1/shadow/update";
    let out = h.send(topic, r#"{"state": {"reported": {"temperature": 21}}}"#);
    assert!(out.is_accepted());
    let out = h.send(
        topic,
        r#"{"state": {"reported": {"temperature": 150}}, "clientToken": "m"}"#,
    );
    let doc = only(&out, "$hermod/things/thermo-1/shadow/update/rejected");
    assert_eq!(
        doc,
        json!({"code": 400, "timestamp": 1001, "clientToken": "m",
               "message": "state.reported.temperature: 150 is greater than the maximum of 100"})
    );
    assert_eq!(h.stored("thermo-1", None).map(|s| s.version), Some(1));

    let out = h.send(topic, r#"{"state": {"desired": {"target": 2}}}"#);
    let doc = only(&out, "$hermod/things/thermo-1/shadow/update/rejected");
    assert_eq!(
        doc["message"],
        "state.desired.target: 2 is less than the minimum of 5"
    );
    // Things outside the model's pattern are not checked.
    let out = h.send(
        "$hermod/things/lamp/shadow/update",
        r#"{"state": {"reported": {"temperature": 150}}}"#,
    );
    assert!(out.is_accepted());
}

#[test]
fn thing_model_checks_only_the_sections_an_update_touches() {
    let mut h = Harness::with(thermostat_engine());
    let topic = "$hermod/things/thermo-2/shadow/update";
    // A stored value that a later model forbids does not block updates of the other section.
    let engine = std::mem::take(&mut h.engine);
    h.engine = Engine::default();
    assert!(
        h.send(topic, r#"{"state": {"reported": {"temperature": 500}}}"#)
            .is_accepted()
    );
    h.engine = engine;
    assert!(
        h.send(topic, r#"{"state": {"desired": {"target": 20}}}"#)
            .is_accepted()
    );
    // But a report is checked as merged, so the stored bad value now fails it.
    let out = h.send(topic, r#"{"state": {"reported": {"other": 1}}}"#);
    assert!(!out.is_accepted());
}

#[test]
fn the_caller_can_reject_in_the_same_shape() {
    let Some(request) = topic::parse("$aws/things/lamp/shadow/name/cfg/update") else {
        panic!("topic");
    };
    let out = Engine::reject_payload(
        &request,
        Rejection::throttled(),
        br#"{"state": {}, "clientToken": "busy"}"#,
        7,
    );
    assert!(out.store.is_none());
    assert_eq!(
        only(&out, "$aws/things/lamp/shadow/name/cfg/update/rejected"),
        json!({"code": 429, "message": "Too Many Requests", "timestamp": 7, "clientToken": "busy"})
    );
    let out = Engine::reject(&request, &Rejection::internal(), 7);
    assert_eq!(body(&out.replies[0])["code"], 500);
}

#[test]
fn an_empty_state_update_is_accepted_and_counts() {
    let mut h = Harness::new();
    let out = h.send(&format!("{T}/update"), r#"{"state": {}}"#);
    assert_eq!(
        topics(&out),
        vec![
            format!("{T}/update/accepted"),
            format!("{T}/update/documents")
        ]
    );
    assert_eq!(
        body(&out.replies[0]),
        json!({"state": {}, "metadata": {}, "version": 1, "timestamp": 1000})
    );
    let doc = only(
        &h.send(&format!("{T}/get"), ""),
        &format!("{T}/get/accepted"),
    );
    assert_eq!(doc["state"], json!({}));
}

#[test]
fn rejections_go_to_the_requests_own_rejected_topic() {
    let mut h = Harness::new();
    for op in ["get", "update", "delete"] {
        let out = h.send(&format!("{T}/{op}"), "nope");
        assert_eq!(topics(&out), vec![format!("{T}/{op}/rejected")]);
    }
}

#[test]
fn engine_is_shareable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Engine>();
    send_sync::<Outcome>();
}
