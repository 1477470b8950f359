//! The built-in `mock` provider (runtime-gateway.md §8): deterministic and offline. Scripted
//! replies first (§8.3), else injected failures, tool calls per `tool_mode`, and a JSON answer
//! valid against the request's output schema (§8.2, §8.4).

pub mod generate;
pub mod script;

use super::upstream::{self, Answer};
use super::{AttemptError, Call, Failure, Reply, Usage};
use crate::config::ProviderSpec;
use crate::pricing::{input_bytes, tokens_for_bytes};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use awc::http::StatusCode;
use generate::Generator;
use ktsu_shared::diag::Diagnostic;
use ktsu_shared::http::Bytes;
use ktsu_shared::project::{MockReply, MockReplyKind, MockUsage};
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::wire::gateway::{GatewayRequest, Role, StopReason, ToolCall, ToolChoice, ToolDef};
use script::{Script, Subject};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Call counters are dropped after this long without a call, once there are many of them.
const COUNTER_IDLE: Duration = Duration::from_secs(3600);
const COUNTER_SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolMode {
    None,
    First,
    Each,
}

#[derive(Debug)]
pub struct Mock {
    latency: Duration,
    fail_first: u64,
    fail_status: u16,
    fail_message: String,
    retry_after_s: Option<u64>,
    tool_mode: ToolMode,
    script: Option<Script>,
    counters: Mutex<HashMap<(String, String), (u64, Instant)>>,
}

