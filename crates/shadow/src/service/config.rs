//! `[shadow]`, `[[thing_type]]` and `[presence]` in Hermod's config file: parsed here, from the
//! same file the broker reads (the broker lets these tables through untouched, except
//! `[shadow] access`, which it reads itself), and checked before anything starts. Every error
//! names the file, the line and the key.
//!
//! ```toml
//! [shadow]
//! enabled = true               # the shadow service (default true)
//! aws_compat = false           # also answer on $aws/things/... (default false)
//! max_document_bytes = 8192    # request and resulting state, AWS's limit
//! max_depth = 6                # nesting of desired/reported, AWS's limit
//! max_pending_per_thing = 10   # requests waiting for one thing before 429
//! max_shadows_per_thing = 100  # classic and named shadows of one thing (deleted ones count
//!                              # until their tombstone goes, 48 h later)
//! max_shadows = 1000000        # shadows in all (each is held in memory and on disk)
//! access = "clientid"          # read by the broker's ACL: "clientid" | "username"
//!
//! [[thing_type]]
//! name = "thermostat"
//! schema = "thermostat.schema.json"   # relative to the config file
//! things = ["thermo-*"]
//!
//! [presence]
//! enabled = false              # retained $hermod/things/{clientid}/presence
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::engine::Limits;
use crate::model::{ModelSpec, Models};

/// Largest `max_document_bytes`: a stored shadow (state, metadata of every leaf, version) is
/// a few times its state and must stay well under the broker's 1 MiB per stored value.
pub const MAX_DOCUMENT_BYTES_LIMIT: usize = 128 * 1024;

/// Who a client may act for on shadow topics, as the broker's ACL default reads it (this crate
/// only checks the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// A client uses the shadow of the thing named by its client id.
    #[default]
    ClientId,
    /// ... by its username.
    Username,
}

/// One `[[thing_type]]`, with its schema read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ThingType {
    pub name: String,
    /// The schema file, resolved against the config file's folder.
    pub schema_path: PathBuf,
    pub things: Vec<String>,
    pub schema: serde_json::Value,
}

/// The shadow part of a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    /// Serve shadow requests (`[shadow] enabled`, default true).
    pub enabled: bool,
    /// Also serve `$aws/things/...` (`[shadow] aws_compat`, default false).
    pub aws_compat: bool,
    pub limits: Limits,
    /// Requests for one thing waiting (or under way) before the next is refused with 429.
    pub max_pending_per_thing: usize,
    /// Shadows (classic and named) one thing may have; creating one more is refused with 400.
    pub max_shadows_per_thing: usize,
    /// Shadows in all; creating one more is refused with 400. Every shadow is held in memory
    /// and on disk, and any client may create its own thing's: this bounds both.
    pub max_shadows: usize,
    pub access: Access,
    pub thing_types: Vec<ThingType>,
    /// Publish retained presence messages (`[presence] enabled`, default false).
    pub presence: bool,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            enabled: true,
            aws_compat: false,
            limits: Limits::default(),
            max_pending_per_thing: 10,
            max_shadows_per_thing: 100,
            max_shadows: 1_000_000,
            access: Access::default(),
            thing_types: Vec::new(),
            presence: false,
        }
    }
}

