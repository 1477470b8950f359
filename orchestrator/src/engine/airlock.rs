//! The Air-Lock (orchestrator.md §6.5, DECISIONS O7): full JSON Schema validation of a step's
//! output against the agent's schema (reserved fields removed) and the step's own schema; every
//! violation listed with its pointer; the schemas kept on the failed record.

use ktsu_shared::schema::{CompiledSchema, Violation};
use serde_json::{json, Value};

/// The schemas a step output must satisfy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Schemas<'a> {
    /// (a) the agent's `output.schema` with `ktsu_*` names removed (agent steps and items).
    pub agent: Option<&'a CompiledSchema>,
    /// (b) the step's `output.schema`.
    pub step: Option<&'a CompiledSchema>,
}

/// A failed check: the record's `airlock` object and the error text.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub airlock: Value,
    pub error: String,
}

/// Checks `output`; `subject` names it in the error text (`step "classify"` or
/// `step "score" item 2`).
pub fn check(output: &Value, schemas: Schemas<'_>, subject: &str) -> Result<(), Rejection> {
    let mut violations: Vec<(&str, Violation)> = Vec::new();
    if let Some(agent) = schemas.agent {
        if !output.is_object() {
            violations.push(("agent", Violation::not_an_object(output)));
        } else {
            violations.extend(agent.violations(output).into_iter().map(|v| ("agent", v)));
        }
    }
    if let Some(step) = schemas.step {
        violations.extend(step.violations(output).into_iter().map(|v| ("step", v)));
    }
    if violations.is_empty() {
        return Ok(());
    }
    let mut schema_map = serde_json::Map::new();
    if let Some(a) = schemas.agent {
        schema_map.insert("agent".into(), a.schema().clone());
    }
    if let Some(s) = schemas.step {
        schema_map.insert("step".into(), s.schema().clone());
    }
    let listed: Vec<Value> = violations
        .iter()
        .map(|(schema, v)| {
            json!({"schema": schema, "pointer": v.pointer, "keyword": v.keyword, "message": v.message})
        })
        .collect();
    let n = violations.len();
    let detail = violations
        .iter()
        .map(|(_, v)| v.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    Err(Rejection {
        airlock: json!({"schemas": schema_map, "violations": listed}),
        error: format!(
            "air-lock: output of {subject} failed schema validation ({n} violation{}): {detail}",
            if n == 1 { "" } else { "s" }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktsu_shared::schema::airlock_agent_schema;

    fn compiled(v: Value) -> CompiledSchema {
        CompiledSchema::compile(&v).unwrap()
    }

    #[test]
    fn valid_output_passes_extra_fields_allowed() {
        let a = compiled(
            json!({"type": "object", "required": ["category"], "properties": {"category": {"type": "string"}}}),
        );
        let s = Schemas {
            agent: Some(&a),
            step: None,
        };
        assert!(check(&json!({"category": "billing", "extra": 1}), s, "step \"x\"").is_ok());
    }

    #[test]
    fn every_violation_is_listed_with_the_spec_text() {
        let agent_schema = json!({"type": "object", "required": ["category", "priority", "ktsu_confidence"],
            "properties": {"category": {"type": "string", "enum": ["billing", "technical", "general"]}, "ktsu_confidence": {"type": "number"}}});
        let a = compiled(airlock_agent_schema(&agent_schema));
        let st = compiled(json!({"type": "object", "required": ["summary"]}));
        let out = json!({"category": "shipping"});
        let r = check(
            &out,
            Schemas {
                agent: Some(&a),
                step: Some(&st),
            },
            "step \"classify\"",
        )
        .unwrap_err();
        assert!(
            r.error.starts_with(
                "air-lock: output of step \"classify\" failed schema validation (3 violations): "
            ),
            "{}",
            r.error
        );
        assert!(
            r.error
                .contains("/priority: missing required property \"priority\""),
            "{}",
            r.error
        );
        assert!(
            !r.error.contains("ktsu_confidence"),
            "reserved fields are not required: {}",
            r.error
        );
        let violations = r.airlock["violations"].as_array().unwrap();
        assert_eq!(violations.len(), 3);
        assert!(violations.iter().any(|v| v["schema"] == "step"
            && v["pointer"] == "/summary"
            && v["keyword"] == "required"));
        assert!(
            r.airlock["schemas"]["agent"].is_object() && r.airlock["schemas"]["step"].is_object()
        );
    }

    #[test]
    fn non_object_agent_output() {
        let a = compiled(json!({"type": "object"}));
        let r = check(
            &json!([1]),
            Schemas {
                agent: Some(&a),
                step: None,
            },
            "step \"x\" item 2",
        )
        .unwrap_err();
        assert_eq!(r.error, "air-lock: output of step \"x\" item 2 failed schema validation (1 violation): (root): expected object, got array");
        assert_eq!(
            r.airlock["violations"][0],
            json!({"schema": "agent", "pointer": "", "keyword": "type", "message": "expected object, got array"})
        );
    }
}
