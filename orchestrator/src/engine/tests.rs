//! Engine tests: real projects loaded through the validator, driven event by event.

use super::*;
use crate::model::{ApprovalStatus, StepStatus, Totals};
use crate::snapshot::Snapshot;
use ktsu_shared::project::LoadOptions;
use ktsu_shared::secret::Scrubber;
use ktsu_shared::wire::callback::{CallbackStatus, IgnoreReason, Metrics, PendingApproval};
use ktsu_shared::wire::invoke;
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const AGENT: &str = r#"name: worker
model: standard
params:
  schema:
    type: object
    properties:
      text: { type: string }
      n: { type: integer }
prompt:
  system: You work.
  user: "Do {{ params.text }}"
output:
  schema:
    type: object
    required: [answer]
    properties:
      answer: { type: string }
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    snapshot: Snapshot,
}

fn project(files: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<(&str, &str)> = vec![("agents/worker.agent.yaml", AGENT)];
    all.extend_from_slice(files);
    for (path, content) in all {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    let env: HashMap<String, String> =
        [("API_KEY".to_string(), "secret-key-value".to_string())].into();
    let opts = LoadOptions {
        project_dir: dir.path().to_path_buf(),
        ..LoadOptions::default()
    };
    let snapshot = match Snapshot::load(&opts, &env) {
        Ok(s) => s,
        Err(crate::snapshot::SnapshotError::Invalid(d)) => {
            panic!(
                "invalid fixture: {}",
                d.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        }
        Err(e) => panic!("{e}"),
    };
    Fixture {
        _dir: dir,
        snapshot,
    }
}

fn t0() -> Timestamp {
    Timestamp::parse("2026-01-01T00:00:00Z").unwrap()
}

fn at(ms: u64) -> Timestamp {
    t0().saturating_add(Duration::from_millis(ms))
}

fn state(f: &Fixture, name: &str, params: Value) -> RunState {
    let (id, plan) = f.snapshot.find_invocable(name).unwrap();
    let plan = Arc::clone(plan);
    let run = RunRecord {
        id: "run_0123456789abcdef".into(),
        workflow_name: plan.name().to_string(),
        status: RunStatus::Pending,
        root_run_id: "run_0123456789abcdef".into(),
        parent_run_id: None,
        parent_step_id: None,
        created_at: t0(),
        updated_at: t0(),
        started_at: None,
        completed_at: None,
        deadline_at: None,
        timeout_s: plan
            .workflow
            .model_policy
            .as_ref()
            .and_then(|p| p.timeout_s),
        budget_usd: None,
        payload: params.clone(),
        output: None,
        error: None,
        error_code: None,
        failed_step: None,
        cancel_reason: None,
        totals: Totals::default(),
        version: 1,
    };
    let (run, steps) = initial_records(&plan, run);
    let inputs = RunInputs {
        root_policy: plan.workflow.model_policy.clone(),
        plan,
        params,
        env: f.snapshot.env.get(&id).cloned(),
        root_deadline: None,
        webhooks_enabled: true,
        scrubber: Scrubber::new(f.snapshot.secrets.clone()),
        config: Arc::new(EngineConfig {
            own_url: "http://orch:5050".into(),
            max_parallel_steps: 16,
            fanout_max_items: 100,
        }),
    };
    RunState::new(inputs, run, steps, Vec::new(), HashMap::new())
}

fn dispatches(o: &Outcome) -> Vec<&Dispatch> {
    o.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Dispatch(d) => Some(d.as_ref()),
            _ => None,
        })
        .collect()
}

fn ok(output: Value) -> Box<CallbackPayload> {
    Box::new(CallbackPayload {
        status: CallbackStatus::Ok,
        output: Some(output),
        metrics: Metrics {
            tokens_in: 10,
            tokens_out: 5,
            cost_usd: 0.001,
            llm_calls: 1,
            model_resolved: "mock/default".into(),
            ..Metrics::default()
        },
        ..CallbackPayload::new(CallbackStatus::Ok)
    })
}

fn failed(code: &str, error: &str) -> Box<CallbackPayload> {
    Box::new(CallbackPayload {
        status: CallbackStatus::Failed,
        error: error.into(),
        error_code: Some(code.into()),
        ..CallbackPayload::new(CallbackStatus::Ok)
    })
}

fn callback(
    s: &mut RunState,
    address: &str,
    attempt: u32,
    payload: Box<CallbackPayload>,
    ms: u64,
) -> Outcome {
    s.apply(
        Event::Callback {
            address: address.into(),
            attempt: Some(attempt),
            payload,
        },
        at(ms),
    )
}

fn status(s: &RunState, id: &str) -> StepStatus {
    s.steps.iter().find(|x| x.id == id).unwrap().status
}

