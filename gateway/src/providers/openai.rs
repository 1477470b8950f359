//! OpenAI Chat Completions and compatible servers (runtime-gateway.md §7.3):
//! `POST <base_url>/chat/completions`, system messages in place, assistant `tool_calls` and role
//! `tool` messages, `max_completion_tokens` for api.openai.com, optional structured output.

use super::anthropic::Schema;
use super::upstream::{self, Answer};
use super::{flag, Call, Failure, Reply, Usage};
use crate::config::ProviderSpec;
use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use ktsu_shared::diag::Diagnostic;
use ktsu_shared::wire::gateway::{Message, Role, StopReason, ToolCall, ToolChoice};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::borrow::Cow;
use std::time::Duration;

#[derive(Debug)]
pub struct OpenAi {
    url: String,
    /// `Authorization: Bearer` (sensitive), `OpenAI-Organization`, `OpenAI-Project`.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `max_completion_tokens` instead of `max_tokens`.
    completion_tokens_field: bool,
    send_temperature: bool,
    json_schema_output: bool,
}

impl OpenAi {
    pub fn from_spec(spec: &ProviderSpec) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let base_url = spec
            .value("base_url")
            .map(|v| v.value.as_str())
            .unwrap_or_default();
        if let Some(v) = spec.value("base_url") {
            if !upstream::is_http_url(&v.value) {
                errors.push(
                    spec.error_at(v, format!("`{}` is not an absolute http(s) URL", v.value)),
                );
            }
        }
        let mut headers = Vec::with_capacity(3);
        let api_key = spec
            .value("api_key")
            .map(|v| v.value.as_str())
            .unwrap_or_default();
        for (key, name, value, sensitive) in [
            (
                "api_key",
                AUTHORIZATION,
                Some(format!("Bearer {api_key}")),
                true,
            ),
            (
                "organization",
                HeaderName::from_static("openai-organization"),
                spec.value("organization").map(|v| v.value.clone()),
                false,
            ),
            (
                "project",
                HeaderName::from_static("openai-project"),
                spec.value("project").map(|v| v.value.clone()),
                false,
            ),
        ] {
            let Some(value) = value else { continue };
            match upstream::header_value(&value, sensitive) {
                Some(v) => headers.push((name, v)),
                None => {
                    if let Some(v) = spec.value(key) {
                        errors.push(spec.error_at(
                            v,
                            format!("`{key}` contains characters an HTTP header cannot carry"),
                        ));
                    }
                }
            }
        }
        let completion_tokens_field = match spec.value("max_tokens_param") {
            None => is_openai_host(base_url),
            Some(v) => match v.value.as_str() {
                "auto" => is_openai_host(base_url),
                "max_tokens" => false,
                "max_completion_tokens" => true,
                other => {
                    errors.push(spec.error_at(
                        v,
                        format!("`max_tokens_param` must be one of auto, max_tokens, max_completion_tokens, found `{other}`"),
                    ));
                    false
                }
            },
        };
        let send_temperature = flag(spec, "send_temperature", true).map_err(|e| errors.push(e));
        let json_schema_output =
            flag(spec, "json_schema_output", false).map_err(|e| errors.push(e));
        match (send_temperature, json_schema_output) {
            (Ok(send_temperature), Ok(json_schema_output)) if errors.is_empty() => Ok(OpenAi {
                url: upstream::endpoint(base_url, "/chat/completions"),
                headers,
                completion_tokens_field,
                send_temperature,
                json_schema_output,
            }),
            _ => Err(errors),
        }
    }

    pub async fn call(
        &self,
        client: &awc::Client,
        call: &Call<'_>,
        timeout: Duration,
    ) -> Result<Reply, Failure> {
        let body = self.body(call).map_err(upstream::unencodable)?;
        let answer = upstream::post_json(client, &self.url, &self.headers, body, timeout).await?;
        parse(&answer, call.call_id)
    }

    /// The request body (§7.3 mapping).
    pub fn body(&self, call: &Call<'_>) -> Result<Vec<u8>, serde_json::Error> {
        let request = call.request;
        let tools: Vec<Tool<'_>> = request
            .tools
            .iter()
            .map(|t| Tool {
                kind: "function",
                function: Function {
                    name: &t.name,
                    description: &t.description,
                    parameters: Schema(&t.input_schema),
                },
            })
            .collect();
        let tool_choice = match (request.tool_choice, tools.is_empty()) {
            (_, true) | (None | Some(ToolChoice::Auto), _) => None,
            (Some(ToolChoice::None), false) => Some("none"),
            (Some(ToolChoice::Required), false) => Some("required"),
        };
        let response_format = request
            .output_schema
            .as_ref()
            .filter(|_| {
                self.json_schema_output
                    && (tools.is_empty() || request.tool_choice == Some(ToolChoice::None))
            })
            .map(|schema| ResponseFormat {
                kind: "json_schema",
                json_schema: JsonSchema {
                    name: "ktsu_output",
                    schema,
                    strict: false,
                },
            });
        let (max_tokens, max_completion_tokens) = if self.completion_tokens_field {
            (None, Some(call.max_tokens))
        } else {
            (Some(call.max_tokens), None)
        };
        let body = Body {
            model: call.model,
            messages: request.messages.iter().map(OutMessage).collect(),
            max_tokens,
            max_completion_tokens,
            temperature: call.temperature.filter(|_| self.send_temperature),
            tools,
            tool_choice,
            response_format,
        };
        serde_json::to_vec(&body)
    }
}

