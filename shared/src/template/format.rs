//! The text form of a value (§3.6) and truthiness (§3.7).

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// 2^53: below it every integer is exactly representable as an `f64`.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Whether a value counts as true: `false`, null, `""`, `[]` and `{}` are false; everything
/// else, including every number (0 too), is true.
pub fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(_) => true,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Formats a value as text: strings as is, null as nothing, numbers as described in
/// [`write_number`], arrays and objects as compact JSON with object keys sorted by code point
/// (so the text never depends on key order) and non-ASCII characters kept literally.
pub fn format_text(v: &Value) -> String {
    let mut out = String::new();
    write_text(&mut out, v);
    out
}

/// Appends the text form of `v` to `out`.
pub(super) fn write_text(out: &mut String, v: &Value) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        other => write_json(out, other),
    }
}

/// Compact JSON with sorted keys; numbers use the same form as in text.
fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, key);
                out.push(':');
                write_json(out, value);
            }
            out.push('}');
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    // serde_json escapes only `"`, `\` and control characters, keeping non-ASCII literal.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// An integral number below 2^53 in magnitude is written as an integer (`42`, also for
/// `42.0`); an integer stored as such is always written exactly; any other float uses the
/// shortest form that round-trips (`0.5`, `1e-7`, `1e300`), without a redundant `.0`.
fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        if f.fract() == 0.0 && f.abs() < MAX_EXACT_INT {
            // Exact: the value is an integer well inside the i64 range.
            let _ = write!(out, "{}", f as i64);
        } else {
            // serde_json prints the shortest round-trip digits; drop the decorations some of
            // its versions add (`1e+20`, `9007199254740992.0`) so the text stays minimal and
            // stable.
            let text = n.to_string().replace("e+", "e");
            out.push_str(text.strip_suffix(".0").unwrap_or(&text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars() {
        assert_eq!(format_text(&json!("a \"b\" é")), "a \"b\" é");
        assert_eq!(format_text(&json!(null)), "");
        assert_eq!(format_text(&json!(true)), "true");
        assert_eq!(format_text(&json!(false)), "false");
    }

    #[test]
    fn numbers() {
        let cases = [
            (json!(42), "42"),
            (json!(42.0), "42"),
            (json!(-7.0), "-7"),
            (json!(-0.0), "0"),
            (json!(0.5), "0.5"),
            (json!(1e-7), "1e-7"),
            (json!(-2.5), "-2.5"),
            (json!(0.1), "0.1"),
            (json!(9007199254740991.0), "9007199254740991"),
            (json!(9007199254740992.0), "9007199254740992"),
            (json!(1e20), "1e20"),
            (json!(1e300), "1e300"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(i64::MIN), "-9223372036854775808"),
        ];
        for (v, text) in cases {
            assert_eq!(format_text(&v), text, "{v:?}");
            // Whatever the form, it reads back as the same number.
            let back: Value = serde_json::from_str(text).unwrap();
            assert_eq!(back.as_f64(), v.as_f64(), "{text}");
        }
    }

    #[test]
    fn compact_json_with_sorted_keys() {
        let v = json!({"b": [1, 2.0, "x\n", null], "a": {"é": true, "Z": {}}, "ä": []});
        assert_eq!(
            format_text(&v),
            r#"{"a":{"Z":{},"é":true},"b":[1,2,"x\n",null],"ä":[]}"#
        );
        assert_eq!(format_text(&json!(["x", "y"])), r#"["x","y"]"#);
        assert_eq!(format_text(&json!([])), "[]");
    }

    #[test]
    fn truthiness() {
        for v in [json!(false), json!(null), json!(""), json!([]), json!({})] {
            assert!(!is_truthy(&v), "{v}");
        }
        for v in [
            json!(true),
            json!(0),
            json!(0.0),
            json!(-1),
            json!(" "),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(is_truthy(&v), "{v}");
        }
    }
}
