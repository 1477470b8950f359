//! ktsu conventions layered on JSON Schema: `secret` params (config.md §4.1, orchestrator.md
//! §2.5) and reserved `ktsu_*` output fields (config.md §2.4, orchestrator.md §6.4–§6.5).

use serde_json::Value;

/// The reserved output fields an agent may emit; the orchestrator extracts them before the
/// Air-Lock (orchestrator.md §6.4).
pub const RESERVED_FIELDS: [&str; 8] = [
    "ktsu_injection_attempt",
    "ktsu_untrusted_content",
    "ktsu_low_quality",
    "ktsu_needs_human",
    "ktsu_confidence",
    "ktsu_skip_reason",
    "ktsu_flags",
    "ktsu_rationale",
];

/// The prefix of reserved output fields. Every top-level key with it is stripped from an agent
/// output before the Air-Lock, known or not.
pub const RESERVED_PREFIX: &str = "ktsu_";

/// The text that replaces a secret value.
pub const REDACTED: &str = "[REDACTED]";

/// Whether `name` is one of the 8 reserved output fields.
#[must_use]
pub fn is_reserved_field(name: &str) -> bool {
    RESERVED_FIELDS.contains(&name)
}

/// Names of the top-level `properties.<name>` declared `secret: true`, in schema order.
///
/// Only the top level counts: config.md §4.1 recognises `secret` at `properties.<name>.secret`
/// of a params schema, and anything else is `ignored_field`. Only the boolean `true` marks a
/// secret.
#[must_use]
pub fn secret_properties(schema: &Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .filter(|(_, sub)| sub.get("secret") == Some(&Value::Bool(true)))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces the value of every present secret param with `"[REDACTED]"` (the run `payload` of
/// orchestrator.md §2.5). Absent secrets stay absent; a non-object `params` is left alone.
pub fn redact_secret_params(schema: &Value, params: &mut Value) {
    let Some(object) = params.as_object_mut() else {
        return;
    };
    for name in secret_properties(schema) {
        if let Some(value) = object.get_mut(&name) {
            *value = Value::String(REDACTED.to_string());
        }
    }
}

/// Air-Lock schema (a) of orchestrator.md §6.5: a copy of the agent's `output.schema` with
/// every top-level `required` entry and `properties` key that starts with `ktsu_` removed,
/// because those fields are extracted from the output before the Air-Lock runs.
///
/// A `required` list emptied this way is dropped, since draft-04 forbids `required: []`.
/// Nested schemas are untouched, like nested output keys.
#[must_use]
pub fn airlock_agent_schema(agent_output_schema: &Value) -> Value {
    let mut schema = agent_output_schema.clone();
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    if let Some(Value::Array(required)) = object.get_mut("required") {
        let before = required.len();
        required.retain(|name| {
            !name
                .as_str()
                .is_some_and(|n| n.starts_with(RESERVED_PREFIX))
        });
        if required.is_empty() && before > 0 {
            object.remove("required");
        }
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.retain(|name, _| !name.starts_with(RESERVED_PREFIX));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CompiledSchema;
    use serde_json::json;

    #[test]
    fn reserved_fields_are_eight_distinct_ktsu_names() {
        let mut names = RESERVED_FIELDS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 8);
        assert!(RESERVED_FIELDS
            .iter()
            .all(|n| n.starts_with(RESERVED_PREFIX)));
        assert!(is_reserved_field("ktsu_confidence"));
        assert!(is_reserved_field("ktsu_rationale"));
        assert!(!is_reserved_field("ktsu_other"));
        assert!(!is_reserved_field("confidence"));
    }

    #[test]
    fn secret_properties_are_top_level_true_only() {
        let schema = json!({"properties": {
            "source": {"type": "string"},
            "api_key": {"type": "string", "secret": true},
            "not_really": {"secret": "true"},
            "off": {"secret": false},
            "nested": {"properties": {"inner": {"secret": true}}},
            "token": {"secret": true},
        }});
        assert_eq!(secret_properties(&schema), vec!["api_key", "token"]);
        assert!(secret_properties(&json!({"type": "object"})).is_empty());
        assert!(secret_properties(&json!(true)).is_empty());
    }

    #[test]
    fn redaction_replaces_present_secret_values() {
        let schema = json!({"properties": {
            "api_key": {"type": "string", "secret": true},
            "token": {"secret": true},
            "region": {"type": "string"},
        }});
        let mut params = json!({"api_key": "sk-123", "region": "us", "extra": "x"});
        redact_secret_params(&schema, &mut params);
        assert_eq!(
            params,
            json!({"api_key": "[REDACTED]", "region": "us", "extra": "x"})
        );
        let mut structured = json!({"api_key": {"k": "v"}});
        redact_secret_params(&schema, &mut structured);
        assert_eq!(structured, json!({"api_key": "[REDACTED]"}));
        let mut not_object = json!(["sk-123"]);
        redact_secret_params(&schema, &mut not_object);
        assert_eq!(not_object, json!(["sk-123"]));
    }

    #[test]
    fn airlock_schema_drops_reserved_top_level_names() {
        let schema = json!({
            "type": "object",
            "required": ["category", "ktsu_confidence", "summary", "ktsu_made_up"],
            "properties": {
                "category": {"enum": ["billing", "technical"]},
                "ktsu_confidence": {"type": "number"},
                "ktsu_made_up": {"type": "string"},
                "summary": {"type": "object", "required": ["ktsu_nested"], "properties": {"ktsu_nested": {}}},
            },
            "additionalProperties": false,
        });
        let airlock = airlock_agent_schema(&schema);
        assert_eq!(
            airlock,
            json!({
                "type": "object",
                "required": ["category", "summary"],
                "properties": {
                    "category": {"enum": ["billing", "technical"]},
                    "summary": {"type": "object", "required": ["ktsu_nested"], "properties": {"ktsu_nested": {}}},
                },
                "additionalProperties": false,
            })
        );
        // The original is untouched.
        assert_eq!(schema["required"].as_array().map(Vec::len), Some(4));
        // An output with its reserved fields stripped passes the Air-Lock schema, not the original.
        let stripped = json!({"category": "billing", "summary": {"ktsu_nested": 1}});
        assert!(CompiledSchema::compile(&airlock)
            .unwrap()
            .is_valid(&stripped));
        assert!(!CompiledSchema::compile(&schema)
            .unwrap()
            .is_valid(&stripped));
    }

    #[test]
    fn airlock_schema_drops_an_emptied_required_list() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "required": ["ktsu_confidence"],
            "properties": {"ktsu_confidence": {"type": "number"}},
        });
        let airlock = airlock_agent_schema(&schema);
        assert_eq!(
            airlock,
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "properties": {}})
        );
        assert!(CompiledSchema::compile(&airlock).is_ok());
        assert_eq!(airlock_agent_schema(&json!(true)), json!(true));
    }
}
