//! Scheduling (orchestrator.md §4): readiness derived from stored statuses, skip propagation,
//! suppression, conditions, the parallelism limit, and starting each step type.

use super::airlock::{self, Schemas};
use super::context::visible_output;
use super::transform::{merge_inputs, run_ops};
use super::{Effect, RunState, Timer, WebhookCall};
use crate::model::{RunStatus, StepStatus};
use ktsu_shared::project::{StepKind, TransformInput, WebhookStep};
use ktsu_shared::template::{format_text, NullPolicy};
use serde_json::{json, Map, Value};
use std::time::Duration;

impl RunState {
    /// `pending → running` (orchestrator.md §3.8): sets `started_at` and, for a root run with a
    /// timeout, `deadline_at` and its timer.
    pub(super) fn start_run(&mut self) {
        if self.run.status != RunStatus::Pending {
            return;
        }
        self.run.status = RunStatus::Running;
        self.run.started_at = Some(self.now);
        if let (true, Some(timeout)) = (self.run.is_root(), self.run.timeout_s) {
            let at = self.now.saturating_add(Duration::from_secs(timeout));
            self.run.deadline_at = Some(at);
            self.effect(Effect::Arm {
                timer: Timer::RunDeadline,
                at,
            });
        }
        self.touch_run();
        self.emit_run();
    }

