//! The built-in functions of rule SQL, with EMQX's names, argument orders and edge cases.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::EvalError;
use super::value::Value;

/// `(name, min args, max args)`; `usize::MAX` for any number.
const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("concat", 1, usize::MAX),
    ("substr", 2, 3),
    ("nth", 2, 2),
    ("json_decode", 1, 1),
    ("json_encode", 1, 1),
    ("now_timestamp", 0, 1),
    ("str", 1, 1),
    ("int", 1, 1),
    ("float", 1, 1),
    ("is_null", 1, 1),
    ("is_not_null", 1, 1),
];

/// Checks at parse time that `name` is a function and takes `n` arguments.
pub(crate) fn check_arity(name: &str, n: usize) -> Result<(), String> {
    let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(f, ..)| *f == name) else {
        return Err(format!("unknown function `{name}`"));
    };
    if n < min || n > max {
        let want = match (min, max) {
            (a, b) if a == b => format!("{a}"),
            (a, usize::MAX) => format!("at least {a}"),
            (a, b) => format!("{a} to {b}"),
        };
        return Err(format!(
            "`{name}` takes {want} argument{}, not {n}",
            if want == "1" || want == "at least 1" {
                ""
            } else {
                "s"
            }
        ));
    }
    Ok(())
}

fn bad(name: &str, what: &str, got: &Value) -> EvalError {
    EvalError::new(format!(
        "{name}(): expected {what}, got {}",
        got.type_name()
    ))
}

/// A string argument; booleans are accepted as their names, as EMQX's atoms are.
fn text<'a>(name: &str, v: &'a Value) -> Result<std::borrow::Cow<'a, str>, EvalError> {
    match v {
        Value::String(s) => Ok(std::borrow::Cow::Borrowed(s)),
        Value::Bool(b) => Ok(std::borrow::Cow::Owned(b.to_string())),
        other => Err(bad(name, "a string", other)),
    }
}

fn integer(name: &str, v: &Value) -> Result<i64, EvalError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(bad(name, "an integer", other)),
    }
}

/// Calls built-in `name` (already checked by [`check_arity`]) on evaluated arguments.
pub(crate) fn call(name: &str, args: Vec<Value>) -> Result<Value, EvalError> {
    let arg = |i: usize| args.get(i).unwrap_or(&Value::Null);
    match name {
        // `lower`/`upper`: a null argument is an error (EMQX: badarg).
        "lower" => Ok(Value::String(text(name, arg(0))?.to_lowercase())),
        "upper" => Ok(Value::String(text(name, arg(0))?.to_uppercase())),
        // `concat(a, b, ...)`: each argument as `str()` makes it; one array argument
        // concatenates its elements (EMQX's `concat/1`).
        "concat" => {
            let items = match args.as_slice() {
                [Value::Array(items)] => items.as_slice(),
                all => all,
            };
            Ok(Value::String(items.iter().map(Value::to_text).collect()))
        }
        "substr" => substr(arg(0), arg(1), args.get(2)),
        "nth" => nth(arg(0), arg(1)),
        "json_decode" => {
            let s = text(name, arg(0))?;
            Value::from_json_str(&s)
                .ok_or_else(|| EvalError::new("json_decode(): the argument is not JSON"))
        }
        "json_encode" => Ok(Value::String(arg(0).to_json_string())),
        "now_timestamp" => now_timestamp(args.first()),
        "str" => Ok(Value::String(arg(0).to_text())),
        "int" => to_int(arg(0)),
        "float" => to_float(arg(0)),
        "is_null" => Ok(Value::Bool(arg(0).is_null())),
        "is_not_null" => Ok(Value::Bool(!arg(0).is_null())),
        other => Err(EvalError::new(format!("unknown function `{other}`"))),
    }
}

