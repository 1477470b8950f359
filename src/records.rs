//! Read-only views of the orchestrator's JSON (orchestrator.md §2.6, §2.7, §2.10, §3): only the
//! fields the human output shows, every one optional so that an older or newer server still
//! renders. `--json` prints the server's body itself, never these views.

use serde::Deserialize;
use serde_json::Value;

/// The six run statuses (orchestrator.md §3.8).
pub const RUN_STATUSES: [&str; 6] = [
    "pending",
    "running",
    "complete",
    "failed",
    "cancelled",
    "needs_human_review",
];

/// Whether a run status is final.
pub fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "complete" | "failed" | "cancelled" | "needs_human_review"
    )
}

/// Whether a step or item status is final.
pub fn step_is_terminal(status: &str) -> bool {
    matches!(status, "complete" | "failed" | "skipped" | "cancelled")
}

/// Metrics of a step or item, and a run's totals (orchestrator.md §3.5).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub duration_ms: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub llm_calls: u64,
    pub tool_calls: u64,
}

impl Metrics {
    /// Whether a model was involved, so tokens and cost mean something.
    pub fn has_llm_usage(&self) -> bool {
        self.llm_calls > 0 || self.tokens_in > 0 || self.tokens_out > 0 || self.cost_usd > 0.0
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Run {
    pub id: String,
    pub workflow_name: String,
    pub status: String,
    pub parent_run_id: Option<String>,
    pub parent_step_id: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub budget_usd: Option<f64>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub failed_step: Option<String>,
    pub totals: Metrics,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Airlock {
    pub violations: Vec<Violation>,
}

/// What a step and a fan-out item share.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Outcome {
    pub status: String,
    pub attempt: u64,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub output: Option<Value>,
    pub skip_reason: Option<String>,
    pub skip_message: Option<String>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub raw_output: Option<Value>,
    pub airlock: Option<Airlock>,
    pub flags: Vec<String>,
    pub rationale: Option<String>,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Item {
    pub index: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Step {
    pub id: String,
    #[serde(rename = "type")]
    pub step_type: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub child_run_id: Option<String>,
    pub items: Option<Vec<Item>>,
}

/// `GET /runs/{run_id}`: `{"run": Run, "steps": [Step]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunDoc {
    pub run: Run,
    pub steps: Vec<Step>,
}

impl RunDoc {
    /// Steps in a final status, and all steps.
    pub fn progress(&self) -> (usize, usize) {
        let done = self
            .steps
            .iter()
            .filter(|s| step_is_terminal(&s.outcome.status))
            .count();
        (done, self.steps.len())
    }

    /// Steps (or fan-out items) waiting for a human decision.
    pub fn waiting_for_approval(&self) -> Vec<String> {
        let mut waiting = Vec::new();
        for step in &self.steps {
            if step.outcome.status == "pending_approval" {
                waiting.push(step.id.clone());
            }
            for item in step.items.iter().flatten() {
                if item.outcome.status == "pending_approval" {
                    waiting.push(format!("{}.{}", step.id, item.index));
                }
            }
        }
        waiting
    }
}

/// `GET /runs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunList {
    pub runs: Vec<Run>,
    pub next_cursor: Option<String>,
}

/// An approval (orchestrator.md §3.6).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Approval {
    pub run_id: String,
    pub step_id: String,
    pub tool_name: String,
    pub tool_use_id: String,
    pub status: String,
    pub timeout_behavior: Option<String>,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub decided_at: Option<String>,
}
