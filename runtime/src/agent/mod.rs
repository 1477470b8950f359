//! The agent loop of one leg (runtime-gateway.md §3): tool discovery, resume processing, the
//! turn loop with output validation, reflect.
//!
//! Everything the leg has done lives in [`LegState`], which [`run`] only borrows. When the leg
//! driver stops `run` at an await point (cancel, deadline, shutdown), the state still holds the
//! conversation, the metrics and the sessions with their in-flight requests, so the callback
//! covers the work done and the sessions are closed properly.

mod approval;
mod conversation;
mod model_call;
pub mod outcome;
mod output;
mod reflect;
mod texts;
mod tool_calls;
mod toolbox;
mod turn_loop;

use crate::clients::Clients;
use crate::leg::LegIds;
use crate::settings::Settings;
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::wire::callback::Metrics;
use ktsu_shared::wire::gateway::Message;
use ktsu_shared::wire::invoke::InvokeRequest;
use outcome::LegEnd;
use std::time::{Duration, Instant};
use toolbox::Toolbox;

/// What a leg works with (read-only).
pub struct LegEnv<'a> {
    pub request: &'a InvokeRequest,
    pub ids: &'a LegIds,
    pub schema: Option<&'a CompiledSchema>,
    pub settings: &'a Settings,
    pub clients: &'a Clients,
    /// `<gateway>/invoke`.
    pub gateway_url: &'a str,
    /// Acceptance + the step limit.
    pub deadline: Instant,
    /// The step limit itself (bounds legacy MCP streams).
    pub step_limit: Duration,
}

/// What a leg has done so far.
pub struct LegState {
    /// The conversation in the gateway format.
    pub conversation: Vec<Message>,
    pub metrics: Metrics,
    pub toolbox: Toolbox,
    /// Calls to tools outside the routing table so far (the second fails the leg).
    pub violations: u32,
    pub origin: Origin,
}

/// Where a leg's conversation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A resume transcript (§3.5).
    Resumed,
    /// The request's prompts (§3.3), which moved into the first two messages; the system
    /// prompt is the first `system_len` bytes of the first.
    Prompts { system_len: usize },
}

impl LegState {
    /// The decoded resume transcript (§3.5), or the initial conversation (§3.3), which takes
    /// the prompts out of `request` until [`LegState::return_prompts`].
    pub fn new(request: &mut InvokeRequest, transcript: Option<Vec<Message>>) -> LegState {
        let (conversation, origin) = match transcript {
            Some(messages) if !messages.is_empty() => (messages, Origin::Resumed),
            _ => {
                let (messages, system_len) = conversation::initial(request);
                (messages, Origin::Prompts { system_len })
            }
        };
        LegState {
            conversation,
            metrics: Metrics::default(),
            toolbox: Toolbox::default(),
            violations: 0,
            origin,
        }
    }

    /// Gives `request` back the prompts the initial conversation took.
    pub fn return_prompts(&self, request: &mut InvokeRequest) {
        if let Origin::Prompts { system_len } = self.origin {
            conversation::return_prompts(&self.conversation, system_len, request);
        }
    }
}

/// Runs the leg to its end: discovery, resume, the turn loop, reflect.
///
/// Each phase is boxed (here and in the phases): a state machine reserves room for its largest
/// branch, and a leg waits on one branch at a time, so boxing keeps a waiting leg small (its
/// memory is dominated by the branch it is in, not by every branch it could be in). The box is
/// bound in its own statement: a temporary future inside `Box::pin(…).await` would keep its
/// (moved-out) storage in this state machine until the end of the statement, across the await.
pub async fn run(env: &LegEnv<'_>, state: &mut LegState) -> LegEnd {
    let discovery = Box::pin(state.toolbox.discover(env));
    if let Err(failure) = discovery.await {
        return LegEnd::Failed(failure);
    }
    if state.origin == Origin::Resumed {
        let resume = Box::pin(approval::resume(env, state));
        if let Err(stop) = resume.await {
            return stop.into();
        }
    }
    let turns = Box::pin(turn_loop::run(env, state));
    let draft = match turns.await {
        Ok(draft) => draft,
        Err(stop) => return stop.into(),
    };
    let reflection = Box::pin(reflect::run(env, state, draft));
    match reflection.await {
        Ok(output) => LegEnd::Ok(output),
        Err(failure) => LegEnd::Failed(failure),
    }
}