/// `substr(s, start[, len])` as EMQX's implementation (`string:slice/2,3`): `start` counts
/// characters from 0, so `substr('abcdef', 2) = 'cdef'` and `substr('abcdef', 2, 3) = 'cde'`
/// (EMQX's table says "subscripts start at 1", but its examples and code are 0-based).
/// Past the end gives `''`; a negative start or length is an error.
fn substr(s: &Value, start: &Value, len: Option<&Value>) -> Result<Value, EvalError> {
    let s = text("substr", s)?;
    let start = integer("substr", start)?;
    let len = len.map(|l| integer("substr", l)).transpose()?;
    if start < 0 || len.is_some_and(|l| l < 0) {
        return Err(EvalError::new("substr(): negative start or length"));
    }
    let chars = s.chars().skip(usize::try_from(start).unwrap_or(usize::MAX));
    let out: String = match len {
        Some(l) => chars
            .take(usize::try_from(l).unwrap_or(usize::MAX))
            .collect(),
        None => chars.collect(),
    };
    Ok(Value::String(out))
}

/// `nth(n, array)`: 1-based as EMQX; `n` past the end gives `''` (EMQX returns an empty
/// binary); `n < 1` is an error. `n` may be a numeric string.
fn nth(n: &Value, array: &Value) -> Result<Value, EvalError> {
    let n = match n {
        Value::Int(i) => *i,
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| EvalError::new("nth(): invalid index"))?,
        other => return Err(bad("nth", "an integer", other)),
    };
    let Value::Array(items) = array else {
        return Err(bad("nth", "an array", array));
    };
    if n < 1 {
        return Err(EvalError::new(format!(
            "nth(): index {n} is out of range (indexes start at 1)"
        )));
    }
    let i = usize::try_from(n - 1).unwrap_or(usize::MAX);
    Ok(items
        .get(i)
        .cloned()
        .unwrap_or_else(|| Value::String(String::new())))
}

/// `now_timestamp([unit])`: the time now in seconds, as EMQX, or in `'millisecond'`,
/// `'microsecond'`, `'nanosecond'`.
fn now_timestamp(unit: Option<&Value>) -> Result<Value, EvalError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = match unit
        .map(|u| text("now_timestamp", u))
        .transpose()?
        .as_deref()
    {
        None | Some("second") => now.as_secs() as i128,
        Some("millisecond") => now.as_millis() as i128,
        Some("microsecond") => now.as_micros() as i128,
        Some("nanosecond") => now.as_nanos() as i128,
        Some(other) => {
            return Err(EvalError::new(format!(
                "now_timestamp(): unknown time unit '{other}'"
            )));
        }
    };
    Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// `int(x)` as EMQX's `emqx_utils_conv:int`: integers as they are, floats and float strings
/// rounded down, `true`/`false` to 1/0; anything else is an error.
fn to_int(v: &Value) -> Result<Value, EvalError> {
    let from_float = |f: f64| {
        let f = f.floor();
        if f.is_finite() && f >= i64::MIN as f64 && f <= i64::MAX as f64 {
            Ok(Value::Int(f as i64))
        } else {
            Err(EvalError::new("int(): out of range"))
        }
    };
    match v {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(f) => from_float(*f),
        Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => match s.parse::<f64>() {
                Ok(f) => from_float(f),
                Err(_) => Err(EvalError::new(format!("int(): cannot convert '{s}'"))),
            },
        },
        other => Err(bad("int", "a number, a numeric string or a bool", other)),
    }
}

