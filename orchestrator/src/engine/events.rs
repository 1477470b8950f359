//! Event records of transitions (orchestrator.md §3.10): one per committed transition, with
//! the data fields the SSE stream and the structured log line carry.

use super::RunState;
use crate::model::{ApprovalRecord, ItemRecord, RunRecord, StepRecord, StepStatus};
use serde_json::{json, Map, Value};

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

fn text(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|s| Value::String(s.clone()))
}

/// The data of a `run.<status>` event.
pub(super) fn run_data(run: &RunRecord) -> Value {
    let mut m = Map::new();
    m.insert("workflow".into(), json!(run.workflow_name));
    m.insert("status".into(), json!(run.status.as_str()));
    m.insert("root_run_id".into(), json!(run.root_run_id));
    put(&mut m, "parent_run_id", text(&run.parent_run_id));
    put(&mut m, "error", text(&run.error));
    put(&mut m, "error_code", text(&run.error_code));
    put(&mut m, "failed_step", text(&run.failed_step));
    put(&mut m, "reason", text(&run.cancel_reason));
    if run.status.is_terminal() {
        m.insert("totals".into(), json!(run.totals));
        let duration = match (run.started_at, run.completed_at) {
            (Some(s), Some(e)) => u64::try_from(e.duration_since(s).as_millis()).unwrap_or(0),
            _ => 0,
        };
        m.insert("duration_ms".into(), json!(duration));
    }
    put(&mut m, "output", run.output.clone());
    Value::Object(m)
}

/// The fields a step and an item event share.
#[allow(clippy::too_many_arguments)]
fn outcome_fields(
    m: &mut Map<String, Value>,
    status: StepStatus,
    output: &Option<Value>,
    error: &Option<String>,
    error_code: &Option<String>,
    skip_reason: &Option<String>,
    skip_message: &Option<String>,
    flags: &[String],
    rationale: &Option<String>,
) {
    if status == StepStatus::Complete {
        put(m, "output", output.clone());
    }
    put(m, "error", text(error));
    put(m, "error_code", text(error_code));
    put(m, "skip_reason", text(skip_reason));
    put(m, "skip_message", text(skip_message));
    if !flags.is_empty() {
        m.insert("flags".into(), json!(flags));
    }
    put(m, "rationale", text(rationale));
}

/// The data of a `step.<status>` event.
pub(super) fn step_data(step: &StepRecord) -> Value {
    let mut m = Map::new();
    m.insert("step_id".into(), json!(step.id));
    m.insert("step_type".into(), json!(step.step_type.as_str()));
    m.insert("status".into(), json!(step.status.as_str()));
    m.insert("attempt".into(), json!(step.attempt));
    outcome_fields(
        &mut m,
        step.status,
        &step.output,
        &step.error,
        &step.error_code,
        &step.skip_reason,
        &step.skip_message,
        &step.flags,
        &step.rationale,
    );
    if step.status.is_terminal() {
        m.insert("metrics".into(), json!(step.metrics));
    }
    if let Some(r) = step.reflected {
        m.insert("reflected".into(), json!(r));
    }
    put(&mut m, "child_run_id", text(&step.child_run_id));
    Value::Object(m)
}

/// The data of an `item.<status>` event.
pub(super) fn item_data(step: &StepRecord, item: &ItemRecord) -> Value {
    let mut m = Map::new();
    m.insert(
        "step_id".into(),
        json!(format!("{}.{}", step.id, item.index)),
    );
    m.insert("step_type".into(), json!(step.step_type.as_str()));
    m.insert("item_index".into(), json!(item.index));
    m.insert("status".into(), json!(item.status.as_str()));
    m.insert("attempt".into(), json!(item.attempt));
    outcome_fields(
        &mut m,
        item.status,
        &item.output,
        &item.error,
        &item.error_code,
        &item.skip_reason,
        &item.skip_message,
        &item.flags,
        &item.rationale,
    );
    if item.status.is_terminal() {
        m.insert("metrics".into(), json!(item.metrics));
    }
    Value::Object(m)
}

/// The data of an `approval.<status>` event.
pub(super) fn approval_data(a: &ApprovalRecord) -> Value {
    let mut m = Map::new();
    m.insert("step_id".into(), json!(a.step_id));
    m.insert("tool_name".into(), json!(a.tool_name));
    m.insert("tool_use_id".into(), json!(a.tool_use_id));
    m.insert("status".into(), json!(a.status.as_str()));
    put(&mut m, "expires_at", a.expires_at.map(|t| json!(t)));
    put(&mut m, "decided_by", text(&a.decided_by));
    put(&mut m, "comment", text(&a.comment));
    Value::Object(m)
}

/// The log level of an event name (orchestrator.md §10).
pub fn event_level(event: &str) -> log::Level {
    match event {
        "run.failed" | "step.failed" | "item.failed" => log::Level::Error,
        "run.cancelled"
        | "run.needs_human_review"
        | "run.abandoned"
        | "step.pending_approval"
        | "item.pending_approval"
        | "step.cancelled"
        | "item.cancelled"
        | "approval.pending" => log::Level::Warn,
        "step.dispatched" => log::Level::Debug,
        _ => log::Level::Info,
    }
}

impl RunState {
    /// Records the run's current status as an event.
    pub(super) fn emit_run(&mut self) {
        let data = run_data(&self.run);
        let name = format!("run.{}", self.run.status.as_str());
        self.emit(name, data);
    }

    /// Records a step's current status as an event.
    pub(super) fn emit_step(&mut self, pos: usize) {
        let data = step_data(&self.steps[pos]);
        let name = format!("step.{}", self.steps[pos].status.as_str());
        self.emit(name, data);
    }

    pub(super) fn emit_item(&mut self, pos: usize, index: u32) {
        let Some(item) = self.item(pos, index) else {
            return;
        };
        let data = item_data(&self.steps[pos], item);
        let name = format!("item.{}", item.status.as_str());
        self.emit(name, data);
    }

    pub(super) fn emit_approval(&mut self, i: usize) {
        let a = &self.approvals[i];
        let data = approval_data(a);
        let name = format!("approval.{}", a.status.as_str());
        self.emit(name, data);
    }
}
