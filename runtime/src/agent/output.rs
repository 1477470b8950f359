//! Output extraction, validation and correction messages (runtime-gateway.md §3.8).
//!
//! Extraction from the trimmed reply text: the whole text when it is JSON (an object, or
//! invalid `not_object`); else the first fenced block whose body is a JSON object; else the
//! first balanced `{…}` span that parses as an object; else invalid `no_json_object`.

use super::texts;
use ktsu_shared::schema::{CompiledSchema, Violation};
use ktsu_shared::wire::gateway::StopReason;
use serde_json::{json, Map, Value};

/// Violations listed in a correction message; the rest are counted.
const LISTED_VIOLATIONS: usize = 20;
/// Upper bound of bytes examined by the balanced-brace scan, so that a pathological reply (for
/// example thousands of unmatched `{`) costs linear rather than quadratic time.
const SCAN_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Why an answer is not acceptable (logs, `error_detail.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    Empty,
    NotObject,
    NoJsonObject,
    /// Extraction failed and the model stopped at the token limit.
    Truncated,
    Schema,
    /// Tool calls while tools were withheld.
    ToolsUnavailable,
}

impl InvalidKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::Empty => "empty",
            InvalidKind::NotObject => "not_object",
            InvalidKind::NoJsonObject => "no_json_object",
            InvalidKind::Truncated => "truncated",
            InvalidKind::Schema => "schema",
            InvalidKind::ToolsUnavailable => "tools_unavailable",
        }
    }
}

/// Why extraction found no candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractionFailure {
    Empty,
    NotObject,
    NoJsonObject,
}

impl ExtractionFailure {
    /// The detail of T3.
    fn detail(self) -> &'static str {
        match self {
            ExtractionFailure::Empty => texts::EMPTY_REPLY,
            ExtractionFailure::NotObject => texts::NOT_AN_OBJECT,
            ExtractionFailure::NoJsonObject => texts::NO_JSON_OBJECT,
        }
    }

    /// The reason of an `output_invalid` error.
    fn reason(self) -> &'static str {
        match self {
            ExtractionFailure::Empty => "empty reply",
            ExtractionFailure::NotObject => "top-level JSON value is not an object",
            ExtractionFailure::NoJsonObject => "reply contains no JSON object",
        }
    }

    fn kind(self) -> InvalidKind {
        match self {
            ExtractionFailure::Empty => InvalidKind::Empty,
            ExtractionFailure::NotObject => InvalidKind::NotObject,
            ExtractionFailure::NoJsonObject => InvalidKind::NoJsonObject,
        }
    }
}

/// A text answer that failed extraction or validation.
#[derive(Debug, Clone, PartialEq)]
pub enum InvalidAnswer {
    Extraction {
        failure: ExtractionFailure,
        truncated: bool,
    },
    Schema(Vec<Violation>),
}

impl InvalidAnswer {
    pub fn kind(&self) -> InvalidKind {
        match self {
            InvalidAnswer::Extraction {
                truncated: true, ..
            } => InvalidKind::Truncated,
            InvalidAnswer::Extraction { failure, .. } => failure.kind(),
            InvalidAnswer::Schema(_) => InvalidKind::Schema,
        }
    }

    /// The user correction message: T5, T3 with its detail, or T4 with the violations.
    pub fn correction(&self) -> String {
        match self {
            InvalidAnswer::Extraction {
                truncated: true, ..
            } => texts::TRUNCATED.to_owned(),
            InvalidAnswer::Extraction { failure, .. } => texts::invalid_json(failure.detail()),
            InvalidAnswer::Schema(violations) => {
                let mut text = texts::SCHEMA_VIOLATIONS.to_owned();
                for violation in violations.iter().take(LISTED_VIOLATIONS) {
                    let at = if violation.pointer.is_empty() {
                        "/"
                    } else {
                        &violation.pointer
                    };
                    text.push_str(&format!("\n- {at}: {}", violation.message));
                }
                if violations.len() > LISTED_VIOLATIONS {
                    text.push_str(&format!(
                        "\n- … and {} more",
                        violations.len() - LISTED_VIOLATIONS
                    ));
                }
                text
            }
        }
    }

    /// The reason in `output_invalid: <reason>`.
    pub fn reason(&self) -> String {
        match self {
            InvalidAnswer::Extraction { failure, .. } => failure.reason().to_owned(),
            InvalidAnswer::Schema(violations) => {
                let count = violations.len();
                let noun = if count == 1 {
                    "violation"
                } else {
                    "violations"
                };
                match violations.first() {
                    Some(first) => {
                        let at = if first.pointer.is_empty() {
                            "/"
                        } else {
                            &first.pointer
                        };
                        format!("{count} schema {noun}: {at}: {}", first.message)
                    }
                    None => format!("{count} schema {noun}"),
                }
            }
        }
    }

    /// `error_detail` of `output_invalid` / `reflect_output_invalid`: `kind` and `violations`.
    pub fn detail(&self) -> Map<String, Value> {
        let violations: Vec<Value> = match self {
            InvalidAnswer::Schema(violations) => violations
                .iter()
                .map(|v| json!({"pointer": v.pointer, "message": v.message}))
                .collect(),
            InvalidAnswer::Extraction { .. } => Vec::new(),
        };
        let mut detail = Map::new();
        detail.insert("kind".into(), self.kind().as_str().into());
        detail.insert("violations".into(), Value::Array(violations));
        detail
    }

    pub fn violation_count(&self) -> usize {
        match self {
            InvalidAnswer::Schema(violations) => violations.len(),
            InvalidAnswer::Extraction { .. } => 0,
        }
    }
}

/// Extracts and validates the answer in `text`.
pub fn evaluate(
    text: &str,
    stop_reason: Option<StopReason>,
    schema: Option<&CompiledSchema>,
) -> Result<Value, InvalidAnswer> {
    let candidate = extract(text).map_err(|failure| InvalidAnswer::Extraction {
        failure,
        truncated: stop_reason == Some(StopReason::MaxTokens),
    })?;
    if let Some(schema) = schema {
        let violations = schema.violations(&candidate);
        if !violations.is_empty() {
            return Err(InvalidAnswer::Schema(violations));
        }
    }
    Ok(candidate)
}

/// The candidate JSON object of a reply.
pub fn extract(text: &str) -> Result<Value, ExtractionFailure> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ExtractionFailure::Empty);
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return if value.is_object() {
            Ok(value)
        } else {
            Err(ExtractionFailure::NotObject)
        };
    }
    if let Some(object) = fenced_object(text) {
        return Ok(object);
    }
    balanced_object(text).ok_or(ExtractionFailure::NoJsonObject)
}

/// The first fenced block (a line starting with three backticks, up to a line that is exactly
/// three backticks or the end) whose trimmed body parses as a JSON object.
fn fenced_object(text: &str) -> Option<Value> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("```") {
            continue;
        }
        let mut body = String::new();
        for inner in lines.by_ref() {
            if inner.trim() == "```" {
                break;
            }
            body.push_str(inner);
            body.push('\n');
        }
        if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(body.trim()) {
            return Some(value);
        }
    }
    None
}

