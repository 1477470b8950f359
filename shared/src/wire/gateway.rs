//! Runtime → gateway: one normalised LLM call (`POST <gateway>/invoke`), its answer and its
//! error body (runtime-gateway.md §6.2–§6.4), in the gateway message format of §3.2.

use super::{compact_f64, compact_opt_f64, is_false, is_zero_i64, null_as_default};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of one tool call (`tool_call_id` names the call).
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation in the gateway format: an assistant reply carries its text and
/// all its tool calls; each tool result is its own `tool` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Always written (possibly `""`); absent or `null` reads as `""`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tool_calls: Vec<ToolCall>,
    /// Required on `tool` messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_error: bool,
}

impl Message {
    fn plain(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::plain(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, content)
    }

    /// A model reply: its text (possibly empty) and its tool calls.
    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Message {
            tool_calls,
            ..Self::plain(Role::Assistant, content)
        }
    }

    /// The result of tool call `tool_call_id`.
    pub fn tool_result(
        tool_call_id: impl Into<String>,
        content: impl Into<String>,
        is_error: bool,
    ) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            is_error,
            ..Self::plain(Role::Tool, content)
        }
    }
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    /// The model-facing tool name.
    pub name: String,
    /// An object, or `null`.
    #[serde(default)]
    pub arguments: Value,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A JSON Schema object.
    #[serde(default)]
    pub input_schema: Value,
}

/// Whether the model may, must or must not call tools. Absent = `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoice {
    Auto,
    /// Tools stay in the request (so tool history is valid for providers) but may not be called.
    None,
    Required,
}

/// The body of `POST <gateway>/invoke`.
///
/// `group` and `messages` default when absent so that the gateway can answer its own
/// `invalid_request` messages for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayRequest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step_id: String,
    #[serde(default)]
    pub group: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub messages: Vec<Message>,
    /// ≤ 0 = the group's `default_max_tokens`.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_tokens: i64,
    /// Absent = the group's default; neither = not sent upstream.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "compact_opt_f64"
    )]
    pub temperature: Option<f64>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tools: Vec<ToolDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRequest>,
    /// Caps the request deadline (seconds).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "compact_opt_f64"
    )]
    pub timeout_s: Option<f64>,
    /// Free-form; the runtime sends [`CallMetadata`].
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub metadata: Map<String, Value>,
}

/// The run budget a call is charged to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRequest {
    /// The root run id; absent = the request's `run_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(serialize_with = "compact_f64")]
    pub limit_usd: f64,
    #[serde(default, serialize_with = "compact_f64")]
    pub spent_usd: f64,
}

/// Why the runtime makes a gateway call (`metadata.purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPurpose {
    Turn,
    Correction,
    Grace,
    Reflect,
    ReflectCorrection,
}

/// The `metadata` the runtime sends. The gateway reads it leniently
/// ([`CallMetadata::from_map`]): metadata is free-form and never rejects a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<CallPurpose>,
}

impl CallMetadata {
    /// The `metadata` object of a [`GatewayRequest`].
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// Reads each known key that has the expected type; ignores everything else.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        let number = |key: &str| {
            map.get(key)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        CallMetadata {
            agent_name: map
                .get("agent_name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            attempt: number("attempt"),
            turn: number("turn"),
            purpose: map
                .get("purpose")
                .and_then(|p| serde_json::from_value(p.clone()).ok()),
        }
    }
}

/// Why the model stopped. Values this version does not know read as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    ContentFilter,
    Refusal,
    #[serde(other)]
    Other,
}

/// The 200 answer of `POST <gateway>/invoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayResponse {
    /// Always present, possibly `""`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: String,
    /// `<provider name>/<model id>` of the model that answered.
    #[serde(default)]
    pub model_resolved: String,
    /// Includes cached tokens.
    #[serde(default)]
    pub tokens_in: u64,
    #[serde(default)]
    pub tokens_out: u64,
    #[serde(default, serialize_with = "compact_f64")]
    pub cost_usd: f64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// Subset of `tokens_in`.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Subset of `tokens_in`.
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub attempts: Vec<Attempt>,
    /// Present only when the request had a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetState>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub call_id: String,
}

/// One model tried for a call, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub model: String,
    /// Upstream attempt number on this model, from 1.
    #[serde(default)]
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default)]
    pub duration_ms: u64,
    /// On failed attempts: the provider error class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorClass>,
    /// When a retry-after was honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// How an attempt ended. Values this version does not know read as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Ok,
    Error,
    SkippedCircuitOpen,
    SkippedBudget,
    Overloaded,
    #[serde(other)]
    Other,
}

/// Provider error classes (runtime-gateway.md §7.1). Unknown values read as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Billing,
    Transient,
    Timeout,
    Auth,
    NotFound,
    InvalidRequest,
    #[serde(other)]
    Other,
}

/// The budget after the call was reconciled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    #[serde(serialize_with = "compact_f64")]
    pub limit_usd: f64,
    #[serde(serialize_with = "compact_f64")]
    pub spent_usd: f64,
    #[serde(serialize_with = "compact_f64")]
    pub remaining_usd: f64,
}

/// Every non-2xx body of the gateway: the common envelope plus `retryable`, `call_id` and the
/// attempts made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayErrorBody {
    pub error: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub retryable: bool,
    #[serde(default)]
    pub call_id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub attempts: Vec<Attempt>,
}

