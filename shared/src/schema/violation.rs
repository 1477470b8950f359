//! Violations: one entry per failed check, with the instance location and a short English
//! message (orchestrator.md §2.3, §6.5; runtime-gateway.md §3.8).

use std::fmt;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::ValidationError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::escape_pointer_token;

/// Longest rendering of an instance value quoted in a message. A longer value is not quoted at
/// all: a cut-off copy of a secret would escape exact-match scrubbing.
const MAX_QUOTED_CHARS: usize = 64;
/// Longest rendering of schema data (an `enum` list, a `const`) quoted in a message.
const MAX_SCHEMA_CHARS: usize = 200;

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    /// RFC 6901 pointer of the instance location, `""` for the root. For a missing property
    /// (`required`, `dependentRequired`, `dependencies`) and for a property that is not allowed
    /// (`additionalProperties`, `unevaluatedProperties`, `propertyNames`), the location of that
    /// property, so that each offending name has its own entry.
    pub pointer: String,
    /// The failing keyword (`required`, `type`, `enum`, …; `false` for a `false` schema).
    pub keyword: String,
    /// A short English explanation.
    pub message: String,
}

impl Violation {
    /// A violation from its parts.
    pub fn new(
        pointer: impl Into<String>,
        keyword: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Violation {
            pointer: pointer.into(),
            keyword: keyword.into(),
            message: message.into(),
        }
    }

    /// The violation for an agent output that is not a JSON object (orchestrator.md §6.5):
    /// `{"pointer":"","keyword":"type","message":"expected object, got <type>"}`.
    #[must_use]
    pub fn not_an_object(output: &Value) -> Self {
        Violation::new(
            "",
            "type",
            format!("expected object, got {}", json_type_name(output)),
        )
    }
}

/// `<pointer or "(root)">: <message>`, one entry of the Air-Lock error text.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// The Air-Lock text fragment (orchestrator.md §6.5): `<pointer or "(root)">: <message>` entries
/// joined by `; `.
#[must_use]
pub fn format_violations(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The JSON type of a value as used in messages. Every number is `number`: `integer` is a
/// schema type, not a kind of JSON value, and `expected integer, got number` reads well.
#[must_use]
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Turns one validator error into violations (several for a list of missing or extra
/// properties), appended to `out`. `schema` is the compiled document, used to recover details
/// the error does not carry (the order of a `type` list, the trigger of a dependency).
pub(super) fn collect(error: &ValidationError<'_>, schema: &Value, out: &mut Vec<Violation>) {
    let at = error.instance_path().as_str();
    let instance = error.instance().as_ref();
    let schema_path = error.schema_path().as_str();
    let keyword = error_keyword(error);
    let mut push =
        |pointer: String, message: String| out.push(Violation::new(pointer, keyword, message));
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            let pointer = child_pointer(at, &name);
            let message = match keyword {
                "dependentRequired" | "dependencies" => {
                    match dependency_trigger(schema, schema_path, instance, &name) {
                        Some(trigger) => format!(
                            "missing property \"{name}\", required when \"{trigger}\" is present"
                        ),
                        None => format!("missing property \"{name}\", required by {keyword}"),
                    }
                }
                _ => format!("missing required property \"{name}\""),
            };
            push(pointer, message);
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for name in unexpected {
                push(
                    child_pointer(at, name),
                    format!("property \"{name}\" is not allowed"),
                );
            }
        }
        ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for name in unexpected {
                push(
                    child_pointer(at, name),
                    format!("property \"{name}\" is not allowed (unevaluated)"),
                );
            }
        }
        ValidationErrorKind::AdditionalItems { limit } => {
            let len = instance.as_array().map_or(*limit, Vec::len);
            for index in *limit..len {
                push(
                    format!("{at}/{index}"),
                    format!(
                        "item is not allowed: at most {limit} {} allowed",
                        plural(*limit as u64, "item", "items")
                    ),
                );
            }
        }
        ValidationErrorKind::PropertyNames { error: inner } => {
            let name = inner
                .instance()
                .as_str()
                .map_or_else(|| inner.instance().to_string(), str::to_string);
            let mut nested = Vec::new();
            collect(inner, schema, &mut nested);
            let detail = nested
                .first()
                .map_or_else(|| inner.to_string(), |v| v.message.clone());
            push(
                child_pointer(at, &name),
                format!("invalid property name \"{name}\": {detail}"),
            );
        }
        kind => push(
            at.to_string(),
            message(kind, keyword, instance, schema, schema_path),
        ),
    }
}

