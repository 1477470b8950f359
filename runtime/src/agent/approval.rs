//! Resume processing (runtime-gateway.md §3.5): the pending calls of the checkpoint are executed
//! (approved), answered with the rejection text (rejected) or handled like new calls, so a call
//! still gated is raised again. A call that already has its result is never executed again.

use super::conversation::{answered_ids, pending_calls};
use super::outcome::Stop;
use super::tool_calls::{self, Decision};
use super::{LegEnv, LegState};
use std::collections::HashSet;

/// Processes the pending calls of a resumed conversation; `Err(PendingApproval)` when calls are
/// still gated (no model call is made then).
pub async fn resume(env: &LegEnv<'_>, state: &mut LegState) -> Result<(), Stop> {
    let request = env.request;
    let approved: HashSet<&str> = request
        .approved_tool_calls
        .iter()
        .map(String::as_str)
        .collect();
    let rejected: HashSet<&str> = request
        .rejected_tool_calls
        .iter()
        .map(String::as_str)
        .collect();
    let pending = pending_calls(&state.conversation);
    let pending_ids: HashSet<&str> = pending.iter().map(|c| c.id.as_str()).collect();
    let answered = answered_ids(&state.conversation);
    for id in approved.union(&rejected) {
        if pending_ids.contains(id) {
            continue;
        }
        // The orchestrator appends the rejection result itself: such ids are expected here.
        let level = if answered.contains(id) {
            log::Level::Debug
        } else {
            log::Level::Warn
        };
        leg_log!(level, env.ids, event = "resume.id_ignored", tool_use_id = *id;
            "decision for a tool call that is not pending ignored");
    }
    let calls = pending
        .into_iter()
        .map(|call| {
            // A call in both lists is never executed: rejection wins.
            let decision = if rejected.contains(call.id.as_str()) {
                Decision::Rejected
            } else if approved.contains(call.id.as_str()) {
                Decision::Approved
            } else {
                Decision::New
            };
            (call, decision)
        })
        .collect();
    tool_calls::handle(env, state, calls).await
}
