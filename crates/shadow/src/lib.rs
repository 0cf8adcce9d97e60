//! Hermod's device shadows: the synchronous core, and the service that runs it in the broker.
//!
//! A device shadow is a JSON document per thing (and per named shadow) holding the state an
//! application wants (`desired`) and the state the device last reported (`reported`). This
//! crate is the logic only: it parses a request topic ([`topic::parse`]), and given the
//! payload, the stored shadow and the clock, [`Engine::handle`] returns the replies to
//! publish and the shadow to store. No broker, no async runtime, no I/O in those modules: the
//! [`service`] wires it to the broker (an internal MQTT session subscribed to
//! [`topic::subscription_filters`]) and loads, stores and publishes, storing before publishing.
//!
//! ```
//! use hermod_shadow::{Engine, Limits, Models, Shadow, StoreChange, topic};
//!
//! let engine = Engine::new(Limits::default(), Models::none());
//! let request = topic::parse("$hermod/things/lamp/shadow/update").ok_or("not a request")?;
//! let stored: Option<Shadow> = None; // loaded by the caller
//! let outcome = engine.handle(
//!     &request,
//!     br#"{"state": {"desired": {"on": true}}, "clientToken": "t1"}"#,
//!     stored.as_ref(),
//!     1_700_000_000,
//! );
//! // First persist ...
//! if let Some(StoreChange::Put(shadow)) = &outcome.store {
//!     let _bytes = shadow.to_bytes(); // write under ("lamp", None)
//! }
//! // ... then publish, in order: update/accepted, update/delta, update/documents.
//! let topics: Vec<_> = outcome.replies.iter().map(|r| r.topic.as_str()).collect();
//! assert_eq!(topics, [
//!     "$hermod/things/lamp/shadow/update/accepted",
//!     "$hermod/things/lamp/shadow/update/delta",
//!     "$hermod/things/lamp/shadow/update/documents",
//! ]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # AWS IoT semantics
//!
//! The topics, payloads and error documents are AWS IoT Device Shadow's, so an AWS IoT Device
//! SDK works unchanged against `$aws/things/...` (when the broker enables it) or
//! `$hermod/things/...`:
//!
//! - topics `{prefix}/things/{thing}/shadow[/name/{shadow}]/{get|update|delete}`, replies on
//!   `.../accepted` and `.../rejected`, and `update/delta` and `update/documents`;
//! - update: `{"state": {"desired"?, "reported"?}, "clientToken"?, "version"?}`; objects merge
//!   deeply, `null` deletes a key (or a whole section), arrays and scalars replace; `version`,
//!   when given, must equal the current one (409 "Version conflict"); each accepted update
//!   adds 1 to the version and stamps every updated leaf's metadata;
//! - `update/accepted` echoes the request's sections with their metadata; `update/delta`
//!   (only when the update had `desired` and desired still differs from reported) carries
//!   every desired key that differs, deeply; `update/documents` carries the previous and
//!   current documents (`previous: null` for a new shadow);
//! - get answers state, metadata, version and a `delta` when there is one; get and delete of
//!   a missing shadow are 404 "No shadow exists with name: 'NAME'" (the shadow's name, or the
//!   thing's for the classic shadow);
//! - a deleted shadow keeps its version: a shadow re-created within 48 hours continues it;
//! - `clientToken` (at most 64 bytes) is echoed in every reply to its request, rejections
//!   included; limits: 8 KiB per request and per resulting state, nesting depth 6; error codes
//!   and messages are AWS's (400, 404, 409, 413, 415; 429 and 500 by the caller).
//!
//! # Deliberate differences and choices
//!
//! - Objects left empty by a merge are removed (and a section left empty becomes absent), so
//!   the stored state never holds `{}`; see [`document`].
//! - A delete publishes only `delete/accepted`, not `update/documents` (as AWS's own
//!   Greengrass shadow manager does).
//! - Unknown keys inside `state` are refused (400 "State contains an invalid node"); unknown
//!   top-level keys are ignored.
//! - A delete may carry `version`, checked like an update's.
//! - Thing models ([`model`]): an optional JSON Schema per thing type, checked on every
//!   update; AWS has no such check.
//! - Timestamps are whole seconds, from the caller's clock; the `connected` presence flag of
//!   some AWS SDK samples is not part of the document.

pub mod document;
pub mod engine;
pub mod error;
pub mod model;
mod request;
pub mod service;
pub mod topic;

pub use document::{DecodeError, Shadow};
pub use engine::{Engine, Limits, Outcome, Reply, StoreChange};
pub use error::Rejection;
pub use model::{Model, ModelError, ModelSpec, Models};
pub use request::{MAX_CLIENT_TOKEN_BYTES, client_token_of};
pub use service::{ShadowConfig, ShadowConfigError, ShadowError, ShadowService};
pub use topic::{Op, Prefix, ReplyKind, Request};
