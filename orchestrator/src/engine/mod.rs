//! The pure engine: the run state machine, the DAG, reserved-field processing, the Air-Lock,
//! transforms and budget rules, with no actix and no I/O.
//!
//! [`RunState::apply`] takes one [`Event`] and returns an [`Outcome`]: the [`ChangeSet`] to
//! commit, the [`Effect`]s to carry out once it is committed, and the answer to the caller.
//! The RunActor persists, dispatches and schedules what the outcome says; keeping the decisions
//! here makes them testable without a runtime.
//!
//! [`ChangeSet`]: crate::store::ChangeSet

pub mod airlock;
mod approvals;
mod callback;
mod context;
mod dispatch;
mod events;
mod finish;
mod items;
pub mod reserved;
mod schedule;
mod state;
pub mod transform;

#[cfg(test)]
mod tests;

pub use callback::agent_airlock_schema;
pub use events::event_level;
pub use state::{initial_records, RunInputs, RunState};

use crate::model::{ApprovalRecord, RunRecord, RunStatus, StepMetrics};
use crate::store::ChangeSet;
use ktsu_shared::time::Timestamp;
use ktsu_shared::wire::callback::{CallbackAnswer, CallbackPayload};
use ktsu_shared::wire::invoke::InvokeRequest;
use serde_json::Value;

/// Orchestrator settings the engine needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Base of callback URLs (`KTSU_OWN_URL`), without a trailing `/`.
    pub own_url: String,
    /// Steps of one run in `running` at once (`KTSU_RUN_MAX_PARALLEL_STEPS`).
    pub max_parallel_steps: usize,
    /// Hard cap on the items of one fan-out step (`KTSU_FANOUT_MAX_ITEMS`).
    pub fanout_max_items: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            own_url: "http://localhost:5050".into(),
            max_parallel_steps: 16,
            fanout_max_items: 10_000,
        }
    }
}

/// Timers a run arms (orchestrator.md §7.5, §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Timer {
    /// `model_policy.timeout_s` of the root run.
    RunDeadline,
    /// A step's `timeout_s` (by step id).
    StepDeadline(String),
    /// An approval's `expires_at`.
    Approval {
        address: String,
        tool_use_id: String,
    },
}

/// A webhook that ended without a 2xx answer.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookFailure {
    pub error: String,
    /// The last response body (text, truncated), when there was one.
    pub raw_output: Option<Value>,
}

/// How a sub-run ended, reported to its parent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildOutcome {
    pub status: RunStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    /// Sums over the child's step records.
    pub metrics: StepMetrics,
}

/// Inputs of the state machine.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run may start: `pending → running`.
    Start,
    /// The run was rebuilt from the store after a restart (orchestrator.md §7.7).
    Recover,
    /// A runtime callback (orchestrator.md §6); `attempt` from the query, else the body.
    Callback {
        address: String,
        attempt: Option<u32>,
        payload: Box<CallbackPayload>,
    },
    /// A runtime accepted a dispatch.
    Dispatched {
        address: String,
        attempt: u32,
        runtime_id: String,
        runtime_url: String,
    },
    /// A dispatch could not be made (no runtime, rejected, budget, …).
    DispatchFailed {
        address: String,
        attempt: u32,
        code: String,
        error: String,
    },
    /// A webhook step's request ended.
    WebhookDone {
        step_id: String,
        attempt: u32,
        result: Result<Value, WebhookFailure>,
    },
    /// A sub-run reached a terminal status.
    ChildFinished {
        step_id: String,
        outcome: ChildOutcome,
    },
    TimerFired(Timer),
    /// The StepSupervisor saw no heartbeat for this attempt in time.
    HeartbeatLost {
        address: String,
        attempt: u32,
    },
    /// An approval decision (orchestrator.md §2.10, §7.1).
    Decide {
        address: String,
        tool_use_id: Option<String>,
        approved: bool,
        comment: Option<String>,
        decided_by: Option<String>,
    },
    /// Cancel the run: a request for a root run, or the parent ended for a sub-run.
    Cancel {
        reason: String,
    },
}

/// An agent dispatch to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The step address (`<step>` or `<step>.<index>`).
    pub address: String,
    pub attempt: u32,
    /// Complete except `budget`, which the actor fills from the tree spend.
    pub request: InvokeRequest,
}

/// A webhook request to send (a webhook step or an approval hook).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCall {
    pub step_id: String,
    pub attempt: u32,
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub timeout_s: u64,
    pub max_attempts: u32,
    pub idempotency_key: String,
    /// Set for approval hooks: deliveries are only logged (`approval_hook.sent`/`.failed`).
    pub hook: Option<HookInfo>,
}

/// Which approval a hook delivery is about.
#[derive(Debug, Clone, PartialEq)]
pub struct HookInfo {
    pub hook_id: String,
    pub address: String,
    pub tool_use_id: String,
}

/// What the actor must do once the change set is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Dispatch(Box<Dispatch>),
    Webhook(Box<WebhookCall>),
    /// Start the sub-run's actor with its (unredacted) params.
    StartChild {
        run_id: String,
        params: Value,
        /// The dual webhook opt-in holds at every boundary up to the root.
        webhooks_enabled: bool,
    },
    /// The parent ended: cancel the sub-run.
    CancelChild {
        run_id: String,
        reason: String,
    },
    /// Tell a runtime to stop an attempt (orchestrator.md §5.2.5).
    CancelRuntime {
        runtime_id: String,
        address: String,
        attempt: u32,
        reason: String,
    },
    /// Heartbeat supervision of an attempt starts / ends.
    Watch {
        address: String,
        attempt: u32,
    },
    Unwatch {
        address: String,
    },
    Arm {
        timer: Timer,
        at: Timestamp,
    },
    Disarm(Timer),
    /// A warning about this run that is not a transition (e.g. a wrongly typed `ktsu_flags`).
    Warn {
        address: String,
        message: String,
    },
    /// An approval hook could not even be rendered (`approval_hook.failed`).
    HookFailed {
        hook: HookInfo,
        cause: String,
    },
    /// The run reached a terminal status: notify the manager (and the parent), stop.
    Finished,
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum DecideError {
    StepNotFound,
    ApprovalNotFound,
    /// The target approval is not `pending`: 409 with the approval.
    AlreadyDecided(Box<ApprovalRecord>),
}

/// Why a cancel was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelError {
    /// The run ended other than `cancelled`: 409 with the run.
    Finished(Box<RunRecord>),
}

/// The answer to the caller of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Callback(CallbackAnswer),
    /// The callback names a step (or item) the run does not have: 404 `step_not_found`.
    UnknownStep,
    Decide(Result<Box<ApprovalRecord>, DecideError>),
    Cancel(Result<Box<RunRecord>, CancelError>),
}

/// What one event produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub changes: ChangeSet,
    pub effects: Vec<Effect>,
    pub reply: Option<Reply>,
}

/// The clock is an input: tests drive it.
pub type Now = Timestamp;