fn event_names(o: &Outcome) -> Vec<String> {
    o.changes.events.iter().map(|e| e.event.clone()).collect()
}

const CHAIN: &str = r#"kind: workflow
name: chain
params:
  schema:
    type: object
    properties:
      text: { type: string, default: hello }
pipeline:
  - id: first
    agent: agents/worker.agent.yaml
    params: { text: "{{ params.text }}" }
  - id: shape
    transform:
      inputs: [ { from: first } ]
      ops: [ { map: { expr: "{upper: answer}" } } ]
output:
  map: { result: "{{ step.shape.result.upper }}" }
"#;

#[test]
fn a_chain_runs_to_completion_with_records_events_and_output() {
    let f = project(&[("workflows/chain.workflow.yaml", CHAIN)]);
    let mut s = state(&f, "chain", json!({"text": "hello"}));
    let o = s.apply(Event::Start, at(0));
    assert_eq!(event_names(&o), vec!["run.running", "step.running"]);
    let d = dispatches(&o);
    assert_eq!(d.len(), 1);
    let req = &d[0].request;
    assert_eq!(req.step_id, "first");
    assert_eq!(req.attempt, 1);
    assert_eq!(req.user_message, "Do hello");
    assert_eq!(
        req.callback_url,
        "http://orch:5050/runs/run_0123456789abcdef/steps/first/complete?attempt=1"
    );
    assert_eq!(req.model.group, "standard");
    assert_eq!(req.model.max_tokens, 1024);
    assert!(o.changes.run.is_some() && o.changes.steps.len() == 1);

    let o = s.apply(
        Event::Dispatched {
            address: "first".into(),
            attempt: 1,
            runtime_id: "rt-1".into(),
            runtime_url: "http://rt:5051".into(),
        },
        at(1),
    );
    assert!(o.effects.contains(&Effect::Watch {
        address: "first".into(),
        attempt: 1
    }));

    let o = callback(
        &mut s,
        "first",
        1,
        ok(json!({"answer": "hi", "ktsu_confidence": 0.9})),
        40,
    );
    assert_eq!(o.reply, Some(Reply::Callback(CallbackAnswer::Accepted)));
    assert_eq!(
        event_names(&o),
        vec![
            "step.complete",
            "step.running",
            "step.complete",
            "run.complete"
        ]
    );
    assert_eq!(s.run.status, RunStatus::Complete);
    assert_eq!(s.run.output, Some(json!({"result": "hi"})));
    let first = &s.steps[0];
    assert_eq!(
        first.output,
        Some(json!({"answer": "hi"})),
        "reserved fields never reach downstream"
    );
    assert_eq!(first.metrics.duration_ms, 40);
    assert_eq!(first.metrics.tokens_in, 10);
    assert_eq!(first.runtime_id.as_deref(), Some("rt-1"));
    assert_eq!(
        s.steps[1].output,
        Some(json!({"result": {"upper": "hi"}})),
        "map on a non-array applies to the value itself"
    );
    assert_eq!(s.run.totals.tokens_in, 10);
    assert!(o.effects.contains(&Effect::Finished));

    // late and duplicate callbacks change nothing
    let o = callback(&mut s, "first", 1, ok(json!({"answer": "again"})), 50);
    assert_eq!(
        o.reply,
        Some(Reply::Callback(CallbackAnswer::Ignored {
            reason: IgnoreReason::RunFinished
        }))
    );
    assert!(o.changes.is_empty());
}

#[test]
fn stale_duplicate_and_unexpected_callbacks_are_ignored() {
    let f = project(&[("workflows/chain.workflow.yaml", CHAIN)]);
    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    let stale = callback(&mut s, "first", 7, ok(json!({"answer": "x"})), 5);
    assert_eq!(
        stale.reply,
        Some(Reply::Callback(CallbackAnswer::Ignored {
            reason: IgnoreReason::StaleAttempt
        }))
    );
    let unexpected = callback(&mut s, "shape", 1, ok(json!({})), 5);
    assert_eq!(
        unexpected.reply,
        Some(Reply::Callback(CallbackAnswer::Ignored {
            reason: IgnoreReason::Unexpected
        }))
    );
    let item_on_plain = callback(&mut s, "first.0", 1, ok(json!({})), 5);
    assert_eq!(
        item_on_plain.reply,
        Some(Reply::Callback(CallbackAnswer::Ignored {
            reason: IgnoreReason::Unexpected
        }))
    );
    callback(
        &mut s,
        "first",
        1,
        failed("max_turns_exceeded", "max_turns_exceeded"),
        6,
    );
    let dup = callback(&mut s, "first", 1, ok(json!({"answer": "x"})), 7);
    assert_eq!(
        dup.reply,
        Some(Reply::Callback(CallbackAnswer::Ignored {
            reason: IgnoreReason::RunFinished
        }))
    );
    assert_eq!(s.run.status, RunStatus::Failed);
    assert_eq!(s.run.error_code.as_deref(), Some("max_turns_exceeded"));
    assert_eq!(
        s.run.error.as_deref(),
        Some("agent step failed: max_turns_exceeded")
    );
    assert_eq!(s.run.failed_step.as_deref(), Some("first"));
    assert_eq!(status(&s, "shape"), StepStatus::Skipped);
    assert_eq!(s.steps[1].skip_reason.as_deref(), Some("run_failed"));
}

