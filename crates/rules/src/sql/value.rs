//! `Value`, the rule language's data model: JSON's, with integers kept apart from floats.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A value in a rule: what a field, a literal or a function gives. It mirrors JSON (objects
/// keep their keys sorted), with integers and floats apart so that `int()`/`float()` and the
/// SQL parameters keep the type.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// A missing field, JSON `null`, or SQL `null`.
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// The name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as text, as EMQX's `str()` (`emqx_utils_conv:bin`): strings as they are,
    /// integers in decimal, floats with at most 10 decimals (`1.5`, `0.3`), `true`/`false`,
    /// `null`, arrays and objects as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float_text(*f),
            Value::Array(_) | Value::Object(_) => self.to_json_string(),
        }
    }

    /// The value as JSON text (floats that JSON cannot hold become `null`).
    pub fn to_json_string(&self) -> String {
        serde_json::Value::from(self.clone()).to_string()
    }

    /// The number as f64, if it is one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Parses JSON text; `None` when it is not JSON.
    pub fn from_json_str(text: &str) -> Option<Value> {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(Value::from)
    }
}

/// `float_to_binary(F, [{decimals, 10}, compact])`: up to 10 decimals, trailing zeros dropped
/// but one kept (`2.0`).
fn float_text(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    let mut s = format!("{f:.10}");
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

impl From<Value> for serde_json::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Int(i) => serde_json::Value::from(i),
            Value::Float(f) => serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(s) => serde_json::Value::String(s),
            Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(serde_json::Value::from).collect())
            }
            Value::Object(o) => {
                serde_json::Value::Object(o.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// The rank of a type in Erlang's term order, which EMQX's comparisons inherit:
/// number < atom (booleans, null) < map < list < binary (string).
fn rank(v: &Value) -> u8 {
    match v {
        Value::Int(_) | Value::Float(_) => 0,
        Value::Bool(_) | Value::Null => 1,
        Value::Object(_) => 2,
        Value::Array(_) => 3,
        Value::String(_) => 4,
    }
}

/// Orders two values as Erlang's `<`/`==` do (integers and floats compare by value, `1 == 1.0`).
pub(crate) fn erlang_order(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (x, y) if rank(x) == 0 && rank(y) == 0 => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => atom_name(*x).cmp(atom_name(*y)),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Null) => atom_name(*x).cmp("null"),
        (Value::Null, Value::Bool(y)) => "null".cmp(atom_name(*y)),
        (Value::Array(x), Value::Array(y)) => {
            for (a, b) in x.iter().zip(y) {
                let o = erlang_order(a, b);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => x.len().cmp(&y.len()).then_with(|| {
            for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                let o = ka.cmp(kb).then_with(|| erlang_order(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        }),
        (x, y) => rank(x).cmp(&rank(y)),
    }
}

fn atom_name(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_follow_emqx_str() {
        assert_eq!(Value::Float(1.5).to_text(), "1.5");
        assert_eq!(Value::Float(2.0).to_text(), "2.0");
        assert_eq!(Value::Float(0.1 + 0.2).to_text(), "0.3");
        assert_eq!(Value::Int(-3).to_text(), "-3");
        assert_eq!(Value::Bool(true).to_text(), "true");
        assert_eq!(Value::Null.to_text(), "null");
        assert_eq!(
            Value::Array(vec![Value::Int(1), "a".into()]).to_text(),
            r#"[1,"a"]"#
        );
    }

    #[test]
    fn json_round_trip_keeps_integers() {
        let v = Value::from_json_str(r#"{"a":1,"b":1.5,"c":[true,null,"x"]}"#).expect("json");
        assert_eq!(v.to_json_string(), r#"{"a":1,"b":1.5,"c":[true,null,"x"]}"#);
        assert!(Value::from_json_str("{nope").is_none());
    }

    #[test]
    fn erlang_term_order() {
        assert_eq!(
            erlang_order(&Value::Int(1), &Value::Float(1.0)),
            Ordering::Equal
        );
        assert_eq!(erlang_order(&Value::Int(10), &"a".into()), Ordering::Less);
        assert_eq!(
            erlang_order(&Value::Bool(true), &Value::Array(vec![])),
            Ordering::Less
        );
        assert_eq!(erlang_order(&"b".into(), &"a".into()), Ordering::Greater);
        assert_eq!(
            erlang_order(&Value::Float(f64::NAN), &Value::Int(1)),
            Ordering::Equal
        );
    }
}
