//! Approvals (orchestrator.md §6.6, §7.1): checkpoints raised by the runtime, decisions,
//! timeouts, resume dispatches, and the approval hooks that announce them (§5.5.6).

use super::dispatch::Resume;
use super::{DecideError, Effect, HookInfo, RunState, Timer, WebhookCall};
use crate::model::{ApprovalRecord, ApprovalStatus, StepStatus};
use ktsu_shared::project::StepKind;
use ktsu_shared::wire::callback::CallbackPayload;
use ktsu_shared::wire::invoke;
use serde_json::{json, Value};
use std::time::Duration;

/// The rejection text given to the agent (runtime-gateway.md T8).
pub(super) const REJECTION: &str =
    "The human reviewer rejected this tool call. Do not retry it; continue without it.";

/// The rejection result appended to a checkpoint for `on_reject: recover` (orchestrator.md
/// §7.1): a structured `tool` message when the checkpoint uses structured tool calls, else the
/// reference encoding (a `user` message holding a `tool_result` block as JSON text).
pub(super) fn rejection_message(
    messages: &[Value],
    tool_use_id: &str,
    comment: Option<&str>,
) -> Value {
    let mut text = REJECTION.to_string();
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        text.push_str(" Reviewer comment: ");
        text.push_str(c);
    }
    let structured = messages
        .last()
        .and_then(|m| m.get("tool_calls"))
        .is_some_and(Value::is_array);
    if structured {
        json!({"role": "tool", "tool_call_id": tool_use_id, "content": text})
    } else {
        let block = json!([{"type": "tool_result", "tool_use_id": tool_use_id, "content": text}]);
        json!({"role": "user", "content": block.to_string()})
    }
}

impl RunState {
    /// A `pending_approval` callback: approval record, checkpoint, status, timers, hooks — one
    /// commit (orchestrator.md §6.6).
    pub(super) fn raise_approval(
        &mut self,
        pos: usize,
        item: Option<u32>,
        payload: CallbackPayload,
    ) {
        let address = self.address(pos, item);
        let Some(pa) = payload
            .pending_approval
            .clone()
            .filter(|p| !p.tool_use_id.is_empty())
        else {
            let error = "agent step failed: pending_approval callback without a pending approval"
                .to_string();
            return self.fail_target(pos, item, "agent_failed", error, None, None);
        };
        let expires_at = (pa.timeout_ms > 0).then(|| {
            self.now
                .saturating_add(Duration::from_millis(pa.timeout_ms))
        });
        let record = ApprovalRecord {
            run_id: self.run.id.clone(),
            step_id: address.clone(),
            tool_name: pa.tool_name.clone(),
            tool_use_id: pa.tool_use_id.clone(),
            arguments: self.scrub(pa.arguments.clone()),
            on_reject: match pa.on_reject {
                invoke::OnReject::Fail => "fail".into(),
                invoke::OnReject::Recover => "recover".into(),
            },
            timeout_ms: pa.timeout_ms,
            timeout_behavior: match pa.timeout_behavior {
                invoke::TimeoutBehavior::Fail => "fail".into(),
                invoke::TimeoutBehavior::Reject => "reject".into(),
            },
            status: ApprovalStatus::Pending,
            created_at: self.now,
            expires_at,
            decided_at: None,
            decided_by: None,
            comment: None,
            partial_metrics: super::callback::leg_metrics(&payload.metrics),
        };
        let index = match self
            .approvals
            .iter()
            .position(|a| a.step_id == address && a.tool_use_id == record.tool_use_id)
        {
            Some(i) => {
                self.approvals[i] = record;
                i
            }
            None => {
                self.approvals.push(record);
                self.approvals.len() - 1
            }
        };
        self.dirty.approvals.insert(index);
        let messages = self.scrub(Value::Array(payload.messages));
        self.checkpoints.insert(address.clone(), messages.clone());
        self.dirty
            .checkpoints
            .push((address.clone(), Some(messages)));
        let now = self.now;
        match item {
            Some(i) => {
                if let Some(it) = self.item_mut(pos, i) {
                    it.status = StepStatus::PendingApproval;
                }
                self.emit_item(pos, i);
            }
            None => {
                let step = self.step_mut(pos);
                step.status = StepStatus::PendingApproval;
                // The step timeout pauses while a human decides.
                if let Some(deadline) = step.deadline_at.take() {
                    step.timeout_remaining_ms =
                        Some(u64::try_from(deadline.duration_since(now).as_millis()).unwrap_or(0));
                    let id = step.id.clone();
                    self.effect(Effect::Disarm(Timer::StepDeadline(id)));
                }
                self.emit_step(pos);
            }
        }
        self.emit_approval(index);
        if let Some(at) = expires_at {
            self.effect(Effect::Arm {
                timer: Timer::Approval {
                    address: address.clone(),
                    tool_use_id: pa.tool_use_id.clone(),
                },
                at,
            });
        }
        self.fire_hooks(pos, index);
    }