#[test]
fn default_params_reach_the_agent_and_the_query_attempt_wins() {
    let f = project(&[("workflows/chain.workflow.yaml", CHAIN)]);
    let mut s = state(&f, "chain", json!({"text": "hello"}));
    s.apply(Event::Start, at(0));
    // the query attempt (Some(1)) wins over the body's attempt
    let mut p = ok(json!({"answer": "a"}));
    p.attempt = Some(9);
    let o = callback(&mut s, "first", 1, p, 3);
    assert_eq!(o.reply, Some(Reply::Callback(CallbackAnswer::Accepted)));
}

const FAN: &str = r#"kind: workflow
name: fan
params:
  schema:
    type: object
    properties:
      list: { type: array }
pipeline:
  - id: each
    agent: agents/worker.agent.yaml
    for_each: { from: params.list, concurrency: 2, max_failures: -1 }
    params: { text: "{{ item }}", n: "{{ item_index }}" }
"#;

#[test]
fn fan_out_runs_items_within_concurrency_and_keeps_input_order() {
    let f = project(&[("workflows/fan.workflow.yaml", FAN)]);
    let mut s = state(&f, "fan", json!({"list": ["a", "b", "c"]}));
    let o = s.apply(Event::Start, at(0));
    let d = dispatches(&o);
    assert_eq!(
        d.iter().map(|d| d.address.as_str()).collect::<Vec<_>>(),
        vec!["each.0", "each.1"]
    );
    assert_eq!(d[1].request.user_message, "Do b");
    assert_eq!(d[1].request.item_index, Some(1));
    assert_eq!(
        o.changes.items.len(),
        3,
        "items are created with the step's running commit"
    );

    let o = callback(&mut s, "each.1", 1, failed("output_invalid", "bad"), 10);
    assert_eq!(
        dispatches(&o)
            .iter()
            .map(|d| d.address.as_str())
            .collect::<Vec<_>>(),
        vec!["each.2"]
    );
    callback(
        &mut s,
        "each.2",
        1,
        ok(json!({"answer": "C", "ktsu_flags": ["x"]})),
        20,
    );
    let o = callback(
        &mut s,
        "each.0",
        1,
        ok(json!({"answer": "A", "ktsu_flags": ["y", "x"]})),
        30,
    );
    assert!(event_names(&o).contains(&"step.complete".to_string()));
    assert_eq!(s.run.status, RunStatus::Complete);
    let each = &s.steps[0];
    assert_eq!(
        each.output,
        Some(
            json!({"results": [{"answer": "A"}, {"ktsu_error": "agent step failed: bad", "item_index": 1}, {"answer": "C"}]})
        )
    );
    assert_eq!(each.flags, vec!["y", "x"]);
    assert_eq!(each.metrics.tokens_in, 20);
}