    /// Starts every ready step (in pipeline order, within the parallelism limit), skips what
    /// must be skipped, and completes the run when every step is terminal.
    pub(super) fn schedule(&mut self) {
        loop {
            let mut progressed = false;
            for pos in 0..self.steps.len() {
                if self.run.status != RunStatus::Running {
                    return;
                }
                if self.steps[pos].status != StepStatus::Pending {
                    continue;
                }
                let deps = &self.inputs.plan.deps[pos];
                if deps.iter().any(|d| {
                    !matches!(
                        self.steps[*d].status,
                        StepStatus::Complete | StepStatus::Skipped
                    )
                }) {
                    continue;
                }
                if let Some(d) = deps
                    .iter()
                    .find(|d| self.steps[**d].status == StepStatus::Skipped)
                {
                    let message = self.steps[*d].id.clone();
                    self.skip_step(pos, "dependency_skipped", Some(message));
                    progressed = true;
                    continue;
                }
                let is_webhook = matches!(self.def(pos).kind, StepKind::Webhook(_));
                if is_webhook && !self.inputs.webhooks_enabled {
                    self.skip_step(pos, "suppressed", None);
                    progressed = true;
                    continue;
                }
                if let Some(cond) = self.def(pos).condition.clone() {
                    let ctx = self.context(Vec::new());
                    match cond.value.is_true(&ctx) {
                        Err(e) => {
                            let id = self.steps[pos].id.clone();
                            let error = format!("condition of step \"{id}\": {}", e.message);
                            self.fail_step(pos, "condition_error", error, None, None);
                            progressed = true;
                            continue;
                        }
                        Ok(false) => {
                            self.skip_step(pos, "condition_false", None);
                            progressed = true;
                            continue;
                        }
                        Ok(true) => {}
                    }
                }
                if self.running_steps() >= self.inputs.config.max_parallel_steps.max(1) {
                    continue;
                }
                self.start_step(pos);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        if self.run.status == RunStatus::Running
            && self.steps.iter().all(|s| s.status.is_terminal())
        {
            self.complete_run();
        }
    }

    /// `pending → running` for one step, then its execution.
    fn start_step(&mut self, pos: usize) {
        let now = self.now;
        let timeout = self.def(pos).timeout_s;
        let step = self.step_mut(pos);
        step.status = StepStatus::Running;
        step.attempt += 1;
        step.started_at = Some(now);
        if let Some(t) = timeout {
            let at = now.saturating_add(Duration::from_secs(t));
            step.deadline_at = Some(at);
            let id = step.id.clone();
            self.effect(Effect::Arm {
                timer: Timer::StepDeadline(id),
                at,
            });
        }
        self.emit_step(pos);
        match self.def(pos).kind.clone() {
            StepKind::Agent(a) if a.for_each.is_some() => self.start_fanout(pos),
            StepKind::Agent(_) => self.dispatch_agent(pos, None, None),
            StepKind::Transform(_) => self.run_transform(pos),
            StepKind::Webhook(w) => self.send_webhook(pos, &w),
            StepKind::Workflow(_) => self.start_child(pos),
        }
    }

    /// Marks a pending step skipped.
    pub(super) fn skip_step(&mut self, pos: usize, reason: &str, message: Option<String>) {
        let now = self.now;
        let step = self.step_mut(pos);
        step.status = StepStatus::Skipped;
        step.skip_reason = Some(reason.to_string());
        step.skip_message = message;
        step.ended_at = Some(now);
        step.metrics.duration_ms = 0;
        self.emit_step(pos);
    }

    /// Completes a running step after the step-level Air-Lock (schema (b)) on its output.
    pub(super) fn complete_checked(&mut self, pos: usize, output: Value) {
        let schema = self
            .def(pos)
            .output_schema
            .as_ref()
            .and_then(|s| s.compiled.clone());
        let subject = format!("step \"{}\"", self.steps[pos].id);
        let check = airlock::check(
            &output,
            Schemas {
                agent: None,
                step: schema.as_deref(),
            },
            &subject,
        );
        match check {
            Ok(()) => self.complete_step(pos, output),
            Err(r) => self.fail_step(
                pos,
                "airlock_violation",
                r.error,
                Some(output),
                Some(r.airlock),
            ),
        }
    }

    /// `running → complete`.
    pub(super) fn complete_step(&mut self, pos: usize, output: Value) {
        let output = self.scrub(output);
        let now = self.now;
        let started = self.steps[pos].started_at;
        let duration = self.elapsed_ms(started);
        let step = self.step_mut(pos);
        step.status = StepStatus::Complete;
        step.output = Some(output);
        step.ended_at = Some(now);
        step.deadline_at = None;
        step.metrics.duration_ms = duration;
        self.end_step_timers(pos);
        self.emit_step(pos);
    }

    /// `→ failed`, then fail-fast (or needs-human) for the run.
    pub(super) fn fail_step(
        &mut self,
        pos: usize,
        code: &str,
        error: String,
        raw_output: Option<Value>,
        airlock: Option<Value>,
    ) {
        let error = self.scrub_text(&error);
        let raw_output = raw_output.map(|r| self.scrub(r));
        let now = self.now;
        let started = self.steps[pos].started_at;
        let duration = self.elapsed_ms(started);
        let step = self.step_mut(pos);
        step.status = StepStatus::Failed;
        step.error = Some(error.clone());
        step.error_code = Some(code.to_string());
        step.raw_output = raw_output;
        step.airlock = airlock;
        step.ended_at = Some(now);
        step.deadline_at = None;
        step.metrics.duration_ms = duration;
        let id = step.id.clone();
        if self.steps[pos].items.is_some() {
            self.sweep_items(pos, "step_failed", &format!("step \"{id}\" failed"));
        }
        self.end_step_timers(pos);
        self.emit_step(pos);
        if code == "needs_human_review" {
            self.end_run(super::finish::RunEnd::NeedsHuman {
                code: code.to_string(),
                error,
                step: id,
            });
        } else {
            self.end_run(super::finish::RunEnd::Failed {
                code: code.to_string(),
                error,
                step: Some(id),
            });
        }
    }

    /// Disarms a step's timeout and heartbeat watch when it leaves `running`.
    pub(super) fn end_step_timers(&mut self, pos: usize) {
        if self.def(pos).timeout_s.is_some() {
            let id = self.steps[pos].id.clone();
            self.effect(Effect::Disarm(Timer::StepDeadline(id)));
        }
        if self.steps[pos].step_type == crate::model::StepType::Agent
            && self.steps[pos].items.is_none()
        {
            let address = self.steps[pos].id.clone();
            self.effect(Effect::Unwatch { address });
        }
    }

    /// Transforms run inline: `running` and the terminal transition land in one commit.
    fn run_transform(&mut self, pos: usize) {
        let StepKind::Transform(t) = self.def(pos).kind.clone() else {
            return;
        };
        let id = self.steps[pos].id.clone();
        // Built only for template inputs: the context copies every finished step's output, so
        // building it for every transform made a chain of n transforms cost O(n²) copies.
        let mut ctx = None;
        let mut inputs = Vec::with_capacity(t.inputs.len());
        for (i, input) in t.inputs.iter().enumerate() {
            match input {
                TransformInput::Step(s) => {
                    let v = self
                        .position(&s.value)
                        .map_or(Value::Null, |p| visible_output(&self.steps[p]));
                    inputs.push(v);
                }
                TransformInput::Template(tm) => match tm
                    .value
                    .eval(ctx.get_or_insert_with(|| self.context(Vec::new())))
                {
                    Ok(v) => inputs.push(v),
                    Err(e) => {
                        let error =
                            format!("transform.inputs[{i}] of step \"{id}\": {}", e.message);
                        self.fail_step(pos, "template_error", error, None, None);
                        return;
                    }
                },
            }
        }
        let steps = &self.steps;
        let lookup = |step_id: &str| {
            steps
                .iter()
                .find(|s| s.id == step_id)
                .map_or(Value::Null, visible_output)
        };
        match run_ops(merge_inputs(inputs), &t.ops, &lookup) {
            Ok(result) => self.complete_checked(pos, json!({ "result": result })),
            Err(e) => self.fail_step(pos, "transform_error", e.0, None, None),
        }
    }

    /// Renders a webhook's request (orchestrator.md §5.5.1); template errors fail the step.
    pub(super) fn render_webhook(
        &self,
        w: &WebhookStep,
        ctx: &ktsu_shared::template::Context,
        step_id: &str,
    ) -> Result<RenderedWebhook, String> {
        let site_error =
            |site: &str, detail: &str| format!("{site} of step \"{step_id}\": {detail}");
        let url = w
            .url
            .value
            .render(ctx)
            .map_err(|e| site_error("webhook.url", &e.message))?;
        if !ktsu_shared::project::decode::workflow::is_http_url(&url) {
            return Err(site_error(
                "webhook.url",
                &format!("\"{}\" is not an absolute http(s) URL", strip_query(&url)),
            ));
        }
        let mut headers = Vec::with_capacity(w.headers.len());
        for h in &w.headers {
            let name = &h.key.value;
            let value = match &h.value.value {
                ktsu_shared::template::TValue::Str(t) => match t.whole() {
                    Some(expr) => match expr.eval(ctx) {
                        Ok(Value::Null) => continue,
                        Ok(v) => format_text(&v),
                        Err(e) => {
                            return Err(site_error(
                                &format!("webhook.headers \"{name}\""),
                                &e.message,
                            ))
                        }
                    },
                    None => t.render(ctx).map_err(|e| {
                        site_error(&format!("webhook.headers \"{name}\""), &e.message)
                    })?,
                },
                other => match other.eval(ctx, NullPolicy::Keep) {
                    Ok(Value::Null) => continue,
                    Ok(v) => format_text(&v),
                    Err(e) => {
                        return Err(site_error(
                            &format!("webhook.headers \"{name}\""),
                            &e.message,
                        ))
                    }
                },
            };
            headers.push((name.clone(), value));
        }
        let body = if w.method.has_body() {
            match &w.body {
                Some(b) => Some(
                    b.value
                        .eval(ctx, NullPolicy::OmitNullEntries)
                        .map_err(|e| site_error("webhook.body", &e.message))?,
                ),
                None => Some(Value::Object(Map::new())),
            }
        } else {
            None
        };
        Ok(RenderedWebhook { url, headers, body })
    }

    pub(super) fn send_webhook(&mut self, pos: usize, w: &WebhookStep) {
        let id = self.steps[pos].id.clone();
        let ctx = self.context(Vec::new());
        match self.render_webhook(w, &ctx, &id) {
            Ok(RenderedWebhook { url, headers, body }) => {
                let attempt = self.steps[pos].attempt;
                let key = format!("{}:{}", self.run.id, id);
                self.effect(Effect::Webhook(Box::new(WebhookCall {
                    step_id: id,
                    attempt,
                    method: w.method.as_str(),
                    url,
                    headers,
                    body,
                    timeout_s: w.timeout_s,
                    max_attempts: w.max_attempts,
                    idempotency_key: key,
                    hook: None,
                })));
            }
            Err(error) => self.fail_step(pos, "template_error", error, None, None),
        }
    }

    /// A webhook step's request ended.
    pub(super) fn on_webhook_done(
        &mut self,
        step_id: &str,
        attempt: u32,
        result: Result<Value, super::WebhookFailure>,
    ) {
        let Some(pos) = self.position(step_id) else {
            return;
        };
        if self.run.status.is_terminal()
            || self.steps[pos].status != StepStatus::Running
            || self.steps[pos].attempt != attempt
        {
            return;
        }
        match result {
            Ok(output) => self.complete_checked(pos, output),
            Err(f) => self.fail_step(pos, "webhook_failed", f.error, f.raw_output, None),
        }
    }
}

/// A webhook request rendered from its templates.
pub(super) struct RenderedWebhook {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

/// URLs in error texts have their query string removed (orchestrator.md §3.11).
pub(super) fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}
