//! Runtime → orchestrator: the result callback of one invocation leg
//! (`POST /runs/{run_id}/steps/{step_id}/complete`) and the orchestrator's answer
//! (runtime-gateway.md §2.6, §3.13; orchestrator.md §2.11, §6.1).

use super::invoke::{OnReject, TimeoutBehavior};
use super::{compact_f64, empty_as_default, is_false, is_zero_u32, is_zero_u64, null_as_default};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The callback body. The reference fields are always written; the additions are omitted when
/// empty. On input everything but `status` may be missing (reference runtimes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackPayload {
    /// When present (non-empty) it must equal the path's run id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// When present (non-empty) it must equal the path's step address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step_id: String,
    pub status: CallbackStatus,
    /// The validated output with `ok`; `null` otherwise (always written).
    #[serde(default)]
    pub output: Option<Value>,
    /// `""` for `ok` and `pending_approval` (always written).
    #[serde(default)]
    pub error: String,
    /// The last invalid model text, when there was one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub raw_output: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metrics: Metrics,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_resume: bool,
    /// The transcript at exit (reference shape, see [`super::transcript`]); always written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub messages: Vec<Value>,
    /// `pending_approval` only: the first gated call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_approval: Option<PendingApproval>,
    /// `pending_approval` only: the InvokeRequest without `messages`, secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_request: Option<Value>,
    /// Always sent by ktsu runtimes; absent from reference runtimes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime_id: String,
    /// With `failed` and `cancelled` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub error_detail: Map<String, Value>,
    /// `pending_approval` only: every gated call of the checkpoint.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pending_approvals: Vec<PendingApproval>,
}

impl CallbackPayload {
    /// An empty payload with `status` (every other field empty or absent).
    pub fn new(status: CallbackStatus) -> Self {
        CallbackPayload {
            run_id: String::new(),
            step_id: String::new(),
            status,
            output: None,
            error: String::new(),
            raw_output: String::new(),
            metrics: Metrics::default(),
            is_resume: false,
            messages: Vec::new(),
            pending_approval: None,
            original_request: None,
            attempt: None,
            runtime_id: String::new(),
            error_code: None,
            error_detail: Map::new(),
            pending_approvals: Vec::new(),
        }
    }
}

/// How a leg ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Ok,
    Failed,
    PendingApproval,
    Cancelled,
}

/// What one leg consumed (runtime-gateway.md §3.13). Reference fields are always written, the
/// additions only when non-zero; missing numbers read as 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// First non-empty `model_resolved` of a successful gateway call.
    pub model_resolved: String,
    /// Distinct `model_resolved` values in first-use order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models_used: Vec<String>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub cache_read_tokens: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub cache_write_tokens: u64,
    #[serde(serialize_with = "compact_f64")]
    pub cost_usd: f64,
    pub llm_calls: u32,
    pub tool_calls: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub tool_errors: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub turns: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub corrections: u32,
    pub reflect_calls: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub reflected: bool,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub queue_ms: u64,
}

/// One tool call waiting for a human decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The MCP tool name.
    #[serde(default)]
    pub tool_name: String,
    #[serde(default)]
    pub tool_use_id: String,
    #[serde(default)]
    pub arguments: Value,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub on_reject: OnReject,
    #[serde(default)]
    pub timeout_ms: u64,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub timeout_behavior: TimeoutBehavior,
    /// The tool server's name (new; absent from reference runtimes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server: String,
}

/// The orchestrator's 200 answer to a callback. Both tell the runtime to stop retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CallbackAnswer {
    Accepted,
    Ignored { reason: IgnoreReason },
}

