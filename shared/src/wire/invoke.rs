//! Orchestrator → runtime: the agent invocation (`POST /invoke`), its 202 answer, and the cancel
//! notice (`POST /cancel`) with its answer (runtime-gateway.md §2.2–§2.5, orchestrator.md §5.2.2,
//! §5.2.5).

use super::{
    compact_f64, compact_opt_f64, empty_as_default, is_false, is_zero_f64, is_zero_i64,
    null_as_default,
};
use crate::secret::Scrubber;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `max_turns` when the request has none (or ≤ 0).
pub const DEFAULT_MAX_TURNS: u32 = 10;
/// `model.max_tokens` when the request has none (or ≤ 0).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// `reason` of a cancel notice without one.
pub const DEFAULT_CANCEL_REASON: &str = "cancelled by orchestrator";

/// The body of `POST <runtime>/invoke`.
///
/// `run_id`, `step_id`, `callback_url` and `model` default when absent so that the runtime can
/// answer its own messages for them (runtime-gateway.md §2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeRequest {
    #[serde(default)]
    pub run_id: String,
    /// The step address: `<step>` or `<step>.<index>` for a fan-out item.
    #[serde(default)]
    pub step_id: String,
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_index: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reflect: String,
    /// 0 = none.
    #[serde(
        default,
        skip_serializing_if = "is_zero_f64",
        serialize_with = "compact_f64"
    )]
    pub confidence_threshold: f64,
    /// ≤ 0 = [`DEFAULT_MAX_TURNS`]; see [`InvokeRequest::effective_max_turns`].
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_turns: i64,
    #[serde(default)]
    pub model: ModelSpec,
    /// `null` or absent = none; always written (`[]` when none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub tool_servers: Vec<ToolServerSpec>,
    #[serde(default)]
    pub callback_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Resume only: the checkpoint transcript, kept as JSON (the orchestrator stores and
    /// forwards it; the runtime decodes it with [`super::transcript::decode`]).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<Value>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub approved_tool_calls: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rejected_tool_calls: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_resume: bool,
    /// Present only when the root run has a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

fn first_attempt() -> u32 {
    1
}

impl InvokeRequest {
    /// `max_turns`, with ≤ 0 meaning [`DEFAULT_MAX_TURNS`].
    pub fn effective_max_turns(&self) -> u32 {
        u32::try_from(self.max_turns)
            .ok()
            .filter(|turns| *turns > 0)
            .unwrap_or(DEFAULT_MAX_TURNS)
    }

    /// The secret values this request carries: every `auth_value` and every `params` value whose
    /// key is in `secret_keys` (runtime-gateway.md §0).
    pub fn secret_values(&self) -> Vec<&str> {
        let mut values = Vec::new();
        for server in &self.tool_servers {
            values.push(server.auth_value.as_str());
            for key in &server.secret_keys {
                if let Some(value) = server.params.get(key) {
                    values.push(value.as_str());
                }
            }
        }
        values.retain(|value| !value.is_empty());
        values
    }

    /// The callback's `original_request`: this request without `messages`, every string passed
    /// through `scrubber`.
    pub fn redacted_without_messages(&self, scrubber: &Scrubber) -> Value {
        let mut value = serde_json::to_value(InvokeRequest {
            messages: Vec::new(),
            ..self.clone()
        })
        .unwrap_or(Value::Null);
        scrubber.scrub_value(&mut value);
        value
    }
}

/// `model` of an [`InvokeRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    #[serde(default)]
    pub group: String,
    /// ≤ 0 = [`DEFAULT_MAX_TOKENS`]; see [`ModelSpec::effective_max_tokens`].
    #[serde(default)]
    pub max_tokens: i64,
}

impl ModelSpec {
    pub fn effective_max_tokens(&self) -> u32 {
        u32::try_from(self.max_tokens)
            .ok()
            .filter(|tokens| *tokens > 0)
            .unwrap_or(DEFAULT_MAX_TOKENS)
    }
}