/// A shadow configuration that cannot be used: the file, and the line, key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ShadowConfigError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Deserialize)]
struct File {
    shadow: Option<RawShadow>,
    presence: Option<RawPresence>,
    #[serde(default)]
    thing_type: Vec<Spanned<RawThingType>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadow {
    enabled: Option<bool>,
    aws_compat: Option<bool>,
    max_document_bytes: Option<Spanned<i64>>,
    max_depth: Option<Spanned<i64>>,
    max_pending_per_thing: Option<Spanned<i64>>,
    max_shadows_per_thing: Option<Spanned<i64>>,
    max_shadows: Option<Spanned<i64>>,
    access: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPresence {
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThingType {
    name: String,
    schema: Spanned<String>,
    things: Spanned<Vec<String>>,
}

impl ShadowConfig {
    /// The limits and thing models for [`crate::Engine::new`].
    ///
    /// # Errors
    /// A schema that does not compile (already checked by [`ShadowConfig::load`]).
    pub fn models(&self) -> Result<Models, crate::ModelError> {
        Models::new(
            self.thing_types
                .iter()
                .map(|t| ModelSpec {
                    type_name: t.name.clone(),
                    things: t.things.clone(),
                    schema: t.schema.clone(),
                })
                .collect(),
        )
    }

    /// Reads `[shadow]`, `[[thing_type]]` (and their schema files) and `[presence]` from a
    /// config file; other keys are the broker's. Absent tables take the defaults.
    ///
    /// # Errors
    /// The file or a schema cannot be read, or a value is wrong; the message names the line
    /// and key.
    pub fn load(path: &Path) -> Result<Self, ShadowConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ShadowConfigError {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// As [`ShadowConfig::load`], from text; schema paths resolve against `path`'s folder.
    ///
    /// # Errors
    /// See [`ShadowConfig::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, ShadowConfigError> {
        let fail = |message: String| ShadowConfigError {
            path: path.to_owned(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| fail(e.to_string().trim().to_owned()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut config = ShadowConfig::default();
        if let Some(s) = file.shadow {
            config.enabled = s.enabled.unwrap_or(true);
            config.aws_compat = s.aws_compat.unwrap_or(false);
            let number = |key: &str, v: Option<Spanned<i64>>, min: usize, max: usize| {
                let Some(v) = v else {
                    return Ok(None);
                };
                let at = line(v.span().start);
                match usize::try_from(*v.get_ref()) {
                    Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(fail(format!(
                        "line {at}: [shadow] key `{key}`: {} is not between {min} and {max}",
                        v.get_ref()
                    ))),
                }
            };
            if let Some(n) = number(
                "max_document_bytes",
                s.max_document_bytes,
                64,
                MAX_DOCUMENT_BYTES_LIMIT,
            )? {
                config.limits.max_document_bytes = n;
            }
            if let Some(n) = number("max_depth", s.max_depth, 1, 32)? {
                config.limits.max_depth = n;
            }
            if let Some(n) = number("max_pending_per_thing", s.max_pending_per_thing, 1, 10_000)? {
                config.max_pending_per_thing = n;
            }
            if let Some(n) = number("max_shadows_per_thing", s.max_shadows_per_thing, 1, 10_000)? {
                config.max_shadows_per_thing = n;
            }
            if let Some(n) = number("max_shadows", s.max_shadows, 1, 100_000_000)? {
                config.max_shadows = n;
            }
            if let Some(a) = s.access {
                config.access = match a.get_ref().as_str() {
                    "clientid" => Access::ClientId,
                    "username" => Access::Username,
                    other => {
                        return Err(fail(format!(
                            "line {}: [shadow] key `access`: `{other}` is not `clientid` or `username`",
                            line(a.span().start)
                        )));
                    }
                }
            }
        }
        if let Some(p) = file.presence {
            config.presence = p.enabled.unwrap_or(false);
        }
        let mut names = HashSet::new();
        for t in file.thing_type {
            let at = line(t.span().start);
            let t = t.into_inner();
            let where_ = format!("line {at}: thing_type {:?}", t.name);
            if !valid_type_name(&t.name) {
                return Err(fail(format!(
                    "{where_}: key `name`: use letters, digits, `-` and `_` (at most 64)"
                )));
            }
            if !names.insert(t.name.clone()) {
                return Err(fail(format!(
                    "{where_}: key `name`: a thing type with this name already exists"
                )));
            }
            let things_at = line(t.things.span().start);
            let things = t.things.into_inner();
            if things.is_empty() {
                return Err(fail(format!(
                    "line {things_at}: thing_type {:?}: key `things`: empty: which things is it for?",
                    t.name
                )));
            }
            if let Some(bad) = things.iter().find(|p| !valid_pattern(p)) {
                return Err(fail(format!(
                    "line {things_at}: thing_type {:?}: key `things`: {bad:?} is not a thing name or a pattern with `*` (letters, digits, `:`, `_`, `-`)",
                    t.name
                )));
            }
            let schema_at = line(t.schema.span().start);
            let schema_path = base.join(t.schema.get_ref());
            let schema_fail = |m: String| {
                fail(format!(
                    "line {schema_at}: thing_type {:?}: key `schema`: {}: {m}",
                    t.name,
                    schema_path.display()
                ))
            };
            let schema_text = std::fs::read_to_string(&schema_path)
                .map_err(|e| schema_fail(format!("cannot read: {e}")))?;
            let schema: serde_json::Value = serde_json::from_str(&schema_text)
                .map_err(|e| schema_fail(format!("not JSON: {e}")))?;
            let spec = ModelSpec {
                type_name: t.name.clone(),
                things: things.clone(),
                schema: schema.clone(),
            };
            // Compiled alone here so that an invalid schema is reported with its line.
            Models::new(vec![spec]).map_err(|e| schema_fail(e.reason))?;
            config.thing_types.push(ThingType {
                name: t.name,
                schema_path,
                things,
                schema,
            });
        }
        Ok(config)
    }
}

fn valid_type_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn valid_pattern(p: &str) -> bool {
    (1..=crate::topic::MAX_THING_NAME).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    fn parse_in(dir: &Path, text: &str) -> Result<ShadowConfig, ShadowConfigError> {
        ShadowConfig::parse(text, &dir.join("hermod.toml"))
    }

    fn err(dir: &Path, text: &str) -> String {
        match parse_in(dir, text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_without_tables() {
        let d = dir();
        let c = parse_in(d.path(), "allow_anonymous = true\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, ShadowConfig::default());
        assert!(c.enabled && !c.aws_compat && !c.presence);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.max_pending_per_thing, 10);
        assert_eq!((c.max_shadows_per_thing, c.max_shadows), (100, 1_000_000));
    }

    #[test]
    fn every_key() {
        let d = dir();
        std::fs::write(
            d.path().join("thermo.json"),
            r#"{"type":"object","properties":{"t":{"type":"number","maximum":100}}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = parse_in(
            d.path(),
            r#"
[shadow]
enabled = false
aws_compat = true
max_document_bytes = 4096
max_depth = 4
max_pending_per_thing = 3
access = "username"

[[thing_type]]
name = "thermostat"
schema = "thermo.json"
things = ["thermo-*", "boiler"]

[presence]
enabled = true
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.enabled && c.aws_compat && c.presence);
        assert_eq!(c.limits.max_document_bytes, 4096);
        assert_eq!(c.limits.max_depth, 4);
        assert_eq!(c.max_pending_per_thing, 3);
        assert_eq!(c.access, Access::Username);
        assert_eq!(c.thing_types.len(), 1);
        assert_eq!(c.thing_types[0].things, ["thermo-*", "boiler"]);
        let models = c.models().unwrap_or_else(|e| panic!("{e}"));
        assert!(models.for_thing("thermo-1").is_some());
        assert!(models.for_thing("lamp").is_none());
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let d = dir();
        let e = err(d.path(), "x = 1\n[shadow]\nmax_depth = 0\n");
        assert!(e.contains("hermod.toml") && e.contains("line 3") && e.contains("`max_depth`"));
        let e = err(d.path(), "[shadow]\n\nmax_document_bytes = 99999999\n");
        assert!(
            e.contains("line 3") && e.contains("`max_document_bytes`"),
            "{e}"
        );
        let e = err(d.path(), "[shadow]\nmax_pending_per_thing = -1\n");
        assert!(
            e.contains("line 2") && e.contains("`max_pending_per_thing`"),
            "{e}"
        );
        let e = err(d.path(), "[shadow]\nmax_shadows_per_thing = 0\n");
        assert!(
            e.contains("line 2") && e.contains("`max_shadows_per_thing`"),
            "{e}"
        );
        let e = err(d.path(), "[shadow]\nmax_shadows = 0\n");
        assert!(e.contains("line 2") && e.contains("`max_shadows`"), "{e}");
        let e = err(d.path(), "[shadow]\naccess = \"everyone\"\n");
        assert!(e.contains("line 2") && e.contains("`access`") && e.contains("everyone"));
        let e = err(d.path(), "[shadow]\nenabeld = true\n");
        assert!(e.contains("enabeld") && e.contains("line 2"), "{e}");
        let e = err(d.path(), "[presence]\nenabled = \"yes\"\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn thing_type_errors_name_line_and_key() {
        let d = dir();
        let e = err(
            d.path(),
            "[[thing_type]]\nname = \"t\"\nschema = \"missing.json\"\nthings = [\"a\"]\n",
        );
        assert!(
            e.contains("line 3") && e.contains("`schema`") && e.contains("missing.json"),
            "{e}"
        );
        assert!(e.contains("cannot read"), "{e}");

        std::fs::write(d.path().join("bad.json"), "{not json").unwrap_or_else(|e| panic!("{e}"));
        let e = err(
            d.path(),
            "[[thing_type]]\nname = \"t\"\nschema = \"bad.json\"\nthings = [\"a\"]\n",
        );
        assert!(e.contains("line 3") && e.contains("not JSON"), "{e}");

        std::fs::write(d.path().join("invalid.json"), r#"{"type": 12}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = err(
            d.path(),
            "\n[[thing_type]]\nname = \"t\"\nschema = \"invalid.json\"\nthings = [\"a\"]\n",
        );
        assert!(e.contains("line 4") && e.contains("invalid.json"), "{e}");

        std::fs::write(d.path().join("ok.json"), "{}").unwrap_or_else(|e| panic!("{e}"));
        let e = err(
            d.path(),
            "[[thing_type]]\nname = \"t\"\nschema = \"ok.json\"\nthings = [\"a/b\"]\n",
        );
        assert!(e.contains("line 4") && e.contains("`things`"), "{e}");
        let e = err(
            d.path(),
            "[[thing_type]]\nname = \"t\"\nschema = \"ok.json\"\nthings = []\n",
        );
        assert!(e.contains("line 4") && e.contains("empty"), "{e}");
        let e = err(
            d.path(),
            "[[thing_type]]\nname = \"a b\"\nschema = \"ok.json\"\nthings = [\"x\"]\n",
        );
        assert!(e.contains("line 1") && e.contains("`name`"), "{e}");
        let e = err(
            d.path(),
            "[[thing_type]]\nname = \"t\"\nschema = \"ok.json\"\nthings = [\"x\"]\n\n[[thing_type]]\nname = \"t\"\nschema = \"ok.json\"\nthings = [\"y\"]\n",
        );
        assert!(e.contains("line 6") && e.contains("already exists"), "{e}");
        let e = err(d.path(), "[[thing_type]]\nname = \"t\"\nthings = [\"x\"]\n");
        assert!(e.contains("schema"), "{e}");
    }

    #[test]
    fn unreadable_file() {
        let d = dir();
        let e = match ShadowConfig::load(&d.path().join("nope.toml")) {
            Ok(_) => panic!("loaded a missing file"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("nope.toml") && e.contains("cannot read"), "{e}");
    }
}
