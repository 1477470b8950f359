//! How runs end (orchestrator.md §4.5, §4.6, §5.6 step 5, §7.5, §7.7): fail-fast, needs-human
//! and cancellation sweeps; completion with the workflow output and its schema; timers;
//! recovery after a restart.

use super::airlock::{self, Schemas};
use super::context::visible_output;
use super::{CancelError, Effect, RunState, Timer};
use crate::model::{ApprovalStatus, RunRecord, RunStatus, StepStatus, StepType};
use ktsu_shared::project::StepKind;
use ktsu_shared::template::NullPolicy;
use serde_json::{json, Map, Value};

/// Why a run ends other than by completing.
#[derive(Debug, Clone)]
pub(super) enum RunEnd {
    Failed {
        code: String,
        error: String,
        step: Option<String>,
    },
    NeedsHuman {
        code: String,
        error: String,
        step: String,
    },
    Cancelled {
        reason: String,
    },
}

impl RunState {
    /// Ends the run in one commit: unfinished steps cancelled or skipped, pending approvals
    /// cancelled, sub-runs cancelled, runtimes told, timers disarmed.
    pub(super) fn end_run(&mut self, end: RunEnd) {
        if self.run.status.is_terminal() {
            return;
        }
        let (status, pending_reason, cause) = match &end {
            RunEnd::Failed { .. } => (RunStatus::Failed, "run_failed", "run failed".to_string()),
            RunEnd::NeedsHuman { .. } => (
                RunStatus::NeedsHumanReview,
                "run_needs_human_review",
                "run needs human review".to_string(),
            ),
            RunEnd::Cancelled { reason } => (
                RunStatus::Cancelled,
                "run_cancelled",
                format!("run cancelled: {reason}"),
            ),
        };
        for pos in 0..self.steps.len() {
            match self.steps[pos].status {
                StepStatus::Running | StepStatus::PendingApproval => {
                    if self.steps[pos].items.is_some() {
                        self.sweep_items(pos, pending_reason, &cause);
                    }
                    self.cancel_target(pos, None, &cause);
                }
                StepStatus::Pending => self.skip_step(pos, pending_reason, None),
                _ => {}
            }
        }
        self.cancel_pending_approvals();
        let run = &mut self.run;
        run.status = status;
        run.completed_at = Some(self.now);
        match end {
            RunEnd::Failed { code, error, step } => {
                run.error = Some(error);
                run.error_code = Some(code);
                run.failed_step = step;
            }
            RunEnd::NeedsHuman { code, error, step } => {
                run.error = Some(error);
                run.error_code = Some(code);
                run.failed_step = Some(step);
            }
            RunEnd::Cancelled { reason } => {
                run.error = Some(format!("cancelled: {reason}"));
                run.error_code = Some("cancelled".into());
                run.cancel_reason = Some(reason);
            }
        }
        self.finish_run();
    }

    /// The last steps of every ending: timers off, event, `Finished`.
    fn finish_run(&mut self) {
        if self.run.deadline_at.is_some() {
            self.effect(Effect::Disarm(Timer::RunDeadline));
        }
        self.touch_run();
        self.emit_run();
        self.effect(Effect::Finished);
    }

    /// A running or waiting step (or item) becomes `cancelled`; the runtime and sub-run are told.
    pub(super) fn cancel_target(&mut self, pos: usize, item: Option<u32>, cause: &str) {
        let now = self.now;
        let address = self.address(pos, item);
        let is_agent = self.steps[pos].step_type == StepType::Agent;
        let error = Some(format!("cancelled: {cause}"));
        let (was_running, runtime, attempt) = match item {
            Some(i) => {
                let Some(it) = self.item_mut(pos, i) else {
                    return;
                };
                let was = it.status == StepStatus::Running;
                it.status = StepStatus::Cancelled;
                it.error = error;
                it.error_code = Some("cancelled".into());
                it.ended_at = Some(now);
                (was, it.runtime_id.clone(), it.attempt)
            }
            None => {
                let started = self.steps[pos].started_at;
                let duration = self.elapsed_ms(started);
                let step = self.step_mut(pos);
                let was = step.status == StepStatus::Running;
                step.status = StepStatus::Cancelled;
                step.error = error;
                step.error_code = Some("cancelled".into());
                step.ended_at = Some(now);
                step.deadline_at = None;
                step.timeout_remaining_ms = None;
                step.metrics.duration_ms = duration;
                (was, step.runtime_id.clone(), step.attempt)
            }
        };
        if is_agent && (item.is_some() || self.steps[pos].items.is_none()) {
            self.effect(Effect::Unwatch {
                address: address.clone(),
            });
            if let (true, Some(runtime_id)) = (was_running, runtime) {
                self.effect(Effect::CancelRuntime {
                    runtime_id,
                    address,
                    attempt,
                    reason: cause.to_string(),
                });
            }
        }
        if item.is_none() {
            if self.def(pos).timeout_s.is_some() {
                let id = self.steps[pos].id.clone();
                self.effect(Effect::Disarm(Timer::StepDeadline(id)));
            }
            if let Some(child) = self.steps[pos].child_run_id.clone() {
                self.effect(Effect::CancelChild {
                    run_id: child,
                    reason: cause.to_string(),
                });
            }
            self.emit_step(pos);
        } else if let Some(i) = item {
            self.emit_item(pos, i);
        }
    }