    /// Sends every approval hook watching the step (orchestrator.md §5.5.6).
    fn fire_hooks(&mut self, pos: usize, approval: usize) {
        if !self.inputs.webhooks_enabled {
            return;
        }
        let step_id = self.steps[pos].id.clone();
        let plan = std::sync::Arc::clone(&self.inputs.plan);
        let a = &self.approvals[approval];
        let approval_ns = json!({
            "run_id": a.run_id, "step_id": a.step_id, "tool_name": a.tool_name,
            "tool_use_id": a.tool_use_id, "arguments": a.arguments, "status": "pending",
        });
        let (address, tool_use_id) = (a.step_id.clone(), a.tool_use_id.clone());
        for hook_index in &plan.hooks {
            let hook = &plan.workflow.pipeline[*hook_index];
            if !hook.depends_on.iter().any(|d| d.value == step_id) {
                continue;
            }
            let StepKind::Webhook(w) = &hook.kind else {
                continue;
            };
            let ctx = self.context(vec![("approval", approval_ns.clone())]);
            let info = HookInfo {
                hook_id: hook.id.value.clone(),
                address: address.clone(),
                tool_use_id: tool_use_id.clone(),
            };
            match self.render_webhook(w, &ctx, &hook.id.value) {
                Ok(super::schedule::RenderedWebhook { url, headers, body }) => {
                    let body = match (&w.body, w.method.has_body()) {
                        (None, true) => Some(approval_ns.clone()),
                        _ => body,
                    };
                    self.effect(Effect::Webhook(Box::new(WebhookCall {
                        step_id: hook.id.value.clone(),
                        attempt: 1,
                        method: w.method.as_str(),
                        url,
                        headers,
                        body,
                        timeout_s: w.timeout_s,
                        max_attempts: w.max_attempts,
                        idempotency_key: format!(
                            "{}:{}:{}:{}",
                            self.run.id, hook.id.value, address, tool_use_id
                        ),
                        hook: Some(info),
                    })));
                }
                Err(cause) => {
                    let cause = self.scrub_text(&cause);
                    self.effect(Effect::HookFailed { hook: info, cause });
                }
            }
        }
    }

    /// A decision (orchestrator.md §2.10 "decide").
    pub(super) fn on_decide(
        &mut self,
        address: &str,
        tool_use_id: Option<&str>,
        approved: bool,
        comment: Option<String>,
        decided_by: Option<String>,
    ) -> Result<Box<ApprovalRecord>, DecideError> {
        let Some((pos, item)) = self.locate(address) else {
            return Err(DecideError::StepNotFound);
        };
        let candidates: Vec<usize> = (0..self.approvals.len())
            .filter(|i| self.approvals[*i].step_id == address)
            .collect();
        let target = match tool_use_id {
            Some(id) => candidates
                .iter()
                .copied()
                .find(|i| self.approvals[*i].tool_use_id == id),
            None => candidates
                .iter()
                .copied()
                .find(|i| self.approvals[*i].status == ApprovalStatus::Pending)
                .or_else(|| {
                    candidates
                        .iter()
                        .copied()
                        .max_by_key(|i| self.approvals[*i].created_at)
                }),
        };
        let Some(index) = target else {
            return Err(DecideError::ApprovalNotFound);
        };
        if self.approvals[index].status != ApprovalStatus::Pending {
            return Err(DecideError::AlreadyDecided(Box::new(
                self.approvals[index].clone(),
            )));
        }
        let now = self.now;
        let comment = comment.map(|c| self.scrub_text(&c));
        let a = &mut self.approvals[index];
        a.status = if approved {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Rejected
        };
        a.decided_at = Some(now);
        a.decided_by = decided_by;
        a.comment = comment;
        let timer = Timer::Approval {
            address: a.step_id.clone(),
            tool_use_id: a.tool_use_id.clone(),
        };
        let has_timer = a.expires_at.is_some();
        self.dirty.approvals.insert(index);
        self.emit_approval(index);
        if has_timer {
            self.effect(Effect::Disarm(timer));
        }
        self.act_on_decision(pos, item, index, approved);
        Ok(Box::new(self.approvals[index].clone()))
    }

