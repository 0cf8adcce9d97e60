//! Evaluation of expressions against an `Input`: fields and paths, operators, comparisons.
//!
//! EMQX behaviours followed (`emqx_rule_runtime`, `emqx_rule_maps`):
//! - a missing field, key or index is null, never an error;
//! - `payload.<path>` parses the payload as JSON once, when first needed; a string met in
//!   the middle of a path is parsed as JSON too (`general_find` on a binary);
//! - `[n]` is 1-based, negative counts from the end, `[0]` is null;
//! - comparisons: null = null is true, null against anything else is false (even `!=`); a
//!   number against a string converts the string to a number (an error if it is not one); a
//!   bool against a string compares the bool's name; otherwise Erlang's term order
//!   (number < bool/null < object < array < string), integers equal to floats by value;
//! - `NOT x` is false when `x` is not a bool; `=~` is true when the left side is a topic
//!   that the right side's filter matches;
//! - `+` adds numbers or concatenates two strings; `/` always gives a float; `div` and
//!   `mod` work on integers.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::ast::{BinOp, Expr, PathStep};
use super::error::EvalError;
use super::functions;
use super::input::Input;
use super::topic;
use super::value::{Value, erlang_order};

/// The state of one rule application: the input, its payload parsed on first use, and the
/// columns selected so far (an alias is visible to the later columns and to WHERE, as EMQX).
pub(crate) struct Ctx<'a> {
    input: &'a Input,
    payload: OnceCell<Value>,
    pub(crate) scope: BTreeMap<String, Value>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(input: &'a Input) -> Self {
        Ctx {
            input,
            payload: OnceCell::new(),
            scope: BTreeMap::new(),
        }
    }

    /// The payload as JSON, parsed once; null when it is not JSON.
    fn payload_json(&self) -> &Value {
        self.payload.get_or_init(|| {
            std::str::from_utf8(&self.input.payload)
                .ok()
                .and_then(Value::from_json_str)
                .unwrap_or(Value::Null)
        })
    }

    pub(crate) fn eval(&self, e: &Expr) -> Result<Value, EvalError> {
        match e {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Path { root, steps } => Ok(self.path(root, steps)),
            Expr::List(items) => items
                .iter()
                .map(|i| self.eval(i))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Expr::Not(x) => Ok(match self.eval(x)? {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Bool(false),
            }),
            Expr::Neg(x) => match self.eval(x)? {
                Value::Int(i) => i
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| EvalError::new("integer overflow")),
                Value::Float(f) => Ok(Value::Float(-f)),
                other => Err(EvalError::new(format!(
                    "cannot negate a {}",
                    other.type_name()
                ))),
            },
            Expr::Bin(BinOp::And, l, r) => Ok(Value::Bool(self.truthy(l)? && self.truthy(r)?)),
            Expr::Bin(BinOp::Or, l, r) => Ok(Value::Bool(self.truthy(l)? || self.truthy(r)?)),
            Expr::Bin(op, l, r) => {
                let (l, r) = (self.eval(l)?, self.eval(r)?);
                match op {
                    BinOp::Add
                    | BinOp::Sub
                    | BinOp::Mul
                    | BinOp::Div
                    | BinOp::IntDiv
                    | BinOp::Mod => arithmetic(*op, l, r),
                    _ => compare(*op, &l, &r).map(Value::Bool),
                }
            }
            Expr::Call(name, args) => {
                let args = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                functions::call(name, args)
            }
        }
    }

    /// Whether `e` is `true`: a WHERE clause, or an operand of AND/OR, that gives anything
    /// else (null, a number) does not match.
    pub(crate) fn truthy(&self, e: &Expr) -> Result<bool, EvalError> {
        Ok(self.eval(e)? == Value::Bool(true))
    }

    fn path(&self, root: &str, steps: &[PathStep]) -> Value {
        let base: Cow<'_, Value> = if let Some(v) = self.scope.get(root) {
            Cow::Borrowed(v)
        } else if root == "payload" && !steps.is_empty() {
            Cow::Borrowed(self.payload_json())
        } else {
            Cow::Owned(self.input.field(root).unwrap_or_default())
        };
        walk(base, steps).into_owned()
    }
}