#[test]
fn fan_out_failure_rules() {
    let zero = FAN.replace("max_failures: -1", "max_failures: 0");
    let f = project(&[("workflows/fan.workflow.yaml", &zero)]);
    let mut s = state(&f, "fan", json!({"list": ["a", "b", "c"]}));
    s.apply(Event::Start, at(0));
    let o = callback(&mut s, "each.1", 1, failed("output_invalid", "bad"), 10);
    assert_eq!(s.run.status, RunStatus::Failed);
    assert_eq!(s.run.error_code.as_deref(), Some("fanout_item_failed"));
    assert_eq!(
        s.run.error.as_deref(),
        Some("fanout item 1 failed: agent step failed: bad")
    );
    let items = s.steps[0].items.as_ref().unwrap();
    assert_eq!(items[0].status, StepStatus::Cancelled);
    assert_eq!(items[2].status, StepStatus::Skipped);
    assert_eq!(items[2].skip_reason.as_deref(), Some("step_failed"));
    assert!(
        o.effects
            .iter()
            .all(|e| !matches!(e, Effect::CancelRuntime { .. })),
        "no runtime was recorded yet"
    );

    // not an array
    let f = project(&[("workflows/fan.workflow.yaml", FAN)]);
    let mut s = state(&f, "fan", json!({"list": "nope"}));
    s.apply(Event::Start, at(0));
    assert_eq!(s.run.error_code.as_deref(), Some("fanout_source_invalid"));
    assert_eq!(
        s.run.error.as_deref(),
        Some("for_each.from must evaluate to an array, got string")
    );

    // empty
    let mut s = state(&f, "fan", json!({"list": []}));
    s.apply(Event::Start, at(0));
    assert_eq!(s.run.status, RunStatus::Complete);
    assert_eq!(s.steps[0].output, Some(json!({"results": []})));

    // an item's injection attempt fails the run whatever max_failures says
    let mut s = state(&f, "fan", json!({"list": ["a", "b"]}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "each.0",
        1,
        ok(json!({"answer": "x", "ktsu_injection_attempt": true})),
        5,
    );
    assert_eq!(s.run.status, RunStatus::Failed);
    assert_eq!(s.run.error_code.as_deref(), Some("injection_attempt"));
}

const BRANCH: &str = r#"kind: workflow
name: branch
params:
  schema:
    type: object
    properties:
      go: { type: boolean }
pipeline:
  - id: gate
    condition: params.go
    agent: agents/worker.agent.yaml
  - id: after
    transform: { inputs: [ { from: gate } ], ops: [ { flatten: {} } ] }
  - id: other
    condition: "`0`"
    transform: { ops: [ { filter: { expr: "@" } } ] }
  - id: bad
    condition: "length(params.go)"
    depends_on: [other]
    transform: { ops: [ { flatten: {} } ] }
"#;

#[test]
fn conditions_skip_and_skips_propagate_and_condition_errors_fail() {
    let f = project(&[("workflows/branch.workflow.yaml", BRANCH)]);
    let mut s = state(&f, "branch", json!({"go": false}));
    s.apply(Event::Start, at(0));
    assert_eq!(status(&s, "gate"), StepStatus::Skipped);
    assert_eq!(s.steps[0].skip_reason.as_deref(), Some("condition_false"));
    assert_eq!(status(&s, "after"), StepStatus::Skipped);
    assert_eq!(
        s.steps[1].skip_reason.as_deref(),
        Some("dependency_skipped")
    );
    assert_eq!(s.steps[1].skip_message.as_deref(), Some("gate"));
    // `0` is truthy
    assert_eq!(status(&s, "other"), StepStatus::Complete);
    assert_eq!(status(&s, "bad"), StepStatus::Failed);
    assert_eq!(s.steps[3].error_code.as_deref(), Some("condition_error"));
    assert!(s.steps[3]
        .error
        .as_deref()
        .unwrap()
        .starts_with("condition of step \"bad\": "));
    assert_eq!(s.run.status, RunStatus::Failed);
}

#[test]
fn reserved_signals_and_airlock_on_callbacks() {
    let f = project(&[("workflows/chain.workflow.yaml", CHAIN)]);
    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "first",
        1,
        ok(json!({"answer": "x", "ktsu_needs_human": true, "ktsu_rationale": "unsure"})),
        5,
    );
    assert_eq!(s.run.status, RunStatus::NeedsHumanReview);
    assert_eq!(s.run.error_code.as_deref(), Some("needs_human_review"));
    assert_eq!(s.steps[0].rationale.as_deref(), Some("unsure"));
    assert_eq!(
        s.steps[1].skip_reason.as_deref(),
        Some("run_needs_human_review")
    );

    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "first",
        1,
        ok(json!({"wrong": 1, "ktsu_confidence": 0.2})),
        5,
    );
    assert_eq!(s.run.error_code.as_deref(), Some("airlock_violation"));
    let step = &s.steps[0];
    assert_eq!(
        step.raw_output,
        Some(json!({"wrong": 1, "ktsu_confidence": 0.2})),
        "raw output as received"
    );
    assert_eq!(
        step.airlock.as_ref().unwrap()["violations"][0]["pointer"],
        "/answer"
    );

    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "first",
        1,
        ok(json!({"ktsu_skip_reason": "nothing to do"})),
        5,
    );
    assert_eq!(status(&s, "first"), StepStatus::Skipped);
    assert_eq!(s.steps[0].skip_reason.as_deref(), Some("agent_skipped"));
    assert_eq!(status(&s, "shape"), StepStatus::Skipped);
    assert_eq!(
        s.run.status,
        RunStatus::Complete,
        "a clean skip still completes the run"
    );
}

const APPROVAL: &str = r#"kind: workflow
name: gated
pipeline:
  - id: act
    agent: agents/worker.agent.yaml
  - id: hook
    on: approval
    depends_on: [act]
    webhook: { url: "http://127.0.0.1:9/hook" }
"#;

