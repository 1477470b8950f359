//! Tool-call handling for one model reply (runtime-gateway.md §3.7): permission, approval
//! gating, sequential execution, and the `pending_approval` stop when any call is gated.

use super::outcome::{ErrorCode, LegFailure, Stop};
use super::texts;
use super::toolbox::Route;
use super::{LegEnv, LegState};
use crate::mcp::CallOutcome;
use crate::units::millis;
use ktsu_shared::wire::callback::PendingApproval;
use ktsu_shared::wire::gateway::{Message, ToolCall};
use serde_json::{json, Value};
use std::time::Instant;

/// What a resume decided for a call; a call of a new reply is always `New`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Subject to the approval rules.
    New,
    /// Approved by a human: executed without consulting the rules.
    Approved,
    /// Rejected with `on_reject: recover`: answered with T8, never executed.
    Rejected,
}

/// Handles `calls` in order. Gated calls stop the leg with `pending_approval` after every other
/// call was handled.
pub async fn handle(
    env: &LegEnv<'_>,
    state: &mut LegState,
    calls: Vec<(ToolCall, Decision)>,
) -> Result<(), Stop> {
    let mut gated = Vec::new();
    for (call, decision) in calls {
        if decision == Decision::Rejected {
            state
                .conversation
                .push(Message::tool_result(call.id, texts::REJECTED, true));
            continue;
        }
        let Some(route) = state.toolbox.route(&call.name).cloned() else {
            refuse(env, state, &call)?;
            continue;
        };
        if decision == Decision::New {
            if let Some(rule) = state.toolbox.approval_rule(env, &route) {
                gated.push(PendingApproval {
                    tool_name: route.mcp_name.clone(),
                    tool_use_id: call.id.clone(),
                    arguments: arguments_object(&call.arguments),
                    on_reject: rule.on_reject,
                    timeout_ms: rule.timeout_ms,
                    timeout_behavior: rule.timeout_behavior,
                    server: env.request.tool_servers[route.server].name.clone(),
                });
                continue;
            }
        }
        let execution = Box::pin(execute(env, state, &call, &route));
        execution.await?;
    }
    if gated.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = gated.iter().map(|p| p.tool_name.as_str()).collect();
    let ids: Vec<&str> = gated.iter().map(|p| p.tool_use_id.as_str()).collect();
    leg_log!(log::Level::Info, env.ids, event = "approval.requested",
        tools:serde = tools, tool_use_ids:serde = ids; "tool calls wait for approval");
    Err(Stop::PendingApproval(gated))
}

/// A call to a tool outside the routing table: a visible tool error (T6); the second one in a
/// leg fails it.
fn refuse(env: &LegEnv<'_>, state: &mut LegState, call: &ToolCall) -> Result<(), Stop> {
    state.violations += 1;
    let text = texts::tool_not_available(&call.name, &state.toolbox.names());
    state
        .conversation
        .push(Message::tool_result(call.id.clone(), text, true));
    leg_log!(log::Level::Warn, env.ids, event = "tool.not_permitted",
        tool = call.name.as_str(), violations = state.violations; "tool not permitted");
    if state.violations >= 2 {
        return Err(Stop::from(
            LegFailure::new(
                ErrorCode::ToolNotPermitted,
                format!("tool_not_permitted: {}", call.name),
            )
            .with_detail("tool", call.name.as_str()),
        ));
    }
    Ok(())
}

/// `tools/call`, then the `tool` message with the result (or T10/T11).
async fn execute(
    env: &LegEnv<'_>,
    state: &mut LegState,
    call: &ToolCall,
    route: &Route,
) -> Result<(), Stop> {
    let server = env.request.tool_servers[route.server].name.as_str();
    leg_log!(log::Level::Debug, env.ids, server = server, tool = route.mcp_name.as_str();
        "tool arguments: {}", call.arguments);
    let started = Instant::now();
    let outcome = state
        .toolbox
        .call(route, &call.arguments, env.settings.max_tool_result_bytes)
        .await;
    let metrics = &mut state.metrics;
    let (text, is_error) = match outcome {
        Ok(CallOutcome::Result(result)) => {
            metrics.tool_calls += 1;
            metrics.tool_errors += u32::from(result.is_error);
            (result.text, result.is_error)
        }
        Ok(CallOutcome::RpcError(error)) => {
            metrics.tool_calls += 1;
            metrics.tool_errors += 1;
            (texts::tool_failed(&error.message, error.code), true)
        }
        Ok(CallOutcome::TimedOut(after)) => {
            metrics.tool_errors += 1;
            (texts::tool_timed_out(after), true)
        }
        Err(err) => {
            return Err(Stop::from(
                LegFailure::new(
                    ErrorCode::ToolCallFailed,
                    format!("tool call {}: {err}", route.mcp_name),
                )
                .with_detail("server", server)
                .with_detail("tool", route.mcp_name.as_str())
                .with_detail("mcp_error", err.code()),
            ))
        }
    };
    leg_log!(log::Level::Info, env.ids, event = "tool.call", server = server,
        tool = route.mcp_name.as_str(), tool_use_id = call.id.as_str(), is_error = is_error,
        duration_ms = millis(started.elapsed()); "tool called");
    leg_log!(log::Level::Debug, env.ids, server = server, tool = route.mcp_name.as_str();
        "tool result: {text}");
    state
        .conversation
        .push(Message::tool_result(call.id.clone(), text, is_error));
    Ok(())
}

/// Arguments as an object: `null` is `{}`.
fn arguments_object(arguments: &Value) -> Value {
    if arguments.is_null() {
        json!({})
    } else {
        arguments.clone()
    }
}