/// Follows `steps` down from `cur`; null as soon as one is missing.
pub(crate) fn walk<'v>(mut cur: Cow<'v, Value>, steps: &[PathStep]) -> Cow<'v, Value> {
    for step in steps {
        if let Value::String(s) = cur.as_ref() {
            match Value::from_json_str(s) {
                Some(v) => cur = Cow::Owned(v),
                None => return Cow::Owned(Value::Null),
            }
        }
        let next = match cur {
            Cow::Borrowed(v) => child(v, step).map(Cow::Borrowed),
            Cow::Owned(v) => child(&v, step).cloned().map(Cow::Owned),
        };
        match next {
            Some(v) => cur = v,
            None => return Cow::Owned(Value::Null),
        }
    }
    cur
}

fn child<'v>(v: &'v Value, step: &PathStep) -> Option<&'v Value> {
    match (v, step) {
        (Value::Object(map), PathStep::Key(k)) => map.get(k),
        (Value::Array(items), PathStep::Index(i)) => {
            let len = i64::try_from(items.len()).ok()?;
            let idx = match *i {
                i if i > 0 && i <= len => i - 1,
                i if i < 0 && -i <= len => len + i,
                _ => return None,
            };
            items.get(usize::try_from(idx).ok()?)
        }
        _ => None,
    }
}

/// The string as a number, as Erlang's `binary_to_integer`, then `binary_to_float`.
fn number_of(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::Float)
}

pub(crate) fn compare(op: BinOp, l: &Value, r: &Value) -> Result<bool, EvalError> {
    if op == BinOp::Match {
        return Ok(match (l, r) {
            (Value::String(t), Value::String(f)) => topic::matches(f, t),
            _ => false,
        });
    }
    let coerced;
    let (l, r) = match (l, r) {
        (Value::Null, Value::Null) => (l, r),
        (Value::Null, _) | (_, Value::Null) => return Ok(false),
        (Value::Int(_) | Value::Float(_), Value::String(s)) => {
            coerced = number_of(s).ok_or_else(|| not_a_number(s))?;
            (l, &coerced)
        }
        (Value::String(s), Value::Int(_) | Value::Float(_)) => {
            coerced = number_of(s).ok_or_else(|| not_a_number(s))?;
            (&coerced, r)
        }
        (Value::Bool(b), Value::String(_)) => {
            coerced = Value::String(b.to_string());
            (&coerced, r)
        }
        (Value::String(_), Value::Bool(b)) => {
            coerced = Value::String(b.to_string());
            (l, &coerced)
        }
        _ => (l, r),
    };
    let o = erlang_order(l, r);
    Ok(match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::Ne => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::Le => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        BinOp::Ge => o != Ordering::Less,
        _ => false,
    })
}

fn not_a_number(s: &str) -> EvalError {
    EvalError::new(format!(
        "cannot compare a number with the non-numeric string '{s}'"
    ))
}