    /// Resumes or fails the step after a decision (or a timeout treated as one).
    fn act_on_decision(&mut self, pos: usize, item: Option<u32>, index: usize, approved: bool) {
        if self.run.status.is_terminal()
            || self.target_status(pos, item) != Some(StepStatus::PendingApproval)
        {
            return;
        }
        let a = self.approvals[index].clone();
        if !approved && a.on_reject != "recover" {
            let error = format!("tool call rejected by reviewer: {}", a.tool_name);
            return self.fail_target(pos, item, "approval_rejected", error, None, None);
        }
        let resume = self.resume_for(&a, approved);
        self.resume_target(pos, item, resume);
    }

    /// The resume dispatch of a decided approval: checkpoint plus decision (and, for a
    /// rejection, the rejection result appended).
    pub(super) fn resume_for(&mut self, a: &ApprovalRecord, approved: bool) -> Resume {
        let mut messages: Vec<Value> = self
            .checkpoints
            .get(&a.step_id)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if approved {
            Resume {
                messages,
                approved: vec![a.tool_use_id.clone()],
                rejected: Vec::new(),
            }
        } else {
            messages.push(rejection_message(
                &messages,
                &a.tool_use_id,
                a.comment.as_deref(),
            ));
            Resume {
                messages,
                approved: Vec::new(),
                rejected: vec![a.tool_use_id.clone()],
            }
        }
    }

    /// `pending_approval → running` with `attempt + 1`, then the resume dispatch.
    fn resume_target(&mut self, pos: usize, item: Option<u32>, resume: Resume) {
        let now = self.now;
        match item {
            Some(i) => {
                if let Some(it) = self.item_mut(pos, i) {
                    it.status = StepStatus::Running;
                    it.attempt += 1;
                }
                self.emit_item(pos, i);
            }
            None => {
                let step = self.step_mut(pos);
                step.status = StepStatus::Running;
                step.attempt += 1;
                if let Some(ms) = step.timeout_remaining_ms.take() {
                    let at = now.saturating_add(Duration::from_millis(ms));
                    step.deadline_at = Some(at);
                    let id = step.id.clone();
                    self.effect(Effect::Arm {
                        timer: Timer::StepDeadline(id),
                        at,
                    });
                }
                self.emit_step(pos);
            }
        }
        self.dispatch_agent(pos, item, Some(resume));
    }

    /// An approval's timer fired (orchestrator.md §7.1).
    pub(super) fn on_approval_timeout(&mut self, address: &str, tool_use_id: &str) {
        let Some((pos, item)) = self.locate(address) else {
            return;
        };
        let Some(index) = self
            .approvals
            .iter()
            .position(|a| a.step_id == address && a.tool_use_id == tool_use_id)
        else {
            return;
        };
        if self.approvals[index].status != ApprovalStatus::Pending {
            return;
        }
        let now = self.now;
        self.approvals[index].status = ApprovalStatus::Timeout;
        self.approvals[index].decided_at = Some(now);
        self.dirty.approvals.insert(index);
        self.emit_approval(index);
        if self.approvals[index].timeout_behavior == "reject" {
            self.act_on_decision(pos, item, index, false);
        } else if !self.run.status.is_terminal()
            && self.target_status(pos, item) == Some(StepStatus::PendingApproval)
        {
            let error = format!("approval timed out: {}", self.approvals[index].tool_name);
            self.fail_target(pos, item, "approval_timeout", error, None, None);
        }
    }

    /// Every pending approval of the run becomes `cancelled` (the run ended).
    pub(super) fn cancel_pending_approvals(&mut self) {
        let now = self.now;
        for i in 0..self.approvals.len() {
            if self.approvals[i].status == ApprovalStatus::Pending {
                self.approvals[i].status = ApprovalStatus::Cancelled;
                self.approvals[i].decided_at = Some(now);
                self.dirty.approvals.insert(i);
                self.emit_approval(i);
                if self.approvals[i].expires_at.is_some() {
                    let timer = Timer::Approval {
                        address: self.approvals[i].step_id.clone(),
                        tool_use_id: self.approvals[i].tool_use_id.clone(),
                    };
                    self.effect(Effect::Disarm(timer));
                }
            }
        }
    }
}