/// The keyword to report. The validator names the error kind, which for `dependencies`,
/// `dependentRequired`, `minContains` and `maxContains` is the generic `required`/`contains`;
/// the schema path names the real keyword.
fn error_keyword(error: &ValidationError<'_>) -> &'static str {
    let last = error
        .schema_path()
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    match (error.kind(), last) {
        (ValidationErrorKind::Required { .. }, "dependencies") => "dependencies",
        (ValidationErrorKind::Required { .. }, "dependentRequired") => "dependentRequired",
        (ValidationErrorKind::Contains, "minContains") => "minContains",
        (ValidationErrorKind::Contains, "maxContains") => "maxContains",
        (ValidationErrorKind::FalseSchema, _) => "false",
        (ValidationErrorKind::Custom { .. }, _) => "custom",
        (kind, _) => static_keyword(kind),
    }
}

fn static_keyword(kind: &ValidationErrorKind) -> &'static str {
    match kind {
        ValidationErrorKind::AdditionalItems { .. } => "additionalItems",
        ValidationErrorKind::AdditionalProperties { .. } => "additionalProperties",
        ValidationErrorKind::AnyOf { .. } => "anyOf",
        ValidationErrorKind::BacktrackLimitExceeded { .. }
        | ValidationErrorKind::RegexEngineFailure { .. }
        | ValidationErrorKind::Pattern { .. } => "pattern",
        ValidationErrorKind::Constant { .. } => "const",
        ValidationErrorKind::Contains => "contains",
        ValidationErrorKind::ContentEncoding { .. } | ValidationErrorKind::FromUtf8 { .. } => {
            "contentEncoding"
        }
        ValidationErrorKind::ContentMediaType { .. } => "contentMediaType",
        ValidationErrorKind::Custom { .. } => "custom",
        ValidationErrorKind::Enum { .. } => "enum",
        ValidationErrorKind::ExclusiveMaximum { .. } => "exclusiveMaximum",
        ValidationErrorKind::ExclusiveMinimum { .. } => "exclusiveMinimum",
        ValidationErrorKind::FalseSchema => "false",
        ValidationErrorKind::Format { .. } => "format",
        ValidationErrorKind::MaxItems { .. } => "maxItems",
        ValidationErrorKind::Maximum { .. } => "maximum",
        ValidationErrorKind::MaxLength { .. } => "maxLength",
        ValidationErrorKind::MaxProperties { .. } => "maxProperties",
        ValidationErrorKind::MinItems { .. } => "minItems",
        ValidationErrorKind::Minimum { .. } => "minimum",
        ValidationErrorKind::MinLength { .. } => "minLength",
        ValidationErrorKind::MinProperties { .. } => "minProperties",
        ValidationErrorKind::MultipleOf { .. } => "multipleOf",
        ValidationErrorKind::Not { .. } => "not",
        ValidationErrorKind::OneOfMultipleValid { .. }
        | ValidationErrorKind::OneOfNotValid { .. } => "oneOf",
        ValidationErrorKind::PropertyNames { .. } => "propertyNames",
        ValidationErrorKind::Required { .. } => "required",
        ValidationErrorKind::Type { .. } => "type",
        ValidationErrorKind::UnevaluatedItems { .. } => "unevaluatedItems",
        ValidationErrorKind::UnevaluatedProperties { .. } => "unevaluatedProperties",
        ValidationErrorKind::UniqueItems => "uniqueItems",
        ValidationErrorKind::Referencing(_) => "$ref",
    }
}

