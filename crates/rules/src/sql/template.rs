//! Action templates: `${name}` / `${payload.x}` placeholders, rendered as SQL parameters or text.
//!
//! A template is text with placeholders; a placeholder's path is read from the row a rule
//! selected, like a rule's paths: `.key` steps, `[n]` 1-based indexes (negative from the
//! end), JSON strings parsed on the way (`${payload.x}` works on a raw JSON `payload`
//! column), anything missing is null. Three renderings:
//! - [`Template::to_sql_params`]: each placeholder becomes a bound parameter (`?` or `$1`)
//!   and its value goes in the parameter list, never into the SQL text, so a payload like
//!   `'); DROP TABLE messages; --` is stored as text. A placeholder written in quotes
//!   (`'${clientid}'`, the habit from EMQX's MySQL templates) is bound too, quotes dropped; one
//!   inside a longer literal (`'id-${clientid}'`) is an error, since it cannot be bound.
//! - [`Template::render_text`]: for topics and plain-text bodies; each value as `str()` gives
//!   it (strings as they are, numbers, `true`, `null`, arrays and objects as JSON).
//! - [`Template::render_json`]: for JSON bodies (`{"id": ${clientid}, "t": "${topic}"}`); a
//!   placeholder outside a JSON string becomes the value's JSON (strings quoted and
//!   escaped), inside a JSON string its text JSON-escaped, so no value can break the JSON.

use std::borrow::Cow;
use std::fmt;

use super::ast::PathStep;
use super::eval::walk;
use super::value::Value;

/// The row a rule selected: output name to value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// How a database marks bound parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?` (SQLite, MySQL).
    Sqlite,
    /// `$1`, `$2`... (PostgreSQL).
    Postgres,
}

/// A template that does not parse, or a SQL statement whose placeholder cannot be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

fn err(message: String) -> TemplateError {
    TemplateError { message }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var {
        name: String,
        root: String,
        steps: Vec<PathStep>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `${` without `}`, an empty `${}` or a malformed path is an error.
    /// `$` not followed by `{` is plain text.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_owned()));
            }
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| err(format!("unterminated placeholder `{}`", &rest[at..])))?;
            let name = after[..end].trim();
            let (root, steps) = parse_path(name)?;
            parts.push(Part::Var {
                name: name.to_owned(),
                root,
                steps,
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The placeholders' paths, in order (`payload.x` for `${payload.x}`).
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, .. } => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    fn lookup(root: &str, steps: &[PathStep], row: &Row) -> Value {
        let base = row.get(root).cloned().map(Value::from).unwrap_or_default();
        walk(Cow::Owned(base), steps).into_owned()
    }

    /// The SQL text with a parameter marker for each placeholder, and the parameters in
    /// order. Parameters are scalars: null, bool, integer, float or string (arrays and
    /// objects JSON-encoded as strings).
    pub fn to_sql_params(
        &self,
        row: &Row,
        dialect: Dialect,
    ) -> Result<(String, Vec<Value>), TemplateError> {
        let mut sql = String::new();
        let mut params = Vec::new();
        let (mut single, mut double) = (false, false);
        let mut skip_quote = false;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Text(t) => {
                    let mut chars = t.chars();
                    if skip_quote {
                        chars.next();
                        skip_quote = false;
                    }
                    for c in chars {
                        match c {
                            '\'' if !double => single = !single,
                            '"' if !single => double = !double,
                            _ => {}
                        }
                        sql.push(c);
                    }
                }
                Part::Var { name, root, steps } => {
                    if single || double {
                        let next_quotes = matches!(self.parts.get(i + 1), Some(Part::Text(t)) if t.starts_with('\''));
                        if single && sql.ends_with('\'') && next_quotes {
                            sql.pop();
                            single = false;
                            skip_quote = true;
                        } else {
                            return Err(err(format!(
                                "placeholder ${{{name}}} is inside a quoted SQL literal or identifier; write it \
                                 bare (it is bound as a parameter)"
                            )));
                        }
                    }
                    params.push(match Self::lookup(root, steps, row) {
                        v @ (Value::Array(_) | Value::Object(_)) => {
                            Value::String(v.to_json_string())
                        }
                        v => v,
                    });
                    match dialect {
                        Dialect::Sqlite => sql.push('?'),
                        Dialect::Postgres => sql.push_str(&format!("${}", params.len())),
                    }
                }
            }
        }
        Ok((sql, params))
    }

    /// The template with each placeholder replaced by its value's text (see the module docs).
    pub fn render_text(&self, row: &Row) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { root, steps, .. } => {
                    out.push_str(&Self::lookup(root, steps, row).to_text())
                }
            }
        }
        out
    }

    /// The template as a JSON document: placeholders as JSON values, or JSON-escaped inside
    /// JSON strings (see the module docs).
    pub fn render_json(&self, row: &Row) -> String {
        let mut out = String::new();
        let (mut in_string, mut escaped) = (false, false);
        for part in &self.parts {
            match part {
                Part::Text(t) => {
                    for c in t.chars() {
                        if in_string {
                            match (escaped, c) {
                                (false, '\\') => escaped = true,
                                (false, '"') => in_string = false,
                                _ => escaped = false,
                            }
                        } else if c == '"' {
                            in_string = true;
                        }
                        out.push(c);
                    }
                }
                Part::Var { root, steps, .. } => {
                    let v = Self::lookup(root, steps, row);
                    if in_string {
                        let quoted = serde_json::Value::String(v.to_text()).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    } else {
                        out.push_str(&v.to_json_string());
                    }
                }
            }
        }
        out
    }
}

