//! Request payloads: checking what a client sent before anything is merged.
//!
//! Checks run in the order that lets a rejection echo the `clientToken` whenever it can:
//! size (413), encoding (415) and JSON syntax (400 "Invalid JSON") first, then the token
//! itself, then `version`, then the `state` node. The messages are AWS's.
//!
//! `get` and `delete` take an empty payload (what the SDKs send for a request without a
//! token) or an object with an optional `clientToken` (and, for `delete`, `version`).
//! Top-level keys other than `state`, `clientToken` and `version` are ignored.

use serde_json::Value;

use crate::Limits;
use crate::document::{Object, depth};
use crate::error::Rejection;

/// Longest `clientToken` AWS accepts, in bytes.
pub const MAX_CLIENT_TOKEN_BYTES: usize = 64;

/// One state section of an update request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Section {
    /// Not in the request: left as it is.
    Absent,
    /// `null`: the whole section is deleted.
    Null,
    /// An object to merge.
    Merge(Object),
}

impl Section {
    fn parse(value: Option<&Value>, name: &str) -> Result<Section, Rejection> {
        match value {
            None => Ok(Section::Absent),
            Some(Value::Null) => Ok(Section::Null),
            Some(Value::Object(map)) => Ok(Section::Merge(map.clone())),
            Some(_) => Err(Rejection::bad_request(format!(
                "{name} node must be an object"
            ))),
        }
    }

    pub(crate) fn is_present(&self) -> bool {
        !matches!(self, Section::Absent)
    }

    /// The section as the request gave it, for `update/accepted`.
    pub(crate) fn as_json(&self) -> Option<Value> {
        match self {
            Section::Absent => None,
            Section::Null => Some(Value::Null),
            Section::Merge(map) => Some(Value::Object(map.clone())),
        }
    }
}

/// A checked update request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Update {
    pub(crate) desired: Section,
    pub(crate) reported: Section,
    pub(crate) client_token: Option<String>,
    pub(crate) version: Option<u64>,
}

/// The common part of every request: `clientToken` and `version`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Envelope {
    pub(crate) client_token: Option<String>,
    pub(crate) version: Option<u64>,
}

/// The request's `clientToken`, if it has a valid one; best effort, for replies the caller
/// builds itself (429) or that are decided before the payload is read.
pub fn client_token_of(payload: &[u8]) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    token(&map).ok().flatten()
}

fn token(map: &Object) -> Result<Option<String>, Rejection> {
    match map.get("clientToken") {
        None => Ok(None),
        Some(Value::String(t)) if t.len() <= MAX_CLIENT_TOKEN_BYTES => Ok(Some(t.clone())),
        Some(_) => Err(Rejection::bad_request("Invalid clientToken")),
    }
}

/// Size, encoding and syntax: the payload as a JSON object. An empty payload is `{}` when
/// `empty_ok` (get and delete).
fn object(payload: &[u8], limits: &Limits, empty_ok: bool) -> Result<Object, Rejection> {
    if payload.len() > limits.max_document_bytes {
        return Err(Rejection::payload_too_large().with_client_token(client_token_of(payload)));
    }
    if empty_ok && payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    if std::str::from_utf8(payload).is_err() {
        return Err(Rejection::unsupported_encoding());
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::invalid_json()),
    }
}

fn envelope(map: &Object) -> Result<Envelope, Rejection> {
    let client_token = token(map)?;
    let version = match map.get("version") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            Rejection::bad_request("Invalid version").with_client_token(client_token.clone())
        })?),
    };
    Ok(Envelope {
        client_token,
        version,
    })
}

/// Reads a `get` or `delete` payload.
pub(crate) fn parse_envelope(payload: &[u8], limits: &Limits) -> Result<Envelope, Rejection> {
    envelope(&object(payload, limits, true)?)
}

