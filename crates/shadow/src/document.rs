//! The stored shadow and the state algebra of AWS IoT shadows: merge, metadata, delta.
//!
//! A [`Shadow`] keeps `desired` and `reported` as JSON objects, and beside each a metadata tree
//! of the same shape whose leaves are `{"timestamp": t}`: an object in the state has an object
//! of its keys' metadata, an array has an array of its elements' metadata, and a scalar has
//! `{"timestamp": t}` (AWS's layout, so `get` answers what AWS answers).
//!
//! Merging follows AWS: objects merge deeply, `null` deletes a key, arrays and scalars replace
//! the old value whole. **Choice:** the stored state never holds an empty object: an object
//! that a merge leaves empty (its keys deleted, or given as `{}`) is removed, up to the section
//! itself (`desired`/`reported` become absent). So a key whose children were all deleted
//! does not linger as `{}` in `get` or in the delta.
//!
//! A deleted shadow is kept as a tombstone (`deleted: true`, state cleared, version kept),
//! because AWS continues the version of a shadow re-created within 48 hours of its deletion
//! ([`TOMBSTONE_SECS`]); after that the version starts again.
//!
//! Storage is JSON (`to_bytes`/`from_bytes`) with a `format` field, so a later layout can be
//! read beside this one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A JSON object: a state section or its metadata.
pub type Object = Map<String, Value>;

/// How long a tombstone carries the version on: AWS's 48 hours.
pub const TOMBSTONE_SECS: i64 = 48 * 3600;

/// The storage format written by [`Shadow::to_bytes`].
pub const FORMAT: u32 = 1;

/// One shadow as stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Shadow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Object>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Object>,
    /// Same shape as `desired`; each leaf `{"timestamp": t}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_desired: Option<Object>,
    /// Same shape as `reported`; each leaf `{"timestamp": t}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_reported: Option<Object>,
    /// 1 after the first accepted update, +1 per accepted update; kept by a delete.
    pub version: u64,
    /// A tombstone: the shadow was deleted at `timestamp`, and its state cleared.
    #[serde(default)]
    pub deleted: bool,
    /// When the shadow was last updated (or deleted), in seconds since the epoch.
    pub timestamp: i64,
}

/// A stored document could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stored shadow is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored shadow has format {0}; this build reads format {FORMAT}")]
    Format(u32),
}

#[derive(Serialize)]
struct StoredRef<'a> {
    format: u32,
    #[serde(flatten)]
    shadow: &'a Shadow,
}

#[derive(Deserialize)]
struct Stored {
    format: u32,
    #[serde(flatten)]
    shadow: Shadow,
}