    /// Every step terminal, none failed: the workflow output, its schema, `complete`.
    pub(super) fn complete_run(&mut self) {
        let wf = &self.inputs.plan.workflow;
        let output = match &wf.output_map {
            Some(entries) => {
                let ctx = self.context(Vec::new());
                let mut map = Map::new();
                for e in entries {
                    match e.value.value.eval(&ctx, NullPolicy::Keep) {
                        Ok(v) => {
                            map.insert(e.key.value.clone(), v);
                        }
                        Err(err) => {
                            let error = format!("output.map \"{}\": {}", e.key.value, err.message);
                            return self.end_run(RunEnd::Failed {
                                code: "output_map_error".into(),
                                error,
                                step: None,
                            });
                        }
                    }
                }
                Value::Object(map)
            }
            None => Value::Object(
                self.inputs
                    .plan
                    .finals
                    .iter()
                    .map(|p| (self.steps[*p].id.clone(), visible_output(&self.steps[*p])))
                    .collect(),
            ),
        };
        let schema = wf.output_schema.as_ref().and_then(|s| s.compiled.clone());
        let subject = format!("workflow \"{}\"", self.run.workflow_name);
        if let Err(r) = airlock::check(
            &output,
            Schemas {
                agent: None,
                step: schema.as_deref(),
            },
            &subject,
        ) {
            return self.end_run(RunEnd::Failed {
                code: "airlock_violation".into(),
                error: r.error,
                step: None,
            });
        }
        let output = self.scrub(output);
        self.run.status = RunStatus::Complete;
        self.run.completed_at = Some(self.now);
        self.run.output = Some(output);
        self.finish_run();
    }

    /// Cancel (orchestrator.md §2.8): pending/running → `cancelled`; already cancelled is fine.
    pub(super) fn on_cancel(&mut self, reason: String) -> Result<Box<RunRecord>, CancelError> {
        match self.run.status {
            RunStatus::Pending | RunStatus::Running => {
                let reason = self.scrub_text(&reason);
                self.end_run(RunEnd::Cancelled { reason });
                Ok(Box::new(self.run.clone()))
            }
            RunStatus::Cancelled => Ok(Box::new(self.run.clone())),
            _ => Err(CancelError::Finished(Box::new(self.run.clone()))),
        }
    }

    pub(super) fn on_timer(&mut self, timer: Timer) {
        if self.run.status != RunStatus::Running {
            return;
        }
        match timer {
            Timer::RunDeadline => {
                let timeout = self.run.timeout_s.unwrap_or(0);
                self.end_run(RunEnd::Failed {
                    code: "run_timeout".into(),
                    error: format!("run exceeded timeout_s={timeout}"),
                    step: None,
                });
            }
            Timer::StepDeadline(id) => {
                let Some(pos) = self.position(&id) else {
                    return;
                };
                if self.steps[pos].status != StepStatus::Running {
                    return;
                }
                let timeout = self.def(pos).timeout_s.unwrap_or(0);
                // The in-flight work of the step is stopped before the step fails.
                if let (StepKind::Agent(_), None, Some(runtime_id)) = (
                    &self.def(pos).kind,
                    &self.steps[pos].items,
                    self.steps[pos].runtime_id.clone(),
                ) {
                    let attempt = self.steps[pos].attempt;
                    self.effect(Effect::CancelRuntime {
                        runtime_id,
                        address: id.clone(),
                        attempt,
                        reason: "step timeout".into(),
                    });
                }
                if let Some(child) = self.steps[pos].child_run_id.clone() {
                    self.effect(Effect::CancelChild {
                        run_id: child,
                        reason: "step timeout".into(),
                    });
                }
                self.fail_step(
                    pos,
                    "step_timeout",
                    format!("step \"{id}\" exceeded timeout_s={timeout}"),
                    None,
                    None,
                );
            }
            Timer::Approval {
                address,
                tool_use_id,
            } => self.on_approval_timeout(&address, &tool_use_id),
        }
    }

