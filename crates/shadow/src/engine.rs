//! The engine: one request in, the replies to publish and the shadow to store out.
//!
//! It is a pure function of (request topic, payload, stored shadow, clock), so the service
//! that wires it to the broker owns all I/O and ordering:
//!
//! 1. load the shadow for `(thing, shadow name)` (`None` if never stored);
//! 2. call [`Engine::handle`];
//! 3. persist [`Outcome::store`] if there is one, and only then publish
//!    [`Outcome::replies`] in order (`accepted` must never be published for a change that is
//!    not on disk); if storing fails, publish [`Engine::reject`] with
//!    [`Rejection::internal`] instead.
//!
//! Requests for one shadow must be handled one at a time (load, handle, store), or two
//! updates could both pass the version check. A delete stores a tombstone
//! (`StoreChange::Put` of a shadow with `deleted: true`), which keeps the version so that a
//! re-created shadow continues it, as AWS does within 48 hours; the engine ignores a tombstone
//! older than that, and the caller may purge it ([`Shadow::is_expired_tombstone`]).

use serde_json::{Map, Value, json};

use crate::document::{Object, Shadow, merge, metadata_of};
use crate::error::Rejection;
use crate::model::Models;
use crate::request::{Section, Update, client_token_of, parse_envelope, parse_update};
use crate::topic::{Op, ReplyKind, Request};

/// Size and shape limits, AWS's by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request payload, and largest resulting state (`{"desired", "reported"}`
    /// serialised, without metadata, as AWS counts it), in bytes. Default 8 KiB.
    pub max_document_bytes: usize,
    /// Deepest nesting of `desired` or `reported` (objects and arrays each count one level).
    /// Default 6.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_document_bytes: 8 * 1024,
            max_depth: 6,
        }
    }
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A change to persist before the replies are published.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreChange {
    /// Store this shadow for the request's `(thing, shadow name)`, replacing what was there.
    /// A delete puts a tombstone (`deleted: true`).
    Put(Shadow),
}

/// What one request produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// In publish order. A rejection is exactly one reply, on `.../rejected`.
    pub replies: Vec<Reply>,
    /// `None` for a get and for every rejection.
    pub store: Option<StoreChange>,
}

impl Outcome {
    /// Whether the request was accepted (its first reply is not on `.../rejected`).
    pub fn is_accepted(&self) -> bool {
        self.replies
            .first()
            .is_some_and(|r| !r.topic.ends_with("/rejected"))
    }
}

/// The shadow engine: limits and thing models; no state of its own.
#[derive(Debug, Default)]
pub struct Engine {
    limits: Limits,
    models: Models,
}