fn pending(
    tool_use_id: &str,
    on_reject: invoke::OnReject,
    timeout_ms: u64,
) -> Box<CallbackPayload> {
    Box::new(CallbackPayload {
        status: CallbackStatus::PendingApproval,
        messages: vec![
            json!({"role": "user", "content": "go"}),
            json!({"role": "assistant", "content": "[]"}),
        ],
        pending_approval: Some(PendingApproval {
            tool_name: "delete-record".into(),
            tool_use_id: tool_use_id.into(),
            arguments: json!({"id": 7}),
            on_reject,
            timeout_ms,
            ..PendingApproval::default()
        }),
        metrics: Metrics {
            llm_calls: 1,
            ..Metrics::default()
        },
        ..CallbackPayload::new(CallbackStatus::Ok)
    })
}

fn decide(s: &mut RunState, approved: bool, comment: Option<&str>, ms: u64) -> Outcome {
    s.apply(
        Event::Decide {
            address: "act".into(),
            tool_use_id: None,
            approved,
            comment: comment.map(str::to_string),
            decided_by: Some("ops".into()),
        },
        at(ms),
    )
}

#[test]
fn approval_checkpoint_then_approve_resumes_with_a_new_attempt() {
    let f = project(&[("workflows/gated.workflow.yaml", APPROVAL)]);
    let mut s = state(&f, "gated", json!({}));
    s.apply(Event::Start, at(0));
    let o = callback(
        &mut s,
        "act",
        1,
        pending("toolu_1", invoke::OnReject::Fail, 60_000),
        10,
    );
    assert_eq!(status(&s, "act"), StepStatus::PendingApproval);
    assert_eq!(o.changes.approvals.len(), 1);
    assert_eq!(o.changes.checkpoints.len(), 1);
    assert!(event_names(&o).contains(&"approval.pending".to_string()));
    let hook = o.effects.iter().find_map(|e| match e {
        Effect::Webhook(w) if w.hook.is_some() => Some(w),
        _ => None,
    });
    let hook = hook.expect("the approval hook fires");
    assert_eq!(
        hook.idempotency_key,
        "run_0123456789abcdef:hook:act:toolu_1"
    );
    assert_eq!(hook.body.as_ref().unwrap()["tool_name"], "delete-record");
    assert!(o.effects.iter().any(|e| matches!(
        e,
        Effect::Arm {
            timer: Timer::Approval { .. },
            ..
        }
    )));

    let o = decide(&mut s, true, None, 20);
    let Some(Reply::Decide(Ok(a))) = &o.reply else {
        panic!("{:?}", o.reply)
    };
    assert_eq!(a.status, ApprovalStatus::Approved);
    assert_eq!(a.decided_by.as_deref(), Some("ops"));
    let d = dispatches(&o);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].attempt, 2);
    assert!(d[0].request.is_resume);
    assert_eq!(d[0].request.approved_tool_calls, vec!["toolu_1"]);
    assert_eq!(d[0].request.messages.len(), 2);
    assert_eq!(status(&s, "act"), StepStatus::Running);

    // a second decision is refused
    let o = decide(&mut s, false, None, 30);
    assert!(matches!(
        o.reply,
        Some(Reply::Decide(Err(DecideError::AlreadyDecided(_))))
    ));

    // the old attempt's late callback is stale; the new one completes
    let stale = callback(&mut s, "act", 1, ok(json!({"answer": "x"})), 31);
    assert_eq!(
        stale.reply,
        Some(Reply::Callback(CallbackAnswer::Ignored {
            reason: IgnoreReason::StaleAttempt
        }))
    );
    callback(&mut s, "act", 2, ok(json!({"answer": "done"})), 40);
    assert_eq!(s.run.status, RunStatus::Complete);
    assert_eq!(
        s.steps[0].metrics.llm_calls, 2,
        "legs before and after the approval are summed"
    );
}