/// `auto` picks `max_completion_tokens` for OpenAI's own API only (compatible servers often know
/// only `max_tokens`).
fn is_openai_host(base_url: &str) -> bool {
    let rest = base_url
        .strip_prefix("https://")
        .or_else(|| base_url.strip_prefix("http://"))
        .unwrap_or(base_url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default();
    host.eq_ignore_ascii_case("api.openai.com")
}

/// Maps a 2xx answer (§7.3 response mapping) or classifies an error answer.
pub fn parse(answer: &Answer, call_id: &str) -> Result<Reply, Failure> {
    let status = answer.status.as_u16();
    if !answer.status.is_success() {
        return Err(upstream::failure_for_status(answer));
    }
    let response: Response =
        serde_json::from_slice(&answer.body).map_err(|e| upstream::undecodable(status, e))?;
    let Some(choice) = response.choices.and_then(|c| c.into_iter().next()) else {
        return Err(upstream::undecodable(status, "no choices"));
    };
    let message = choice.message.unwrap_or_default();
    let mut stop_reason = match choice.finish_reason.as_deref() {
        Some("stop") => StopReason::EndTurn,
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFilter,
        _ => StopReason::Other,
    };
    let mut content = message.content.unwrap_or_default();
    if content.is_empty() {
        if let Some(refusal) = message.refusal.filter(|r| !r.is_empty()) {
            content = refusal;
            stop_reason = StopReason::Refusal;
        }
    }
    let mut tool_calls: Vec<ToolCall> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let function = c.function.unwrap_or_default();
            ToolCall {
                id: c.id.unwrap_or_default(),
                name: function.name.unwrap_or_default(),
                arguments: arguments(function.arguments.as_deref().unwrap_or_default()),
            }
        })
        .collect();
    upstream::repair_tool_call_ids(&mut tool_calls, call_id);
    let usage = response.usage.unwrap_or_default();
    Ok(Reply {
        content,
        tool_calls,
        usage: Usage {
            tokens_in: usage.prompt_tokens.unwrap_or(0),
            tokens_out: usage.completion_tokens.unwrap_or(0),
            cache_read_tokens: usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
        },
        stop_reason,
        http_status: Some(status),
    })
}

/// Tool-call arguments arrive as JSON text: `""` → `{}`, invalid JSON → `{"_raw": text}`.
fn arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(text).unwrap_or_else(|_| {
        let mut raw = serde_json::Map::new();
        raw.insert("_raw".into(), Value::String(text.to_string()));
        Value::Object(raw)
    })
}

// ---- wire format --------------------------------------------------------------------------

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

/// One gateway message in the Chat Completions shape.
struct OutMessage<'a>(&'a Message);