impl Engine {
    pub fn new(limits: Limits, models: Models) -> Engine {
        Engine { limits, models }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Handles one request. `current` is the stored shadow (a tombstone included), `None` if
    /// there is none; `now_secs` is the clock, in seconds since the epoch.
    pub fn handle(
        &self,
        request: &Request,
        payload: &[u8],
        current: Option<&Shadow>,
        now_secs: i64,
    ) -> Outcome {
        let current = current.filter(|s| !s.is_expired_tombstone(now_secs));
        let result = match request.op {
            Op::Get => self.get(request, payload, current, now_secs),
            Op::Update => self.update(request, payload, current, now_secs),
            Op::Delete => self.delete(request, payload, current, now_secs),
        };
        result.unwrap_or_else(|rejection| Engine::reject(request, &rejection, now_secs))
    }

    /// The reply to a request refused by the caller (429 when too many are in flight, 500
    /// when the store failed), echoing the payload's `clientToken` when it has a valid one.
    pub fn reject_payload(
        request: &Request,
        rejection: Rejection,
        payload: &[u8],
        now_secs: i64,
    ) -> Outcome {
        let rejection = rejection.with_client_token(client_token_of(payload));
        Engine::reject(request, &rejection, now_secs)
    }

    /// One reply on `.../rejected` with `rejection`'s error document; nothing stored.
    pub fn reject(request: &Request, rejection: &Rejection, now_secs: i64) -> Outcome {
        Outcome {
            replies: vec![Reply {
                topic: request.reply_topic(ReplyKind::Rejected),
                payload: rejection.to_payload(now_secs),
            }],
            store: None,
        }
    }

    fn get(
        &self,
        request: &Request,
        payload: &[u8],
        current: Option<&Shadow>,
        now: i64,
    ) -> Result<Outcome, Rejection> {
        let envelope = parse_envelope(payload, &self.limits)?;
        let token = envelope.client_token;
        let Some(shadow) = current.filter(|s| s.exists()) else {
            return Err(Rejection::not_found(request.display_name()).with_client_token(token));
        };
        let mut state = match shadow.state_json() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let (delta, _) = shadow.delta();
        if !delta.is_empty() {
            state.insert("delta".into(), Value::Object(delta));
        }
        let mut doc = Map::new();
        doc.insert("state".into(), Value::Object(state));
        doc.insert("metadata".into(), shadow.metadata_json());
        doc.insert("version".into(), json!(shadow.version));
        doc.insert("timestamp".into(), json!(now));
        let reply = reply(request, ReplyKind::Accepted, doc, token.as_deref());
        Ok(Outcome {
            replies: vec![reply],
            store: None,
        })
    }

    fn delete(
        &self,
        request: &Request,
        payload: &[u8],
        current: Option<&Shadow>,
        now: i64,
    ) -> Result<Outcome, Rejection> {
        let envelope = parse_envelope(payload, &self.limits)?;
        let token = envelope.client_token;
        let Some(shadow) = current.filter(|s| s.exists()) else {
            return Err(Rejection::not_found(request.display_name()).with_client_token(token));
        };
        if envelope.version.is_some_and(|v| v != shadow.version) {
            return Err(Rejection::version_conflict().with_client_token(token));
        }
        let mut doc = Map::new();
        doc.insert("version".into(), json!(shadow.version));
        doc.insert("timestamp".into(), json!(now));
        let reply = reply(request, ReplyKind::Accepted, doc, token.as_deref());
        Ok(Outcome {
            replies: vec![reply],
            store: Some(StoreChange::Put(shadow.tombstone(now))),
        })
    }

    fn update(
        &self,
        request: &Request,
        payload: &[u8],
        current: Option<&Shadow>,
        now: i64,
    ) -> Result<Outcome, Rejection> {
        let update = parse_update(payload, &self.limits)?;
        let token = update.client_token.clone();
        let reject = |r: Rejection| r.with_client_token(token.clone());

        let current_version = current.map_or(0, |s| s.version);
        if update.version.is_some_and(|v| v != current_version) {
            return Err(reject(Rejection::version_conflict()));
        }
        let previous = current.filter(|s| s.exists());
        let mut next = previous.cloned().unwrap_or_default();
        apply(
            &update.desired,
            &mut next.desired,
            &mut next.metadata_desired,
            now,
        );
        apply(
            &update.reported,
            &mut next.reported,
            &mut next.metadata_reported,
            now,
        );
        next.version = current_version.saturating_add(1);
        next.deleted = false;
        next.timestamp = now;

        let size = next.state_json().to_string().len();
        if size > self.limits.max_document_bytes {
            return Err(reject(Rejection::payload_too_large()));
        }
        if let Some(model) = self.models.for_thing(&request.thing) {
            for (name, section, state) in [
                ("desired", &update.desired, &next.desired),
                ("reported", &update.reported, &next.reported),
            ] {
                if section.is_present() {
                    let state = Value::Object(state.clone().unwrap_or_default());
                    model
                        .validate(name, &state)
                        .map_err(|m| reject(Rejection::bad_request(m)))?;
                }
            }
        }

        let mut replies = vec![accepted(request, &update, &next, now)];
        if matches!(update.desired, Section::Merge(_)) {
            let (delta, delta_meta) = next.delta();
            if !delta.is_empty() {
                let mut doc = Map::new();
                doc.insert("version".into(), json!(next.version));
                doc.insert("timestamp".into(), json!(now));
                doc.insert("state".into(), Value::Object(delta));
                doc.insert("metadata".into(), Value::Object(delta_meta));
                replies.push(reply(request, ReplyKind::Delta, doc, token.as_deref()));
            }
        }
        let mut doc = Map::new();
        doc.insert(
            "previous".into(),
            previous.map_or(Value::Null, Shadow::snapshot_json),
        );
        doc.insert("current".into(), next.snapshot_json());
        doc.insert("timestamp".into(), json!(now));
        replies.push(reply(request, ReplyKind::Documents, doc, token.as_deref()));

        Ok(Outcome {
            replies,
            store: Some(StoreChange::Put(next)),
        })
    }
}

/// Applies one request section to a stored section and its metadata.
fn apply(section: &Section, state: &mut Option<Object>, meta: &mut Option<Object>, now: i64) {
    match section {
        Section::Absent => {}
        Section::Null => {
            *state = None;
            *meta = None;
        }
        Section::Merge(patch) => {
            let mut s = state.take().unwrap_or_default();
            let mut m = meta.take().unwrap_or_default();
            merge(&mut s, &mut m, patch, now);
            if !s.is_empty() {
                *state = Some(s);
                *meta = Some(m);
            }
        }
    }
}

/// `update/accepted`: the request's sections as given, their metadata, the new version.
fn accepted(request: &Request, update: &Update, next: &Shadow, now: i64) -> Reply {
    let mut state = Map::new();
    let mut metadata = Map::new();
    for (name, section) in [("desired", &update.desired), ("reported", &update.reported)] {
        if let Some(value) = section.as_json() {
            metadata.insert(name.into(), metadata_of(&value, now));
            state.insert(name.into(), value);
        }
    }
    let mut doc = Map::new();
    doc.insert("state".into(), Value::Object(state));
    doc.insert("metadata".into(), Value::Object(metadata));
    doc.insert("version".into(), json!(next.version));
    doc.insert("timestamp".into(), json!(now));
    reply(
        request,
        ReplyKind::Accepted,
        doc,
        update.client_token.as_deref(),
    )
}

fn reply(request: &Request, kind: ReplyKind, mut doc: Object, token: Option<&str>) -> Reply {
    if let Some(token) = token {
        doc.insert("clientToken".into(), json!(token));
    }
    Reply {
        topic: request.reply_topic(kind),
        payload: Value::Object(doc).to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests;