impl Shadow {
    /// The bytes to persist.
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = StoredRef {
            format: FORMAT,
            shadow: self,
        };
        // Maps of `Value`s with string keys always serialise.
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Reads back what [`Shadow::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Shadow, DecodeError> {
        let stored: Stored = serde_json::from_slice(bytes)?;
        if stored.format != FORMAT {
            return Err(DecodeError::Format(stored.format));
        }
        Ok(stored.shadow)
    }

    /// Whether the shadow exists (is not a tombstone).
    pub fn exists(&self) -> bool {
        !self.deleted
    }

    /// Whether this is a tombstone old enough to be forgotten: the next update then starts
    /// again at version 1, and the caller may drop it from storage.
    pub fn is_expired_tombstone(&self, now_secs: i64) -> bool {
        self.deleted && now_secs.saturating_sub(self.timestamp) > TOMBSTONE_SECS
    }

    /// The tombstone this shadow leaves when deleted at `now_secs`.
    pub fn tombstone(&self, now_secs: i64) -> Shadow {
        Shadow {
            version: self.version,
            deleted: true,
            timestamp: now_secs,
            ..Shadow::default()
        }
    }

    /// The desired keys whose value differs from `reported` (deep; a key absent from
    /// `reported` differs), and their metadata. Empty when in sync.
    pub fn delta(&self) -> (Object, Object) {
        let empty = Object::new();
        let desired = self.desired.as_ref().unwrap_or(&empty);
        let reported = self.reported.as_ref().unwrap_or(&empty);
        let meta = self.metadata_desired.as_ref().unwrap_or(&empty);
        delta(desired, reported, meta)
    }

    /// `{"desired"?, "reported"?}` (the sections present).
    pub fn state_json(&self) -> Value {
        sections(self.desired.as_ref(), self.reported.as_ref())
    }

    /// `{"desired"?, "reported"?}` of the metadata.
    pub fn metadata_json(&self) -> Value {
        sections(
            self.metadata_desired.as_ref(),
            self.metadata_reported.as_ref(),
        )
    }

    /// `{"state", "metadata", "version"}`: one side of an `update/documents` message.
    pub fn snapshot_json(&self) -> Value {
        json!({
            "state": self.state_json(),
            "metadata": self.metadata_json(),
            "version": self.version,
        })
    }
}

fn sections(desired: Option<&Object>, reported: Option<&Object>) -> Value {
    let mut out = Object::new();
    if let Some(d) = desired {
        out.insert("desired".into(), Value::Object(d.clone()));
    }
    if let Some(r) = reported {
        out.insert("reported".into(), Value::Object(r.clone()));
    }
    Value::Object(out)
}

/// The metadata of `value` as of `now`: the same shape with `{"timestamp": now}` leaves.
/// `null` (a delete in a request) gets a leaf too, as AWS reports it in `update/accepted`.
pub fn metadata_of(value: &Value, now: i64) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), metadata_of(v, now)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| metadata_of(v, now)).collect()),
        _ => json!({ "timestamp": now }),
    }
}

/// Merges `patch` into `state` (and the matching metadata into `meta`) as AWS does: objects
/// deeply, `null` deletes, anything else replaces; objects left empty are removed.
pub fn merge(state: &mut Object, meta: &mut Object, patch: &Object, now: i64) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                state.remove(key);
                meta.remove(key);
            }
            Value::Object(sub_patch) => {
                let mut sub_state = match state.remove(key) {
                    Some(Value::Object(existing)) => existing,
                    _ => Object::new(),
                };
                let mut sub_meta = match meta.remove(key) {
                    // The old metadata is an object of children only if the old value was an
                    // object; a scalar's `{"timestamp"}` leaf must not be merged into.
                    Some(Value::Object(m)) if !sub_state.is_empty() => m,
                    _ => Object::new(),
                };
                merge(&mut sub_state, &mut sub_meta, sub_patch, now);
                if !sub_state.is_empty() {
                    state.insert(key.clone(), Value::Object(sub_state));
                    meta.insert(key.clone(), Value::Object(sub_meta));
                }
            }
            _ => {
                state.insert(key.clone(), value.clone());
                meta.insert(key.clone(), metadata_of(value, now));
            }
        }
    }
}

/// Depth of nesting of `value`: 0 for a scalar, 1 + the deepest child for an object or an
/// array (so `{"a": 1}` is 1 and `{"a": {"b": [1]}}` is 3).
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn delta(desired: &Object, reported: &Object, meta: &Object) -> (Object, Object) {
    let mut state = Object::new();
    let mut metadata = Object::new();
    for (key, want) in desired {
        let have = reported.get(key);
        if have == Some(want) {
            continue;
        }
        if let (Value::Object(want_obj), Some(Value::Object(have_obj))) = (want, have) {
            let empty = Object::new();
            let sub_meta = match meta.get(key) {
                Some(Value::Object(m)) => m,
                _ => &empty,
            };
            let (sub_state, sub_metadata) = delta(want_obj, have_obj, sub_meta);
            if !sub_state.is_empty() {
                state.insert(key.clone(), Value::Object(sub_state));
                metadata.insert(key.clone(), Value::Object(sub_metadata));
            }
        } else {
            state.insert(key.clone(), want.clone());
            if let Some(m) = meta.get(key) {
                metadata.insert(key.clone(), m.clone());
            }
        }
    }
    (state, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(m) => m,
            _ => Object::new(),
        }
    }

    fn merged(state: Value, patch: Value) -> (Value, Value) {
        let mut s = obj(state.clone());
        let mut m = obj(metadata_of(&state, 1));
        merge(&mut s, &mut m, &obj(patch), 2);
        (Value::Object(s), Value::Object(m))
    }

    #[test]
    fn merge_is_deep() {
        let (s, m) = merged(
            json!({"light": {"color": "red", "on": true}, "fan": 1}),
            json!({"light": {"color": "blue"}}),
        );
        assert_eq!(s, json!({"light": {"color": "blue", "on": true}, "fan": 1}));
        assert_eq!(
            m,
            json!({"light": {"color": {"timestamp": 2}, "on": {"timestamp": 1}},
                   "fan": {"timestamp": 1}})
        );
    }

    #[test]
    fn null_deletes_and_empty_objects_go() {
        let (s, m) = merged(
            json!({"a": {"b": {"c": 1}}, "d": 1}),
            json!({"a": {"b": {"c": null}}, "x": null}),
        );
        assert_eq!(s, json!({"d": 1}));
        assert_eq!(m, json!({"d": {"timestamp": 1}}));
        // `{}` alone adds nothing.
        let (s, _) = merged(json!({"d": 1}), json!({"e": {}}));
        assert_eq!(s, json!({"d": 1}));
    }

    #[test]
    fn nulls_inside_new_objects_are_dropped() {
        let (s, m) = merged(json!({}), json!({"a": {"b": null, "c": 2}}));
        assert_eq!(s, json!({"a": {"c": 2}}));
        assert_eq!(m, json!({"a": {"c": {"timestamp": 2}}}));
    }

    #[test]
    fn arrays_and_scalars_replace() {
        let (s, m) = merged(
            json!({"list": [1, 2, 3], "obj": {"k": 1}, "n": 5}),
            json!({"list": [{"x": 1}], "obj": 7, "n": {"k": 2}}),
        );
        assert_eq!(s, json!({"list": [{"x": 1}], "obj": 7, "n": {"k": 2}}));
        assert_eq!(
            m,
            json!({"list": [{"x": {"timestamp": 2}}], "obj": {"timestamp": 2},
                   "n": {"k": {"timestamp": 2}}})
        );
    }

    #[test]
    fn scalar_metadata_is_not_merged_into() {
        // "n" was a scalar (metadata leaf {"timestamp": 1}); an object replacing it must not
        // inherit a "timestamp" child.
        let (_, m) = merged(json!({"n": 5}), json!({"n": {"timestamp": 9}}));
        assert_eq!(m, json!({"n": {"timestamp": {"timestamp": 2}}}));
    }

    #[test]
    fn delta_is_deep_and_counts_absent_keys() {
        let shadow = Shadow {
            desired: Some(obj(
                json!({"a": {"x": 1, "y": 2}, "b": [1], "c": 3, "d": 4}),
            )),
            reported: Some(obj(json!({"a": {"x": 1, "y": 0}, "b": [1], "c": "3"}))),
            metadata_desired: Some(obj(metadata_of(
                &json!({"a": {"x": 1, "y": 2}, "b": [1], "c": 3, "d": 4}),
                7,
            ))),
            ..Shadow::default()
        };
        let (state, meta) = shadow.delta();
        assert_eq!(Value::Object(state), json!({"a": {"y": 2}, "c": 3, "d": 4}));
        assert_eq!(
            Value::Object(meta),
            json!({"a": {"y": {"timestamp": 7}}, "c": {"timestamp": 7}, "d": {"timestamp": 7}})
        );
    }

    #[test]
    fn delta_when_in_sync_is_empty() {
        let s = obj(json!({"a": {"b": [1, 2]}, "c": true}));
        let shadow = Shadow {
            desired: Some(s.clone()),
            reported: Some(s),
            ..Shadow::default()
        };
        assert!(shadow.delta().0.is_empty());
        assert!(Shadow::default().delta().0.is_empty());
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": 1})), 1);
        assert_eq!(depth(&json!({"a": {"b": [1]}})), 3);
        assert_eq!(depth(&json!({"a": [[{"b": 1}]], "c": 1})), 4);
    }

    #[test]
    fn storage_round_trip() {
        let shadow = Shadow {
            desired: Some(obj(json!({"a": 1}))),
            reported: None,
            metadata_desired: Some(obj(json!({"a": {"timestamp": 3}}))),
            metadata_reported: None,
            version: 4,
            deleted: false,
            timestamp: 3,
        };
        let bytes = shadow.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap_or_default();
        assert!(text.contains("\"format\":1"), "{text}");
        assert_eq!(Shadow::from_bytes(&bytes).ok(), Some(shadow));

        let tomb = Shadow::default().tombstone(9);
        assert_eq!(Shadow::from_bytes(&tomb.to_bytes()).ok(), Some(tomb));
    }

    #[test]
    fn storage_rejects_other_formats_and_garbage() {
        assert!(matches!(
            Shadow::from_bytes(br#"{"format":2,"version":1,"timestamp":0}"#),
            Err(DecodeError::Format(2))
        ));
        assert!(matches!(
            Shadow::from_bytes(b"nope"),
            Err(DecodeError::Json(_))
        ));
        assert!(Shadow::from_bytes(br#"{"version":1,"timestamp":0}"#).is_err());
    }

    #[test]
    fn tombstones_keep_the_version_and_expire() {
        let shadow = Shadow {
            desired: Some(obj(json!({"a": 1}))),
            version: 5,
            timestamp: 1,
            ..Shadow::default()
        };
        let tomb = shadow.tombstone(100);
        assert!(!tomb.exists());
        assert_eq!(tomb.version, 5);
        assert_eq!(tomb.desired, None);
        assert!(!tomb.is_expired_tombstone(100 + TOMBSTONE_SECS));
        assert!(tomb.is_expired_tombstone(101 + TOMBSTONE_SECS));
        assert!(!shadow.is_expired_tombstone(i64::MAX));
    }

    #[test]
    fn snapshot_shape() {
        let shadow = Shadow {
            reported: Some(obj(json!({"a": 1}))),
            metadata_reported: Some(obj(json!({"a": {"timestamp": 3}}))),
            version: 2,
            ..Shadow::default()
        };
        assert_eq!(
            shadow.snapshot_json(),
            json!({"state": {"reported": {"a": 1}},
                   "metadata": {"reported": {"a": {"timestamp": 3}}}, "version": 2})
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// JSON values a few levels deep, with small key sets so patches hit existing keys.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..5).prop_map(Value::from),
            "[ab]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Object> {
        prop::collection::btree_map("[a-d]", value(), 0..4).prop_map(|m| m.into_iter().collect())
    }

    /// `meta` has `state`'s shape: an object of children for an object, an array of the
    /// elements' metadata for an array, `{"timestamp": n}` for anything else.
    fn mirrors(state: &Value, meta: &Value) -> bool {
        match (state, meta) {
            (Value::Object(s), Value::Object(m)) => {
                s.len() == m.len()
                    && s.iter()
                        .all(|(k, v)| m.get(k).is_some_and(|mv| mirrors(v, mv)))
            }
            (Value::Array(s), Value::Array(m)) => {
                s.len() == m.len() && s.iter().zip(m).all(|(v, mv)| mirrors(v, mv))
            }
            (Value::Object(_) | Value::Array(_), _) => false,
            (_, Value::Object(m)) => m.len() == 1 && m.get("timestamp").is_some_and(Value::is_i64),
            _ => false,
        }
    }

    fn has_empty_object(value: &Value) -> bool {
        match value {
            Value::Object(m) => m.is_empty() || m.values().any(has_empty_object),
            // Arrays are stored as given, `{}` elements included.
            _ => false,
        }
    }

    /// Applies `patch` the way a fresh state would be created from it.
    fn from_scratch(patch: &Object) -> (Object, Object) {
        let mut s = Object::new();
        let mut m = Object::new();
        merge(&mut s, &mut m, patch, 1);
        (s, m)
    }

    proptest! {
        #[test]
        fn merged_metadata_mirrors_the_state(first in object(), patch in object()) {
            let (mut s, mut m) = from_scratch(&first);
            merge(&mut s, &mut m, &patch, 2);
            let (s, m) = (Value::Object(s), Value::Object(m));
            prop_assert!(mirrors(&s, &m), "state {s}\nmeta {m}");
        }

        #[test]
        fn merged_state_has_no_empty_objects(first in object(), patch in object()) {
            let (mut s, mut m) = from_scratch(&first);
            merge(&mut s, &mut m, &patch, 2);
            for v in s.values() {
                prop_assert!(!has_empty_object(v), "{}", Value::Object(s.clone()));
            }
        }

        #[test]
        fn merged_keys_take_the_patch_value(first in object(), patch in object()) {
            let (mut s, mut m) = from_scratch(&first);
            merge(&mut s, &mut m, &patch, 2);
            for (k, v) in &patch {
                match v {
                    Value::Null => prop_assert!(!s.contains_key(k)),
                    // Scalars and arrays replace whole.
                    Value::Array(_) | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                        prop_assert_eq!(s.get(k), Some(v));
                        prop_assert!(mirrors(v, &m[k]));
                    }
                    Value::Object(_) => {}
                }
            }
        }

        #[test]
        fn delta_is_empty_exactly_when_desired_is_reported(state in object()) {
            let (state, meta) = from_scratch(&state);
            let shadow = Shadow {
                desired: Some(state.clone()),
                reported: Some(state.clone()),
                metadata_desired: Some(meta),
                ..Shadow::default()
            };
            prop_assert!(shadow.delta().0.is_empty());
            let shadow = Shadow { reported: None, ..shadow };
            prop_assert_eq!(shadow.delta().0, state);
        }

        #[test]
        fn storage_round_trips(state in object(), version in any::<u64>(), ts in any::<i64>()) {
            let (desired, metadata_desired) = from_scratch(&state);
            let shadow = Shadow {
                desired: Some(desired),
                metadata_desired: Some(metadata_desired),
                version,
                timestamp: ts,
                ..Shadow::default()
            };
            prop_assert_eq!(Shadow::from_bytes(&shadow.to_bytes()).ok(), Some(shadow));
        }
    }
}