/// One MCP tool server of an [`InvokeRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolServerSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
    /// `None` (null or absent) = `["*"]`; `Some([])` = no tools, never contacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub persistent_id: String,
    /// Header name; empty = no auth.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_header: String,
    /// Full header value. Secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_value: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub params: BTreeMap<String, String>,
    /// Names of the secret `params` (for scrubbing).
    #[serde(default, deserialize_with = "null_as_default")]
    pub secret_keys: Vec<String>,
    /// Per-MCP-request timeout; absent = the runtime's default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "compact_opt_f64"
    )]
    pub timeout_s: Option<f64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub approval_rules: Vec<ApprovalRule>,
}

/// A tool gated by human approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// Allowlist syntax: exact name, `prefix*`, `*`.
    #[serde(default)]
    pub pattern: String,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub on_reject: OnReject,
    /// 0 = no timeout.
    #[serde(default)]
    pub timeout_ms: u64,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub timeout_behavior: TimeoutBehavior,
}

/// What a rejection does to the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnReject {
    /// The step fails `approval_rejected`.
    #[default]
    Fail,
    /// The agent resumes with a rejection tool result.
    Recover,
}

/// What an approval timeout does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutBehavior {
    /// The step fails `approval_timeout`.
    #[default]
    Fail,
    /// Handled as a rejection (then `on_reject` applies).
    Reject,
}

/// The run budget carried by an [`InvokeRequest`]; all three fields are required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// The **root** run id.
    pub run_id: String,
    #[serde(serialize_with = "compact_f64")]
    pub limit_usd: f64,
    #[serde(serialize_with = "compact_f64")]
    pub spent_usd: f64,
}

/// Deadlines of an [`InvokeRequest`], in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "compact_opt_f64"
    )]
    pub step_s: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "compact_opt_f64"
    )]
    pub llm_call_s: Option<f64>,
}

/// The 202 body of `POST /invoke`. Every field defaults so that an orchestrator can read the
/// (possibly absent) body of other runtimes leniently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokeAccepted {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub step_id: String,
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Always `accepted`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub runtime_id: String,
    /// Waiting for a free slot rather than running.
    #[serde(default)]
    pub queued: bool,
    /// The same attempt was already registered; no second loop started.
    #[serde(default)]
    pub duplicate: bool,
}

impl InvokeAccepted {
    pub fn new(request: &InvokeRequest, runtime_id: &str, queued: bool, duplicate: bool) -> Self {
        InvokeAccepted {
            run_id: request.run_id.clone(),
            step_id: request.step_id.clone(),
            attempt: request.attempt,
            status: "accepted".to_owned(),
            runtime_id: runtime_id.to_owned(),
            queued,
            duplicate,
        }
    }
}

/// The body of `POST <runtime>/cancel`: cancel that attempt of that step address only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CancelRequest {
    /// `reason`, or [`DEFAULT_CANCEL_REASON`] when absent or empty.
    pub fn effective_reason(&self) -> &str {
        self.reason
            .as_deref()
            .filter(|reason| !reason.is_empty())
            .unwrap_or(DEFAULT_CANCEL_REASON)
    }
}

/// 200 answer of `POST /cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAnswer {
    #[serde(default, deserialize_with = "null_as_default")]
    pub cancelled: Vec<CancelledEntry>,
}

/// One invocation a cancel matched, with the state it was in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelledEntry {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    pub state: EntryState,
}

/// Where an invocation is in the runtime's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    Queued,
    Running,
    /// The loop ended and its callback is being sent.
    Delivering,
}

#[cfg(test)]
mod tests {
    use super::super::assert_round_trip;
    use super::*;
    use serde_json::json;

