//! Values whose string leaves are templates: step params, webhook bodies and headers,
//! sub-workflow input, `output.map`.

use serde_json::{Map, Number, Value};

use super::context::Context;
use super::error::{EvalError, TemplateError};
use super::string_template::Template;

/// A YAML/JSON value whose string leaves are compiled templates. Keys are never templated.
#[derive(Debug, Clone)]
pub enum TValue {
    Null,
    Bool(bool),
    Number(Number),
    Str(Template),
    Seq(Vec<TValue>),
    Map(Vec<(String, TValue)>),
}

/// What to do with mapping entries that evaluate to null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullPolicy {
    /// Keep every entry (`output.map`).
    Keep,
    /// In every mapping, nested ones included, omit an entry whose value is a whole
    /// placeholder that yields null, so that the receiver's defaults apply (§3.5). Null
    /// elements of sequences are always kept.
    OmitNullEntries,
}

impl TValue {
    /// Calls `f` for every template leaf, in document order.
    pub fn for_each_template<'a>(&'a self, f: &mut dyn FnMut(&'a Template)) {
        match self {
            TValue::Str(t) => f(t),
            TValue::Seq(items) => items.iter().for_each(|i| i.for_each_template(f)),
            TValue::Map(entries) => entries.iter().for_each(|(_, v)| v.for_each_template(f)),
            TValue::Null | TValue::Bool(_) | TValue::Number(_) => {}
        }
    }

    /// Compiles every string leaf. On failure, returns every failing leaf with its path
    /// (`a.b[2]`; the empty string for a top-level string).
    pub fn compile(v: &Value) -> Result<TValue, Vec<(String, TemplateError)>> {
        let mut errors = Vec::new();
        let value = compile_at(v, &mut String::new(), &mut errors);
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(errors)
        }
    }

    /// Evaluates every template leaf (typed, §3.5) and rebuilds the value.
    pub fn eval(&self, ctx: &Context, nulls: NullPolicy) -> Result<Value, EvalError> {
        Ok(match self {
            TValue::Null => Value::Null,
            TValue::Bool(b) => Value::Bool(*b),
            TValue::Number(n) => Value::Number(n.clone()),
            TValue::Str(t) => t.eval(ctx)?,
            TValue::Seq(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.eval(ctx, nulls))
                    .collect::<Result<_, _>>()?,
            ),
            TValue::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (key, value) in entries {
                    let result = value.eval(ctx, nulls)?;
                    let omit = nulls == NullPolicy::OmitNullEntries
                        && result.is_null()
                        && value.is_whole();
                    if !omit {
                        map.insert(key.clone(), result);
                    }
                }
                Value::Object(map)
            }
        })
    }

    fn is_whole(&self) -> bool {
        matches!(self, TValue::Str(t) if t.whole().is_some())
    }
}

/// Compiles `v`, found at `path`; the path buffer is restored before returning.
fn compile_at(v: &Value, path: &mut String, errors: &mut Vec<(String, TemplateError)>) -> TValue {
    match v {
        Value::Null => TValue::Null,
        Value::Bool(b) => TValue::Bool(*b),
        Value::Number(n) => TValue::Number(n.clone()),
        Value::String(s) => match Template::parse(s) {
            Ok(t) => TValue::Str(t),
            Err(e) => {
                errors.push((path.clone(), e));
                TValue::Null
            }
        },
        Value::Array(items) => TValue::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let value = compile_at(item, path, errors);
                    path.truncate(len);
                    value
                })
                .collect(),
        ),
        Value::Object(map) => TValue::Map(
            map.iter()
                .map(|(key, item)| {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    let value = compile_at(item, path, errors);
                    path.truncate(len);
                    (key.clone(), value)
                })
                .collect(),
        ),
    }
}