#[test]
fn approval_rejections_and_timeouts() {
    let f = project(&[("workflows/gated.workflow.yaml", APPROVAL)]);
    // reject with recover: a rejection result is appended and the agent resumes
    let mut s = state(&f, "gated", json!({}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "act",
        1,
        pending("toolu_1", invoke::OnReject::Recover, 0),
        10,
    );
    let o = decide(&mut s, false, Some("too risky"), 20);
    let d = dispatches(&o);
    assert_eq!(d[0].request.rejected_tool_calls, vec!["toolu_1"]);
    let last = d[0].request.messages.last().unwrap();
    assert_eq!(last["role"], "user");
    let blocks: Value = serde_json::from_str(last["content"].as_str().unwrap()).unwrap();
    assert_eq!(blocks[0]["type"], "tool_result");
    assert_eq!(
        blocks[0]["content"],
        "The human reviewer rejected this tool call. Do not retry it; continue without it. Reviewer comment: too risky"
    );

    // reject with fail
    let mut s = state(&f, "gated", json!({}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "act",
        1,
        pending("toolu_1", invoke::OnReject::Fail, 0),
        10,
    );
    decide(&mut s, false, None, 20);
    assert_eq!(s.run.error_code.as_deref(), Some("approval_rejected"));
    assert_eq!(
        s.run.error.as_deref(),
        Some("tool call rejected by reviewer: delete-record")
    );

    // timeout with fail behaviour
    let mut s = state(&f, "gated", json!({}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "act",
        1,
        pending("toolu_1", invoke::OnReject::Fail, 1000),
        10,
    );
    s.apply(
        Event::TimerFired(Timer::Approval {
            address: "act".into(),
            tool_use_id: "toolu_1".into(),
        }),
        at(1010),
    );
    assert_eq!(s.run.error_code.as_deref(), Some("approval_timeout"));
    assert_eq!(s.approvals[0].status, ApprovalStatus::Timeout);

    // the run ends: pending approvals are cancelled
    let mut s = state(&f, "gated", json!({}));
    s.apply(Event::Start, at(0));
    callback(
        &mut s,
        "act",
        1,
        pending("toolu_1", invoke::OnReject::Fail, 0),
        10,
    );
    let o = s.apply(
        Event::Cancel {
            reason: "operator request".into(),
        },
        at(20),
    );
    assert!(matches!(o.reply, Some(Reply::Cancel(Ok(_)))));
    assert_eq!(s.approvals[0].status, ApprovalStatus::Cancelled);
    assert_eq!(s.run.status, RunStatus::Cancelled);
    assert_eq!(s.run.cancel_reason.as_deref(), Some("operator request"));
    assert_eq!(status(&s, "act"), StepStatus::Cancelled);
}

#[test]
fn cancel_stops_running_work_and_is_idempotent() {
    let f = project(&[("workflows/chain.workflow.yaml", CHAIN)]);
    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    s.apply(
        Event::Dispatched {
            address: "first".into(),
            attempt: 1,
            runtime_id: "rt-1".into(),
            runtime_url: "u".into(),
        },
        at(1),
    );
    let o = s.apply(
        Event::Cancel {
            reason: "stop".into(),
        },
        at(5),
    );
    assert!(o.effects.contains(&Effect::CancelRuntime {
        runtime_id: "rt-1".into(),
        address: "first".into(),
        attempt: 1,
        reason: "run cancelled: stop".into()
    }));
    assert_eq!(
        s.steps[0].error.as_deref(),
        Some("cancelled: run cancelled: stop")
    );
    assert_eq!(s.steps[1].skip_reason.as_deref(), Some("run_cancelled"));
    let again = s.apply(
        Event::Cancel {
            reason: "again".into(),
        },
        at(6),
    );
    assert!(matches!(again.reply, Some(Reply::Cancel(Ok(_)))));

    let mut done = state(&f, "chain", json!({}));
    done.apply(Event::Start, at(0));
    callback(&mut done, "first", 1, ok(json!({"answer": "a"})), 2);
    let o = done.apply(
        Event::Cancel {
            reason: "late".into(),
        },
        at(3),
    );
    assert!(matches!(
        o.reply,
        Some(Reply::Cancel(Err(CancelError::Finished(_))))
    ));
}

const TIMED: &str = r#"kind: workflow
name: timed
pipeline:
  - id: slow
    agent: agents/worker.agent.yaml
    timeout_s: 2
model_policy: { timeout_s: 10 }
"#;

#[test]
fn step_and_run_timeouts() {
    let f = project(&[("workflows/timed.workflow.yaml", TIMED)]);
    let mut s = state(&f, "timed", json!({}));
    let o = s.apply(Event::Start, at(0));
    assert!(o.effects.contains(&Effect::Arm {
        timer: Timer::RunDeadline,
        at: at(10_000)
    }));
    assert!(o.effects.contains(&Effect::Arm {
        timer: Timer::StepDeadline("slow".into()),
        at: at(2_000)
    }));
    let d = dispatches(&o);
    assert_eq!(d[0].request.timeouts.as_ref().unwrap().step_s, Some(2.0));
    s.apply(
        Event::TimerFired(Timer::StepDeadline("slow".into())),
        at(2_000),
    );
    assert_eq!(s.run.error_code.as_deref(), Some("step_timeout"));
    assert_eq!(
        s.run.error.as_deref(),
        Some("step \"slow\" exceeded timeout_s=2")
    );

    let mut s = state(&f, "timed", json!({}));
    s.apply(Event::Start, at(0));
    s.apply(Event::TimerFired(Timer::RunDeadline), at(10_000));
    assert_eq!(s.run.error_code.as_deref(), Some("run_timeout"));
    assert_eq!(s.run.failed_step, None);
    assert_eq!(status(&s, "slow"), StepStatus::Cancelled);
}

#[test]
fn heartbeat_loss_and_dispatch_failures_fail_the_current_attempt_only() {
    let f = project(&[("workflows/chain.workflow.yaml", CHAIN)]);
    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    s.apply(
        Event::HeartbeatLost {
            address: "first".into(),
            attempt: 3,
        },
        at(1),
    );
    assert_eq!(
        status(&s, "first"),
        StepStatus::Running,
        "an old attempt's loss is ignored"
    );
    s.apply(
        Event::Dispatched {
            address: "first".into(),
            attempt: 1,
            runtime_id: "rt-9".into(),
            runtime_url: "u".into(),
        },
        at(1),
    );
    let o = s.apply(
        Event::HeartbeatLost {
            address: "first".into(),
            attempt: 1,
        },
        at(30_000),
    );
    assert_eq!(s.run.error_code.as_deref(), Some("heartbeat_timeout"));
    assert!(o
        .effects
        .iter()
        .any(|e| matches!(e, Effect::CancelRuntime { runtime_id, .. } if runtime_id == "rt-9")));

    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    s.apply(
        Event::DispatchFailed {
            address: "first".into(),
            attempt: 1,
            code: "runtime_unavailable".into(),
            error: "no runtime".into(),
        },
        at(1),
    );
    assert_eq!(s.run.error_code.as_deref(), Some("runtime_unavailable"));
}

const SUB: &str = r#"kind: workflow
name: parent
params:
  schema:
    type: object
    properties:
      key: { type: string, secret: true }
pipeline:
  - id: child
    workflow: ./sub.workflow.yaml
    input: { x: 3, key: "{{ params.key }}" }
"#;

const SUB_CHILD: &str = r#"kind: workflow
name: sub
visibility: sub-workflow
params:
  schema:
    type: object
    required: [x]
    properties:
      x: { type: integer }
      y: { type: string, default: why }
      key: { type: string, secret: true }
pipeline: []
"#;

#[test]
fn sub_workflows_start_children_and_take_their_outcome() {
    let f = project(&[
        ("workflows/parent.workflow.yaml", SUB),
        ("workflows/sub.workflow.yaml", SUB_CHILD),
    ]);
    let mut s = state(&f, "parent", json!({"key": "hunter2-secret"}));
    s.inputs.scrubber = s.inputs.scrubber.with_values(["hunter2-secret"]);
    let o = s.apply(Event::Start, at(0));
    assert_eq!(o.changes.children.len(), 1);
    let child = &o.changes.children[0].run;
    assert_eq!(child.id, "run_0123456789abcdef.child");
    assert_eq!(
        child.payload,
        json!({"x": 3, "key": "[REDACTED]", "y": "why"})
    );
    let start = o.effects.iter().find_map(|e| match e {
        Effect::StartChild {
            run_id,
            params,
            webhooks_enabled,
        } => Some((run_id, params, webhooks_enabled)),
        _ => None,
    });
    let (run_id, params, webhooks) = start.unwrap();
    assert_eq!(run_id, "run_0123456789abcdef.child");
    assert_eq!(
        params["key"], "hunter2-secret",
        "the child gets the real value in memory"
    );
    assert!(!webhooks, "the dual opt-in is off by default");
    assert_eq!(
        s.steps[0].child_run_id.as_deref(),
        Some("run_0123456789abcdef.child")
    );

    s.apply(
        Event::ChildFinished {
            step_id: "child".into(),
            outcome: ChildOutcome {
                status: RunStatus::Failed,
                output: None,
                error: Some("boom".into()),
                error_code: Some("budget_exceeded".into()),
                metrics: StepMetrics::default(),
            },
        },
        at(5),
    );
    assert_eq!(s.run.error_code.as_deref(), Some("budget_exceeded"));
    assert_eq!(
        s.run.error.as_deref(),
        Some("sub-workflow \"sub\" failed: boom")
    );
}

#[test]
fn recovery_redispatches_running_agents_with_a_new_attempt() {
    let f = project(&[("workflows/chain.workflow.yaml", CHAIN)]);
    let mut s = state(&f, "chain", json!({}));
    s.apply(Event::Start, at(0));
    s.apply(
        Event::Dispatched {
            address: "first".into(),
            attempt: 1,
            runtime_id: "rt-old".into(),
            runtime_url: "u".into(),
        },
        at(1),
    );
    // rebuild from the records as a restarted orchestrator would
    let mut r = RunState::new(
        s.inputs.clone(),
        s.run.clone(),
        s.steps.clone(),
        Vec::new(),
        HashMap::new(),
    );
    let o = r.apply(Event::Recover, at(100));
    let d = dispatches(&o);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].attempt, 2);
    assert!(o.effects.contains(&Effect::CancelRuntime {
        runtime_id: "rt-old".into(),
        address: "first".into(),
        attempt: 1,
        reason: "re-dispatched after an orchestrator restart".into()
    }));
    assert!(event_names(&o).contains(&"run.recovered".to_string()));
    let stale = callback(&mut r, "first", 1, ok(json!({"answer": "x"})), 101);
    assert_eq!(
        stale.reply,
        Some(Reply::Callback(CallbackAnswer::Ignored {
            reason: IgnoreReason::StaleAttempt
        }))
    );
    callback(&mut r, "first", 2, ok(json!({"answer": "x"})), 102);
    assert_eq!(r.run.status, RunStatus::Complete);
}

#[test]
fn webhook_results() {
    let wf = r#"kind: workflow
name: hook
pipeline:
  - id: send
    webhook:
      url: "http://127.0.0.1:9/x?token={{ env.API_KEY }}"
      headers: { X-Id: "{{ params.id }}", X-None: "{{ params.missing }}" }
      body: { id: "{{ params.id }}", gone: "{{ params.missing }}" }
env: [ { name: API_KEY, secret: true } ]
params:
  schema: { type: object, properties: { id: { type: integer }, missing: { type: string } } }
"#;
    let f = project(&[("workflows/hook.workflow.yaml", wf)]);
    let mut s = state(&f, "hook", json!({"id": 7}));
    let o = s.apply(Event::Start, at(0));
    let call = o
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::Webhook(w) => Some(w),
            _ => None,
        })
        .unwrap();
    assert_eq!(call.url, "http://127.0.0.1:9/x?token=secret-key-value");
    assert_eq!(call.headers, vec![("X-Id".to_string(), "7".to_string())]);
    assert_eq!(call.body, Some(json!({"id": 7})));
    assert_eq!(call.idempotency_key, "run_0123456789abcdef:send");
    assert_eq!(call.method, "POST");
    s.apply(
        Event::WebhookDone {
            step_id: "send".into(),
            attempt: 1,
            result: Err(WebhookFailure {
                error: "webhook POST http://127.0.0.1:9/x returned status 500 after 3 attempt(s)"
                    .into(),
                raw_output: Some(json!("oops secret-key-value")),
            }),
        },
        at(10),
    );
    assert_eq!(s.run.error_code.as_deref(), Some("webhook_failed"));
    assert_eq!(
        s.steps[0].raw_output,
        Some(json!("oops [REDACTED]")),
        "secrets are scrubbed before they are stored"
    );
}