/// The message of a violation located at the failing instance itself.
fn message(
    kind: &ValidationErrorKind,
    keyword: &str,
    instance: &Value,
    schema: &Value,
    schema_path: &str,
) -> String {
    let value = || quote(instance, MAX_QUOTED_CHARS).unwrap_or_else(|| "value".to_string());
    match kind {
        ValidationErrorKind::Type { kind } => {
            let expected = declared_types(schema, schema_path).unwrap_or_else(|| match kind {
                TypeKind::Single(t) => vec![t.to_string()],
                TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
            });
            format!(
                "expected {}, got {}",
                alternatives(&expected),
                json_type_name(instance)
            )
        }
        ValidationErrorKind::Enum { options } => match quote(options, MAX_SCHEMA_CHARS) {
            Some(list) => format!("{} is not one of {list}", value()),
            None => format!("{} is not one of the allowed values", value()),
        },
        ValidationErrorKind::Constant { expected_value } => {
            match quote(expected_value, MAX_SCHEMA_CHARS) {
                Some(expected) => format!("expected {expected}, got {}", value()),
                None => format!("{} is not the expected constant", value()),
            }
        }
        ValidationErrorKind::MinLength { limit } => count_message(
            "at least",
            *limit,
            "character",
            "characters",
            chars(instance),
        ),
        ValidationErrorKind::MaxLength { limit } => count_message(
            "at most",
            *limit,
            "character",
            "characters",
            chars(instance),
        ),
        ValidationErrorKind::MinItems { limit } => {
            count_message("at least", *limit, "item", "items", items(instance))
        }
        ValidationErrorKind::MaxItems { limit } => {
            count_message("at most", *limit, "item", "items", items(instance))
        }
        ValidationErrorKind::MinProperties { limit } => count_message(
            "at least",
            *limit,
            "property",
            "properties",
            properties(instance),
        ),
        ValidationErrorKind::MaxProperties { limit } => count_message(
            "at most",
            *limit,
            "property",
            "properties",
            properties(instance),
        ),
        ValidationErrorKind::Minimum { limit } => {
            format!("{instance} is less than the minimum {limit}")
        }
        ValidationErrorKind::Maximum { limit } => {
            format!("{instance} is greater than the maximum {limit}")
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("{instance} is not greater than the exclusive minimum {limit}")
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("{instance} is not less than the exclusive maximum {limit}")
        }
        ValidationErrorKind::MultipleOf { multiple_of } => {
            format!("{instance} is not a multiple of {multiple_of}")
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("{} does not match the pattern \"{pattern}\"", value())
        }
        ValidationErrorKind::BacktrackLimitExceeded { error } => {
            format!("the pattern could not be evaluated: {error}")
        }
        ValidationErrorKind::RegexEngineFailure { message } => {
            format!("the pattern could not be evaluated: {message}")
        }
        ValidationErrorKind::Format { format } => {
            format!("{} is not a valid \"{format}\"", value())
        }
        ValidationErrorKind::UniqueItems => "array items are not unique".to_string(),
        ValidationErrorKind::Contains => match keyword {
            "minContains" => "too few items match the \"contains\" schema".to_string(),
            "maxContains" => "too many items match the \"contains\" schema".to_string(),
            _ => "no item matches the \"contains\" schema".to_string(),
        },
        ValidationErrorKind::UnevaluatedItems { unexpected } => {
            format!(
                "items are not allowed (unevaluated): {}",
                unexpected.join(", ")
            )
        }
        ValidationErrorKind::Not { .. } => "value must not match the \"not\" schema".to_string(),
        ValidationErrorKind::AnyOf { .. } => {
            "value does not match any of the \"anyOf\" schemas".to_string()
        }
        ValidationErrorKind::OneOfNotValid { .. } => {
            "value does not match any of the \"oneOf\" schemas".to_string()
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            "value matches more than one of the \"oneOf\" schemas".to_string()
        }
        ValidationErrorKind::FalseSchema => {
            "no value is allowed here (the schema is false)".to_string()
        }
        ValidationErrorKind::ContentEncoding { content_encoding } => {
            format!("value is not valid \"{content_encoding}\" content")
        }
        ValidationErrorKind::FromUtf8 { .. } => "decoded content is not valid UTF-8".to_string(),
        ValidationErrorKind::ContentMediaType { content_media_type } => {
            format!("value is not valid \"{content_media_type}\" content")
        }
        ValidationErrorKind::Referencing(error) => format!("unresolvable reference: {error}"),
        ValidationErrorKind::Custom { message, .. } => message.clone(),
        // Handled with their own locations by `collect`; kept total for safety.
        ValidationErrorKind::Required { property } => {
            format!("missing required property {property}")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!("properties are not allowed: {}", unexpected.join(", "))
        }
        ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            format!(
                "properties are not allowed (unevaluated): {}",
                unexpected.join(", ")
            )
        }
        ValidationErrorKind::AdditionalItems { limit } => {
            format!("at most {limit} items are allowed")
        }
        ValidationErrorKind::PropertyNames { error } => format!("invalid property name: {error}"),
    }
}