fn arithmetic(op: BinOp, l: Value, r: Value) -> Result<Value, EvalError> {
    let overflow = || EvalError::new("integer overflow");
    match (op, &l, &r) {
        (BinOp::Add, Value::String(a), Value::String(b)) => Ok(Value::String(format!("{a}{b}"))),
        (_, Value::Int(a), Value::Int(b)) => {
            let (a, b) = (*a, *b);
            match op {
                BinOp::Add => a.checked_add(b).map(Value::Int).ok_or_else(overflow),
                BinOp::Sub => a.checked_sub(b).map(Value::Int).ok_or_else(overflow),
                BinOp::Mul => a.checked_mul(b).map(Value::Int).ok_or_else(overflow),
                BinOp::Div if b == 0 => Err(EvalError::new("division by zero")),
                BinOp::Div => Ok(Value::Float(a as f64 / b as f64)),
                BinOp::IntDiv | BinOp::Mod if b == 0 => Err(EvalError::new("division by zero")),
                BinOp::IntDiv => a.checked_div(b).map(Value::Int).ok_or_else(overflow),
                _ => a.checked_rem(b).map(Value::Int).ok_or_else(overflow),
            }
        }
        (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div, _, _)
            if l.as_f64().is_some() && r.as_f64().is_some() =>
        {
            let (a, b) = (
                l.as_f64().unwrap_or_default(),
                r.as_f64().unwrap_or_default(),
            );
            let v = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                _ if b == 0.0 => return Err(EvalError::new("division by zero")),
                _ => a / b,
            };
            Ok(Value::Float(v))
        }
        _ => Err(EvalError::new(format!(
            "cannot apply {} to a {} and a {}",
            match op {
                BinOp::Add => "+",
                BinOp::Sub => "-",
                BinOp::Mul => "*",
                BinOp::Div => "/",
                BinOp::IntDiv => "div",
                _ => "mod",
            },
            l.type_name(),
            r.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::parse;

    fn eval_where(cond: &str, payload: &str) -> Result<Value, EvalError> {
        let stmt = parse(&format!("SELECT * FROM \"t\" WHERE {cond}")).expect("parses");
        let input = Input {
            topic: "t/a".into(),
            payload: payload.to_owned().into(),
            ..Input::default()
        };
        Ctx::new(&input).eval(stmt.condition.as_ref().expect("where"))
    }

    fn t(cond: &str, payload: &str) -> bool {
        eval_where(cond, payload).expect(cond) == Value::Bool(true)
    }

    #[test]
    fn paths() {
        let p = r#"{"a":{"b":[10,20,{"c":"x"}]},"s":"{\"in\":1}"}"#;
        assert!(t("payload.a.b[1] = 10", p));
        assert!(t("payload.a.b[-1].c = 'x'", p));
        assert!(t("is_null(payload.a.b[0])", p));
        assert!(t("is_null(payload.a.b[4])", p));
        assert!(t("is_null(payload.nope.deeper)", p));
        assert!(t("payload.s.in = 1", p));
        assert!(t("is_null(payload.x)", "not json"));
        assert!(t("payload = 'not json'", "not json"));
    }

    #[test]
    fn comparisons_follow_emqx() {
        assert!(t("payload.n = '5'", r#"{"n":5}"#));
        assert!(t("payload.n > 4.5", r#"{"n":5}"#));
        assert!(t("1 = 1.0", ""));
        assert!(t("NOT (payload.x != 1)", "{}"), "null != 1 is false");
        assert!(t("payload.x = payload.y", "{}"), "null = null");
        assert!(t("retain = 'false'", ""));
        assert!(t("'b' > 'a' AND 'a' < 'ab'", ""));
        assert!(t("topic =~ 't/+'", ""));
        assert!(!t("topic =~ 'x/#'", ""));
        assert!(!t("NOT 1", ""));
        assert!(eval_where("payload.n > 'abc'", r#"{"n":1}"#).is_err());
    }

    #[test]
    fn arithmetic_ops() {
        assert!(t("1 + 2 * 3 = 7", ""));
        assert!(t("7 / 2 = 3.5", ""));
        assert!(t("7 div 2 = 3 AND 7 mod 2 = 1", ""));
        assert!(t("'a' + 'b' = 'ab'", ""));
        assert!(t("-payload.n = -5", r#"{"n":5}"#));
        assert!(eval_where("1 / 0", "").is_err());
        assert!(eval_where("9223372036854775807 + 1", "").is_err());
        assert!(eval_where("1 + 'a'", "").is_err());
    }
}
