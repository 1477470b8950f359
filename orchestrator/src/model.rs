//! Run, step, item, approval and event records (orchestrator.md §3): what the store keeps and
//! what `GET /runs/{id}` returns. Serialised field names and omission rules are the wire
//! contract; fields that are internal to the orchestrator are skipped.

use ktsu_shared::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Run status (orchestrator.md §3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    Complete,
    Failed,
    Cancelled,
    NeedsHumanReview,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Complete,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::NeedsHumanReview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::NeedsHumanReview => "needs_human_review",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No transition leaves a terminal status.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

/// Step and item status (orchestrator.md §3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Complete,
    Failed,
    Skipped,
    PendingApproval,
    Cancelled,
}

impl StepStatus {
    pub const ALL: [StepStatus; 7] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Complete,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::PendingApproval,
        StepStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Complete => "complete",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::PendingApproval => "pending_approval",
            StepStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<StepStatus> {
        StepStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Complete | StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled
        )
    }
}

/// The step types recorded in run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    Agent,
    Transform,
    Webhook,
    Workflow,
}

impl StepType {
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Agent => "agent",
            StepType::Transform => "transform",
            StepType::Webhook => "webhook",
            StepType::Workflow => "workflow",
        }
    }

    pub fn parse(s: &str) -> Option<StepType> {
        [
            StepType::Agent,
            StepType::Transform,
            StepType::Webhook,
            StepType::Workflow,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// Step and item metrics (orchestrator.md §3.5). The first six fields are always present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub duration_ms: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub llm_calls: u64,
    pub tool_calls: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub reflect_calls: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cache_read_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cache_write_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_resolved: Option<String>,
}

impl StepMetrics {
    /// Adds another leg's (or item's, or child step's) usage; `duration_ms` is not summed here
    /// (it is `ended_at − started_at` of the record itself).
    pub fn add_usage(&mut self, other: &StepMetrics) {
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cost_usd += other.cost_usd;
        self.llm_calls += other.llm_calls;
        self.tool_calls += other.tool_calls;
        self.reflect_calls += other.reflect_calls;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        if self.model_resolved.is_none() {
            self.model_resolved.clone_from(&other.model_resolved);
        }
    }
}

/// Run totals (orchestrator.md §3.5): sums over the run's step records, always present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub duration_ms: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub llm_calls: u64,
    pub tool_calls: u64,
}

impl Totals {
    /// Totals over step records.
    pub fn of<'a>(steps: impl IntoIterator<Item = &'a StepMetrics>) -> Totals {
        let mut t = Totals::default();
        for m in steps {
            t.duration_ms += m.duration_ms;
            t.tokens_in += m.tokens_in;
            t.tokens_out += m.tokens_out;
            t.cost_usd += m.cost_usd;
            t.llm_calls += m.llm_calls;
            t.tool_calls += m.tool_calls;
        }
        t
    }
}

/// A run (orchestrator.md §3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub workflow_name: String,
    pub status: RunStatus,
    pub root_run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Params after defaults, secret params redacted.
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub totals: Totals,
    /// Optimistic concurrency: bumped by every commit (internal).
    #[serde(skip)]
    pub version: u64,
}

impl RunRecord {
    pub fn is_root(&self) -> bool {
        self.parent_run_id.is_none()
    }
}

/// A fan-out item (orchestrator.md §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub index: u32,
    pub item: Value,
    pub status: StepStatus,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airlock: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    pub metrics: StepMetrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
}

impl ItemRecord {
    /// A fan-out item before it starts: `pending`, attempt 0, nothing recorded yet.
    pub fn pending(index: u32, item: Value, now: Timestamp) -> ItemRecord {
        ItemRecord {
            index,
            item,
            status: StepStatus::Pending,
            attempt: 0,
            started_at: None,
            ended_at: None,
            updated_at: now,
            output: None,
            skip_reason: None,
            skip_message: None,
            error: None,
            error_code: None,
            raw_output: None,
            airlock: None,
            flags: Vec::new(),
            rationale: None,
            metrics: StepMetrics::default(),
            reflected: None,
            runtime_id: None,
        }
    }
}

/// A step (orchestrator.md §3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    /// Equals `id` (reference compatibility).
    pub name: String,
    pub run_id: String,
    #[serde(rename = "type")]
    pub step_type: StepType,
    pub position: u32,
    pub depends_on: Vec<String>,
    pub status: StepStatus,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<Timestamp>,
    /// Remaining step-timeout budget while paused in `pending_approval` (internal).
    #[serde(skip)]
    pub timeout_remaining_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub airlock: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    pub metrics: StepMetrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_run_id: Option<String>,
    /// Fan-out items in index order (fan-out steps only; stored in their own table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemRecord>>,
}

impl StepRecord {
    /// A step record before its first execution (what a new run holds for every pipeline
    /// step): `pending`, attempt 0, nothing recorded yet.
    pub fn pending(
        run_id: &str,
        id: &str,
        step_type: StepType,
        position: u32,
        depends_on: Vec<String>,
        now: Timestamp,
    ) -> StepRecord {
        StepRecord {
            id: id.to_string(),
            name: id.to_string(),
            run_id: run_id.to_string(),
            step_type,
            position,
            depends_on,
            status: StepStatus::Pending,
            attempt: 0,
            started_at: None,
            ended_at: None,
            updated_at: now,
            deadline_at: None,
            timeout_remaining_ms: None,
            output: None,
            skip_reason: None,
            skip_message: None,
            error: None,
            error_code: None,
            raw_output: None,
            airlock: None,
            flags: Vec::new(),
            rationale: None,
            metrics: StepMetrics::default(),
            reflected: None,
            runtime_id: None,
            child_run_id: None,
            items: None,
        }
    }
}

/// Approval status (orchestrator.md §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Timeout,
    Cancelled,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 5] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Rejected,
        ApprovalStatus::Timeout,
        ApprovalStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Timeout => "timeout",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        ApprovalStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// An approval (orchestrator.md §3.6); identity (`run_id`, `step_id`, `tool_use_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub run_id: String,
    /// The step address (`<step>` or `<step>.<index>` for a fan-out item).
    pub step_id: String,
    pub tool_name: String,
    pub tool_use_id: String,
    pub arguments: Value,
    /// `fail` or `recover`.
    pub on_reject: String,
    pub timeout_ms: u64,
    /// `fail` or `reject`.
    pub timeout_behavior: String,
    pub status: ApprovalStatus,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub partial_metrics: StepMetrics,
}

/// One entry of a run's event log (orchestrator.md §3.10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub run_id: String,
    /// Per-run sequence number, from 1, without gaps.
    pub seq: u64,
    pub ts: Timestamp,
    /// `run.complete`, `step.failed`, …
    pub event: String,
    /// The event's data fields beyond `seq, ts, event, run_id`.
    pub data: Value,
}

/// An event to append; the store assigns `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub ts: Timestamp,
    pub event: String,
    pub data: Value,
}

/// An `Idempotency-Key` record (orchestrator.md §2.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    pub workflow_name: String,
    /// SHA-256 (hex) of the canonical JSON of the body as received.
    pub request_hash: String,
    pub run_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A run with its step records (pipeline order; items in index order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFull {
    pub run: RunRecord,
    pub steps: Vec<StepRecord>,
}