impl Mock {
    pub fn from_spec(spec: &ProviderSpec) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut int = |key: &str, min: u64, max: u64, default: u64| -> u64 {
            let Some(v) = spec.value(key) else {
                return default;
            };
            match v.value.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    errors.push(spec.error_at(
                        v,
                        format!(
                            "`{key}` must be an integer between {min} and {max}, found `{}`",
                            v.value
                        ),
                    ));
                    default
                }
            }
        };
        let latency_ms = int("latency_ms", 0, 3_600_000, 0);
        let fail_first = int("fail_first", 0, u64::MAX, 0);
        let fail_status = int("fail_status", 100, 599, 503);
        let retry_after_s = spec
            .value("retry_after_s")
            .map(|_| int("retry_after_s", 0, 86_400, 0));
        let tool_mode = match spec.value("tool_mode").map(|v| (v, v.value.as_str())) {
            None | Some((_, "none")) => ToolMode::None,
            Some((_, "first")) => ToolMode::First,
            Some((_, "each")) => ToolMode::Each,
            Some((v, other)) => {
                errors.push(spec.error_at(
                    v,
                    format!("`tool_mode` must be one of none, first, each, found `{other}`"),
                ));
                ToolMode::None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Mock {
            latency: Duration::from_millis(latency_ms),
            fail_first,
            fail_status: u16::try_from(fail_status).unwrap_or(503),
            fail_message: spec
                .value("fail_message")
                .map_or_else(|| "mock failure".to_string(), |v| v.value.clone()),
            retry_after_s,
            tool_mode,
            script: spec.script.clone().map(Script::new),
            counters: Mutex::new(HashMap::new()),
        })
    }

    /// One mock answer.
    pub async fn call(&self, call: &Call<'_>) -> Result<Reply, AttemptError> {
        let n = self.count(&call.request.run_id, &call.request.step_id);
        let scripted = self
            .script
            .as_ref()
            .and_then(|s| s.reply(&Subject { call, n }));
        let latency = scripted
            .and_then(|r| r.latency_ms)
            .map_or(self.latency, Duration::from_millis);
        if !latency.is_zero() {
            actix_rt::time::sleep(latency).await;
        }
        match scripted {
            Some(reply) => self.scripted(reply, call, n),
            None if n <= self.fail_first => {
                Err(
                    injected_failure(self.fail_status, &self.fail_message, self.retry_after_s)
                        .into(),
                )
            }
            None => self.generated(call, n),
        }
    }

    /// Counts every request of (run_id, step_id), failures and retries included; 1-based.
    fn count(&self, run_id: &str, step_id: &str) -> u64 {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if counters.len() >= COUNTER_SWEEP_AT {
            counters.retain(|_, (_, seen)| now.duration_since(*seen) < COUNTER_IDLE);
        }
        let entry = counters
            .entry((run_id.to_string(), step_id.to_string()))
            .or_insert((0, now));
        entry.0 += 1;
        entry.1 = now;
        entry.0
    }

    fn scripted(&self, reply: &MockReply, call: &Call<'_>, n: u64) -> Result<Reply, AttemptError> {
        let mut answer = match &reply.kind {
            MockReplyKind::Content(text) => {
                answer(call.request, text.clone(), Vec::new(), StopReason::EndTurn)
            }
            MockReplyKind::Json(value) => answer(
                call.request,
                value.to_string(),
                Vec::new(),
                StopReason::EndTurn,
            ),
            MockReplyKind::ToolCalls { calls, content } => {
                let calls = calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ToolCall {
                        id: c.id.clone().unwrap_or_else(|| tool_call_id(n, i)),
                        name: c.name.clone(),
                        arguments: c.arguments.clone(),
                    })
                    .collect();
                answer(
                    call.request,
                    content.clone().unwrap_or_default(),
                    calls,
                    StopReason::ToolUse,
                )
            }
            MockReplyKind::Error {
                status,
                message,
                retry_after_s,
            } => return Err(injected_failure(*status, message, *retry_after_s).into()),
            MockReplyKind::Generate => self.generated(call, n)?,
        };
        if let Some(reason) = &reply.stop_reason {
            answer.stop_reason =
                serde_json::from_value(Value::String(reason.clone())).unwrap_or(StopReason::Other);
        }
        if let Some(usage) = &reply.usage {
            override_usage(&mut answer.usage, usage);
        }
        Ok(answer)
    }

    /// §8.2 steps 2–4: a tool call per `tool_mode`, else the JSON answer.
    fn generated(&self, call: &Call<'_>, n: u64) -> Result<Reply, AttemptError> {
        if let Some(tool) = self.tool_to_call(call.request) {
            let arguments = tool_arguments(tool)?;
            let calls = vec![ToolCall {
                id: tool_call_id(n, 0),
                name: tool.name.clone(),
                arguments,
            }];
            return Ok(answer(
                call.request,
                String::new(),
                calls,
                StopReason::ToolUse,
            ));
        }
        let content = match call.output_schema {
            Some(compiled) => schema_value(compiled)?.to_string(),
            None => match system_schema(call.request) {
                Some(compiled) => schema_value(&compiled)?.to_string(),
                None => r#"{"result":"mock"}"#.to_string(),
            },
        };
        Ok(answer(
            call.request,
            content,
            Vec::new(),
            StopReason::EndTurn,
        ))
    }

    fn tool_to_call<'r>(&self, request: &'r GatewayRequest) -> Option<&'r ToolDef> {
        if request.tools.is_empty() || request.tool_choice == Some(ToolChoice::None) {
            return None;
        }
        match self.tool_mode {
            ToolMode::None => None,
            ToolMode::First => {
                let answered = request.messages.iter().any(|m| m.role == Role::Tool);
                (!answered).then(|| request.tools.first()).flatten()
            }
            ToolMode::Each => {
                let called: HashSet<&str> = request
                    .messages
                    .iter()
                    .filter(|m| m.role == Role::Assistant)
                    .flat_map(|m| m.tool_calls.iter().map(|c| c.name.as_str()))
                    .collect();
                request
                    .tools
                    .iter()
                    .find(|t| !called.contains(t.name.as_str()))
            }
        }
    }
}

/// `toolu_mock_<n>` (then `_<i>` for further calls of one reply).
fn tool_call_id(n: u64, index: usize) -> String {
    if index == 0 {
        format!("toolu_mock_{n}")
    } else {
        format!("toolu_mock_{n}_{index}")
    }
}

/// An answer with the usage of §8.2 step 4.
fn answer(
    request: &GatewayRequest,
    content: String,
    tool_calls: Vec<ToolCall>,
    stop_reason: StopReason,
) -> Reply {
    let calls_bytes = if tool_calls.is_empty() {
        0
    } else {
        serde_json::to_vec(&tool_calls).map_or(0, |b| b.len())
    };
    Reply {
        usage: Usage {
            tokens_in: tokens_for_bytes(input_bytes(request)),
            tokens_out: tokens_for_bytes(content.len() + calls_bytes),
            cache_read_tokens: 0,
            cache_write_tokens: 0,
        },
        content,
        tool_calls,
        stop_reason,
        http_status: None,
    }
}

