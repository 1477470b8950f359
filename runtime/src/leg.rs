//! One leg from start to callback (runtime-gateway.md §3.1): the agent loop raced against its
//! stop causes (cancel, higher attempt, step deadline, shutdown — §3.12), the sessions closed,
//! the callback built (§2.6, §3.13) and delivered, and the invocation manager told at each
//! stage.

use crate::agent::outcome::{ErrorCode, LegEnd, LegFailure};
use crate::agent::{self, LegEnv, LegState};
use crate::callback::Delivery;
use crate::clients::Clients;
use crate::settings::Settings;
use crate::units::{millis, seconds_text};
use actix::Recipient;
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::secret::Scrubber;
use ktsu_shared::wire::callback::{CallbackPayload, CallbackStatus, Metrics};
use ktsu_shared::wire::gateway::Message;
use ktsu_shared::wire::invoke::InvokeRequest;
use ktsu_shared::wire::transcript;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// What every log line about a leg carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LegIds {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
}

impl LegIds {
    pub fn of(request: &InvokeRequest) -> LegIds {
        LegIds {
            run_id: request.run_id.clone(),
            step_id: request.step_id.clone(),
            attempt: request.attempt,
        }
    }
}

/// Why a leg stops before its loop ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// `POST /cancel`, a heartbeat `cancel` entry, or a higher attempt: status `cancelled`.
    Cancelled(String),
    /// The step deadline passed (also while queued).
    Deadline,
    /// Shutdown stopped the leg after the grace period.
    Shutdown,
}

/// A stage of a leg the invocation manager tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The loop ended; the callback is being sent (the slot is free).
    Delivering,
    /// The callback was delivered or abandoned (the entry goes).
    Done,
}

/// A leg's report to the invocation manager.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct LegReport {
    pub ids: LegIds,
    pub stage: Stage,
}

/// Everything a leg needs; `Send`, so that it can start on any arbiter. Always boxed: it waits
/// in the queue and moves between threads as one pointer.
pub struct LegInput {
    pub request: InvokeRequest,
    /// The decoded resume transcript (validated at admission).
    pub transcript: Option<Vec<Message>>,
    pub schema: Option<Arc<CompiledSchema>>,
    pub settings: Arc<Settings>,
    pub runtime_id: Arc<str>,
    pub accepted_at: Instant,
    /// The one stop the invocation manager may send.
    pub stop: oneshot::Receiver<StopCause>,
    /// Turns true when shutdown gives up on pending callbacks.
    pub abandon: watch::Receiver<bool>,
    pub manager: Recipient<LegReport>,
    /// Stopped while queued: the callback carries zero metrics.
    pub never_started: bool,
}

/// The step limit: min(`timeouts.step_s` when > 0, `KTSU_RUNTIME_STEP_TIMEOUT_S`).
pub fn step_limit(request: &InvokeRequest, settings: &Settings) -> Duration {
    request
        .timeouts
        .as_ref()
        .and_then(|t| t.step_s)
        .and_then(crate::units::positive_seconds)
        .map_or(settings.step_timeout, |step| {
            step.min(settings.step_timeout)
        })
}

/// Runs one leg to the end of its callback delivery.
///
/// A leg spends nearly all its life waiting on the gateway or a tool, so its task holds only what
/// waiting needs: `input` stays boxed and whole (an async fn keeps its arguments twice, and its
/// fields are borrowed, not moved into locals), and the callback phase, which needs far more room
/// (payload, scrubber, delivery), runs in its own boxed future once the loop has ended.
pub async fn run(mut input: Box<LegInput>) {
    let ids = LegIds::of(&input.request);
    let started = Instant::now();
    let queue_ms = millis(started.saturating_duration_since(input.accepted_at));
    let limit = step_limit(&input.request, &input.settings);
    let deadline = input.accepted_at + limit;
    let mut state = LegState::new(&mut input.request, input.transcript.take());
    // The compiled schema holds the same JSON, shared by every leg of the agent: once the
    // initial conversation (above) has its text, the request's own copy is not needed while the
    // leg runs (it is put back for `original_request`).
    if input.schema.is_some() {
        input.request.output_schema = None;
    }
    let clients = match Clients::for_this_thread(&input.settings) {
        Ok(clients) => clients,
        Err(err) => {
            leg_log!(log::Level::Error, ids, event = "callback.abandoned", error = err.to_string().as_str(), attempts = 0u32;
                "no HTTP client for this leg");
            report(&input.manager, &ids, Stage::Delivering);
            report(&input.manager, &ids, Stage::Done);
            return;
        }
    };
    if !input.never_started {
        leg_log!(log::Level::Debug, ids, event = "invoke.started", queue_ms = queue_ms; "leg started");
    }
    let (end, interrupted) = {
        let gateway_url = format!("{}/invoke", input.settings.gateway_url);
        let env = LegEnv {
            request: &input.request,
            ids: &ids,
            schema: input.schema.as_deref(),
            settings: &input.settings,
            clients: &clients,
            gateway_url: &gateway_url,
            deadline,
            step_limit: limit,
        };
        let work = Box::pin(agent::run(&env, &mut state));
        tokio::select! {
            biased;
            cause = stopped(&mut input.stop) => (interruption(&cause, limit), true),
            _ = actix_rt::time::sleep_until(deadline.into()) => (interruption(&StopCause::Deadline, limit), true),
            end = work => (end, false),
        }
    };
    let close_reason = match (&end, interrupted) {
        (LegEnd::Failed(failure), true) => failure.error.clone(),
        _ => "leg finished".to_owned(),
    };
    let finishing = Box::pin(finish(
        input,
        ids,
        state,
        &clients,
        end,
        &close_reason,
        queue_ms,
    ));
    finishing.await;
}

