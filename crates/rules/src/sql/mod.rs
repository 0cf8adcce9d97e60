//! EMQX 5's rule SQL subset: `Rule::parse`, the rule's sources, and `Rule::apply` to an input.
//!
//! ```text
//! statement := SELECT column ("," column)* FROM source ("," source)* [WHERE expr]
//! column    := "*" | expr [AS name]
//! source    := "\"topic/filter\"" | "\"$events/client_connected\"" | ... (double quotes)
//! expr      := or ; or := and (OR and)* ; and := not (AND not)* ; not := NOT* cmp
//! cmp       := add [("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "=~") add]
//! add       := mul (("+" | "-") mul)* ; mul := unary (("*" | "/" | div | mod) unary)*
//! unary     := ("-" | "+")* primary
//! primary   := 'string' | "string" | number | true | false | null | "(" expr ")"
//!            | "[" expr,* "]" | function "(" expr,* ")" | path
//! path      := name ("." name | "." 'Quoted-Name' | "[" ["-"] integer "]")*
//! ```
//!
//! Keywords are case-insensitive; `--` starts a comment. The fields are EMQX's (see
//! [`Input`]); the functions are in `functions.rs` (`lower upper concat substr nth json_decode
//! json_encode now_timestamp str int float is_null is_not_null`); evaluation rules in
//! `eval.rs`; [`Value`] in `value.rs`.
//!
//! # Where Hermod differs from EMQX
//! - A subset: no `FOREACH`/`DO`/`INCASE`, `CASE`, `IN`, `jq`, nor EMQX's other functions and
//!   events; no `f(x).path` and no `[expr]` index (indexes are integer literals).
//! - `payload.x` on a payload that is not JSON is null; EMQX fails the rule
//!   (`decode_json_failed`).
//! - A selected field that is missing is in the row as null; EMQX leaves it out. So `${x}`
//!   binds SQL `NULL`.
//! - Output names: a column without `AS` that is not a plain path is named by its SQL text
//!   (`lower(clientid)`), and a path with an index by its text (`payload.a[1]`); EMQX uses
//!   internal names and list updates. `AS` takes one name (no `AS a.b`).
//! - WHERE runs before SELECT when it reads no alias, so a SELECT error on a message WHERE
//!   drops is not raised; EMQX always runs SELECT first.
//! - A WHERE, AND or OR operand that is not a bool counts as false; EMQX raises an error.
//! - `str(null)`, `concat` of null and a rendered null give `null`; EMQX gives `undefined`
//!   for a missing field.
//! - A payload that is not UTF-8 is text with U+FFFD; `pub_props` has only the user
//!   properties and `flags` only `retain`.
//! - `--` comments, backquoted names, and the `$events/client/connected` spelling of events
//!   are accepted too.

mod ast;
mod error;
mod eval;
mod functions;
mod input;
mod lexer;
mod parser;
pub mod template;
pub mod topic;
mod value;

use std::collections::BTreeMap;

pub use ast::Source;
pub use error::{EvalError, SqlError};
pub use input::{Event, Input};
pub use value::Value;

use ast::{Column, Expr, OutputName, Statement};
use eval::Ctx;

/// A parsed rule.
#[derive(Debug, Clone)]
pub struct Rule {
    sql: String,
    stmt: Statement,
    /// Whether WHERE names a column alias: then SELECT runs first, as EMQX; otherwise WHERE
    /// runs first, so a message it drops costs no SELECT (and raises no SELECT error).
    where_uses_alias: bool,
}

impl Rule {
    /// Parses `sql`; the error has the 1-based line and column ("expected FROM, found
    /// `WHERE` at 1:17").
    pub fn parse(sql: &str) -> Result<Rule, SqlError> {
        let stmt = parser::parse(sql)?;
        let aliases: Vec<&str> = stmt
            .columns
            .iter()
            .filter_map(|c| match c {
                Column::Expr {
                    name: OutputName::Key(k),
                    ..
                } => Some(k.as_str()),
                _ => None,
            })
            .collect();
        let where_uses_alias = stmt
            .condition
            .as_ref()
            .is_some_and(|c| mentions(c, &aliases));
        Ok(Rule {
            sql: sql.to_owned(),
            stmt,
            where_uses_alias,
        })
    }

