//! Runtime callbacks (orchestrator.md §6): routing and idempotency, metrics, reserved fields,
//! the Air-Lock, failures and approval checkpoints.

use super::airlock::{self, Schemas};
use super::reserved::{self, Verdict};
use super::{Effect, RunState};
use crate::model::{StepMetrics, StepStatus};
use ktsu_shared::project::StepKind;
use ktsu_shared::schema::{airlock_agent_schema, CompiledSchema};
use ktsu_shared::wire::callback::{
    CallbackAnswer, CallbackPayload, CallbackStatus, IgnoreReason, Metrics,
};
use serde_json::Value;
use std::sync::Arc;

/// A leg's metrics as step metrics.
pub(super) fn leg_metrics(m: &Metrics) -> StepMetrics {
    StepMetrics {
        duration_ms: 0,
        tokens_in: m.tokens_in,
        tokens_out: m.tokens_out,
        cost_usd: m.cost_usd,
        llm_calls: u64::from(m.llm_calls),
        tool_calls: u64::from(m.tool_calls),
        reflect_calls: m.reflect_calls,
        cache_read_tokens: m.cache_read_tokens,
        cache_write_tokens: m.cache_write_tokens,
        model_resolved: Some(m.model_resolved.clone()).filter(|s| !s.is_empty()),
    }
}