impl Serialize for OutMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", m.role.as_str())?;
        match m.role {
            Role::System | Role::User => map.serialize_entry("content", &m.content)?,
            Role::Assistant if m.tool_calls.is_empty() => {
                map.serialize_entry("content", &m.content)?
            }
            Role::Assistant => {
                let content = (!m.content.is_empty()).then_some(m.content.as_str());
                map.serialize_entry("content", &content)?;
                let calls: Vec<OutToolCall<'_>> = m
                    .tool_calls
                    .iter()
                    .map(|c| OutToolCall {
                        id: &c.id,
                        kind: "function",
                        function: OutFunction {
                            name: &c.name,
                            arguments: match &c.arguments {
                                Value::Null => "{}".to_string(),
                                other => other.to_string(),
                            },
                        },
                    })
                    .collect();
                map.serialize_entry("tool_calls", &calls)?;
            }
            Role::Tool => {
                map.serialize_entry(
                    "tool_call_id",
                    m.tool_call_id.as_deref().unwrap_or_default(),
                )?;
                let content: Cow<'_, str> = if m.is_error {
                    Cow::Owned(format!("Error: {}", m.content))
                } else {
                    Cow::Borrowed(&m.content)
                };
                map.serialize_entry("content", &content)?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: String,
}

#[derive(Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    parameters: Schema<'a>,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchema<'a>,
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    name: &'static str,
    schema: &'a Value,
    strict: bool,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<ResponseUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ResponseMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ResponseMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ResponseToolCall>>,
}

#[derive(Deserialize)]
struct ResponseToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<ResponseFunction>,
}

