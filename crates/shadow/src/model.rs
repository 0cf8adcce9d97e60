//! Thing models: a JSON Schema per thing type that a shadow's `desired` and `reported` must
//! meet after each update.
//!
//! A model is `(type name, thing name patterns, schema)`. A pattern is an exact thing name, or
//! a glob where `*` stands for any run of characters (`lamp-*`, `*`). An exact name wins over
//! a glob; among globs, the first model given wins. The schema describes one state section,
//! e.g. `{"type": "object", "properties": {"temperature": {"type": "number", "maximum":
//! 100}}}`, and each section an update touches is validated as merged (an absent section as
//! `{}`), so a model can also require keys. A violation is a 400 naming the JSON path of the
//! first error: `state.reported.temperature: 150 is greater than the maximum of 100`.
//!
//! **Why `boon`:** both candidates report instance locations and support drafts 4 to
//! 2020-12. With `jsonschema` 0.61 at `default-features = false` (no HTTP or file
//! resolving) this crate's normal dependency tree has 64 distinct crates; with `boon` 0.6 it
//! has 59 (though more of boon's are new to this workspace: 32, the ICU stack under `url`,
//! against 26). `boon` is also the smaller build (no `fancy-regex`, `num`, `uuid-simd`) and
//! has no networking code at all. Its `pattern` keyword runs on the `regex` crate (linear
//! time), where `jsonschema` uses the backtracking `fancy-regex`, which matters when schemas
//! come from configuration and values from devices. Its default loader
//! still reads `file://` references, so the compiler here gets a loader that refuses every
//! URL: a schema can only refer to itself (and the standard metaschemas, which `boon` embeds).
//! Schemas default to draft 2020-12 when they name no `$schema`, and so `format` is an
//! annotation, not checked (2020-12's default). Each schema is compiled
//! once, when [`Models`] is built; one that does not compile fails the construction with the
//! type's name.

use std::fmt::Write as _;

use boon::{Compiler, Draft, ErrorKind, InstanceToken, SchemaIndex, Schemas, ValidationError};
use serde_json::Value;

/// What a thing model is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The thing type's name (for errors and the caller's listings).
    pub type_name: String,
    /// Exact thing names or globs with `*`.
    pub things: Vec<String>,
    /// The JSON Schema of one state section.
    pub schema: Value,
}

/// A schema that did not compile.
#[derive(Debug, thiserror::Error)]
#[error("thing model {type_name:?}: invalid JSON Schema: {reason}")]
pub struct ModelError {
    pub type_name: String,
    pub reason: String,
}

/// One compiled thing model.
pub struct Model {
    type_name: String,
    things: Vec<String>,
    schemas: Schemas,
    index: SchemaIndex,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("type_name", &self.type_name)
            .field("things", &self.things)
            .finish_non_exhaustive()
    }
}

/// All thing models.
#[derive(Debug, Default)]
pub struct Models {
    models: Vec<Model>,
}

/// Refuses every URL: schemas may not pull documents from files or the network.
struct NoLoader;

impl boon::UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url}: thing model schemas cannot load external documents").into())
    }
}

impl Models {
    /// No models: no validation.
    pub fn none() -> Models {
        Models::default()
    }

