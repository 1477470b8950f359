//! Agent dispatch (orchestrator.md §5.2): resolution at every dispatch (params, defaults and
//! validation, prompts, tool servers, model group), the InvokeRequest, and what happens to a
//! dispatch; sub-workflow starts (§5.6).

use super::{Dispatch, Effect, RunState};
use crate::model::{RunRecord, RunStatus, StepStatus, Totals};
use crate::snapshot::AgentPlan;
use crate::store::NewRun;
use ktsu_shared::project::{
    AuthScheme, OnReject, StepKind, TemplatedEntry, TimeoutBehavior, WebhookMode,
};
use ktsu_shared::schema::{apply_defaults, redact_secret_params, CompiledSchema};
use ktsu_shared::template::{format_text, Context, NullPolicy, TValue};
use ktsu_shared::wire::invoke::{
    self, ApprovalRule, InvokeRequest, ModelSpec, Timeouts, ToolServerSpec,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The decisions a resume dispatch carries (orchestrator.md §7.1).
#[derive(Debug, Clone, Default)]
pub(super) struct Resume {
    pub messages: Vec<Value>,
    pub approved: Vec<String>,
    pub rejected: Vec<String>,
}

/// A resolution failure: the step (or item) fails with this code and text.
pub(super) struct Refusal {
    pub code: &'static str,
    pub error: String,
}

/// Evaluates a `name → template` map; an entry whose whole placeholder yields null is omitted
/// (config.md §3.5), so that defaults apply.
pub(super) fn eval_entries(
    entries: &[TemplatedEntry],
    ctx: &Context,
    site: &str,
    step_id: &str,
) -> Result<Map<String, Value>, Refusal> {
    let mut out = Map::new();
    for e in entries {
        let value = e
            .value
            .value
            .eval(ctx, NullPolicy::OmitNullEntries)
            .map_err(|err| Refusal {
                code: "template_error",
                error: format!(
                    "{site} \"{}\" of step \"{step_id}\": {}",
                    e.key.value, err.message
                ),
            })?;
        let whole = matches!(&e.value.value, TValue::Str(t) if t.whole().is_some());
        if value.is_null() && whole {
            continue;
        }
        out.insert(e.key.value.clone(), value);
    }
    Ok(out)
}

/// Applies a params schema's defaults and validates; the refusal lists every violation.
pub(super) fn validate_params(
    params: &mut Value,
    schema: Option<&ktsu_shared::project::SchemaField>,
    code: &'static str,
    describe: impl Fn(String) -> String,
) -> Result<(), Refusal> {
    let Some(schema) = schema else {
        return Ok(());
    };
    apply_defaults(&schema.value, params);
    let Some(compiled): Option<&Arc<CompiledSchema>> = schema.compiled.as_ref() else {
        return Ok(());
    };
    let violations = compiled.violations(params);
    if violations.is_empty() {
        return Ok(());
    }
    let listed = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(Refusal {
        code,
        error: describe(listed),
    })
}

fn seconds(ms: u128) -> f64 {
    (ms as f64 / 1000.0).max(0.0)
}

impl RunState {
    /// Resolves and dispatches an agent step or item (a fresh leg when `resume` is None).
    pub(super) fn dispatch_agent(&mut self, pos: usize, item: Option<u32>, resume: Option<Resume>) {
        match self.build_request(pos, item, resume) {
            Ok(request) => {
                let address = request.step_id.clone();
                let attempt = request.attempt;
                self.effect(Effect::Dispatch(Box::new(Dispatch {
                    address,
                    attempt,
                    request,
                })));
            }
            Err(r) => self.fail_target(pos, item, r.code, r.error, None, None),
        }
    }

    /// The InvokeRequest of a dispatch (orchestrator.md §5.2.1–§5.2.2), without `budget`.
    fn build_request(
        &mut self,
        pos: usize,
        item: Option<u32>,
        resume: Option<Resume>,
    ) -> Result<InvokeRequest, Refusal> {
        let def = self.def(pos).clone();
        let StepKind::Agent(a) = &def.kind else {
            return Err(Refusal {
                code: "internal_error",
                error: "internal error".into(),
            });
        };
        let plan: Arc<AgentPlan> = self
            .inputs
            .plan
            .agents
            .get(&self.inputs.plan.dag[pos])
            .cloned()
            .ok_or(Refusal {
                code: "internal_error",
                error: "internal error".into(),
            })?;
        let step_id = self.steps[pos].id.clone();
        let base = self.context(Vec::new());
        let ctx = match item.and_then(|i| self.item(pos, i)) {
            Some(it) => self.item_context(&base, &it.item.clone(), it.index),
            None => base,
        };
        let mut params = Value::Object(eval_entries(&a.params, &ctx, "param", &step_id)?);
        let agent = &plan.agent;
        let name = agent.name.value.clone();
        validate_params(
            &mut params,
            agent.params_schema.as_ref(),
            "agent_params_invalid",
            |v| format!("params for agent \"{name}\" in step \"{step_id}\" are invalid: {v}"),
        )?;
        let secret_names: Vec<String> = agent
            .params_schema
            .as_ref()
            .map(|s| {
                s.property_names()
                    .into_iter()
                    .filter(|p| s.is_secret(p))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut secrets: Vec<String> = secret_names
            .iter()
            .filter_map(|n| params.get(n).map(format_text))
            .collect();
        let agent_ctx = Context::from_namespaces([("params", params.clone())]);
        let render = |t: &ktsu_shared::template::Template| {
            t.render(&agent_ctx).map_err(|e| Refusal {
                code: "template_error",
                error: format!(
                    "prompt of agent \"{name}\" in step \"{step_id}\": {}",
                    e.message
                ),
            })
        };
        let user_message = match &agent.user {
            Some(t) => render(&t.value)?,
            None => {
                let mut public = params.clone();
                if let Value::Object(m) = &mut public {
                    m.retain(|k, _| !secret_names.contains(k));
                }
                format_text(&public)
            }
        };
        let reflect = match &agent.reflect {
            Some(t) => render(&t.value)?,
            None => String::new(),
        };
        let mut tool_servers = Vec::with_capacity(plan.servers.len());
        for sp in &plan.servers {
            let server = &sp.server;
            let mut values: BTreeMap<String, String> = BTreeMap::new();
            let mut secret_keys = Vec::new();
            for p in &server.params {
                let given = sp
                    .reference
                    .params
                    .iter()
                    .find(|(k, _)| k.value == p.name.value);
                let value = match given {
                    Some((_, t)) => {
                        let v = match t.value.whole() {
                            Some(expr) => expr
                                .eval(&agent_ctx)
                                .map(|v| (!v.is_null()).then(|| format_text(&v))),
                            None => t.value.render(&agent_ctx).map(Some),
                        }
                        .map_err(|e| Refusal {
                            code: "template_error",
                            error: format!(
                                "server param \"{}\" of step \"{step_id}\": {}",
                                p.name.value, e.message
                            ),
                        })?;
                        v.or_else(|| p.default.as_ref().map(format_text))
                    }
                    None => p.default.as_ref().map(format_text),
                };
                let Some(value) = value else {
                    return Err(Refusal {
                        code: "agent_params_invalid",
                        error: format!(
                            "params for agent \"{name}\" in step \"{step_id}\" are invalid: server \"{}\" param \"{}\" has no value",
                            server.name.value, p.name.value
                        ),
                    });
                };
                if p.secret {
                    secret_keys.push(p.name.value.clone());
                    secrets.push(value.clone());
                }
                values.insert(p.name.value.clone(), value);
            }
            let (auth_header, auth_value) = match &server.auth {
                Some(auth) => {
                    let secret = auth
                        .secret_param()
                        .and_then(|n| values.get(n))
                        .cloned()
                        .unwrap_or_default();
                    let value = match auth.scheme {
                        AuthScheme::Bearer => format!("Bearer {secret}"),
                        AuthScheme::Raw => secret,
                    };
                    secrets.push(value.clone());
                    (auth.header.clone(), value)
                }
                None => (String::new(), String::new()),
            };
            let allowlist = sp
                .reference
                .allowlist
                .as_ref()
                .map(|entries| entries.iter().map(|e| e.pattern.value.clone()).collect());
            let approval_rules = sp
                .reference
                .allowlist
                .iter()
                .flatten()
                .filter_map(|e| {
                    let policy = e.approval?;
                    Some(ApprovalRule {
                        pattern: e.pattern.value.clone(),
                        on_reject: match policy.on_reject {
                            OnReject::Fail => invoke::OnReject::Fail,
                            OnReject::Recover => invoke::OnReject::Recover,
                        },
                        timeout_ms: policy
                            .timeout
                            .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                        timeout_behavior: match policy.timeout_behavior {
                            TimeoutBehavior::Fail => invoke::TimeoutBehavior::Fail,
                            TimeoutBehavior::Reject => invoke::TimeoutBehavior::Reject,
                        },
                    })
                })
                .collect();
            tool_servers.push(ToolServerSpec {
                name: sp
                    .reference
                    .name
                    .as_ref()
                    .map_or_else(|| server.name.value.clone(), |n| n.value.clone()),
                url: server.url.value.clone(),
                allowlist,
                persistent_id: String::new(),
                auth_header,
                auth_value,
                params: values,
                secret_keys,
                timeout_s: Some(server.timeout_s as f64),
                approval_rules,
            });
        }
        self.add_secrets(secrets);
        let group = self.effective_group(
            a.model_group
                .as_ref()
                .map_or(&agent.model.value, |g| &g.value),
        );
        let address = self.address(pos, item);
        let attempt = match item {
            Some(i) => self.item(pos, i).map_or(1, |it| it.attempt),
            None => self.steps[pos].attempt,
        };
        let timeouts = self.step_seconds_left(pos).map(|step_s| Timeouts {
            step_s: Some(step_s),
            llm_call_s: None,
        });
        let resume = resume.unwrap_or_default();
        let is_resume = !resume.messages.is_empty();
        Ok(InvokeRequest {
            run_id: self.run.id.clone(),
            step_id: address.clone(),
            attempt: attempt.max(1),
            agent_name: name.clone(),
            workflow: self.run.workflow_name.clone(),
            item_index: item,
            system: agent.system.value.clone(),
            user_message,
            reflect,
            confidence_threshold: a.confidence_threshold.unwrap_or(0.0),
            max_turns: i64::from(agent.max_turns),
            model: ModelSpec {
                group,
                max_tokens: a
                    .max_tokens
                    .map_or(1024, |m| i64::try_from(m).unwrap_or(i64::MAX)),
            },
            tool_servers,
            callback_url: format!(
                "{}/runs/{}/steps/{address}/complete?attempt={}",
                self.inputs.config.own_url,
                self.run.id,
                attempt.max(1)
            ),
            output_schema: agent.output_schema.as_ref().map(|s| s.value.clone()),
            messages: resume.messages,
            approved_tool_calls: resume.approved,
            rejected_tool_calls: resume.rejected,
            is_resume,
            budget: None,
            timeouts,
        })
    }

    /// Adds resolved secret values to the run's secret set (rebuilt only when new).
    fn add_secrets(&mut self, values: Vec<String>) {
        let fresh: Vec<String> = values
            .into_iter()
            .filter(|v| !v.is_empty() && !self.inputs.scrubber.finds_secret_in(v))
            .collect();
        if !fresh.is_empty() {
            self.inputs.scrubber = self.inputs.scrubber.with_values(fresh);
        }
    }

    /// Group resolution (config.md §2.1): `force_group`, else `group_map[g]`, else g.
    fn effective_group(&self, g: &str) -> String {
        let Some(policy) = &self.inputs.root_policy else {
            return g.to_string();
        };
        if let Some(f) = &policy.force_group {
            return f.value.clone();
        }
        policy
            .group_map
            .iter()
            .find(|(from, _)| from.value == g)
            .map_or_else(|| g.to_string(), |(_, to)| to.value.clone())
    }

    /// Seconds from now to the earlier of the step and run deadlines, when either exists.
    fn step_seconds_left(&self, pos: usize) -> Option<f64> {
        let deadlines = [
            self.steps[pos].deadline_at,
            self.inputs.root_deadline.or(self.run.deadline_at),
        ];
        let earliest = deadlines.into_iter().flatten().min()?;
        Some(seconds(earliest.duration_since(self.now).as_millis()))
    }

    /// A runtime accepted an attempt: record it and start heartbeat supervision.
    pub(super) fn on_dispatched(
        &mut self,
        address: &str,
        attempt: u32,
        runtime_id: String,
        runtime_url: &str,
    ) {
        let Some((pos, item)) = self.locate(address) else {
            return;
        };
        if self.run.status.is_terminal()
            || self.current_attempt(pos, item) != Some(attempt)
            || self.target_status(pos, item) != Some(StepStatus::Running)
        {
            return;
        }
        match item {
            Some(i) => {
                if let Some(it) = self.item_mut(pos, i) {
                    it.runtime_id = Some(runtime_id.clone());
                }
            }
            None => self.step_mut(pos).runtime_id = Some(runtime_id.clone()),
        }
        self.emit(
            "step.dispatched",
            serde_json::json!({"step_id": address, "attempt": attempt, "runtime_id": runtime_id, "runtime_url": runtime_url}),
        );
        self.effect(Effect::Watch {
            address: address.to_string(),
            attempt,
        });
    }

    /// The current attempt of a step or item.
    pub(super) fn current_attempt(&self, pos: usize, item: Option<u32>) -> Option<u32> {
        match item {
            Some(i) => self.item(pos, i).map(|it| it.attempt),
            None => Some(self.steps[pos].attempt),
        }
    }

    pub(super) fn target_status(&self, pos: usize, item: Option<u32>) -> Option<StepStatus> {
        match item {
            Some(i) => self.item(pos, i).map(|it| it.status),
            None => Some(self.steps[pos].status),
        }
    }

    /// A dispatch that could not be made, or a lost heartbeat: the current attempt fails.
    pub(super) fn on_attempt_failed(
        &mut self,
        address: &str,
        attempt: u32,
        code: &str,
        error: String,
    ) {
        let Some((pos, item)) = self.locate(address) else {
            return;
        };
        if self.run.status.is_terminal()
            || self.current_attempt(pos, item) != Some(attempt)
            || self.target_status(pos, item) != Some(StepStatus::Running)
        {
            return;
        }
        self.fail_target(pos, item, code, error, None, None);
    }

    pub(super) fn on_heartbeat_lost(&mut self, address: &str, attempt: u32) {
        let Some((pos, item)) = self.locate(address) else {
            return;
        };
        if self.run.status.is_terminal()
            || self.current_attempt(pos, item) != Some(attempt)
            || self.target_status(pos, item) != Some(StepStatus::Running)
        {
            return;
        }
        let runtime = match item {
            Some(i) => self.item(pos, i).and_then(|it| it.runtime_id.clone()),
            None => self.steps[pos].runtime_id.clone(),
        };
        if let Some(runtime_id) = runtime {
            self.effect(Effect::CancelRuntime {
                runtime_id,
                address: address.to_string(),
                attempt,
                reason: "heartbeat timeout".into(),
            });
        }
        let id = self.steps[pos].id.clone();
        let error = format!("no heartbeat for step \"{id}\" attempt {attempt}");
        self.fail_target(pos, item, "heartbeat_timeout", error, None, None);
    }

    /// Fails a step or one of its items.
    pub(super) fn fail_target(
        &mut self,
        pos: usize,
        item: Option<u32>,
        code: &str,
        error: String,
        raw_output: Option<Value>,
        airlock: Option<Value>,
    ) {
        match item {
            Some(i) => self.fail_item(pos, i, code, error, raw_output, airlock),
            None => self.fail_step(pos, code, error, raw_output, airlock),
        }
    }

    /// Starts a sub-workflow step (orchestrator.md §5.6): child params evaluated, defaulted and
    /// validated; the child run and its steps created in this commit; its actor started after.
    pub(super) fn start_child(&mut self, pos: usize) {
        let def = self.def(pos).clone();
        let StepKind::Workflow(w) = &def.kind else {
            return;
        };
        let Some(child) = self
            .inputs
            .plan
            .children
            .get(&self.inputs.plan.dag[pos])
            .cloned()
        else {
            self.fail_step(pos, "internal_error", "internal error".into(), None, None);
            return;
        };
        let step_id = self.steps[pos].id.clone();
        let ctx = self.context(Vec::new());
        let mut params = match eval_entries(&w.params, &ctx, "input", &step_id).and_then(|mut p| {
            eval_entries(&w.input, &ctx, "input", &step_id).map(|i| {
                p.extend(i);
                p
            })
        }) {
            Ok(p) => Value::Object(p),
            Err(r) => return self.fail_step(pos, r.code, r.error, None, None),
        };
        let child_name = child.name().to_string();
        if let Err(r) = validate_params(
            &mut params,
            child.workflow.params_schema.as_ref(),
            "subworkflow_input_invalid",
            |v| {
                format!(
                    "input of sub-workflow \"{child_name}\" in step \"{step_id}\" is invalid: {v}"
                )
            },
        ) {
            return self.fail_step(pos, r.code, r.error, None, None);
        }
        let child_id = ktsu_shared::ids::sub_run_id(&self.run.id, &step_id);
        let mut payload = params.clone();
        if let Some(schema) = &child.workflow.params_schema {
            redact_secret_params(&schema.value, &mut payload);
        }
        let payload = self.scrub(payload);
        let record = RunRecord {
            id: child_id.clone(),
            workflow_name: child_name,
            status: RunStatus::Pending,
            root_run_id: self.run.root_run_id.clone(),
            parent_run_id: Some(self.run.id.clone()),
            parent_step_id: Some(step_id),
            created_at: self.now,
            updated_at: self.now,
            started_at: None,
            completed_at: None,
            deadline_at: None,
            timeout_s: None,
            budget_usd: None,
            payload,
            output: None,
            error: None,
            error_code: None,
            failed_step: None,
            cancel_reason: None,
            totals: Totals::default(),
            version: 1,
        };
        let (run, steps) = super::state::initial_records(&child, record);
        self.dirty.children.push(NewRun { run, steps });
        self.step_mut(pos).child_run_id = Some(child_id.clone());
        let webhooks = self.inputs.webhooks_enabled
            && w.webhooks == WebhookMode::Execute
            && child.workflow.webhooks == WebhookMode::Execute;
        self.effect(Effect::StartChild {
            run_id: child_id,
            params,
            webhooks_enabled: webhooks,
        });
    }

    /// A sub-run ended (orchestrator.md §5.6 step 6).
    pub(super) fn on_child_finished(&mut self, step_id: &str, outcome: super::ChildOutcome) {
        let Some(pos) = self.position(step_id) else {
            return;
        };
        if self.run.status.is_terminal() || self.steps[pos].status != StepStatus::Running {
            return;
        }
        let mut metrics = outcome.metrics;
        metrics.duration_ms = 0;
        self.step_mut(pos).metrics = metrics;
        match outcome.status {
            RunStatus::Complete => {
                self.complete_checked(pos, outcome.output.unwrap_or(Value::Null))
            }
            RunStatus::Failed | RunStatus::NeedsHumanReview => {
                let name = self
                    .inputs
                    .plan
                    .children
                    .get(&self.inputs.plan.dag[pos])
                    .map(|c| c.name().to_string())
                    .unwrap_or_default();
                let code = outcome
                    .error_code
                    .unwrap_or_else(|| "internal_error".into());
                let error = format!(
                    "sub-workflow \"{name}\" failed: {}",
                    outcome.error.unwrap_or_default()
                );
                self.fail_step(pos, &code, error, None, None);
            }
            // A child is only cancelled when this run ends first; nothing to do.
            RunStatus::Cancelled | RunStatus::Pending | RunStatus::Running => {}
        }
    }
}