fn override_usage(usage: &mut Usage, given: &MockUsage) {
    if let Some(v) = given.tokens_in {
        usage.tokens_in = v;
    }
    if let Some(v) = given.tokens_out {
        usage.tokens_out = v;
    }
    if let Some(v) = given.cache_read_tokens {
        usage.cache_read_tokens = v;
    }
    if let Some(v) = given.cache_write_tokens {
        usage.cache_write_tokens = v;
    }
}

/// An injected failure, classified exactly like an upstream answer with that status (§7.1).
fn injected_failure(status: u16, message: &str, retry_after_s: Option<u64>) -> Failure {
    let mut headers = HeaderMap::new();
    if let Some(s) = retry_after_s {
        headers.insert(HeaderName::from_static("retry-after"), HeaderValue::from(s));
    }
    let body = serde_json::json!({"error": {"message": message}});
    upstream::failure_for_status(&Answer {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        headers,
        body: Bytes::from(body.to_string()),
    })
}

/// A value for the request's output schema, validated (§8.4).
fn schema_value(compiled: &CompiledSchema) -> Result<Value, AttemptError> {
    let value = Generator::new(compiled.schema()).generate();
    match compiled.violations(&value).first() {
        None => Ok(value),
        Some(v) => Err(AttemptError::MockUnsatisfiable(format!(
            "mock cannot satisfy the schema: {v}"
        ))),
    }
}

/// Arguments for a tool call, valid against the tool's input schema.
fn tool_arguments(tool: &ToolDef) -> Result<Value, AttemptError> {
    let schema = match &tool.input_schema {
        Value::Null => serde_json::json!({"type": "object"}),
        other => other.clone(),
    };
    let compiled = CompiledSchema::compile(&schema).map_err(|e| {
        AttemptError::MockUnsatisfiable(format!(
            "mock cannot satisfy the input schema of tool `{}`: {e}",
            tool.name
        ))
    })?;
    schema_value(&compiled)
}

/// The first balanced JSON object after the last `JSON schema` (any case) in the system
/// messages, when it parses as an object and compiles.
fn system_schema(request: &GatewayRequest) -> Option<CompiledSchema> {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let text = system.join("\n\n");
    // ASCII lowering keeps byte offsets.
    let at = text.to_ascii_lowercase().rfind("json schema")?;
    let object = first_object(&text[at..])?;
    let value: Value = serde_json::from_str(object).ok()?;
    if !value.is_object() {
        return None;
    }
    CompiledSchema::compile(&value).ok()
}