    /// Compiles every schema; the first that does not compile is the error.
    pub fn new(specs: Vec<ModelSpec>) -> Result<Models, ModelError> {
        let mut models = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let error = |reason: String| ModelError {
                type_name: spec.type_name.clone(),
                reason,
            };
            let mut compiler = Compiler::new();
            compiler.set_default_draft(Draft::V2020_12);
            compiler.use_loader(Box::new(NoLoader));
            let url = format!("urn:hermod:thing-model:{i}");
            let mut schemas = Schemas::new();
            compiler
                .add_resource(&url, spec.schema.clone())
                .map_err(|e| error(format!("{e:#}")))?;
            let index = compiler
                .compile(&url, &mut schemas)
                .map_err(|e| error(format!("{e:#}")))?;
            models.push(Model {
                type_name: spec.type_name,
                things: spec.things,
                schemas,
                index,
            });
        }
        Ok(Models { models })
    }

    /// The model for `thing`: an exact name first, else the first glob that matches.
    pub fn for_thing(&self, thing: &str) -> Option<&Model> {
        self.models
            .iter()
            .find(|m| m.things.iter().any(|p| !p.contains('*') && p == thing))
            .or_else(|| {
                self.models
                    .iter()
                    .find(|m| m.things.iter().any(|p| p.contains('*') && glob(p, thing)))
            })
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

impl Model {
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Validates one merged section (`section` is `desired` or `reported`, for the path in
    /// the message). The error is the message of a 400.
    pub fn validate(&self, section: &str, state: &Value) -> Result<(), String> {
        match self.schemas.validate(state, self.index) {
            Ok(()) => Ok(()),
            Err(error) => Err(describe(section, state, first_leaf(&error))),
        }
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*` at all: exact
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The deepest first error: `boon` nests the failing keyword under the schema's root.
fn first_leaf<'a, 's, 'v>(error: &'a ValidationError<'s, 'v>) -> &'a ValidationError<'s, 'v> {
    let mut error = error;
    while let Some(cause) = error.causes.first() {
        error = cause;
    }
    error
}

/// `state.{section}.a.b[2]: what went wrong`.
fn describe(section: &str, state: &Value, error: &ValidationError<'_, '_>) -> String {
    let mut path = format!("state.{section}");
    let mut value = Some(state);
    for token in &error.instance_location.tokens {
        match token {
            InstanceToken::Prop(name) => {
                let _ = write!(path, ".{name}");
                value = value.and_then(|v| v.get(name.as_ref()));
            }
            InstanceToken::Item(i) => {
                let _ = write!(path, "[{i}]");
                value = value.and_then(|v| v.get(*i));
            }
        }
    }
    let shown = value.map(compact).unwrap_or_default();
    let detail = match &error.kind {
        ErrorKind::Maximum { got, want } => format!("{got} is greater than the maximum of {want}"),
        ErrorKind::Minimum { got, want } => format!("{got} is less than the minimum of {want}"),
        ErrorKind::ExclusiveMaximum { got, want } => {
            format!("{got} is greater than or equal to the maximum of {want}")
        }
        ErrorKind::ExclusiveMinimum { got, want } => {
            format!("{got} is less than or equal to the minimum of {want}")
        }
        ErrorKind::Type { want, .. } => {
            let want: Vec<String> = want.iter().map(|t| format!("\"{t}\"")).collect();
            format!("{shown} is not of type {}", want.join(" or "))
        }
        ErrorKind::Required { want } => {
            let want: Vec<String> = want.iter().map(|k| format!("\"{k}\"")).collect();
            format!("{} is a required property", want.join(", "))
        }
        ErrorKind::AdditionalProperties { got } => {
            let got: Vec<String> = got.iter().map(|k| format!("\"{k}\"")).collect();
            format!(
                "additional properties are not allowed ({} unexpected)",
                got.join(", ")
            )
        }
        ErrorKind::Enum { want } => format!("{shown} is not one of {}", compact_list(want)),
        ErrorKind::Const { want } => format!("{shown} is not {}", compact(want)),
        ErrorKind::MaxLength { want, .. } => format!("{shown} is longer than {want} characters"),
        ErrorKind::MinLength { want, .. } => format!("{shown} is shorter than {want} characters"),
        ErrorKind::Pattern { want, .. } => format!("{shown} does not match \"{want}\""),
        other => other.to_string(),
    };
    format!("{path}: {detail}")
}

fn compact(value: &Value) -> String {
    const MAX: usize = 64;
    let text = value.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

fn compact_list(values: &[Value]) -> String {
    compact(&Value::Array(values.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn thermostat() -> ModelSpec {
        ModelSpec {
            type_name: "thermostat".into(),
            things: vec!["thermo-*".into(), "boiler".into()],
            schema: json!({
                "type": "object",
                "properties": {
                    "temperature": {"type": "number", "maximum": 100, "minimum": -40},
                    "mode": {"enum": ["heat", "cool", "off"]},
                    "zones": {"type": "array", "items": {"type": "object",
                        "properties": {"name": {"type": "string", "maxLength": 8}}}},
                },
            }),
        }
    }

    fn models() -> Models {
        match Models::new(vec![thermostat()]) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn check(state: Value) -> Result<(), String> {
        let models = models();
        let Some(model) = models.for_thing("thermo-1") else {
            panic!("no model");
        };
        model.validate("reported", &state)
    }

    #[test]
    fn valid_states_pass() {
        assert_eq!(check(json!({})), Ok(()));
        assert_eq!(check(json!({"temperature": 21.5, "mode": "heat"})), Ok(()));
        assert_eq!(check(json!({"zones": [{"name": "hall"}]})), Ok(()));
    }

    #[test]
    fn violations_name_the_path() {
        assert_eq!(
            check(json!({"temperature": 150})),
            Err("state.reported.temperature: 150 is greater than the maximum of 100".into())
        );
        assert_eq!(
            check(json!({"temperature": -41})),
            Err("state.reported.temperature: -41 is less than the minimum of -40".into())
        );
        assert_eq!(
            check(json!({"temperature": "hot"})),
            Err("state.reported.temperature: \"hot\" is not of type \"number\"".into())
        );
        assert_eq!(
            check(json!({"mode": "dry"})),
            Err("state.reported.mode: \"dry\" is not one of [\"heat\",\"cool\",\"off\"]".into())
        );
        assert_eq!(
            check(json!({"zones": [{"name": "hall"}, {"name": "living-room"}]})),
            Err("state.reported.zones[1].name: \"living-room\" is longer than 8 characters".into())
        );
    }

    #[test]
    fn required_keys_name_the_parent() {
        let spec = ModelSpec {
            type_name: "t".into(),
            things: vec!["*".into()],
            schema: json!({"type": "object", "required": ["id"], "additionalProperties": false,
                           "properties": {"id": {"type": "string"}}}),
        };
        let Ok(models) = Models::new(vec![spec]) else {
            panic!("compile");
        };
        let Some(model) = models.for_thing("x") else {
            panic!("no model");
        };
        assert_eq!(
            model.validate("desired", &json!({})),
            Err("state.desired: \"id\" is a required property".into())
        );
        let err = model.validate("desired", &json!({"id": "a", "zz": 1}));
        assert!(err.as_ref().is_err_and(|e| e.contains("\"zz\"")), "{err:?}");
    }

    #[test]
    fn bad_schema_names_the_type() {
        let spec = ModelSpec {
            type_name: "broken".into(),
            things: vec!["*".into()],
            schema: json!({"type": "nonsense"}),
        };
        let err = Models::new(vec![thermostat(), spec]).err();
        assert_eq!(err.as_ref().map(|e| e.type_name.as_str()), Some("broken"));
        assert!(err.is_some_and(|e| e.to_string().contains("\"broken\"")));
    }

    #[test]
    fn external_refs_are_refused() {
        for reference in ["file:///etc/passwd", "https://example.invalid/s.json"] {
            let spec = ModelSpec {
                type_name: "leaky".into(),
                things: vec!["*".into()],
                schema: json!({"$ref": reference}),
            };
            assert!(Models::new(vec![spec]).is_err(), "{reference}");
        }
        // Local references and definitions work.
        let spec = ModelSpec {
            type_name: "local".into(),
            things: vec!["*".into()],
            schema: json!({"$defs": {"t": {"type": "number"}},
                           "properties": {"a": {"$ref": "#/$defs/t"}}}),
        };
        assert!(Models::new(vec![spec]).is_ok());
    }

    #[test]
    fn model_lookup() {
        let exact = ModelSpec {
            type_name: "special".into(),
            things: vec!["thermo-9".into()],
            schema: json!({}),
        };
        let Ok(models) = Models::new(vec![thermostat(), exact]) else {
            panic!("compile");
        };
        let name = |thing: &str| models.for_thing(thing).map(Model::type_name);
        assert_eq!(name("thermo-1"), Some("thermostat"));
        assert_eq!(name("boiler"), Some("thermostat"));
        assert_eq!(name("thermo-9"), Some("special")); // exact beats glob
        assert_eq!(name("lamp"), None);
        assert_eq!(name("boiler2"), None);
        assert!(Models::none().for_thing("x").is_none());
        assert!(Models::none().is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("*", "abc"));
        assert!(glob("a*", "a"));
        assert!(glob("a*c", "abc"));
        assert!(glob("a*c", "ac"));
        assert!(!glob("a*c", "ab"));
        assert!(glob("*b*", "abc"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXcYb"));
        assert!(glob("ab*ab", "abab"));
        assert!(!glob("ab*ab", "aba"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn long_values_are_shortened() {
        let long = json!("x".repeat(200));
        assert!(compact(&long).ends_with("..."));
        assert!(compact(&long).len() < 80);
    }

    #[test]
    fn models_are_shareable() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Models>();
    }
}