/// `a.b[1].c` into its root and steps.
fn parse_path(name: &str) -> Result<(String, Vec<PathStep>), TemplateError> {
    let bad = || err(format!("invalid placeholder `${{{name}}}`"));
    let mut segments = Vec::new();
    for seg in name.split('.') {
        let (key, mut rest) = seg.split_at(seg.find('[').unwrap_or(seg.len()));
        if key.is_empty() && (segments.is_empty() || rest.is_empty()) {
            return Err(bad());
        }
        if !key.is_empty() {
            segments.push(PathStep::Key(key.to_owned()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(bad)?;
            let n: i64 = r[..close].trim().parse().map_err(|_| bad())?;
            segments.push(PathStep::Index(n));
            rest = &r[close + 1..];
        }
        if !rest.is_empty() {
            return Err(bad());
        }
    }
    match segments.first() {
        Some(PathStep::Key(root)) => {
            let root = root.clone();
            Ok((root, segments.split_off(1)))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> Row {
        match serde_json::from_str(json) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => panic!("object"),
        }
    }

    #[test]
    fn parse_errors() {
        assert!(Template::parse("a ${b").is_err());
        assert!(Template::parse("${}").is_err());
        assert!(Template::parse("${a..b}").is_err());
        assert!(Template::parse("${a[x]}").is_err());
        assert!(Template::parse("${[1]}").is_err());
        assert!(Template::parse("$5 and ${ok}").is_ok());
        let t = Template::parse("${a.b[2]} ${c}").expect("parses");
        assert_eq!(t.placeholders().collect::<Vec<_>>(), vec!["a.b[2]", "c"]);
    }

    #[test]
    fn sql_params_never_splice() {
        let t = Template::parse(
            "INSERT INTO m(c, p, n) VALUES (${clientid}, ${payload}, ${payload.n})",
        )
        .expect("parses");
        let evil = "'); DROP TABLE messages; --";
        let mut r = row(r#"{"clientid":"c1"}"#);
        r.insert("payload".into(), serde_json::Value::String(evil.into()));
        let (sql, params) = t.to_sql_params(&r, Dialect::Sqlite).expect("binds");
        assert_eq!(sql, "INSERT INTO m(c, p, n) VALUES (?, ?, ?)");
        assert_eq!(
            params,
            vec![Value::from("c1"), Value::from(evil), Value::Null]
        );
        let (sql, _) = t.to_sql_params(&r, Dialect::Postgres).expect("binds");
        assert_eq!(sql, "INSERT INTO m(c, p, n) VALUES ($1, $2, $3)");
    }

    #[test]
    fn sql_quoted_placeholders() {
        let r = row(r#"{"a":"x","o":{"k":[1]}}"#);
        let t = Template::parse("SELECT '${a}', 'it''s', ${o}").expect("parses");
        let (sql, params) = t.to_sql_params(&r, Dialect::Postgres).expect("binds");
        assert_eq!(sql, "SELECT $1, 'it''s', $2");
        assert_eq!(params, vec![Value::from("x"), Value::from(r#"{"k":[1]}"#)]);
        let t = Template::parse("SELECT 'id-${a}'").expect("parses");
        assert!(t.to_sql_params(&r, Dialect::Sqlite).is_err());
        let t = Template::parse(r#"SELECT "${a}""#).expect("parses");
        assert!(t.to_sql_params(&r, Dialect::Sqlite).is_err());
    }

    #[test]
    fn text_and_json() {
        let r = row(r#"{"s":"a\"b","n":1.5,"z":null,"payload":"{\"x\":[5,6]}"}"#);
        let t = Template::parse("t/${s}/${n}/${z}/${payload.x[2]}/${missing}").expect("parses");
        assert_eq!(t.render_text(&r), "t/a\"b/1.5/null/6/null");
        let t = Template::parse(r#"{"s": ${s}, "in": "v=${s}", "n": ${n}, "m": ${missing}}"#)
            .expect("parses");
        let body = t.render_json(&r);
        assert_eq!(
            body,
            r#"{"s": "a\"b", "in": "v=a\"b", "n": 1.5, "m": null}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
    }
}