/// Reads an `update` payload.
pub(crate) fn parse_update(payload: &[u8], limits: &Limits) -> Result<Update, Rejection> {
    let map = object(payload, limits, false)?;
    let Envelope {
        client_token,
        version,
    } = envelope(&map)?;
    let reject = |r: Rejection| r.with_client_token(client_token.clone());
    let state = match map.get("state") {
        None => {
            return Err(reject(Rejection::bad_request(
                "Missing required node: state",
            )));
        }
        Some(Value::Object(state)) => state,
        Some(_) => {
            return Err(reject(Rejection::bad_request(
                "State node must be an object",
            )));
        }
    };
    if let Some(other) = state.keys().find(|k| *k != "desired" && *k != "reported") {
        return Err(reject(Rejection::bad_request(format!(
            "State contains an invalid node: '{other}'"
        ))));
    }
    let desired = Section::parse(state.get("desired"), "Desired").map_err(reject)?;
    let reported = Section::parse(state.get("reported"), "Reported").map_err(reject)?;
    for section in ["desired", "reported"] {
        if state.get(section).map(depth).unwrap_or(0) > limits.max_depth {
            return Err(reject(Rejection::bad_request(format!(
                "JSON contains too many levels of nesting; maximum is {}",
                limits.max_depth
            ))));
        }
    }
    Ok(Update {
        desired,
        reported,
        client_token,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits::default()
    }

    fn update(payload: &str) -> Result<Update, Rejection> {
        parse_update(payload.as_bytes(), &limits())
    }

    fn rejected(payload: &str) -> (u16, String, Option<String>) {
        match update(payload) {
            Ok(u) => panic!("accepted: {u:?}"),
            Err(r) => (r.code, r.message, r.client_token),
        }
    }

    #[test]
    fn a_full_update() {
        let u = update(
            r#"{"state": {"desired": {"a": 1}, "reported": null}, "clientToken": "t", "version": 3}"#,
        );
        assert_eq!(
            u.ok(),
            Some(Update {
                desired: Section::Merge(json!({"a": 1}).as_object().cloned().unwrap_or_default()),
                reported: Section::Null,
                client_token: Some("t".into()),
                version: Some(3),
            })
        );
    }

    #[test]
    fn state_is_required_and_an_object() {
        assert_eq!(
            rejected(r#"{"clientToken": "t"}"#),
            (400, "Missing required node: state".into(), Some("t".into()))
        );
        assert_eq!(
            rejected(r#"{"state": 1}"#).1,
            "State node must be an object"
        );
        assert_eq!(
            rejected(r#"{"state": null}"#).1,
            "State node must be an object"
        );
        assert_eq!(
            rejected(r#"{"state": {"desired": [1]}}"#).1,
            "Desired node must be an object"
        );
        assert_eq!(
            rejected(r#"{"state": {"reported": "x"}}"#).1,
            "Reported node must be an object"
        );
        assert_eq!(
            rejected(r#"{"state": {"delta": {}}}"#).1,
            "State contains an invalid node: 'delta'"
        );
    }

    #[test]
    fn bad_json() {
        for payload in ["", "{", "[1]", "\"x\"", "null", "{\"state\": {}} x"] {
            assert_eq!(rejected(payload).0, 400, "{payload:?}");
            assert_eq!(rejected(payload).1, "Invalid JSON", "{payload:?}");
        }
        let r = parse_update(b"{\"state\": \"\xff\"}", &limits());
        assert_eq!(r.err().map(|r| r.code), Some(415));
    }

    #[test]
    fn client_token_rules() {
        let long = "x".repeat(MAX_CLIENT_TOKEN_BYTES + 1);
        let (code, message, token) =
            rejected(&format!(r#"{{"state": {{}}, "clientToken": "{long}"}}"#));
        assert_eq!(
            (code, message.as_str(), token),
            (400, "Invalid clientToken", None)
        );
        assert_eq!(
            rejected(r#"{"state": {}, "clientToken": 5}"#).1,
            "Invalid clientToken"
        );
        let ok = "x".repeat(MAX_CLIENT_TOKEN_BYTES);
        assert!(update(&format!(r#"{{"state": {{}}, "clientToken": "{ok}"}}"#)).is_ok());
    }

    #[test]
    fn version_must_be_a_natural_number() {
        for v in ["-1", "1.5", "\"3\"", "null"] {
            let (code, message, token) = rejected(&format!(
                r#"{{"state": {{}}, "version": {v}, "clientToken": "t"}}"#
            ));
            assert_eq!((code, message.as_str()), (400, "Invalid version"), "{v}");
            assert_eq!(token.as_deref(), Some("t"));
        }
    }

    #[test]
    fn size_limit() {
        let small = Limits {
            max_document_bytes: 20,
            ..Limits::default()
        };
        let r = parse_update(br#"{"state": {}, "clientToken": "t"}"#, &small);
        let r = r.err();
        assert_eq!(r.as_ref().map(|r| r.code), Some(413));
        assert_eq!(r.and_then(|r| r.client_token), Some("t".into()));
    }

    #[test]
    fn depth_limit() {
        let six = r#"{"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": 1}}}}}}}}"#;
        assert!(update(six).is_ok());
        let seven =
            r#"{"state": {"reported": {"1": {"2": {"3": {"4": {"5": {"6": {"7": 1}}}}}}}}}"#;
        assert_eq!(
            rejected(seven).1,
            "JSON contains too many levels of nesting; maximum is 6"
        );
        let arrays = r#"{"state": {"desired": {"a": [[[[[[1]]]]]]}}}"#;
        assert_eq!(rejected(arrays).0, 400);
    }

    #[test]
    fn envelopes() {
        let l = limits();
        assert_eq!(parse_envelope(b"", &l).ok(), Some(Envelope::default()));
        assert_eq!(parse_envelope(b" \n", &l).ok(), Some(Envelope::default()));
        assert_eq!(parse_envelope(b"{}", &l).ok(), Some(Envelope::default()));
        assert_eq!(
            parse_envelope(br#"{"clientToken": "t", "version": 2}"#, &l).ok(),
            Some(Envelope {
                client_token: Some("t".into()),
                version: Some(2)
            })
        );
        assert_eq!(
            parse_envelope(b"nope", &l).err().map(|r| r.message),
            Some("Invalid JSON".into())
        );
    }

    #[test]
    fn client_token_of_is_best_effort() {
        assert_eq!(
            client_token_of(br#"{"clientToken": "t"}"#),
            Some("t".into())
        );
        assert_eq!(client_token_of(br#"{"clientToken": 1}"#), None);
        assert_eq!(client_token_of(b"garbage"), None);
        assert_eq!(client_token_of(b""), None);
    }
}