#[cfg(test)]
mod tests {
    use super::super::assert_round_trip;
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_response_round_trips() {
        // runtime-gateway.md §6.3.
        let response: GatewayResponse = assert_round_trip(
            r#"{"content":"Let me check the ledger.","model_resolved":"anthropic/claude-sonnet-4-5",
 "tokens_in":9200,"tokens_out":500,"cost_usd":0.0135,
 "tool_calls":[{"id":"toolu_01","name":"kv_get","arguments":{"key":"a"}}],
 "stop_reason":"tool_use","cache_read_tokens":8000,"cache_write_tokens":0,
 "attempts":[{"model":"anthropic/claude-sonnet-4-5","attempt":1,"outcome":"ok","http_status":200,"duration_ms":912}],
 "budget":{"limit_usd":0.5,"spent_usd":0.4835,"remaining_usd":0.0165},"call_id":"gw_9c0d…"}"#,
        );
        assert_eq!(response.stop_reason, Some(StopReason::ToolUse));
        assert_eq!(response.tool_calls[0].arguments, json!({"key": "a"}));
        assert_eq!(response.attempts[0].outcome, AttemptOutcome::Ok);
    }

    #[test]
    fn reference_response_and_unknown_values() {
        let response: GatewayResponse = serde_json::from_value(json!({
            "content": null, "model_resolved": "openai/gpt-4o-mini", "tokens_in": 1,
            "tokens_out": 2, "cost_usd": 0.1, "stop_reason": "pause_turn",
            "attempts": [{"model": "m", "attempt": 1, "outcome": "shed", "error": "quota", "duration_ms": 3}]
        }))
        .unwrap();
        assert_eq!(response.content, "");
        assert_eq!(response.stop_reason, Some(StopReason::Other));
        assert_eq!(response.attempts[0].outcome, AttemptOutcome::Other);
        assert_eq!(response.attempts[0].error, Some(ErrorClass::Other));
        assert!(response.tool_calls.is_empty() && response.budget.is_none());
    }

    #[test]
    fn request_round_trips() {
        let request: GatewayRequest = assert_round_trip(
            r#"{"run_id":"run_3f9a1c2b4d5e6f70","step_id":"triage","group":"standard",
                "messages":[{"role":"system","content":"S"},{"role":"user","content":"U"},
                  {"role":"assistant","content":"","tool_calls":[{"id":"toolu_1","name":"kv_get","arguments":{"key":"a"}}]},
                  {"role":"tool","content":"42","tool_call_id":"toolu_1"},
                  {"role":"tool","content":"boom","tool_call_id":"toolu_2","is_error":true}],
                "max_tokens":1024,"temperature":0.2,
                "tools":[{"name":"kv_get","description":"Read a key","input_schema":{"type":"object","properties":{}}}],
                "tool_choice":"none","output_schema":{"type":"object"},
                "budget":{"run_id":"run_3f9a1c2b4d5e6f70","limit_usd":0.5,"spent_usd":0.031},
                "timeout_s":325,"metadata":{"agent_name":"triage-agent","attempt":1,"turn":3,"purpose":"turn"}}"#,
        );
        assert_eq!(
            request.messages[3],
            Message::tool_result("toolu_1", "42", false)
        );
        assert_eq!(request.tool_choice, Some(ToolChoice::None));
        let metadata = CallMetadata::from_map(&request.metadata);
        assert_eq!(metadata.purpose, Some(CallPurpose::Turn));
        assert_eq!(metadata.to_map(), request.metadata);
    }

    #[test]
    fn minimal_request() {
        let request: GatewayRequest = serde_json::from_value(json!({
            "group": "g", "messages": [{"role": "user"}], "budget": {"limit_usd": 1}
        }))
        .unwrap();
        assert_eq!(request.messages[0], Message::user(""));
        assert_eq!(request.budget.as_ref().unwrap().spent_usd, 0.0);
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"group": "g", "messages": [{"role": "user", "content": ""}],
                   "budget": {"limit_usd": 1, "spent_usd": 0}})
        );
        assert!(serde_json::from_value::<GatewayRequest>(json!({
            "group": "g", "messages": [{"role": "robot", "content": "x"}]
        }))
        .is_err());
    }

    #[test]
    fn lenient_metadata() {
        let map = json!({"attempt": "1", "turn": 2, "purpose": "dream", "x": true});
        let metadata = CallMetadata::from_map(map.as_object().unwrap());
        assert_eq!(
            metadata,
            CallMetadata {
                turn: Some(2),
                ..CallMetadata::default()
            }
        );
        let full = CallMetadata {
            agent_name: Some("a".into()),
            attempt: Some(2),
            turn: Some(1),
            purpose: Some(CallPurpose::ReflectCorrection),
        };
        assert_eq!(
            Value::Object(full.to_map()),
            json!({"agent_name": "a", "attempt": 2, "turn": 1, "purpose": "reflect_correction"})
        );
    }

    #[test]
    fn error_body_round_trips() {
        let body: GatewayErrorBody = assert_round_trip(
            r#"{"error":"provider_error","message":"upstream returned 529: Overloaded","retryable":true,
                "call_id":"gw_5d0c9a7e1f2b3c4d",
                "attempts":[{"model":"anthropic/claude-haiku-4-5","attempt":1,"outcome":"error","http_status":529,
                  "duration_ms":40,"error":"transient","retry_after_ms":1000}]}"#,
        );
        assert_eq!(body.attempts[0].error, Some(ErrorClass::Transient));
        let framework: GatewayErrorBody = serde_json::from_value(json!({
            "error": "invalid_json", "message": "invalid JSON: EOF"
        }))
        .unwrap();
        assert!(!framework.retryable && framework.call_id.is_empty());
    }

    #[test]
    fn role_names() {
        for role in [Role::System, Role::User, Role::Assistant, Role::Tool] {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
    }
}
