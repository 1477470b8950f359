//! Fan-out (orchestrator.md §5.3): items created with the step's `running` commit, started in
//! index order within `concurrency`, failures counted against `max_failures`, the step output
//! `{"results": […]}` in input order once every item is terminal.

use super::context::skip_record;
use super::{Effect, RunState};
use crate::model::{ItemRecord, StepMetrics, StepStatus};
use ktsu_shared::project::StepKind;
use ktsu_shared::schema::json_type_name;
use serde_json::{json, Value};

/// Item errors that act on the whole run whatever `max_failures` says.
const RUN_LEVEL: [&str; 3] = ["injection_attempt", "needs_human_review", "budget_exceeded"];

impl RunState {
    /// Evaluates `for_each.from`, creates the items and starts the first ones.
    pub(super) fn start_fanout(&mut self, pos: usize) {
        let StepKind::Agent(a) = self.def(pos).kind.clone() else {
            return;
        };
        let Some(fe) = &a.for_each else { return };
        let ctx = self.context(Vec::new());
        let source = match fe.from.value.eval(&ctx) {
            Ok(v) => v,
            Err(e) => {
                let id = self.steps[pos].id.clone();
                let error = format!("for_each.from of step \"{id}\": {}", e.message);
                return self.fail_step(pos, "template_error", error, None, None);
            }
        };
        let Value::Array(mut elements) = source else {
            let error = format!(
                "for_each.from must evaluate to an array, got {}",
                json_type_name(&source)
            );
            return self.fail_step(pos, "fanout_source_invalid", error, None, None);
        };
        if fe.max_items > 0 {
            elements.truncate(usize::try_from(fe.max_items).unwrap_or(usize::MAX));
        }
        let limit = self.inputs.config.fanout_max_items;
        if elements.len() > limit {
            let error = format!(
                "for_each.from yields {} items, limit is {limit}",
                elements.len()
            );
            return self.fail_step(pos, "fanout_source_invalid", error, None, None);
        }
        if elements.is_empty() {
            self.step_mut(pos).items = Some(Vec::new());
            return self.complete_checked(pos, json!({"results": []}));
        }
        let now = self.now;
        let items: Vec<ItemRecord> = elements
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                ItemRecord::pending(u32::try_from(i).unwrap_or(u32::MAX), self.scrub(item), now)
            })
            .collect();
        let count = items.len();
        self.step_mut(pos).items = Some(items);
        for i in 0..count {
            self.dirty
                .items
                .insert((pos, u32::try_from(i).unwrap_or(u32::MAX)));
        }
        self.start_items(pos);
    }

    /// Starts pending items in index order while fewer than `concurrency` are running.
    pub(super) fn start_items(&mut self, pos: usize) {
        if self.steps[pos].status != StepStatus::Running || self.run.status.is_terminal() {
            return;
        }
        let concurrency = match &self.def(pos).kind {
            StepKind::Agent(a) => a.for_each.as_ref().map_or(0, |f| f.concurrency),
            _ => 0,
        };
        let items = self.steps[pos].items.as_deref().unwrap_or_default();
        let mut running = items
            .iter()
            .filter(|i| i.status == StepStatus::Running)
            .count();
        let pending: Vec<u32> = items
            .iter()
            .filter(|i| i.status == StepStatus::Pending)
            .map(|i| i.index)
            .collect();
        for index in pending {
            if concurrency > 0 && running as u64 >= concurrency {
                break;
            }
            let now = self.now;
            let Some(item) = self.item_mut(pos, index) else {
                continue;
            };
            item.status = StepStatus::Running;
            item.attempt += 1;
            item.started_at = Some(now);
            self.emit_item(pos, index);
            self.dispatch_agent(pos, Some(index), None);
            running += 1;
            if self.steps[pos].status != StepStatus::Running {
                return;
            }
        }
    }

    /// `running → complete` for an item.
    pub(super) fn complete_item(&mut self, pos: usize, index: u32, output: Value) {
        let output = self.scrub(output);
        let now = self.now;
        let started = self.item(pos, index).and_then(|i| i.started_at);
        let duration = self.elapsed_ms(started);
        if let Some(item) = self.item_mut(pos, index) {
            item.status = StepStatus::Complete;
            item.output = Some(output);
            item.ended_at = Some(now);
            item.metrics.duration_ms = duration;
        }
        let address = self.address(pos, Some(index));
        self.effect(Effect::Unwatch { address });
        self.emit_item(pos, index);
        self.after_item(pos);
    }

    /// `running → skipped` for an item (`agent_skipped`).
    pub(super) fn skip_item(
        &mut self,
        pos: usize,
        index: u32,
        reason: &str,
        message: Option<String>,
    ) {
        let now = self.now;
        if let Some(item) = self.item_mut(pos, index) {
            item.status = StepStatus::Skipped;
            item.skip_reason = Some(reason.to_string());
            item.skip_message = message;
            item.ended_at = Some(now);
        }
        let address = self.address(pos, Some(index));
        self.effect(Effect::Unwatch { address });
        self.emit_item(pos, index);
        self.after_item(pos);
    }

    /// `running → failed` for an item, then the `max_failures` rule and run-level signals.
    pub(super) fn fail_item(
        &mut self,
        pos: usize,
        index: u32,
        code: &str,
        error: String,
        raw_output: Option<serde_json::Value>,
        airlock: Option<serde_json::Value>,
    ) {
        let error = self.scrub_text(&error);
        let raw_output = raw_output.map(|r| self.scrub(r));
        let now = self.now;
        let started = self.item(pos, index).and_then(|i| i.started_at);
        let duration = self.elapsed_ms(started);
        if let Some(item) = self.item_mut(pos, index) {
            item.status = StepStatus::Failed;
            item.error = Some(error.clone());
            item.error_code = Some(code.to_string());
            item.raw_output = raw_output;
            item.airlock = airlock;
            item.ended_at = Some(now);
            item.metrics.duration_ms = duration;
        }
        let address = self.address(pos, Some(index));
        self.effect(Effect::Unwatch { address });
        self.emit_item(pos, index);
        let text = format!("fanout item {index} failed: {error}");
        if RUN_LEVEL.contains(&code) {
            return self.fail_step(pos, code, text, None, None);
        }
        let max_failures = match &self.def(pos).kind {
            StepKind::Agent(a) => a.for_each.as_ref().map_or(0, |f| f.max_failures),
            _ => 0,
        };
        let failed = self.steps[pos]
            .items
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|i| i.status == StepStatus::Failed)
            .count() as i64;
        if max_failures == 0 {
            return self.fail_step(pos, "fanout_item_failed", text, None, None);
        }
        if max_failures > 0 && failed > max_failures {
            let error = format!("fanout: {failed} items failed (max_failures: {max_failures})");
            return self.fail_step(pos, "fanout_failures_exceeded", error, None, None);
        }
        self.after_item(pos);
    }

    /// Sums item metrics into the step, starts more items, or completes the step.
    pub(super) fn after_item(&mut self, pos: usize) {
        self.sum_item_metrics(pos);
        let items = self.steps[pos].items.as_deref().unwrap_or_default();
        if !items.iter().all(|i| i.status.is_terminal()) {
            return self.start_items(pos);
        }
        let results: Vec<Value> = items
            .iter()
            .map(|i| match i.status {
                StepStatus::Complete => i.output.clone().unwrap_or(Value::Null),
                StepStatus::Failed => json!({"ktsu_error": i.error.clone().unwrap_or_default(), "item_index": i.index}),
                _ => {
                    let mut record = skip_record(i.skip_reason.as_deref().unwrap_or(""), i.skip_message.as_deref());
                    if let Value::Object(m) = &mut record {
                        m.insert("item_index".into(), json!(i.index));
                    }
                    record
                }
            })
            .collect();
        let mut flags: Vec<String> = Vec::new();
        for f in items.iter().flat_map(|i| i.flags.iter()) {
            if !flags.contains(f) {
                flags.push(f.clone());
            }
        }
        let reflected = items.iter().any(|i| i.reflected == Some(true));
        let step = self.step_mut(pos);
        step.flags = flags;
        step.reflected = Some(reflected);
        self.complete_checked(pos, json!({ "results": results }));
    }

    fn sum_item_metrics(&mut self, pos: usize) {
        let mut total = StepMetrics::default();
        for i in self.steps[pos].items.as_deref().unwrap_or_default() {
            total.add_usage(&i.metrics);
        }
        let duration = self.steps[pos].metrics.duration_ms;
        let step = self.step_mut(pos);
        step.metrics = StepMetrics {
            duration_ms: duration,
            ..total
        };
    }

    /// When a fan-out step ends other than by completion: running and waiting items are
    /// cancelled (runtime told), pending ones skipped with `reason`.
    pub(super) fn sweep_items(&mut self, pos: usize, pending_reason: &str, cause: &str) {
        let indexes: Vec<(u32, StepStatus)> = self.steps[pos]
            .items
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|i| (i.index, i.status))
            .collect();
        for (index, status) in indexes {
            match status {
                StepStatus::Running | StepStatus::PendingApproval => {
                    self.cancel_target(pos, Some(index), cause);
                }
                StepStatus::Pending => {
                    let now = self.now;
                    if let Some(item) = self.item_mut(pos, index) {
                        item.status = StepStatus::Skipped;
                        item.skip_reason = Some(pending_reason.to_string());
                        item.ended_at = Some(now);
                    }
                    self.emit_item(pos, index);
                }
                _ => {}
            }
        }
    }
}