/// The end of a leg (§3.1 item 7): every MCP session closed, the callback built, delivered and
/// the invocation manager told.
async fn finish(
    mut input: Box<LegInput>,
    ids: LegIds,
    mut state: LegState,
    clients: &Clients,
    end: LegEnd,
    close_reason: &str,
    queue_ms: u64,
) {
    let closing = Box::pin(state.toolbox.close(close_reason));
    closing.await;
    let metrics = if input.never_started {
        Metrics::default()
    } else {
        Metrics {
            duration_ms: millis(input.accepted_at.elapsed()),
            queue_ms,
            ..std::mem::take(&mut state.metrics)
        }
    };
    // `original_request` is the request as received.
    state.return_prompts(&mut input.request);
    input.request.output_schema = input.schema.as_ref().map(|schema| schema.schema().clone());
    let scrubber = Scrubber::new(input.request.secret_values());
    let payload = build_payload(
        &input.request,
        &input.runtime_id,
        end,
        metrics,
        &state.conversation,
        &scrubber,
    );
    // The transcript is in the payload now, and delivery may retry for a minute.
    drop(state);
    leg_log!(log::Level::Info, ids, event = "step.finished", status:serde = payload.status,
        error_code = payload.error_code.as_deref().unwrap_or(""), duration_ms = payload.metrics.duration_ms,
        llm_calls = payload.metrics.llm_calls, tool_calls = payload.metrics.tool_calls,
        cost_usd = payload.metrics.cost_usd; "leg finished");
    report(&input.manager, &ids, Stage::Delivering);
    let key = ktsu_shared::ids::new_callback_key();
    let delivery = Delivery {
        client: &clients.internal,
        url: &input.request.callback_url,
        idempotency_key: &key,
        timeout: input.settings.callback_timeout,
        retry_window: input.settings.callback_retry,
        abandon: input.abandon.clone(),
        ids: &ids,
    };
    let delivering = Box::pin(delivery.send(&payload, &scrubber));
    delivering.await;
    report(&input.manager, &ids, Stage::Done);
}

fn report(manager: &Recipient<LegReport>, ids: &LegIds, stage: Stage) {
    manager.do_send(LegReport {
        ids: ids.clone(),
        stage,
    });
}

/// Waits for a stop cause (never, when the manager is gone).
async fn stopped(stop: &mut oneshot::Receiver<StopCause>) -> StopCause {
    match stop.await {
        Ok(cause) => cause,
        Err(_) => std::future::pending().await,
    }
}

/// The end of a leg stopped by `cause` (§3.12).
fn interruption(cause: &StopCause, limit: Duration) -> LegEnd {
    LegEnd::Failed(match cause {
        StopCause::Cancelled(reason) => LegFailure::cancelled(reason),
        StopCause::Deadline => LegFailure::new(
            ErrorCode::StepTimeout,
            format!("step_timeout: exceeded {} s", seconds_text(limit)),
        ),
        StopCause::Shutdown => LegFailure::new(ErrorCode::RuntimeShutdown, "runtime_shutdown"),
    })
}

