//! Direct conversions between `serde_json::Value` and jmespath's `Variable`.
//!
//! jmespath.rs converts through serde's data model; these walk the trees directly, keep every
//! number exactly as it is (integer or float), and run once per context rather than once per
//! expression.

use std::collections::BTreeMap;

use jmespath::{Rcvar, Variable};
use serde_json::{Map, Value};

/// Converts a JSON value for the JMESPath interpreter.
pub(super) fn to_variable(value: &Value) -> Rcvar {
    Rcvar::new(match value {
        Value::Null => Variable::Null,
        Value::Bool(b) => Variable::Bool(*b),
        Value::Number(n) => Variable::Number(n.clone()),
        Value::String(s) => Variable::String(s.clone()),
        Value::Array(items) => Variable::Array(items.iter().map(to_variable).collect()),
        Value::Object(map) => Variable::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_variable(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    })
}

/// A result that holds an `&expression`, which has no JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExprefResult;

/// Converts an interpreter result back to JSON. Objects come out with sorted keys, as
/// jmespath.rs stores them in a `BTreeMap`.
pub(super) fn to_value(var: &Variable) -> Result<Value, ExprefResult> {
    Ok(match var {
        Variable::Null => Value::Null,
        Variable::Bool(b) => Value::Bool(*b),
        Variable::Number(n) => Value::Number(n.clone()),
        Variable::String(s) => Value::String(s.clone()),
        Variable::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| to_value(v))
                .collect::<Result<_, _>>()?,
        ),
        Variable::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), to_value(v)?)))
                .collect::<Result<Map<_, _>, _>>()?,
        ),
        Variable::Expref(_) => return Err(ExprefResult),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_keeps_number_kinds() {
        let v = json!({"a": [1, -2, 2.5, 1.0, u64::MAX, null, true, "é"], "b": {"c": {}}});
        let back = to_value(&to_variable(&v)).unwrap();
        assert_eq!(back, v);
        assert!(back["a"][3].is_f64());
        assert!(back["a"][4].is_u64());
    }

    #[test]
    fn exprefs_have_no_json_form() {
        let var = Variable::Expref(jmespath::parse("a").unwrap());
        assert_eq!(to_value(&var), Err(ExprefResult));
    }
}
