//! Reflect (runtime-gateway.md §3.9): once per leg, after a valid draft whose confidence is
//! missing or below the threshold, unless the draft raises a fatal or skip signal (such drafts go
//! to the orchestrator unchanged, so a reflect can never erase a signal).

use super::conversation::frame;
use super::model_call::{self, Tools};
use super::outcome::{ErrorCode, LegFailure};
use super::output;
use super::texts;
use super::turn_loop::count_correction;
use super::{LegEnv, LegState};
use ktsu_shared::wire::gateway::{CallPurpose, Message};
use ktsu_shared::wire::invoke::InvokeRequest;
use serde_json::Value;

/// Boolean signals that must reach the orchestrator as written.
const FATAL_SIGNALS: [&str; 4] = [
    "ktsu_injection_attempt",
    "ktsu_untrusted_content",
    "ktsu_low_quality",
    "ktsu_needs_human",
];

/// Whether the rule of §3.9 holds for `draft`.
pub fn should_reflect(request: &InvokeRequest, draft: &Value) -> bool {
    if request.reflect.is_empty() || request.confidence_threshold <= 0.0 {
        return false;
    }
    let below = match draft.get("ktsu_confidence").and_then(Value::as_f64) {
        Some(confidence) => confidence < request.confidence_threshold,
        None => true,
    };
    let signalled = FATAL_SIGNALS
        .iter()
        .any(|field| draft.get(*field) == Some(&Value::Bool(true)))
        || draft
            .get("ktsu_skip_reason")
            .and_then(Value::as_str)
            .is_some_and(|reason| !reason.is_empty());
    below && !signalled
}

/// The final output: the draft, or the reflected output when reflect ran.
pub async fn run(
    env: &LegEnv<'_>,
    state: &mut LegState,
    draft: Value,
) -> Result<Value, LegFailure> {
    if !should_reflect(env.request, &draft) {
        return Ok(draft);
    }
    let confidence = draft.get("ktsu_confidence").cloned().unwrap_or(Value::Null);
    leg_log!(log::Level::Info, env.ids, event = "reflect.started", confidence:serde = confidence,
        threshold = env.request.confidence_threshold; "reflecting on the draft");
    let mut messages = frame(&state.conversation);
    messages.push(Message::assistant(draft.to_string(), Vec::new()));
    messages.push(Message::user(format!(
        "{}\n\n{}",
        env.request.reflect,
        texts::REFLECT_INSTRUCTION
    )));
    let turn = state.metrics.turns + 1;
    let call = Box::pin(model_call::call(
        env,
        state,
        Some(messages.clone()),
        Tools::Omitted,
        CallPurpose::Reflect,
        turn,
    ));
    let reply = call.await?;
    state.metrics.reflect_calls += 1;
    let invalid = match judge(
        env,
        &reply.content,
        reply.stop_reason,
        !reply.tool_calls.is_empty(),
    ) {
        Ok(output) => return Ok(reflected(state, output)),
        Err(invalid) => invalid,
    };
    // One correction call: the reflect messages, the invalid reply, its correction.
    messages.push(Message::assistant(
        reply.content.clone(),
        reply.tool_calls.clone(),
    ));
    match &invalid {
        Some(invalid) => {
            messages.push(Message::user(invalid.correction()));
            count_correction(env, state, invalid.kind(), invalid.violation_count());
        }
        None => {
            for call in &reply.tool_calls {
                messages.push(Message::tool_result(
                    call.id.clone(),
                    texts::TOOLS_WITHHELD,
                    true,
                ));
            }
            count_correction(env, state, output::InvalidKind::ToolsUnavailable, 0);
        }
    }
    let call = Box::pin(model_call::call(
        env,
        state,
        Some(messages),
        Tools::Omitted,
        CallPurpose::ReflectCorrection,
        turn + 1,
    ));
    let second = call.await?;
    state.metrics.reflect_calls += 1;
    match judge(
        env,
        &second.content,
        second.stop_reason,
        !second.tool_calls.is_empty(),
    ) {
        Ok(output) => Ok(reflected(state, output)),
        Err(invalid) => {
            let mut failure =
                LegFailure::new(ErrorCode::ReflectOutputInvalid, "reflect_output_invalid")
                    .with_raw_output(Some(&second.content));
            failure.detail = match invalid {
                Some(invalid) => invalid.detail(),
                None => tools_unavailable_detail(),
            };
            Err(failure)
        }
    }
}

/// Extraction and validation of a reflect reply; `Err(None)` for tool calls (tools are not
/// offered to reflect).
fn judge(
    env: &LegEnv<'_>,
    text: &str,
    stop_reason: Option<ktsu_shared::wire::gateway::StopReason>,
    has_tool_calls: bool,
) -> Result<Value, Option<output::InvalidAnswer>> {
    if has_tool_calls {
        return Err(None);
    }
    output::evaluate(text, stop_reason, env.schema).map_err(Some)
}

fn reflected(state: &mut LegState, output: Value) -> Value {
    state.metrics.reflected = true;
    output
}

fn tools_unavailable_detail() -> serde_json::Map<String, Value> {
    let mut detail = serde_json::Map::new();
    detail.insert(
        "kind".into(),
        output::InvalidKind::ToolsUnavailable.as_str().into(),
    );
    detail.insert("violations".into(), Value::Array(Vec::new()));
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(reflect: &str, threshold: f64) -> InvokeRequest {
        serde_json::from_value(json!({"reflect": reflect, "confidence_threshold": threshold}))
            .unwrap()
    }

    #[test]
    fn the_rule() {
        let r = request("Review.", 0.8);
        assert!(should_reflect(&r, &json!({"a": 1})));
        assert!(should_reflect(&r, &json!({"ktsu_confidence": "high"})));
        assert!(should_reflect(&r, &json!({"ktsu_confidence": 0.5})));
        assert!(should_reflect(
            &request("Review.", 1.0),
            &json!({"ktsu_confidence": 0})
        ));
        assert!(!should_reflect(&r, &json!({"ktsu_confidence": 0.8})));
        assert!(!should_reflect(
            &request("Review.", 0.5),
            &json!({"ktsu_confidence": 1})
        ));
        assert!(!should_reflect(&request("", 0.8), &json!({})));
        assert!(!should_reflect(&request("Review.", 0.0), &json!({})));
    }

    #[test]
    fn signals_are_never_reflected() {
        let r = request("Review.", 0.8);
        for field in FATAL_SIGNALS {
            assert!(!should_reflect(&r, &json!({ field: true })), "{field}");
            assert!(should_reflect(&r, &json!({ field: false })), "{field}");
        }
        assert!(!should_reflect(&r, &json!({"ktsu_skip_reason": "no data"})));
        assert!(should_reflect(&r, &json!({"ktsu_skip_reason": ""})));
        assert!(should_reflect(&r, &json!({"ktsu_skip_reason": null})));
    }
}