/// The first `{…}` with balanced braces (strings and escapes respected).
fn first_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(&text[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResolvedValue;
    use ktsu_shared::diag::Pos;
    use ktsu_shared::project::{MockMatch, MockRule, MockScript, MockToolCall, ProviderType};
    use ktsu_shared::wire::gateway::{CallMetadata, ErrorClass};
    use serde_json::json;

    fn mock(values: &[(&str, &str)], script: Option<MockScript>) -> Mock {
        let spec = ProviderSpec {
            name: "mock".into(),
            kind: ProviderType::Mock,
            values: values
                .iter()
                .map(|(k, v)| ResolvedValue {
                    key: (*k).into(),
                    value: (*v).into(),
                    pos: Pos::new(1, 1),
                    path: (*k).into(),
                })
                .collect(),
            timeout_s: 1,
            max_concurrency: 1,
            max_queue: 1,
            script,
            file: "gateway.yaml".into(),
        };
        Mock::from_spec(&spec).unwrap()
    }

    fn request(value: Value) -> GatewayRequest {
        serde_json::from_value(value).unwrap()
    }

    async fn run(
        mock: &Mock,
        request: &GatewayRequest,
        schema: Option<&CompiledSchema>,
    ) -> Result<Reply, AttemptError> {
        let metadata = CallMetadata::from_map(&request.metadata);
        let call = Call {
            call_id: "gw_1",
            request,
            metadata: &metadata,
            group: "g",
            model: "default",
            max_tokens: 100,
            temperature: None,
            output_schema: schema,
        };
        mock.call(&call).await
    }

    #[actix_rt::test]
    async fn schema_answers_are_deterministic() {
        let m = mock(&[], None);
        let r = request(
            json!({"run_id": "run_1", "step_id": "s", "group": "g", "messages": [{"role": "user", "content": "hi"}]}),
        );
        let schema = CompiledSchema::compile(&json!({"type": "object", "required": ["category"], "properties": {"category": {"enum": ["billing", "tech"]}}})).unwrap();
        let a = run(&m, &r, Some(&schema)).await.unwrap();
        let b = run(&m, &r, Some(&schema)).await.unwrap();
        assert_eq!(a.content, r#"{"category":"billing"}"#);
        assert_eq!(a, b);
        assert_eq!(a.stop_reason, StopReason::EndTurn);
        // 58 bytes of messages JSON → 15 tokens; 22 bytes of content → 6.
        assert_eq!(a.usage.tokens_in, tokens_for_bytes(input_bytes(&r)));
        assert_eq!(a.usage.tokens_out, 6);
        let none = run(&m, &r, None).await.unwrap();
        assert_eq!(none.content, r#"{"result":"mock"}"#);
    }

    #[actix_rt::test]
    async fn schema_from_the_system_prompt() {
        let m = mock(&[], None);
        let r = request(json!({"group": "g", "messages": [
            {"role": "system", "content": "Answer as JSON Schema {\"type\":\"string\"} says... Final json schema: {\"type\": \"object\", \"properties\": {\"brace\": {\"const\": \"}{\"}}} thanks"},
            {"role": "user", "content": "go"}]}));
        assert_eq!(
            run(&m, &r, None).await.unwrap().content,
            r#"{"brace":"}{"}"#
        );
    }

    #[actix_rt::test]
    async fn failures_and_unsatisfiable_schemas() {
        let m = mock(
            &[
                ("fail_first", "2"),
                ("fail_status", "529"),
                ("fail_message", "Overloaded"),
                ("retry_after_s", "1"),
            ],
            None,
        );
        let r = request(
            json!({"run_id": "run_2", "step_id": "s", "group": "g", "messages": [{"role": "user", "content": "hi"}]}),
        );
        for _ in 0..2 {
            let AttemptError::Upstream(f) = run(&m, &r, None).await.unwrap_err() else {
                panic!("expected an injected failure");
            };
            assert_eq!(f.class, ErrorClass::Transient);
            assert_eq!(f.http_status, Some(529));
            assert_eq!(f.message, "upstream returned 529: Overloaded");
            assert_eq!(f.retry_after, Some(Duration::from_secs(1)));
        }
        assert!(
            run(&m, &r, None).await.is_ok(),
            "the third call of (run_2, s) succeeds"
        );
        let other = request(
            json!({"run_id": "run_3", "step_id": "s", "group": "g", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert!(
            run(&m, &other, None).await.is_err(),
            "counters are per (run_id, step_id)"
        );

        let billing = mock(&[("fail_first", "1"), ("fail_status", "402")], None);
        let AttemptError::Upstream(f) = run(&billing, &r, None).await.unwrap_err() else {
            panic!("expected an injected failure");
        };
        assert_eq!(f.class, ErrorClass::Billing);

        let impossible =
            CompiledSchema::compile(&json!({"type": "string", "pattern": "^[0-9]{3}$"})).unwrap();
        let ok = mock(&[], None);
        assert!(matches!(
            run(&ok, &r, Some(&impossible)).await,
            Err(AttemptError::MockUnsatisfiable(_))
        ));
    }

    #[actix_rt::test]
    async fn tool_modes() {
        let first = mock(&[("tool_mode", "first")], None);
        let each = mock(&[("tool_mode", "each")], None);
        let tools = json!([
            {"name": "kv_get", "input_schema": {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}},
            {"name": "kv_set", "input_schema": {"type": "object"}}
        ]);
        let r = request(
            json!({"run_id": "run_t", "step_id": "a", "group": "g", "tools": tools, "messages": [{"role": "user", "content": "go"}]}),
        );
        let reply = run(&first, &r, None).await.unwrap();
        assert_eq!(reply.stop_reason, StopReason::ToolUse);
        assert_eq!(reply.content, "");
        assert_eq!(
            serde_json::to_value(&reply.tool_calls).unwrap(),
            json!([{"id": "toolu_mock_1", "name": "kv_get", "arguments": {"key": "mock-key"}}])
        );
        let answered = request(
            json!({"run_id": "run_t", "step_id": "a", "group": "g", "tools": tools, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "toolu_mock_1", "name": "kv_get", "arguments": {"key": "x"}}]},
            {"role": "tool", "tool_call_id": "toolu_mock_1", "content": "v"}]}),
        );
        assert_eq!(
            run(&first, &answered, None).await.unwrap().stop_reason,
            StopReason::EndTurn
        );
        let next = run(&each, &answered, None).await.unwrap();
        assert_eq!(next.tool_calls[0].name, "kv_set");
        let mut withheld = answered.clone();
        withheld.tool_choice = Some(ToolChoice::None);
        assert!(run(&each, &withheld, None)
            .await
            .unwrap()
            .tool_calls
            .is_empty());
    }

    #[actix_rt::test]
    async fn scripted_replies() {
        let script = MockScript {
            rules: vec![
                MockRule {
                    when: MockMatch {
                        call: Some(1),
                        ..MockMatch::default()
                    },
                    times: None,
                    reply: MockReply {
                        kind: MockReplyKind::ToolCalls {
                            calls: vec![
                                MockToolCall {
                                    id: None,
                                    name: "kv_get".into(),
                                    arguments: json!({"key": "a"}),
                                },
                                MockToolCall {
                                    id: Some("mine".into()),
                                    name: "kv_get".into(),
                                    arguments: json!({"key": "b"}),
                                },
                            ],
                            content: Some("looking".into()),
                        },
                        stop_reason: None,
                        usage: Some(MockUsage {
                            tokens_in: Some(100),
                            tokens_out: None,
                            cache_read_tokens: Some(40),
                            cache_write_tokens: None,
                        }),
                        latency_ms: Some(20),
                    },
                },
                MockRule {
                    when: MockMatch {
                        call: Some(2),
                        ..MockMatch::default()
                    },
                    times: None,
                    reply: MockReply {
                        kind: MockReplyKind::Json(
                            json!({"category": "billing", "ktsu_confidence": 0.4}),
                        ),
                        stop_reason: Some("max_tokens".into()),
                        usage: None,
                        latency_ms: None,
                    },
                },
                MockRule {
                    when: MockMatch {
                        call: Some(3),
                        ..MockMatch::default()
                    },
                    times: None,
                    reply: MockReply {
                        kind: MockReplyKind::Error {
                            status: 429,
                            message: "slow down".into(),
                            retry_after_s: Some(2),
                        },
                        stop_reason: None,
                        usage: None,
                        latency_ms: None,
                    },
                },
            ],
        };
        let m = mock(&[], Some(script));
        let r = request(
            json!({"run_id": "run_s", "step_id": "s", "group": "g", "messages": [{"role": "user", "content": "go"}]}),
        );
        let started = Instant::now();
        let one = run(&m, &r, None).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(20),
            "reply latency"
        );
        assert_eq!(one.content, "looking");
        assert_eq!(one.tool_calls[0].id, "toolu_mock_1");
        assert_eq!(one.tool_calls[1].id, "mine");
        assert_eq!(
            (one.usage.tokens_in, one.usage.cache_read_tokens),
            (100, 40)
        );
        let two = run(&m, &r, None).await.unwrap();
        assert_eq!(
            two.content,
            r#"{"category":"billing","ktsu_confidence":0.4}"#
        );
        assert_eq!(two.stop_reason, StopReason::MaxTokens);
        let AttemptError::Upstream(three) = run(&m, &r, None).await.unwrap_err() else {
            panic!("expected the scripted error");
        };
        assert_eq!(three.class, ErrorClass::Transient);
        assert_eq!(three.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(
            run(&m, &r, None).await.unwrap().content,
            r#"{"result":"mock"}"#,
            "unmatched: §8.2"
        );
    }

    #[test]
    fn config_checks() {
        let spec = |k: &str, v: &str| ProviderSpec {
            name: "mock".into(),
            kind: ProviderType::Mock,
            values: vec![ResolvedValue {
                key: k.into(),
                value: v.into(),
                pos: Pos::new(2, 3),
                path: k.into(),
            }],
            timeout_s: 1,
            max_concurrency: 1,
            max_queue: 1,
            script: None,
            file: "gateway.yaml".into(),
        };
        assert!(Mock::from_spec(&spec("fail_status", "99")).is_err());
        assert!(Mock::from_spec(&spec("fail_status", "600")).is_err());
        assert!(Mock::from_spec(&spec("latency_ms", "-1")).is_err());
        assert!(Mock::from_spec(&spec("tool_mode", "all")).is_err());
        assert!(Mock::from_spec(&spec("retry_after_s", "2")).is_ok());
        assert_eq!(
            first_object("x {\"a\": \"}\\\"\"} y"),
            Some("{\"a\": \"}\\\"\"}")
        );
        assert_eq!(first_object("no braces"), None);
    }
}
