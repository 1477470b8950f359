//! Structured log lines of committed transitions (orchestrator.md §10): one record per event,
//! with `run_id`, `root_run_id`, `step_id` and the fields of the catalogue; `ktsu_flags` as a JSON
//! array and `ktsu_rationale` (truncated to 2 000 characters) whenever a step recorded them.

use crate::engine::event_level;
use crate::model::{NewEvent, RunRecord};
use serde_json::Value;

const TARGET: &str = "ktsu_orchestrator::actors::run";
const RATIONALE_MAX: usize = 2000;

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// One field of a log record: borrowed from the run or the event, or made for the line.
enum Field<'a> {
    Text(&'a str),
    Json(&'a Value),
    /// A truncated rationale.
    Owned(String),
}

impl Field<'_> {
    fn kv(&self) -> log::kv::Value<'_> {
        match self {
            Field::Text(text) => log::kv::Value::from(*text),
            Field::Json(value) => log::kv::Value::from_serde(*value),
            Field::Owned(text) => log::kv::Value::from(text.as_str()),
        }
    }
}

/// Sets `key`, keeping the position of an earlier value of the same key (a map's `insert`).
fn put<'a>(fields: &mut Vec<(&'a str, Field<'a>)>, key: &'a str, value: Field<'a>) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
}

/// The fields of a log record for an event (the data minus what is never logged: outputs),
/// borrowed from the records: a record is logged for every transition, so copying the event
/// data into a map first was a large share of the cost of a step.
fn fields<'a>(run: &'a RunRecord, event: &'a NewEvent) -> Vec<(&'a str, Field<'a>)> {
    let mut f = Vec::with_capacity(16);
    f.push(("run_id", Field::Text(&run.id)));
    f.push(("root_run_id", Field::Text(&run.root_run_id)));
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
                        put(&mut f, key, Field::Json(x));
                    }
                }
            }
            "flags" => put(&mut f, "ktsu_flags", Field::Json(v)),
            "rationale" => {
                let text = v
                    .as_str()
                    .map(|s| truncate(s, RATIONALE_MAX))
                    .unwrap_or_default();
                put(&mut f, "ktsu_rationale", Field::Owned(text));
            }
            key => put(&mut f, key, Field::Json(v)),
        }
    }
    if event.event.starts_with("run.") {
        if let Some(t) = data.get("totals") {
            for key in ["tokens_in", "tokens_out", "cost_usd"] {
                if let Some(x) = t.get(key) {
                    put(&mut f, key, Field::Json(x));
                }
            }
        }
    }
    f
}

fn message(event: &str, step: Option<&str>) -> String {
    let (subject, what) = event.split_once('.').unwrap_or((event, ""));
    let what = what.replace('_', " ");
    match (subject, step) {
        ("run", _) => format!("run {what}"),
        (_, Some(s)) => format!("{subject} {s} {what}"),
        _ => format!("{subject} {what}"),
    }
}

/// Whether a record of `event` would be written (its level is enabled).
pub fn is_logged(event: &NewEvent) -> bool {
    log::log_enabled!(target: TARGET, event_level(&event.event))
}

/// The events as far as their log records need them: the ones logged, without their `output`
/// (never logged, and the largest part of a step's event).
pub fn loggable(events: &[NewEvent]) -> Vec<NewEvent> {
    events
        .iter()
        .filter(|e| is_logged(e))
        .map(|e| NewEvent {
            ts: e.ts,
            event: e.event.clone(),
            data: match &e.data {
                Value::Object(data) => Value::Object(
                    data.iter()
                        .filter(|(k, _)| k.as_str() != "output")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                other => other.clone(),
            },
        })
        .collect()
}

/// Logs one committed event.
pub fn log_event(run: &RunRecord, event: &NewEvent) {
    let level = event_level(&event.event);
    if !log::log_enabled!(target: TARGET, level) {
        return;
    }
    let f = fields(run, event);
    let step = event.data.get("step_id").and_then(Value::as_str);
    let msg = message(&event.event, step);
    let source: Vec<(&str, log::kv::Value<'_>)> = f
        .iter()
        .map(|(k, v)| (*k, v.kv()))
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
    use serde_json::{json, Map};

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
        let f: Map<String, Value> = fields(&run, &ev)
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Field::Text(t) => json!(t),
                    Field::Json(v) => v.clone(),
                    Field::Owned(t) => json!(t),
                };
                (k.to_string(), v)
            })
            .collect();
        assert_eq!(f["run_id"], "run_1");
        assert_eq!(f["duration_ms"], 812);
        assert_eq!(f["ktsu_flags"], json!(["low_risk"]));
        assert_eq!(f["ktsu_rationale"].as_str().unwrap().len(), 2000);
        assert!(!f.contains_key("output"));
        assert_eq!(
            message("step.complete", Some("greet")),
            "step greet complete"
        );
        assert_eq!(
            message("run.needs_human_review", Some("greet")),
            "run needs human review"
        );
    }
}
