//! The turn loop (runtime-gateway.md §3.6): up to `max_turns` model calls, the last one with
//! tools withheld after T2, then up to `KTSU_RUNTIME_OUTPUT_GRACE_TURNS` grace calls while the
//! answers stay invalid; tool calls handled (§3.7), text answers extracted and validated, each
//! invalid answer followed by its correction (§3.8).

use super::model_call::{self, Tools};
use super::outcome::{ErrorCode, LegFailure, Stop};
use super::output::{self, InvalidAnswer, InvalidKind};
use super::texts;
use super::tool_calls::{self, Decision};
use super::{LegEnv, LegState};
use ktsu_shared::wire::gateway::{CallPurpose, GatewayResponse, Message};
use serde_json::{json, Value};

/// The last reply that did not end the loop.
enum LastReply {
    /// Tool calls, executed or refused as `tools_unavailable`.
    ToolCalls,
    /// A text answer that failed extraction or validation.
    Invalid(InvalidAnswer),
}

/// Runs turns until a valid draft; `Err` for a pending approval or a failure.
pub async fn run(env: &LegEnv<'_>, state: &mut LegState) -> Result<Value, Stop> {
    let max_turns = env.request.effective_max_turns();
    let grace = env.settings.output_grace_turns;
    let has_tools = state.toolbox.has_tools();
    let mut last = LastReply::ToolCalls;
    let mut last_invalid_text: Option<String> = None;
    let mut after_correction = false;
    let mut turn: u32 = 0;
    // Every answer at or after `max_turns` that is not valid is invalid (tools are withheld
    // then), so grace calls follow the last turn until the grace budget is spent.
    while turn < max_turns.saturating_add(grace) {
        turn += 1;
        let grace_call = turn > max_turns;
        let withheld = turn >= max_turns;
        if turn == max_turns && has_tools {
            state.conversation.push(Message::user(texts::LAST_TURN));
        }
        let tools = match (has_tools, withheld) {
            (false, _) => Tools::Omitted,
            (true, false) => Tools::Offered,
            (true, true) => Tools::Withheld,
        };
        let purpose = if grace_call {
            CallPurpose::Grace
        } else if after_correction {
            CallPurpose::Correction
        } else {
            CallPurpose::Turn
        };
        state.metrics.turns += 1;
        // Boxed in its own statement (see `agent::run`).
        let call = Box::pin(model_call::call(env, state, None, tools, purpose, turn));
        // Taken apart at once: only the parts still needed live on across the awaits below.
        let GatewayResponse {
            content,
            tool_calls: calls,
            stop_reason,
            ..
        } = call.await?;
        if calls.is_empty() {
            let verdict = output::evaluate(&content, stop_reason, env.schema);
            if verdict.is_err() {
                last_invalid_text = Some(content.clone());
            }
            state
                .conversation
                .push(Message::assistant(content, Vec::new()));
            match verdict {
                Ok(draft) => return Ok(draft),
                Err(invalid) => {
                    state.conversation.push(Message::user(invalid.correction()));
                    count_correction(env, state, invalid.kind(), invalid.violation_count());
                    after_correction = true;
                    last = LastReply::Invalid(invalid);
                }
            }
            continue;
        }
        state
            .conversation
            .push(Message::assistant(content, calls.clone()));
        if tools == Tools::Offered {
            let calls = calls.into_iter().map(|c| (c, Decision::New)).collect();
            let handling = Box::pin(tool_calls::handle(env, state, calls));
            handling.await?;
            after_correction = false;
        } else {
            // Tools were not offered: nothing runs; the model is told to answer.
            for call in calls {
                state
                    .conversation
                    .push(Message::tool_result(call.id, texts::TOOLS_WITHHELD, true));
            }
            count_correction(env, state, InvalidKind::ToolsUnavailable, 0);
            after_correction = true;
        }
        last = LastReply::ToolCalls;
    }
    Err(Stop::from(
        match last {
            LastReply::ToolCalls => {
                LegFailure::new(ErrorCode::MaxTurnsExceeded, "max_turns_exceeded")
                    .with_detail("max_turns", json!(max_turns))
            }
            LastReply::Invalid(invalid) => {
                let mut failure = LegFailure::new(
                    ErrorCode::OutputInvalid,
                    format!("output_invalid: {}", invalid.reason()),
                );
                failure.detail = invalid.detail();
                failure
            }
        }
        .with_raw_output(last_invalid_text.as_deref()),
    ))
}

/// One correction round (T3/T4/T5 message or T7 results): counted and logged.
pub fn count_correction(
    env: &LegEnv<'_>,
    state: &mut LegState,
    kind: InvalidKind,
    violations: usize,
) {
    state.metrics.corrections += 1;
    leg_log!(log::Level::Info, env.ids, event = "output.correction", kind = kind.as_str(),
        violations = violations; "invalid answer; correction sent");
}