/// `expected at least 3 characters, got 1`: sizes, never the value itself.
fn count_message(bound: &str, limit: u64, one: &str, many: &str, actual: Option<usize>) -> String {
    let expected = format!("expected {bound} {limit} {}", plural(limit, one, many));
    match actual {
        Some(n) => format!("{expected}, got {n}"),
        None => expected,
    }
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Length as JSON Schema counts it: in Unicode code points.
fn chars(instance: &Value) -> Option<usize> {
    instance.as_str().map(|s| s.chars().count())
}

fn items(instance: &Value) -> Option<usize> {
    instance.as_array().map(Vec::len)
}

fn properties(instance: &Value) -> Option<usize> {
    instance.as_object().map(serde_json::Map::len)
}

/// `a`, `a or b`, `a, b or c`.
fn alternatives(names: &[String]) -> String {
    match names {
        [] => "nothing".to_string(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Compact JSON of `value`, or `None` when longer than `max` characters.
fn quote(value: &Value, max: usize) -> Option<String> {
    let text = value.to_string();
    (text.chars().count() <= max).then_some(text)
}

/// The `type` list as written in the schema, so that messages keep the author's order.
fn declared_types(schema: &Value, schema_path: &str) -> Option<Vec<String>> {
    match schema.pointer(schema_path)? {
        Value::String(single) => Some(vec![single.clone()]),
        Value::Array(list) => list
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// The property whose presence made `missing` required: the first key of the `dependencies` /
/// `dependentRequired` map at `schema_path` that the instance has and whose list names `missing`.
fn dependency_trigger(
    schema: &Value,
    schema_path: &str,
    instance: &Value,
    missing: &str,
) -> Option<String> {
    let map = schema.pointer(schema_path)?.as_object()?;
    let present = instance.as_object()?;
    map.iter()
        .find(|(trigger, needs)| {
            present.contains_key(trigger.as_str())
                && needs
                    .as_array()
                    .is_some_and(|names| names.iter().any(|n| n.as_str() == Some(missing)))
        })
        .map(|(trigger, _)| trigger.clone())
}

fn child_pointer(parent: &str, name: &str) -> String {
    format!("{parent}/{}", escape_pointer_token(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_names() {
        assert_eq!(json_type_name(&json!({})), "object");
        assert_eq!(json_type_name(&json!([])), "array");
        assert_eq!(json_type_name(&json!("")), "string");
        assert_eq!(json_type_name(&json!(1)), "number");
        assert_eq!(json_type_name(&json!(1.5)), "number");
        assert_eq!(json_type_name(&json!(false)), "boolean");
        assert_eq!(json_type_name(&json!(null)), "null");
    }

    #[test]
    fn airlock_fragment_format() {
        let violations = [
            Violation::new(
                "/priority",
                "required",
                "missing required property \"priority\"",
            ),
            Violation::new("", "type", "expected object, got array"),
        ];
        assert_eq!(
            format_violations(&violations),
            "/priority: missing required property \"priority\"; (root): expected object, got array"
        );
        assert_eq!(format_violations(&[]), "");
    }

    #[test]
    fn non_object_output() {
        let v = Violation::not_an_object(&json!([1]));
        assert_eq!(v, Violation::new("", "type", "expected object, got array"));
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            json!({"pointer": "", "keyword": "type", "message": "expected object, got array"})
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(alternatives(&["string".into()]), "string");
        assert_eq!(
            alternatives(&["string".into(), "null".into()]),
            "string or null"
        );
        assert_eq!(
            alternatives(&["a".into(), "b".into(), "c".into()]),
            "a, b or c"
        );
        assert_eq!(
            quote(&json!("x".repeat(62)), 64),
            Some(format!("\"{}\"", "x".repeat(62)))
        );
        assert_eq!(quote(&json!("x".repeat(63)), 64), None);
        assert_eq!(child_pointer("/a", "b/c~d"), "/a/b~1c~0d");
        assert_eq!(
            count_message("at least", 1, "item", "items", Some(0)),
            "expected at least 1 item, got 0"
        );
    }
}