    /// The SQL text the rule was parsed from.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The FROM sources: topic filters and events.
    pub fn sources(&self) -> &[Source] {
        &self.stmt.sources
    }

    /// Whether a message published to `topic` is for this rule (one of its FROM filters
    /// matches; `$`-topics are not matched by a leading wildcard).
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.stmt
            .sources
            .iter()
            .any(|s| matches!(s, Source::Topic(f) if topic::matches(f, topic)))
    }

    /// Whether the rule selects FROM `event`.
    pub fn matches_event(&self, event: Event) -> bool {
        self.stmt
            .sources
            .iter()
            .any(|s| matches!(s, Source::Event(e) if *e == event))
    }

    /// Applies the rule: `Ok(None)` when the input is not from one of its sources or WHERE
    /// does not hold; else the selected row, by output name. `Err` when an expression fails
    /// on this input (a function given the wrong type...): count it and go on.
    pub fn apply(
        &self,
        input: &Input,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, EvalError> {
        let from = match input.event {
            Event::Publish => self.matches_topic(&input.topic),
            event => self.matches_event(event),
        };
        if !from {
            return Ok(None);
        }
        let mut ctx = Ctx::new(input);
        let cond = self.stmt.condition.as_ref();
        if !self.where_uses_alias
            && let Some(c) = cond
            && !ctx.truthy(c)?
        {
            return Ok(None);
        }
        let mut row = BTreeMap::new();
        for column in &self.stmt.columns {
            match column {
                Column::Star => row.extend(input.all_fields()),
                Column::Expr { expr, name } => {
                    let v = ctx.eval(expr)?;
                    match name {
                        OutputName::Key(k) => {
                            ctx.scope.insert(k.clone(), v.clone());
                            row.insert(k.clone(), v);
                        }
                        OutputName::Nested(keys) => nested_put(&mut row, keys, v),
                    }
                }
            }
        }
        if self.where_uses_alias
            && let Some(c) = cond
            && !ctx.truthy(c)?
        {
            return Ok(None);
        }
        Ok(Some(row.into_iter().map(|(k, v)| (k, v.into())).collect()))
    }
}

/// Whether `e` reads one of `names` as a field.
fn mentions(e: &Expr, names: &[&str]) -> bool {
    match e {
        Expr::Lit(_) => false,
        Expr::Path { root, .. } => names.contains(&root.as_str()),
        Expr::List(items) | Expr::Call(_, items) => items.iter().any(|i| mentions(i, names)),
        Expr::Not(x) | Expr::Neg(x) => mentions(x, names),
        Expr::Bin(_, l, r) => mentions(l, names) || mentions(r, names),
    }
}

/// Puts `v` at `keys` in `row`, making objects on the way (`SELECT payload.a.b` gives
/// `{"payload": {"a": {"b": v}}}`, as EMQX). A string on the way that holds a JSON object is
/// parsed (so `SELECT payload, payload.x` adds `x` to the parsed payload); any other
/// non-object is replaced.
fn nested_put(row: &mut BTreeMap<String, Value>, keys: &[String], v: Value) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    if rest.is_empty() {
        row.insert(first.clone(), v);
        return;
    }
    let slot = row
        .entry(first.clone())
        .or_insert_with(|| Value::Object(BTreeMap::new()));
    if let Value::String(s) = slot {
        *slot = Value::from_json_str(s).unwrap_or_default();
    }
    if !matches!(slot, Value::Object(_)) {
        *slot = Value::Object(BTreeMap::new());
    }
    if let Value::Object(map) = slot {
        nested_put(map, rest, v);
    }
}