#[derive(Deserialize, Default)]
struct ResponseFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
struct ResponseUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResolvedValue;
    use awc::http::StatusCode;
    use ktsu_shared::diag::Pos;
    use ktsu_shared::http::Bytes;
    use ktsu_shared::project::ProviderType;
    use ktsu_shared::wire::gateway::{CallMetadata, GatewayRequest, ToolDef};
    use serde_json::json;

    fn spec(values: &[(&str, &str)]) -> ProviderSpec {
        ProviderSpec {
            name: "openai".into(),
            kind: ProviderType::OpenAi,
            values: values
                .iter()
                .map(|(k, v)| ResolvedValue {
                    key: (*k).to_string(),
                    value: (*v).to_string(),
                    pos: Pos::new(4, 7),
                    path: format!("providers[0].config.{k}"),
                })
                .collect(),
            timeout_s: 120,
            max_concurrency: 32,
            max_queue: 256,
            script: None,
            file: "gateway.yaml".into(),
        }
    }

    fn body_of(adapter: &OpenAi, request: &GatewayRequest, temperature: Option<f64>) -> Value {
        let metadata = CallMetadata::default();
        let call = Call {
            call_id: "gw_0011223344556677",
            request,
            metadata: &metadata,
            group: "g",
            model: "gpt-4o-mini",
            max_tokens: 256,
            temperature,
            output_schema: None,
        };
        serde_json::from_slice(&adapter.body(&call).unwrap()).unwrap()
    }

    #[test]
    fn token_field_and_temperature() {
        let official = OpenAi::from_spec(&spec(&[
            ("base_url", "https://api.openai.com/v1"),
            ("api_key", "sk"),
        ]))
        .unwrap();
        let local = OpenAi::from_spec(&spec(&[
            ("base_url", "http://ollama:11434/v1/"),
            ("api_key", "x"),
        ]))
        .unwrap();
        assert_eq!(local.url, "http://ollama:11434/v1/chat/completions");
        let r: GatewayRequest = serde_json::from_value(
            json!({"group": "g", "messages": [{"role": "user", "content": "u"}]}),
        )
        .unwrap();
        let b = body_of(&official, &r, Some(0.3));
        assert_eq!(b["max_completion_tokens"], 256);
        assert!(b.get("max_tokens").is_none());
        assert_eq!(b["temperature"], 0.3);
        let b = body_of(&local, &r, None);
        assert_eq!(b["max_tokens"], 256);
        assert!(b.get("temperature").is_none());
        let forced = OpenAi::from_spec(&spec(&[
            ("base_url", "http://x/v1"),
            ("api_key", "x"),
            ("max_tokens_param", "max_completion_tokens"),
            ("send_temperature", "false"),
        ]))
        .unwrap();
        let b = body_of(&forced, &r, Some(0.3));
        assert_eq!(b["max_completion_tokens"], 256);
        assert!(b.get("temperature").is_none());
        assert!(is_openai_host("https://API.openai.com:443/v1"));
        assert!(!is_openai_host("https://api.openai.com.evil.example/v1"));
        let errors = OpenAi::from_spec(&spec(&[
            ("base_url", "nope"),
            ("api_key", "x\ny"),
            ("max_tokens_param", "both"),
            ("json_schema_output", "maybe"),
        ]))
        .unwrap_err();
        assert_eq!(errors.len(), 4);
    }

    #[test]
    fn messages_tools_and_structured_output() {
        let o = OpenAi::from_spec(&spec(&[
            ("base_url", "http://x/v1"),
            ("api_key", "x"),
            ("json_schema_output", "true"),
        ]))
        .unwrap();
        let mut r: GatewayRequest = serde_json::from_value(json!({"group": "g", "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "U"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "name": "kv", "arguments": {"k": 1}},
                {"id": "c2", "name": "kv", "arguments": null}]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "tool", "tool_call_id": "c2", "content": "boom", "is_error": true},
            {"role": "assistant", "content": "done"}
        ]}))
        .unwrap();
        r.tools = vec![ToolDef {
            name: "kv".into(),
            description: "Read".into(),
            input_schema: json!({"type": "object"}),
        }];
        r.output_schema = Some(json!({"type": "object"}));
        let b = body_of(&o, &r, None);
        assert_eq!(
            b["messages"],
            json!([
                {"role": "system", "content": "S"},
                {"role": "user", "content": "U"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "kv", "arguments": "{\"k\":1}"}},
                    {"id": "c2", "type": "function", "function": {"name": "kv", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "1"},
                {"role": "tool", "tool_call_id": "c2", "content": "Error: boom"},
                {"role": "assistant", "content": "done"}
            ])
        );
        assert_eq!(
            b["tools"],
            json!([{"type": "function", "function": {"name": "kv", "description": "Read", "parameters": {"type": "object"}}}])
        );
        assert!(b.get("tool_choice").is_none());
        assert!(
            b.get("response_format").is_none(),
            "tools may be called: no structured output"
        );
        r.tool_choice = Some(ToolChoice::None);
        let b = body_of(&o, &r, None);
        assert_eq!(b["tool_choice"], "none");
        assert_eq!(
            b["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "ktsu_output", "schema": {"type": "object"}, "strict": false}})
        );
        r.tools.clear();
        let b = body_of(&o, &r, None);
        assert!(b.get("tool_choice").is_none(), "never sent without tools");
        assert!(b.get("response_format").is_some());
    }

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        }
    }

    #[test]
    fn response_mapping() {
        let reply = parse(
            &answer(200, json!({
                "id": "chatcmpl-1", "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": null,
                    "tool_calls": [
                        {"id": "call_a", "type": "function", "function": {"name": "kv", "arguments": "{\"key\":\"a\"}"}},
                        {"type": "function", "function": {"name": "kv", "arguments": ""}},
                        {"id": "call_a", "type": "function", "function": {"name": "kv", "arguments": "{oops"}}
                    ]}}],
                "usage": {"prompt_tokens": 12000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 10240}}
            })),
            "gw_0011223344556677",
        )
        .unwrap();
        assert_eq!(reply.content, "");
        assert_eq!(reply.stop_reason, StopReason::ToolUse);
        assert_eq!(reply.tool_calls[0].arguments, json!({"key": "a"}));
        assert_eq!(reply.tool_calls[1].id, "call_0011223344556677_1");
        assert_eq!(reply.tool_calls[1].arguments, json!({}));
        assert_eq!(reply.tool_calls[2].id, "call_a_2");
        assert_eq!(reply.tool_calls[2].arguments, json!({"_raw": "{oops"}));
        assert_eq!(
            reply.usage,
            Usage {
                tokens_in: 12000,
                tokens_out: 200,
                cache_read_tokens: 10240,
                cache_write_tokens: 0
            }
        );
        let refusal = parse(&answer(200, json!({"choices": [{"finish_reason": "stop", "message": {"content": "", "refusal": "I can't."}}]})), "gw_1").unwrap();
        assert_eq!(
            (refusal.content.as_str(), refusal.stop_reason),
            ("I can't.", StopReason::Refusal)
        );
        for (reason, expected) in [
            ("stop", StopReason::EndTurn),
            ("length", StopReason::MaxTokens),
            ("content_filter", StopReason::ContentFilter),
            ("function_call", StopReason::ToolUse),
            ("weird", StopReason::Other),
        ] {
            let r = parse(
                &answer(
                    200,
                    json!({"choices": [{"finish_reason": reason, "message": {"content": "x"}}]}),
                ),
                "gw_1",
            )
            .unwrap();
            assert_eq!(r.stop_reason, expected);
        }
        let none = parse(&answer(200, json!({"choices": []})), "gw_1").unwrap_err();
        assert_eq!(
            none.class,
            ktsu_shared::wire::gateway::ErrorClass::Transient
        );
    }
}