/// `float(x)`: numbers and numeric strings; anything else is an error.
fn to_float(v: &Value) -> Result<Value, EvalError> {
    match v {
        Value::Int(i) => Ok(Value::Float(*i as f64)),
        Value::Float(f) => Ok(Value::Float(*f)),
        Value::String(s) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| EvalError::new(format!("float(): cannot convert '{s}'"))),
        other => Err(bad("float", "a number or a numeric string", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::from(v)
    }

    fn call_ok(name: &str, args: Vec<Value>) -> Value {
        call(name, args).expect(name)
    }

    #[test]
    fn arity() {
        assert!(check_arity("substr", 2).is_ok());
        assert_eq!(
            check_arity("substr", 1).expect_err("arity"),
            "`substr` takes 2 to 3 arguments, not 1"
        );
        assert_eq!(
            check_arity("lower", 2).expect_err("arity"),
            "`lower` takes 1 argument, not 2"
        );
        assert_eq!(
            check_arity("concat", 0).expect_err("arity"),
            "`concat` takes at least 1 argument, not 0"
        );
        assert_eq!(
            check_arity("nope", 0).expect_err("unknown"),
            "unknown function `nope`"
        );
    }

    #[test]
    fn strings() {
        assert_eq!(call_ok("lower", vec![s("AbC")]), s("abc"));
        assert_eq!(call_ok("upper", vec![s("AbC")]), s("ABC"));
        assert!(call("lower", vec![Value::Null]).is_err());
        assert_eq!(
            call_ok(
                "concat",
                vec![s("a"), Value::Int(1), Value::Float(2.5), Value::Bool(true)]
            ),
            s("a12.5true")
        );
        assert_eq!(
            call_ok("concat", vec![Value::Array(vec![s("x"), s("y")])]),
            s("xy")
        );
        assert_eq!(
            call_ok("substr", vec![s("abcdef"), Value::Int(2)]),
            s("cdef")
        );
        assert_eq!(
            call_ok("substr", vec![s("abcdef"), Value::Int(2), Value::Int(3)]),
            s("cde")
        );
        assert_eq!(
            call_ok("substr", vec![s("héllo"), Value::Int(1), Value::Int(2)]),
            s("él")
        );
        assert_eq!(call_ok("substr", vec![s("ab"), Value::Int(5)]), s(""));
        assert!(call("substr", vec![s("ab"), Value::Int(-1)]).is_err());
    }

    #[test]
    fn arrays_and_json() {
        let arr = Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
        assert_eq!(
            call_ok("nth", vec![Value::Int(2), arr.clone()]),
            Value::Int(2)
        );
        assert_eq!(call_ok("nth", vec![Value::Int(9), arr.clone()]), s(""));
        assert!(call("nth", vec![Value::Int(0), arr.clone()]).is_err());
        assert!(call("nth", vec![Value::Int(1), s("x")]).is_err());
        let obj = call_ok("json_decode", vec![s(r#"{ "a" : 1 }"#)]);
        assert_eq!(call_ok("json_encode", vec![obj]), s(r#"{"a":1}"#));
        assert!(call("json_decode", vec![s("{")]).is_err());
    }

    #[test]
    fn conversions() {
        assert_eq!(call_ok("str", vec![Value::Int(1234)]), s("1234"));
        assert_eq!(call_ok("int", vec![s("1234")]), Value::Int(1234));
        assert_eq!(call_ok("int", vec![Value::Float(-1.5)]), Value::Int(-2));
        assert_eq!(call_ok("int", vec![s("3.9")]), Value::Int(3));
        assert_eq!(call_ok("int", vec![Value::Bool(true)]), Value::Int(1));
        assert!(call("int", vec![s("x")]).is_err());
        assert!(call("int", vec![Value::Float(1e300)]).is_err());
        assert_eq!(call_ok("float", vec![s("2.5")]), Value::Float(2.5));
        assert_eq!(call_ok("float", vec![Value::Int(2)]), Value::Float(2.0));
        assert!(call("float", vec![Value::Null]).is_err());
        assert_eq!(call_ok("is_null", vec![Value::Null]), Value::Bool(true));
        assert_eq!(
            call_ok("is_not_null", vec![Value::Int(0)]),
            Value::Bool(true)
        );
    }

    #[test]
    fn now_timestamp_units() {
        let Value::Int(secs) = call_ok("now_timestamp", vec![]) else {
            panic!("int")
        };
        let Value::Int(ms) = call_ok("now_timestamp", vec![s("millisecond")]) else {
            panic!("int")
        };
        assert!(secs > 1_600_000_000 && (ms / 1000 - secs).abs() <= 1);
        assert!(call("now_timestamp", vec![s("fortnight")]).is_err());
    }
}