/// `[a-z][a-z0-9_]{0,63}`: a runtime error code the step keeps (else `agent_failed`).
fn is_error_code(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && code.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn ignored(reason: IgnoreReason) -> CallbackAnswer {
    CallbackAnswer::Ignored { reason }
}

impl RunState {
    /// Decides a callback (orchestrator.md §6.2 step 5) and processes it when current.
    pub(super) fn on_callback(
        &mut self,
        address: &str,
        attempt: Option<u32>,
        payload: CallbackPayload,
    ) -> CallbackAnswer {
        if self.run.status.is_terminal() {
            return ignored(IgnoreReason::RunFinished);
        }
        let Some((pos, item)) = self.locate(address) else {
            return ignored(IgnoreReason::Unexpected);
        };
        let is_agent = matches!(self.def(pos).kind, StepKind::Agent(_));
        let is_fanout = matches!(&self.def(pos).kind, StepKind::Agent(a) if a.for_each.is_some());
        if !is_agent
            || item.is_some() != is_fanout
            || (item.is_some() && self.item(pos, item.unwrap_or(0)).is_none())
        {
            return ignored(IgnoreReason::Unexpected);
        }
        let current = self.current_attempt(pos, item).unwrap_or(0);
        let attempt = attempt.or(payload.attempt).unwrap_or(current);
        if attempt != current {
            return ignored(IgnoreReason::StaleAttempt);
        }
        if self.target_status(pos, item) != Some(StepStatus::Running) {
            return ignored(IgnoreReason::Duplicate);
        }
        self.add_leg_metrics(pos, item, &payload.metrics);
        self.effect(Effect::Unwatch {
            address: address.to_string(),
        });
        match payload.status {
            CallbackStatus::Ok => self.process_ok(
                pos,
                item,
                payload.output.unwrap_or(Value::Null),
                payload.metrics.reflect_calls,
            ),
            CallbackStatus::Failed | CallbackStatus::Cancelled => {
                let code = payload
                    .error_code
                    .as_deref()
                    .filter(|c| is_error_code(c))
                    .unwrap_or(if payload.status == CallbackStatus::Cancelled {
                        "cancelled"
                    } else {
                        "agent_failed"
                    })
                    .to_string();
                let raw = Some(payload.raw_output.clone())
                    .filter(|r| !r.is_empty())
                    .map(Value::String);
                let error = format!("agent step failed: {}", payload.error);
                self.fail_target(pos, item, &code, error, raw, None);
            }
            CallbackStatus::PendingApproval => self.raise_approval(pos, item, payload),
        }
        CallbackAnswer::Accepted
    }

    /// Adds one leg's metrics to the step (and item) records (orchestrator.md §3.5).
    fn add_leg_metrics(&mut self, pos: usize, item: Option<u32>, m: &Metrics) {
        let leg = leg_metrics(m);
        let reflected = m.reflect_calls > 0;
        match item {
            Some(i) => {
                if let Some(it) = self.item_mut(pos, i) {
                    it.metrics.add_usage(&leg);
                    if reflected {
                        it.reflected = Some(true);
                    } else if it.reflected.is_none() {
                        it.reflected = Some(false);
                    }
                }
            }
            None => {
                let step = self.step_mut(pos);
                step.metrics.add_usage(&leg);
                if reflected {
                    step.reflected = Some(true);
                } else if step.reflected.is_none() {
                    step.reflected = Some(false);
                }
            }
        }
    }

    /// Reserved fields, then the Air-Lock (orchestrator.md §6.4–§6.5).
    fn process_ok(&mut self, pos: usize, item: Option<u32>, output: Value, reflect_calls: u32) {
        let threshold = match &self.def(pos).kind {
            StepKind::Agent(a) => a.confidence_threshold.unwrap_or(0.0),
            _ => 0.0,
        };
        let received = self.scrub(output.clone());
        let address = self.address(pos, item);
        let output = match output {
            Value::Object(map) => {
                let r = reserved::process(map, threshold, reflect_calls);
                for w in &r.warnings {
                    self.effect(Effect::Warn {
                        address: address.clone(),
                        message: w.clone(),
                    });
                }
                let rationale = r.rationale.map(|t| self.scrub_text(&t));
                match item {
                    Some(i) => {
                        if let Some(it) = self.item_mut(pos, i) {
                            it.flags = r.flags;
                            it.rationale = rationale;
                        }
                    }
                    None => {
                        let step = self.step_mut(pos);
                        step.flags = r.flags;
                        step.rationale = rationale;
                    }
                }
                match r.verdict {
                    Verdict::Proceed(stripped) => Value::Object(stripped),
                    Verdict::StepFails { code, error } | Verdict::RunFails { code, error } => {
                        return self.fail_target(pos, item, code, error, Some(received), None);
                    }
                    Verdict::NeedsHuman { error } => {
                        return self.fail_target(
                            pos,
                            item,
                            "needs_human_review",
                            error,
                            Some(received),
                            None,
                        );
                    }
                    Verdict::Skip { message } => {
                        let message = Some(self.scrub_text(&message));
                        return match item {
                            Some(i) => self.skip_item(pos, i, "agent_skipped", message),
                            None => self.skip_running_step(pos, message),
                        };
                    }
                }
            }
            other => other,
        };
        let agent_schema: Option<Arc<CompiledSchema>> = self
            .inputs
            .plan
            .agents
            .get(&self.inputs.plan.dag[pos])
            .and_then(|a| a.airlock.clone());
        let step_schema = if item.is_none() {
            self.def(pos)
                .output_schema
                .as_ref()
                .and_then(|s| s.compiled.clone())
        } else {
            None
        };
        let subject = match item {
            Some(i) => format!("step \"{}\" item {i}", self.steps[pos].id),
            None => format!("step \"{}\"", self.steps[pos].id),
        };
        let schemas = Schemas {
            agent: agent_schema.as_deref(),
            step: step_schema.as_deref(),
        };
        match airlock::check(&output, schemas, &subject) {
            Ok(()) => match item {
                Some(i) => self.complete_item(pos, i, output),
                None => self.complete_step(pos, output),
            },
            Err(rej) => self.fail_target(
                pos,
                item,
                "airlock_violation",
                rej.error,
                Some(received),
                Some(rej.airlock),
            ),
        }
    }

    /// `running → skipped` (`agent_skipped`): dependents are skipped in turn.
    fn skip_running_step(&mut self, pos: usize, message: Option<String>) {
        let now = self.now;
        let started = self.steps[pos].started_at;
        let duration = self.elapsed_ms(started);
        let step = self.step_mut(pos);
        step.status = StepStatus::Skipped;
        step.skip_reason = Some("agent_skipped".into());
        step.skip_message = message;
        step.ended_at = Some(now);
        step.deadline_at = None;
        step.metrics.duration_ms = duration;
        self.end_step_timers(pos);
        self.emit_step(pos);
    }
}

/// The Air-Lock schema (a) of an agent: its output schema without reserved names.
pub fn agent_airlock_schema(output_schema: &Value) -> Option<CompiledSchema> {
    CompiledSchema::compile(&airlock_agent_schema(output_schema)).ok()
}