    /// runtime-gateway.md §2.2.
    const RUNTIME_SPEC_EXAMPLE: &str = r#"{"run_id":"run_3f9a1c2b4d5e6f70","step_id":"triage","attempt":1,"agent_name":"triage-agent",
 "system":"You are a triage specialist.","user_message":"Triage: printer on fire",
 "reflect":"Review your answer.","confidence_threshold":0.8,"max_turns":6,
 "model":{"group":"standard","max_tokens":1024},
 "tool_servers":[{"name":"crm","url":"http://crm:8080/mcp","allowlist":["crm-read-*","delete-*"],
   "auth_header":"Authorization","auth_value":"Bearer tok","params":{"region":"eu"},
   "secret_keys":[],"timeout_s":30,
   "approval_rules":[{"pattern":"delete-*","on_reject":"recover","timeout_ms":1800000,"timeout_behavior":"reject"}]}],
 "callback_url":"http://orch:5050/runs/run_3f9a1c2b4d5e6f70/steps/triage/complete?attempt=1",
 "output_schema":{"type":"object","required":["category"],"properties":{"category":{"type":"string"}}},
 "budget":{"run_id":"run_3f9a1c2b4d5e6f70","limit_usd":0.5,"spent_usd":0.031},"timeouts":{"step_s":120}}"#;

    /// orchestrator.md §5.2.2.
    const ORCHESTRATOR_SPEC_EXAMPLE: &str = r#"{"run_id":"run_3f9a0c1d22b7e6a4","step_id":"classify","attempt":1,
 "agent_name":"triage-agent","workflow":"support-triage",
 "system":"You are a triage specialist. Analyze the user message and categorize it.",
 "user_message":"Help me triage this message: my invoice is wrong","reflect":"Review your classification above.",
 "confidence_threshold":0.8,"max_turns":10,"model":{"group":"standard","max_tokens":1024},
 "tool_servers":[{"name":"wiki-search","url":"http://wiki:9000/mcp","allowlist":["wiki-*","delete-*"],
   "auth_header":"X-Api-Key","auth_value":"<secret>","params":{"region":"eu-west"},"secret_keys":["api_key"],
   "timeout_s":60,
   "approval_rules":[{"pattern":"delete-*","on_reject":"recover","timeout_ms":1800000,"timeout_behavior":"reject"}]}],
 "callback_url":"http://orch:5050/runs/run_3f9a0c1d22b7e6a4/steps/classify/complete?attempt=1",
 "output_schema":{"type":"object","required":["category","priority"],"properties":{"category":{"type":"string"}}},
 "budget":{"run_id":"run_3f9a0c1d22b7e6a4","limit_usd":0.5,"spent_usd":0.0123},
 "timeouts":{"step_s":60}}"#;

    #[test]
    fn runtime_spec_example_round_trips() {
        let request: InvokeRequest = assert_round_trip(RUNTIME_SPEC_EXAMPLE);
        assert_eq!(request.attempt, 1);
        assert_eq!(request.effective_max_turns(), 6);
        assert_eq!(request.model.effective_max_tokens(), 1024);
        let server = &request.tool_servers[0];
        assert_eq!(server.timeout_s, Some(30.0));
        assert_eq!(server.approval_rules[0].on_reject, OnReject::Recover);
        assert_eq!(
            server.approval_rules[0].timeout_behavior,
            TimeoutBehavior::Reject
        );
        assert_eq!(request.timeouts.as_ref().unwrap().step_s, Some(120.0));
        assert_eq!(request.budget.as_ref().unwrap().spent_usd, 0.031);
    }

    #[test]
    fn orchestrator_spec_example_round_trips() {
        let request: InvokeRequest = assert_round_trip(ORCHESTRATOR_SPEC_EXAMPLE);
        assert_eq!(request.workflow, "support-triage");
        assert_eq!(request.tool_servers[0].secret_keys, ["api_key"]);
    }

    #[test]
    fn minimal_reference_request_gets_defaults() {
        let request: InvokeRequest = serde_json::from_value(json!({
            "run_id": "run_1", "step_id": "s", "model": {"group": "g"},
            "callback_url": "http://o/cb", "tool_servers": null, "unknown_field": 1,
            "max_turns": 0
        }))
        .unwrap();
        assert_eq!(request.attempt, 1);
        assert_eq!(request.effective_max_turns(), 10);
        assert_eq!(request.model.effective_max_tokens(), 1024);
        assert!(request.tool_servers.is_empty());
        assert!(!request.is_resume);
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "run_id": "run_1", "step_id": "s", "attempt": 1,
                "model": {"group": "g", "max_tokens": 0},
                "tool_servers": [], "callback_url": "http://o/cb"
            })
        );
        // Missing required fields default, so the runtime answers with its own messages.
        let empty: InvokeRequest = serde_json::from_str("{}").unwrap();
        assert!(empty.run_id.is_empty() && empty.model.group.is_empty());
        assert!(serde_json::from_str::<InvokeRequest>(r#"{"attempt":"one"}"#).is_err());
    }

    #[test]
    fn tool_server_allowlist_and_reference_empties() {
        let server: ToolServerSpec = serde_json::from_value(json!({
            "name": "s", "url": "http://s", "allowlist": null, "params": null,
            "approval_rules": [{"pattern": "x", "on_reject": "", "timeout_behavior": ""}]
        }))
        .unwrap();
        assert_eq!(server.allowlist, None);
        assert_eq!(server.approval_rules[0].on_reject, OnReject::Fail);
        assert_eq!(
            server.approval_rules[0].timeout_behavior,
            TimeoutBehavior::Fail
        );
        let none: ToolServerSpec =
            serde_json::from_value(json!({"name": "s", "url": "u", "allowlist": []})).unwrap();
        assert_eq!(none.allowlist, Some(vec![]));
        assert!(serde_json::from_value::<ApprovalRule>(json!({"on_reject": "maybe"})).is_err());
    }

    #[test]
    fn secret_values_and_redacted_original_request() {
        let mut request: InvokeRequest = serde_json::from_str(ORCHESTRATOR_SPEC_EXAMPLE).unwrap();
        request.tool_servers[0]
            .params
            .insert("api_key".into(), "k-123".into());
        request.messages = vec![json!({"role": "user", "content": "hi"})];
        assert_eq!(request.secret_values(), ["<secret>", "k-123"]);
        let scrubber = Scrubber::new(request.secret_values());
        let original = request.redacted_without_messages(&scrubber);
        assert!(original.get("messages").is_none());
        assert_eq!(original["tool_servers"][0]["auth_value"], "[REDACTED]");
        assert_eq!(
            original["tool_servers"][0]["params"]["api_key"],
            "[REDACTED]"
        );
        assert_eq!(original["tool_servers"][0]["params"]["region"], "eu-west");
        assert_eq!(original["run_id"], "run_3f9a0c1d22b7e6a4");
    }

    #[test]
    fn resume_fields_round_trip() {
        assert_round_trip::<InvokeRequest>(
            r#"{"run_id":"r","step_id":"s.2","attempt":3,"item_index":2,"model":{"group":"g","max_tokens":0},
                "tool_servers":[],"callback_url":"http://o/cb?attempt=3",
                "messages":[{"role":"user","content":"hi"}],"approved_tool_calls":["toolu_1"],
                "rejected_tool_calls":["toolu_2"],"is_resume":true,"timeouts":{"llm_call_s":2.5}}"#,
        );
    }

    #[test]
    fn accepted_body() {
        let request: InvokeRequest = serde_json::from_str(RUNTIME_SPEC_EXAMPLE).unwrap();
        let accepted = InvokeAccepted::new(&request, "rt-6c1f0a9e2b3d", true, false);
        assert_eq!(
            serde_json::to_value(&accepted).unwrap(),
            json!({"run_id": "run_3f9a1c2b4d5e6f70", "step_id": "triage", "attempt": 1,
                   "status": "accepted", "runtime_id": "rt-6c1f0a9e2b3d",
                   "queued": true, "duplicate": false})
        );
        let lenient: InvokeAccepted = serde_json::from_str("{}").unwrap();
        assert_eq!(lenient.attempt, 1);
    }

    #[test]
    fn cancel_request_and_answer() {
        let cancel: CancelRequest = assert_round_trip(
            r#"{"run_id":"run_1","step_id":"analyze.3","attempt":2,"reason":"run cancelled: operator request"}"#,
        );
        assert_eq!(cancel.effective_reason(), "run cancelled: operator request");
        let bare: CancelRequest =
            assert_round_trip(r#"{"run_id":"run_1","step_id":"a","attempt":1}"#);
        assert_eq!(bare.effective_reason(), "cancelled by orchestrator");
        for bad in [
            r#"{"step_id":"a","attempt":1}"#,
            r#"{"run_id":"r","step_id":"a"}"#,
            r#"{"run_id":"r","step_id":"a","attempt":"1"}"#,
        ] {
            assert!(serde_json::from_str::<CancelRequest>(bad).is_err(), "{bad}");
        }
        let answer: CancelAnswer = assert_round_trip(
            r#"{"cancelled":[{"run_id":"r","step_id":"a","attempt":1,"state":"delivering"}]}"#,
        );
        assert_eq!(answer.cancelled[0].state, EntryState::Delivering);
    }
}