/// Why a callback changed nothing (orchestrator.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    RunFinished,
    Unexpected,
    StaleAttempt,
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::super::assert_round_trip;
    use super::*;
    use serde_json::json;

    /// orchestrator.md §6.1.
    const SPEC_EXAMPLE: &str = r#"{"run_id":"run_3f9a0c1d22b7e6a4","step_id":"classify","attempt":1,"runtime_id":"rt-9c41e2","status":"ok",
 "output":{"category":"billing","priority":"high","ktsu_confidence":0.93,"ktsu_flags":["vip"],"ktsu_rationale":"Invoice keywords"},
 "error":"","metrics":{"model_resolved":"anthropic/claude-sonnet-4-5","tokens_in":812,"tokens_out":96,"cost_usd":0.0039,
 "duration_ms":2140,"llm_calls":2,"tool_calls":1,"reflect_calls":0},
 "messages":[{"role":"user","content":"Help me triage this message: my invoice is wrong"}]}"#;

    #[test]
    fn spec_example_round_trips() {
        let callback: CallbackPayload = assert_round_trip(SPEC_EXAMPLE);
        assert_eq!(callback.status, CallbackStatus::Ok);
        assert_eq!(callback.attempt, Some(1));
        assert_eq!(callback.metrics.tokens_in, 812);
        assert_eq!(callback.output.as_ref().unwrap()["category"], "billing");
    }

    #[test]
    fn pending_approval_round_trips() {
        let callback: CallbackPayload = assert_round_trip(
            r#"{"run_id":"r","step_id":"act","status":"pending_approval","output":null,"error":"",
                "metrics":{"model_resolved":"","models_used":["mock/a"],"tokens_in":1,"tokens_out":2,
                  "cache_read_tokens":3,"cache_write_tokens":4,"cost_usd":0,"llm_calls":1,"tool_calls":0,
                  "tool_errors":1,"turns":1,"corrections":2,"reflect_calls":0,"reflected":true,
                  "duration_ms":5,"queue_ms":6},
                "is_resume":true,"messages":[],
                "pending_approval":{"tool_name":"delete-record","tool_use_id":"toolu_01A","arguments":{"id":7},
                  "on_reject":"recover","timeout_ms":1800000,"timeout_behavior":"reject","server":"crm"},
                "original_request":{"run_id":"r"},"attempt":2,"runtime_id":"rt-1",
                "pending_approvals":[{"tool_name":"delete-record","tool_use_id":"toolu_01A","arguments":{"id":7},
                  "on_reject":"recover","timeout_ms":1800000,"timeout_behavior":"reject","server":"crm"}]}"#,
        );
        assert_eq!(callback.pending_approvals.len(), 1);
        assert!(callback.metrics.reflected);
    }

    #[test]
    fn failed_callback_round_trips() {
        let callback: CallbackPayload = assert_round_trip(
            r#"{"run_id":"r","step_id":"s","status":"failed","output":null,
                "error":"output_invalid: reply contains no JSON object","raw_output":"hello",
                "metrics":{"model_resolved":"m","tokens_in":0,"tokens_out":0,"cost_usd":0.5,
                  "llm_calls":0,"tool_calls":0,"reflect_calls":0,"duration_ms":0},
                "messages":[],"attempt":1,"runtime_id":"rt-1","error_code":"output_invalid",
                "error_detail":{"kind":"no_json_object","violations":[]}}"#,
        );
        assert_eq!(callback.error_code.as_deref(), Some("output_invalid"));
    }

    #[test]
    fn reference_callback_with_minimum_fields() {
        let callback: CallbackPayload = serde_json::from_value(json!({
            "status": "failed", "error": "boom", "metrics": {"tokens_in": 5}, "extra": 1
        }))
        .unwrap();
        assert_eq!(callback.attempt, None);
        assert_eq!(callback.metrics.tokens_in, 5);
        assert_eq!(callback.metrics.llm_calls, 0);
        assert!(callback.messages.is_empty());
        assert!(serde_json::from_value::<CallbackPayload>(json!({"error": ""})).is_err());
        assert!(serde_json::from_value::<CallbackPayload>(json!({"status": "done"})).is_err());
    }

    #[test]
    fn default_payload_writes_reference_fields() {
        let callback = CallbackPayload {
            run_id: "r".into(),
            step_id: "s".into(),
            status: CallbackStatus::Cancelled,
            output: None,
            error: "cancelled: cancelled by orchestrator".into(),
            raw_output: String::new(),
            metrics: Metrics::default(),
            is_resume: false,
            messages: Vec::new(),
            pending_approval: None,
            original_request: None,
            attempt: Some(1),
            runtime_id: "rt-1".into(),
            error_code: Some("cancelled".into()),
            error_detail: Map::new(),
            pending_approvals: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&callback).unwrap(),
            json!({
                "run_id": "r", "step_id": "s", "status": "cancelled", "output": null,
                "error": "cancelled: cancelled by orchestrator",
                "metrics": {"model_resolved": "", "tokens_in": 0, "tokens_out": 0, "cost_usd": 0,
                            "llm_calls": 0, "tool_calls": 0, "reflect_calls": 0, "duration_ms": 0},
                "messages": [], "attempt": 1, "runtime_id": "rt-1", "error_code": "cancelled"
            })
        );
    }

    #[test]
    fn answers() {
        let accepted: CallbackAnswer = assert_round_trip(r#"{"status":"accepted"}"#);
        assert_eq!(accepted, CallbackAnswer::Accepted);
        let ignored: CallbackAnswer =
            assert_round_trip(r#"{"status":"ignored","reason":"stale_attempt"}"#);
        assert_eq!(
            ignored,
            CallbackAnswer::Ignored {
                reason: IgnoreReason::StaleAttempt
            }
        );
    }
}
