//! One model call of a leg (runtime-gateway.md §3.10, §3.11): the budget pre-check, the
//! request (conversation, tools offered or withheld, schema, budget, timeout, metadata), the
//! gateway call and the metrics it adds (§3.13).

use super::outcome::{usd_text, ErrorCode, LegFailure};
use super::{LegEnv, LegState};
use crate::gateway_client::{GatewayClient, GatewayFailure};
use crate::units::millis;
use actix_web::web::Bytes;
use ktsu_shared::wire::callback::Metrics;
use ktsu_shared::wire::gateway::{
    BudgetRequest, CallMetadata, CallPurpose, GatewayRequest, GatewayResponse, Message, ToolChoice,
};
use std::time::{Duration, Instant};

/// Whether tools go with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tools {
    /// No `tools` in the request.
    Omitted,
    Offered,
    /// `tools` with `"tool_choice":"none"` (tool history stays valid for providers).
    Withheld,
}

/// The smallest `timeout_s` sent; below it the step deadline fires first anyway.
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(1);

/// Calls the model with the leg's conversation (or, for reflect, with `messages`).
pub async fn call(
    env: &LegEnv<'_>,
    state: &mut LegState,
    messages: Option<Vec<Message>>,
    tools: Tools,
    purpose: CallPurpose,
    turn: u32,
) -> Result<GatewayResponse, LegFailure> {
    let request = env.request;
    let spent = request
        .budget
        .as_ref()
        .map(|budget| budget.spent_usd + state.metrics.cost_usd);
    if let (Some(budget), Some(spent)) = (&request.budget, spent) {
        if spent >= budget.limit_usd {
            return Err(LegFailure::new(
                ErrorCode::BudgetExceeded,
                format!(
                    "budget_exceeded: spent {} of {} USD",
                    usd_text(spent),
                    usd_text(budget.limit_usd)
                ),
            )
            .with_detail("limit_usd", budget.limit_usd)
            .with_detail("spent_usd", spent));
        }
    }
    let per_call = request
        .timeouts
        .as_ref()
        .and_then(|t| t.llm_call_s)
        .and_then(crate::units::positive_seconds)
        .unwrap_or(env.settings.llm_timeout);
    let timeout = per_call
        .min(env.deadline.saturating_duration_since(Instant::now()))
        .max(MIN_CALL_TIMEOUT);

    let budget = request.budget.as_ref().map(|budget| BudgetRequest {
        run_id: Some(budget.run_id.clone()),
        limit_usd: budget.limit_usd,
        spent_usd: spent.unwrap_or(budget.spent_usd),
    });
    let mut reflect_messages = messages;
    let conversation = &mut state.conversation;
    let toolbox = &mut state.toolbox;
    // The conversation and the tool definitions are lent to the request, not copied: they can
    // be large, and are serialised right away.
    let mut encode = || {
        let source = match reflect_messages.as_mut() {
            Some(messages) => messages,
            None => &mut *conversation,
        };
        let mut gateway_request = GatewayRequest {
            run_id: request.run_id.clone(),
            step_id: request.step_id.clone(),
            group: request.model.group.clone(),
            messages: std::mem::take(source),
            max_tokens: i64::from(request.model.effective_max_tokens()),
            temperature: None,
            tools: match tools {
                Tools::Omitted => Vec::new(),
                Tools::Offered | Tools::Withheld => toolbox.take_defs(),
            },
            tool_choice: (tools == Tools::Withheld).then_some(ToolChoice::None),
            output_schema: env.schema.map(|schema| schema.schema().clone()),
            budget: budget.clone(),
            timeout_s: Some(timeout.as_secs_f64()),
            metadata: CallMetadata {
                agent_name: Some(request.agent_name.clone()).filter(|name| !name.is_empty()),
                attempt: Some(request.attempt),
                turn: Some(turn),
                purpose: Some(purpose),
            }
            .to_map(),
        };
        let body = serde_json::to_vec(&gateway_request);
        *source = std::mem::take(&mut gateway_request.messages);
        if tools != Tools::Omitted {
            toolbox.restore_defs(std::mem::take(&mut gateway_request.tools));
        }
        body.map(Bytes::from)
            .map_err(|err| GatewayFailure::Encode(err.to_string()))
    };

    let started = Instant::now();
    let gateway = GatewayClient {
        client: &env.clients.internal,
        invoke_url: env.gateway_url,
    };
    let response = gateway
        .call(&mut encode, timeout, env.deadline, purpose, env.ids)
        .await
        .map_err(|failure| {
            LegFailure::from_gateway(failure, request.budget.as_ref(), spent.unwrap_or(0.0))
        })?;
    record(&mut state.metrics, &response);
    leg_log!(log::Level::Info, env.ids, event = "llm.call", turn = turn, purpose:serde = purpose,
        model_resolved = response.model_resolved.as_str(), tokens_in = response.tokens_in,
        tokens_out = response.tokens_out, cache_read_tokens = response.cache_read_tokens,
        cache_write_tokens = response.cache_write_tokens, cost_usd = response.cost_usd,
        stop_reason:serde = response.stop_reason, duration_ms = millis(started.elapsed());
        "model call");
    leg_log!(log::Level::Debug, env.ids, tool_calls = response.tool_calls.len();
        "model reply: {}", response.content);
    Ok(response)
}

/// Adds one successful call to the metrics.
fn record(metrics: &mut Metrics, response: &GatewayResponse) {
    let model = &response.model_resolved;
    if !model.is_empty() {
        if metrics.model_resolved.is_empty() {
            metrics.model_resolved = model.clone();
        }
        if !metrics.models_used.contains(model) {
            metrics.models_used.push(model.clone());
        }
    }
    metrics.tokens_in += response.tokens_in;
    metrics.tokens_out += response.tokens_out;
    metrics.cache_read_tokens += response.cache_read_tokens;
    metrics.cache_write_tokens += response.cache_write_tokens;
    metrics.cost_usd += response.cost_usd;
    metrics.llm_calls += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_sum_successful_calls() {
        let response = |model: &str, cost: f64| -> GatewayResponse {
            serde_json::from_value(json!({
                "content": "", "model_resolved": model, "tokens_in": 10, "tokens_out": 2,
                "cost_usd": cost, "cache_read_tokens": 4, "cache_write_tokens": 1
            }))
            .unwrap()
        };
        let mut metrics = Metrics::default();
        record(&mut metrics, &response("", 0.5));
        record(&mut metrics, &response("mock/a", 0.25));
        record(&mut metrics, &response("mock/b", 0.25));
        record(&mut metrics, &response("mock/a", 0.0));
        assert_eq!(metrics.model_resolved, "mock/a");
        assert_eq!(metrics.models_used, ["mock/a", "mock/b"]);
        assert_eq!((metrics.tokens_in, metrics.tokens_out), (40, 8));
        assert_eq!(
            (metrics.cache_read_tokens, metrics.cache_write_tokens),
            (16, 4)
        );
        assert_eq!(metrics.cost_usd, 1.0);
        assert_eq!(metrics.llm_calls, 4);
    }
}