/// The callback body of a leg (scrubbed later, at delivery).
pub fn build_payload(
    request: &InvokeRequest,
    runtime_id: &str,
    end: LegEnd,
    metrics: Metrics,
    conversation: &[Message],
    scrubber: &Scrubber,
) -> CallbackPayload {
    let mut payload = CallbackPayload {
        run_id: request.run_id.clone(),
        step_id: request.step_id.clone(),
        status: CallbackStatus::Ok,
        output: None,
        error: String::new(),
        raw_output: String::new(),
        metrics,
        is_resume: request.is_resume,
        messages: transcript::encode(conversation),
        pending_approval: None,
        original_request: None,
        attempt: Some(request.attempt),
        runtime_id: runtime_id.to_owned(),
        error_code: None,
        error_detail: serde_json::Map::new(),
        pending_approvals: Vec::new(),
    };
    match end {
        LegEnd::Ok(output) => payload.output = Some(output),
        LegEnd::PendingApproval(calls) => {
            payload.status = CallbackStatus::PendingApproval;
            payload.pending_approval = calls.first().cloned();
            payload.pending_approvals = calls;
            payload.original_request = Some(request.redacted_without_messages(scrubber));
        }
        LegEnd::Failed(failure) => {
            payload.status = if failure.code == ErrorCode::Cancelled {
                CallbackStatus::Cancelled
            } else {
                CallbackStatus::Failed
            };
            payload.error = failure.error;
            payload.error_code = Some(failure.code.as_str().to_owned());
            payload.error_detail = failure.detail;
            payload.raw_output = failure.raw_output;
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn step_limits() {
        let settings = Settings::defaults();
        let with = |timeouts: serde_json::Value| -> InvokeRequest {
            serde_json::from_value(json!({ "timeouts": timeouts })).unwrap()
        };
        assert_eq!(
            step_limit(&with(json!({"step_s": 120})), &settings),
            Duration::from_secs(120)
        );
        assert_eq!(
            step_limit(&with(json!({"step_s": 0})), &settings),
            Duration::from_secs(3600)
        );
        assert_eq!(
            step_limit(&with(json!({"step_s": 99999})), &settings),
            Duration::from_secs(3600)
        );
        assert_eq!(
            step_limit(&with(json!({})), &settings),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn interruptions() {
        let limit = Duration::from_secs(120);
        let LegEnd::Failed(cancel) = interruption(
            &StopCause::Cancelled("run cancelled: operator request".into()),
            limit,
        ) else {
            panic!("not failed")
        };
        assert_eq!(cancel.code, ErrorCode::Cancelled);
        assert_eq!(cancel.error, "cancelled: run cancelled: operator request");
        let LegEnd::Failed(timeout) = interruption(&StopCause::Deadline, limit) else {
            panic!("not failed")
        };
        assert_eq!(timeout.error, "step_timeout: exceeded 120 s");
        let LegEnd::Failed(shutdown) = interruption(&StopCause::Shutdown, limit) else {
            panic!("not failed")
        };
        assert_eq!(
            (shutdown.code, shutdown.error.as_str()),
            (ErrorCode::RuntimeShutdown, "runtime_shutdown")
        );
    }

    #[test]
    fn payloads_per_status() {
        let request: InvokeRequest = serde_json::from_value(json!({
            "run_id": "run_1", "step_id": "s", "attempt": 2, "is_resume": true,
            "tool_servers": [{"name": "crm", "url": "http://crm/mcp", "auth_header": "Authorization", "auth_value": "Bearer tok"}]
        }))
        .unwrap();
        let scrubber = Scrubber::new(request.secret_values());
        let conversation = vec![Message::system("S"), Message::user("U")];
        let ok = build_payload(
            &request,
            "rt-1",
            LegEnd::Ok(json!({"a": 1})),
            Metrics::default(),
            &conversation,
            &scrubber,
        );
        let value = serde_json::to_value(&ok).unwrap();
        assert_eq!(value["status"], "ok");
        assert_eq!(value["error"], "");
        assert_eq!(value["attempt"], 2);
        assert_eq!(value["is_resume"], true);
        assert_eq!(value["runtime_id"], "rt-1");
        assert!(value.get("error_code").is_none());
        assert_eq!(
            value["messages"],
            json!([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
        );

        let cancelled = build_payload(
            &request,
            "rt-1",
            LegEnd::Failed(LegFailure::cancelled("x")),
            Metrics::default(),
            &conversation,
            &scrubber,
        );
        assert_eq!(cancelled.status, CallbackStatus::Cancelled);
        assert_eq!(cancelled.error_code.as_deref(), Some("cancelled"));

        let gated = ktsu_shared::wire::callback::PendingApproval {
            tool_name: "delete".into(),
            tool_use_id: "t1".into(),
            ..Default::default()
        };
        let pending = build_payload(
            &request,
            "rt-1",
            LegEnd::PendingApproval(vec![gated.clone()]),
            Metrics::default(),
            &conversation,
            &scrubber,
        );
        assert_eq!(pending.pending_approval, Some(gated));
        let original = pending.original_request.unwrap();
        assert_eq!(original["tool_servers"][0]["auth_value"], "[REDACTED]");
        assert!(original.get("messages").is_none());
    }
}