/// Random DAGs: every step dispatched exactly once, never before its dependencies completed.
fn dag_strategy() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..10).prop_flat_map(|n| {
        let per_step: Vec<_> = (0..n)
            .map(|i| {
                proptest::collection::vec(0..i.max(1), 0..=i.min(3)).prop_map(move |v| {
                    if i == 0 {
                        Vec::new()
                    } else {
                        v
                    }
                })
            })
            .collect();
        per_step
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_dags_schedule_every_step_exactly_once(deps in dag_strategy(), order_seed in 0u64..1000, parallel in 1usize..5) {
        let mut yaml = String::from("kind: workflow\nname: dag\npipeline:\n");
        for (i, d) in deps.iter().enumerate() {
            let mut ds: Vec<String> = d.iter().map(|x| format!("s{x}")).collect();
            ds.sort();
            ds.dedup();
            yaml.push_str(&format!("  - id: s{i}\n    agent: agents/worker.agent.yaml\n    depends_on: [{}]\n", ds.join(", ")));
        }
        let f = project(&[("workflows/dag.workflow.yaml", &yaml)]);
        let mut s = state(&f, "dag", json!({}));
        s.inputs.config = Arc::new(EngineConfig { max_parallel_steps: parallel, ..(*s.inputs.config).clone() });
        let mut inflight: Vec<String> = dispatches(&s.apply(Event::Start, at(0))).iter().map(|d| d.address.clone()).collect();
        let mut done: Vec<String> = Vec::new();
        let mut dispatched: Vec<String> = inflight.clone();
        let mut t = 1;
        let mut seed = order_seed;
        while !inflight.is_empty() {
            prop_assert!(inflight.len() <= parallel);
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let pick = (seed >> 33) as usize % inflight.len();
            let addr = inflight.remove(pick);
            let o = callback(&mut s, &addr, 1, ok(json!({"answer": "a"})), t);
            t += 1;
            done.push(addr);
            for d in dispatches(&o) {
                let i: usize = d.address[1..].parse().unwrap();
                for dep in &deps[i] {
                    prop_assert!(done.contains(&format!("s{dep}")), "s{} dispatched before its dependency s{}", i, dep);
                }
                prop_assert!(!dispatched.contains(&d.address), "{} dispatched twice", d.address);
                dispatched.push(d.address.clone());
                inflight.push(d.address.clone());
            }
        }
        prop_assert_eq!(dispatched.len(), deps.len());
        prop_assert_eq!(s.run.status, RunStatus::Complete);
    }
}
