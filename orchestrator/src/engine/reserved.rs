//! Reserved output fields (orchestrator.md §6.4, DECISIONS O8): evaluated once, in the
//! orchestrator, in the documented order, then every top-level `ktsu_*` key is removed so that
//! reserved fields never reach the Air-Lock or downstream steps.

use ktsu_shared::schema::json_type_name;
use serde_json::{Map, Value};

/// What the reserved fields decide about one agent output.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No signal: continue with the Air-Lock on the stripped output.
    Proceed(Map<String, Value>),
    /// The step (or item) fails with this code and text.
    StepFails { code: &'static str, error: String },
    /// The step fails and the whole run fails at once (`injection_attempt`).
    RunFails { code: &'static str, error: String },
    /// The step fails and the run goes to `needs_human_review`.
    NeedsHuman { error: String },
    /// The step (or item) is skipped with reason `agent_skipped` and this message.
    Skip { message: String },
}

/// The outcome: flags and rationale (recorded whatever the verdict) plus the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Reserved {
    pub flags: Vec<String>,
    pub rationale: Option<String>,
    pub verdict: Verdict,
    /// Ignored wrongly typed `ktsu_flags`/`ktsu_rationale` (logged as warnings).
    pub warnings: Vec<String>,
}

/// The boolean signals in evaluation order, with their result.
const SIGNALS: [(&str, &str, &str); 4] = [
    (
        "ktsu_injection_attempt",
        "injection_attempt",
        "injection attempt detected",
    ),
    (
        "ktsu_untrusted_content",
        "untrusted_content",
        "untrusted content detected",
    ),
    ("ktsu_low_quality", "low_quality", "low quality output"),
    (
        "ktsu_needs_human",
        "needs_human_review",
        "needs human review",
    ),
];

fn invalid(name: &str, value: &Value, expected: &str) -> Verdict {
    Verdict::StepFails {
        code: "reserved_field_invalid",
        error: format!(
            "reserved field {name} must be {expected}, got {}",
            json_type_name(value)
        ),
    }
}

/// Processes an object output. `threshold` is the step's `confidence_threshold` (0 = off) and
/// `reflect_calls` the callback leg's metric: a leg that already reflected is not failed for
/// low confidence.
pub fn process(output: Map<String, Value>, threshold: f64, reflect_calls: u32) -> Reserved {
    let mut warnings = Vec::new();
    let flags = match output.get("ktsu_flags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            warnings.push(format!(
                "ktsu_flags must be an array of strings, got {}; ignored",
                json_type_name(other)
            ));
            Vec::new()
        }
    };
    let rationale = match output.get("ktsu_rationale") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(other) => {
            warnings.push(format!(
                "ktsu_rationale must be a string, got {}; ignored",
                json_type_name(other)
            ));
            None
        }
    };
    let verdict = decide(&output, threshold, reflect_calls).unwrap_or_else(|| {
        Verdict::Proceed(
            output
                .into_iter()
                .filter(|(k, _)| !k.starts_with("ktsu_"))
                .collect(),
        )
    });
    Reserved {
        flags,
        rationale,
        verdict,
        warnings,
    }
}

