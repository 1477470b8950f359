//! Structured log lines of committed transitions (orchestrator.md §10): one record per event,
//! with `run_id`, `root_run_id`, `step_id` and the fields of the catalogue; `ktsu_flags` as a JSON
//! array and `ktsu_rationale` (truncated to 2 000 characters) whenever a step recorded them.

use crate::engine::event_level;
use crate::model::{NewEvent, RunRecord};
use serde_json::{Map, Value};

const TARGET: &str = "ktsu_orchestrator::actors::run";
const RATIONALE_MAX: usize = 2000;

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// The fields of a log record for an event (the data minus what is never logged: outputs).
fn fields(run: &RunRecord, event: &NewEvent) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("run_id".into(), Value::String(run.id.clone()));
    f.insert("root_run_id".into(), Value::String(run.root_run_id.clone()));
    let Value::Object(data) = &event.data else {
        return f;
    };
    for (k, v) in data {
        match k.as_str() {
            // Outputs are never logged (cli-and-ops.md §5.5).
            "output" | "totals" => {}
            "metrics" => {
                for key in ["duration_ms", "tokens_in", "tokens_out", "cost_usd"] {
                    if let Some(x) = v.get(key) {
                        f.insert(key.into(), x.clone());
                    }
                }
            }
            "flags" => {
                f.insert("ktsu_flags".into(), v.clone());
            }
            "rationale" => {
                let text = v
                    .as_str()
                    .map(|s| truncate(s, RATIONALE_MAX))
                    .unwrap_or_default();
                f.insert("ktsu_rationale".into(), Value::String(text));
            }
            _ => {
                f.insert(k.clone(), v.clone());
            }
        }
    }
    if event.event.starts_with("run.") {
        if let Some(t) = data.get("totals") {
            for key in ["tokens_in", "tokens_out", "cost_usd"] {
                if let Some(x) = t.get(key) {
                    f.insert(key.into(), x.clone());
                }
            }
        }
    }
    f
}

fn message(event: &str, f: &Map<String, Value>) -> String {
    let step = f.get("step_id").and_then(Value::as_str);
    let (subject, what) = event.split_once('.').unwrap_or((event, ""));
    let what = what.replace('_', " ");
    match (subject, step) {
        ("run", _) => format!("run {what}"),
        (_, Some(s)) => format!("{subject} {s} {what}"),
        _ => format!("{subject} {what}"),
    }
}

/// Logs one committed event.
pub fn log_event(run: &RunRecord, event: &NewEvent) {
    let level = event_level(&event.event);
    if !log::log_enabled!(target: TARGET, level) {
        return;
    }
    let f = fields(run, event);
    let msg = message(&event.event, &f);
    let kvs: Vec<(String, Value)> = f.into_iter().collect();
    let source: Vec<(&str, log::kv::Value<'_>)> = kvs
        .iter()
        .map(|(k, v)| (k.as_str(), log::kv::Value::from_serde(v)))
        .chain(std::iter::once((
            "event",
            log::kv::Value::from(event.event.as_str()),
        )))
        .collect();
    log::logger().log(
        &log::Record::builder()
            .args(format_args!("{msg}"))
            .level(level)
            .target(TARGET)
            .key_values(&source)
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktsu_shared::time::Timestamp;
    use serde_json::json;

    #[test]
    fn fields_flatten_metrics_and_rename_flags() {
        let run: RunRecord = serde_json::from_value(json!({
            "id": "run_1", "workflow_name": "w", "status": "running", "root_run_id": "run_1",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "payload": {}, "totals": {"duration_ms":0,"tokens_in":0,"tokens_out":0,"cost_usd":0,"llm_calls":0,"tool_calls":0}
        }))
        .unwrap();
        let ev = NewEvent {
            ts: Timestamp::now(),
            event: "step.complete".into(),
            data: json!({"step_id": "greet", "status": "complete", "output": {"secret": 1},
                "metrics": {"duration_ms": 812, "tokens_in": 120, "tokens_out": 30, "cost_usd": 0.00042, "llm_calls": 1, "tool_calls": 0},
                "flags": ["low_risk"], "rationale": "x".repeat(3000)}),
        };
        let f = fields(&run, &ev);
        assert_eq!(f["run_id"], "run_1");
        assert_eq!(f["duration_ms"], 812);
        assert_eq!(f["ktsu_flags"], json!(["low_risk"]));
        assert_eq!(f["ktsu_rationale"].as_str().unwrap().len(), 2000);
        assert!(!f.contains_key("output"));
        assert_eq!(message("step.complete", &f), "step greet complete");
        assert_eq!(
            message("run.needs_human_review", &f),
            "run needs human review"
        );
    }
}