    /// Rebuilds in-flight work after a restart (orchestrator.md §7.7).
    pub(super) fn recover(&mut self) {
        if self.run.status != RunStatus::Running {
            return;
        }
        if let Some(deadline) = self.run.deadline_at {
            if deadline <= self.now {
                let timeout = self.run.timeout_s.unwrap_or(0);
                return self.end_run(RunEnd::Failed {
                    code: "run_timeout".into(),
                    error: format!("run exceeded timeout_s={timeout}"),
                    step: None,
                });
            }
            self.effect(Effect::Arm {
                timer: Timer::RunDeadline,
                at: deadline,
            });
        }
        let mut redispatched = Vec::new();
        for pos in 0..self.steps.len() {
            match self.steps[pos].status {
                StepStatus::Running => self.recover_step(pos, &mut redispatched),
                StepStatus::PendingApproval => self.rearm_approvals(pos, None),
                _ => {}
            }
        }
        self.emit("run.recovered", json!({ "redispatched": redispatched }));
        self.touch_run();
    }

    fn recover_step(&mut self, pos: usize, redispatched: &mut Vec<String>) {
        if let Some(at) = self.steps[pos].deadline_at {
            let id = self.steps[pos].id.clone();
            self.effect(Effect::Arm {
                timer: Timer::StepDeadline(id),
                at,
            });
        }
        match self.def(pos).kind.clone() {
            StepKind::Agent(a) if a.for_each.is_some() => {
                let items: Vec<(u32, StepStatus)> = self.steps[pos]
                    .items
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|i| (i.index, i.status))
                    .collect();
                if items.is_empty() {
                    // Crashed before the items were committed: start the fan-out again.
                    self.bump_attempt(pos, None);
                    return self.start_fanout(pos);
                }
                for (index, status) in items {
                    match status {
                        StepStatus::Running => {
                            self.redispatch(pos, Some(index));
                            redispatched.push(self.address(pos, Some(index)));
                        }
                        StepStatus::PendingApproval => self.rearm_approvals(pos, Some(index)),
                        _ => {}
                    }
                }
                self.start_items(pos);
            }
            StepKind::Agent(_) => {
                self.redispatch(pos, None);
                redispatched.push(self.address(pos, None));
            }
            StepKind::Webhook(w) => {
                self.bump_attempt(pos, None);
                redispatched.push(self.address(pos, None));
                self.send_webhook(pos, &w);
            }
            StepKind::Transform(_) => {
                // Pure: simply run it again from pending.
                let step = self.step_mut(pos);
                step.status = StepStatus::Pending;
                step.attempt = step.attempt.saturating_sub(1);
            }
            // The sub-run is recovered on its own; the step waits for it.
            StepKind::Workflow(_) => {}
        }
    }

    fn bump_attempt(&mut self, pos: usize, item: Option<u32>) {
        match item {
            Some(i) => {
                if let Some(it) = self.item_mut(pos, i) {
                    it.attempt += 1;
                }
                self.emit_item(pos, i);
            }
            None => {
                self.step_mut(pos).attempt += 1;
                self.emit_step(pos);
            }
        }
    }

    /// `attempt + 1` and a new dispatch; the old attempt's runtime is told to stop. A leg that
    /// was resuming after a decision resumes again with the same decision.
    fn redispatch(&mut self, pos: usize, item: Option<u32>) {
        let address = self.address(pos, item);
        let (runtime, old_attempt) = match item {
            Some(i) => self
                .item(pos, i)
                .map_or((None, 0), |it| (it.runtime_id.clone(), it.attempt)),
            None => (self.steps[pos].runtime_id.clone(), self.steps[pos].attempt),
        };
        if let Some(runtime_id) = runtime {
            self.effect(Effect::CancelRuntime {
                runtime_id,
                address: address.clone(),
                attempt: old_attempt,
                reason: "re-dispatched after an orchestrator restart".into(),
            });
        }
        self.bump_attempt(pos, item);
        let decided = self
            .approvals
            .iter()
            .filter(|a| a.step_id == address)
            .max_by_key(|a| a.created_at)
            .filter(|a| {
                a.status == ApprovalStatus::Approved
                    || (a.status != ApprovalStatus::Pending && a.on_reject == "recover")
            })
            .cloned();
        let resume = match decided {
            Some(a) if self.checkpoints.contains_key(&address) => {
                Some(self.resume_for(&a, a.status == ApprovalStatus::Approved))
            }
            _ => None,
        };
        self.dispatch_agent(pos, item, resume);
    }

    /// Approval timers are rebuilt from `expires_at`; an expired one fires at once.
    fn rearm_approvals(&mut self, pos: usize, item: Option<u32>) {
        let address = self.address(pos, item);
        let timers: Vec<(Timer, ktsu_shared::time::Timestamp)> = self
            .approvals
            .iter()
            .filter(|a| a.step_id == address && a.status == ApprovalStatus::Pending)
            .filter_map(|a| {
                a.expires_at.map(|at| {
                    (
                        Timer::Approval {
                            address: a.step_id.clone(),
                            tool_use_id: a.tool_use_id.clone(),
                        },
                        at,
                    )
                })
            })
            .collect();
        for (timer, at) in timers {
            self.effect(Effect::Arm { timer, at });
        }
    }
}