/// The first signal that fires, in the documented order.
fn decide(output: &Map<String, Value>, threshold: f64, reflect_calls: u32) -> Option<Verdict> {
    for (i, (field, code, text)) in SIGNALS.iter().enumerate() {
        match output.get(*field) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => {
                let error = (*text).to_string();
                return Some(match i {
                    0 => Verdict::RunFails { code, error },
                    3 => Verdict::NeedsHuman { error },
                    _ => Verdict::StepFails { code, error },
                });
            }
            Some(other) => return Some(invalid(field, other, "a boolean")),
        }
    }
    if threshold > 0.0 && reflect_calls == 0 {
        let confidence = output.get("ktsu_confidence").and_then(Value::as_f64);
        let below = confidence.is_none_or(|c| c < threshold);
        if below {
            let shown = match output.get("ktsu_confidence") {
                Some(Value::Number(n)) => n.to_string(),
                _ => "missing".to_string(),
            };
            return Some(Verdict::StepFails {
                code: "confidence_below_threshold",
                error: format!("confidence {shown} below threshold {threshold}"),
            });
        }
    }
    match output.get("ktsu_skip_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(Verdict::Skip { message: s.clone() }),
        Some(other) => Some(invalid("ktsu_skip_reason", other, "a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value, threshold: f64, reflect_calls: u32) -> Reserved {
        process(v.as_object().unwrap().clone(), threshold, reflect_calls)
    }

    #[test]
    fn strips_every_top_level_ktsu_key_and_records_flags() {
        let r = run(
            json!({"a": 1, "ktsu_confidence": 0.9, "ktsu_flags": ["vip", 3, "x"], "ktsu_rationale": "why", "ktsu_unknown": 1, "nested": {"ktsu_keep": 1}}),
            0.0,
            0,
        );
        assert_eq!(r.flags, vec!["vip", "x"]);
        assert_eq!(r.rationale.as_deref(), Some("why"));
        let Verdict::Proceed(out) = r.verdict else {
            panic!()
        };
        assert_eq!(
            Value::Object(out),
            json!({"a": 1, "nested": {"ktsu_keep": 1}})
        );
    }

    #[test]
    fn signals_fire_in_the_documented_order() {
        let all = json!({"ktsu_injection_attempt": true, "ktsu_untrusted_content": true, "ktsu_low_quality": true, "ktsu_needs_human": true, "ktsu_skip_reason": "x"});
        assert!(matches!(
            run(all, 0.0, 0).verdict,
            Verdict::RunFails {
                code: "injection_attempt",
                ..
            }
        ));
        let v = json!({"ktsu_untrusted_content": true, "ktsu_low_quality": true, "ktsu_needs_human": true});
        assert!(matches!(
            run(v, 0.0, 0).verdict,
            Verdict::StepFails {
                code: "untrusted_content",
                ..
            }
        ));
        let v = json!({"ktsu_low_quality": true, "ktsu_needs_human": true});
        assert!(matches!(
            run(v, 0.0, 0).verdict,
            Verdict::StepFails {
                code: "low_quality",
                ..
            }
        ));
        let v = json!({"ktsu_needs_human": true, "ktsu_confidence": 0.1, "ktsu_skip_reason": "x"});
        assert!(matches!(run(v, 0.5, 0).verdict, Verdict::NeedsHuman { .. }));
        let v = json!({"ktsu_confidence": 0.1, "ktsu_skip_reason": "x"});
        match run(v, 0.5, 0).verdict {
            Verdict::StepFails { code, error } => {
                assert_eq!(code, "confidence_below_threshold");
                assert_eq!(error, "confidence 0.1 below threshold 0.5");
            }
            other => panic!("{other:?}"),
        }
        let v = json!({"ktsu_skip_reason": "nothing to do"});
        assert_eq!(
            run(v, 0.0, 0).verdict,
            Verdict::Skip {
                message: "nothing to do".into()
            }
        );
    }

    #[test]
    fn confidence_rules() {
        // missing confidence counts as below; equal is fine; a reflected leg is never failed
        assert!(matches!(
            run(json!({}), 0.5, 0).verdict,
            Verdict::StepFails { .. }
        ));
        match run(json!({}), 0.5, 0).verdict {
            Verdict::StepFails { error, .. } => {
                assert_eq!(error, "confidence missing below threshold 0.5")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(json!({"ktsu_confidence": 0.5}), 0.5, 0).verdict,
            Verdict::Proceed(_)
        ));
        assert!(matches!(
            run(json!({"ktsu_confidence": "high"}), 0.5, 0).verdict,
            Verdict::StepFails { .. }
        ));
        assert!(matches!(
            run(json!({"ktsu_confidence": 0.1}), 0.5, 1).verdict,
            Verdict::Proceed(_)
        ));
        assert!(matches!(
            run(json!({"ktsu_confidence": 0.1}), 0.0, 0).verdict,
            Verdict::Proceed(_)
        ));
    }

    #[test]
    fn wrongly_typed_signals_fail_the_step() {
        match run(json!({"ktsu_low_quality": "yes"}), 0.0, 0).verdict {
            Verdict::StepFails { code, error } => {
                assert_eq!(code, "reserved_field_invalid");
                assert_eq!(
                    error,
                    "reserved field ktsu_low_quality must be a boolean, got string"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(json!({"ktsu_skip_reason": 3}), 0.0, 0).verdict,
            Verdict::StepFails {
                code: "reserved_field_invalid",
                ..
            }
        ));
        // false / null / "" do nothing
        assert!(matches!(run(json!({"ktsu_low_quality": false, "ktsu_needs_human": null, "ktsu_skip_reason": ""}), 0.0, 0).verdict, Verdict::Proceed(_)));
        // wrongly typed flags and rationale are ignored with a warning
        let r = run(json!({"ktsu_flags": "vip", "ktsu_rationale": 5}), 0.0, 0);
        assert!(r.flags.is_empty() && r.rationale.is_none());
        assert_eq!(r.warnings.len(), 2);
    }
}