/// The first `{…}` span, balanced outside JSON strings, that parses as an object.
fn balanced_object(text: &str) -> Option<Value> {
    let bytes = text.as_bytes();
    let mut budget = SCAN_BUDGET_BYTES;
    for (start, _) in text.match_indices('{') {
        let end = balanced_end(&bytes[start..], &mut budget)?;
        // Parsing costs about as much as scanning: it draws on the same budget.
        budget = budget.checked_sub(end)?;
        if let Ok(value @ Value::Object(_)) =
            serde_json::from_str::<Value>(&text[start..start + end])
        {
            return Some(value);
        }
    }
    None
}

/// The length of the balanced span at the start of `bytes` (which starts with `{`); `None` when
/// the scan budget is spent. An unbalanced span yields `Some(len)` of the whole rest, which then
/// fails to parse.
fn balanced_end(bytes: &[u8], budget: &mut usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        *budget = budget.checked_sub(1)?;
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    Some(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(value: Value) -> CompiledSchema {
        CompiledSchema::compile(&value).unwrap()
    }

    #[test]
    fn whole_text_json() {
        assert_eq!(extract("  {\"a\": 1} \n").unwrap(), json!({"a": 1}));
        for not_object in ["null", "[1]", "3", "\"text\"", "true"] {
            assert_eq!(
                extract(not_object),
                Err(ExtractionFailure::NotObject),
                "{not_object}"
            );
        }
        assert_eq!(extract(" \n\t"), Err(ExtractionFailure::Empty));
    }

    #[test]
    fn fenced_blocks() {
        let text = "Here you go:\n```json\n{\"a\": 1}\n```\nand more";
        assert_eq!(extract(text).unwrap(), json!({"a": 1}));
        let first_valid = "```\nnot json\n```\n```json\n{\"b\": 2}\n```";
        assert_eq!(extract(first_valid).unwrap(), json!({"b": 2}));
        let unterminated = "Answer:\n```json\n{\"c\": 3}";
        assert_eq!(extract(unterminated).unwrap(), json!({"c": 3}));
        let array_fence = "```json\n[1, 2]\n```\ntrailing {\"d\": 4}";
        assert_eq!(extract(array_fence).unwrap(), json!({"d": 4}));
    }

    #[test]
    fn first_balanced_object() {
        let text =
            "I think {not json} but then {\"a\": {\"b\": \"}{\"}, \"q\": \"say \\\"}\\\"\"} ok";
        assert_eq!(
            extract(text).unwrap(),
            json!({"a": {"b": "}{"}, "q": "say \"}\""})
        );
        assert_eq!(
            extract("no braces here"),
            Err(ExtractionFailure::NoJsonObject)
        );
        assert_eq!(extract("{{{{"), Err(ExtractionFailure::NoJsonObject));
        assert_eq!(extract("x {\"a\":1"), Err(ExtractionFailure::NoJsonObject));
    }

    #[test]
    fn pathological_replies_stay_linear() {
        let text = "{".repeat(200_000);
        let started = std::time::Instant::now();
        assert_eq!(extract(&text), Err(ExtractionFailure::NoJsonObject));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn validation_and_corrections() {
        let schema = schema(json!({
            "type": "object", "required": ["category"],
            "properties": {"category": {"enum": ["a", "b"]}, "n": {"type": "integer"}}
        }));
        assert_eq!(
            evaluate("{\"category\": \"a\"}", None, Some(&schema)).unwrap(),
            json!({"category": "a"})
        );
        let invalid =
            evaluate("{\"category\": \"x\", \"n\": \"1\"}", None, Some(&schema)).unwrap_err();
        assert_eq!(invalid.kind(), InvalidKind::Schema);
        assert_eq!(invalid.violation_count(), 2);
        let correction = invalid.correction();
        assert!(
            correction.starts_with(texts::SCHEMA_VIOLATIONS),
            "{correction}"
        );
        assert!(correction.contains("\n- /category: "), "{correction}");
        assert!(correction.contains("\n- /n: "), "{correction}");
        assert!(
            invalid
                .reason()
                .starts_with("2 schema violations: /category: "),
            "{}",
            invalid.reason()
        );
        assert_eq!(invalid.detail()["kind"], "schema");
        assert_eq!(invalid.detail()["violations"][0]["pointer"], "/category");

        let missing = evaluate("{}", None, Some(&schema)).unwrap_err();
        assert_eq!(
            missing.reason(),
            "1 schema violation: /category: missing required property \"category\""
        );
        let root = evaluate(
            "{}",
            None,
            Some(&self::schema(json!({"type": "object", "minProperties": 1}))),
        )
        .unwrap_err();
        assert!(
            root.correction().contains("\n- /: "),
            "{}",
            root.correction()
        );
    }

    #[test]
    fn extraction_corrections_and_truncation() {
        let empty = evaluate("", Some(StopReason::EndTurn), None).unwrap_err();
        assert_eq!(empty.kind(), InvalidKind::Empty);
        assert_eq!(
            empty.correction(),
            texts::invalid_json("the reply was empty")
        );
        assert_eq!(empty.reason(), "empty reply");
        let prose = evaluate("Sure!", None, None).unwrap_err();
        assert_eq!(
            prose.correction(),
            texts::invalid_json("no JSON object found")
        );
        assert_eq!(prose.reason(), "reply contains no JSON object");
        let null = evaluate("null", None, None).unwrap_err();
        assert_eq!(null.kind(), InvalidKind::NotObject);
        assert_eq!(null.reason(), "top-level JSON value is not an object");
        let cut = evaluate("{\"a\": \"long", Some(StopReason::MaxTokens), None).unwrap_err();
        assert_eq!(cut.kind(), InvalidKind::Truncated);
        assert_eq!(cut.correction(), texts::TRUNCATED);
        assert_eq!(cut.detail()["kind"], "truncated");
    }

    #[test]
    fn long_violation_lists_are_cut() {
        let properties: Map<String, Value> = (0..25)
            .map(|i| (format!("p{i:02}"), json!({"type": "string"})))
            .collect();
        let schema = schema(json!({"type": "object", "properties": properties}));
        let answer: Map<String, Value> = (0..25).map(|i| (format!("p{i:02}"), json!(i))).collect();
        let invalid =
            evaluate(&Value::Object(answer).to_string(), None, Some(&schema)).unwrap_err();
        let correction = invalid.correction();
        assert_eq!(correction.lines().count(), 1 + 20 + 1);
        assert!(correction.ends_with("\n- … and 5 more"), "{correction}");
    }
}
