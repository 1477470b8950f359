//! Anthropic Messages API (runtime-gateway.md §7.2): `POST <base_url>/v1/messages`, system
//! prompt outside the messages, native `tool_use` / `tool_result` blocks, prompt-cache markers,
//! usage with cache tokens.
//!
//! The request body borrows from the gateway request (no copies of prompts or tool schemas);
//! only the joined system prompt is built.

use super::upstream::{self, Answer};
use super::{flag, Call, Failure, Reply, Usage};
use crate::config::ProviderSpec;
use actix_web::http::header::{HeaderName, HeaderValue};
use ktsu_shared::diag::Diagnostic;
use ktsu_shared::wire::gateway::{Role, StopReason, ToolCall, ToolChoice};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct Anthropic {
    url: String,
    /// `x-api-key` (sensitive), `anthropic-version`, `anthropic-beta` when configured.
    headers: Vec<(HeaderName, HeaderValue)>,
    prompt_cache: bool,
}

impl Anthropic {
    pub fn from_spec(spec: &ProviderSpec) -> Result<Self, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let text = |key: &str| spec.value(key).map(|v| v.value.as_str());
        let base_url = text("base_url").unwrap_or(DEFAULT_BASE_URL);
        if let Some(v) = spec.value("base_url") {
            if !upstream::is_http_url(&v.value) {
                errors.push(
                    spec.error_at(v, format!("`{}` is not an absolute http(s) URL", v.value)),
                );
            }
        }
        let mut headers = Vec::with_capacity(3);
        for (key, header, sensitive, default) in [
            ("api_key", "x-api-key", true, None),
            (
                "anthropic_version",
                "anthropic-version",
                false,
                Some(DEFAULT_VERSION),
            ),
            ("beta", "anthropic-beta", false, None),
        ] {
            let Some(value) = text(key).or(default) else {
                continue;
            };
            match upstream::header_value(value, sensitive) {
                Some(v) => headers.push((HeaderName::from_static(header), v)),
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
        let prompt_cache = flag(spec, "prompt_cache", true).map_err(|e| errors.push(e));
        match prompt_cache {
            Ok(prompt_cache) if errors.is_empty() => Ok(Anthropic {
                url: upstream::endpoint(base_url, "/v1/messages"),
                headers,
                prompt_cache,
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

    /// The request body (§7.2 mapping).
    pub fn body(&self, call: &Call<'_>) -> Result<Vec<u8>, serde_json::Error> {
        let request = call.request;
        let system = system_text(&request.messages);
        let cache = self.prompt_cache.then_some(Ephemeral::MARK);
        let tools: Vec<Tool<'_>> = request
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| Tool {
                name: &t.name,
                description: &t.description,
                input_schema: Schema(&t.input_schema),
                cache_control: cache.filter(|_| i + 1 == request.tools.len()),
            })
            .collect();
        let tool_choice = match (request.tool_choice, tools.is_empty()) {
            (_, true) | (None | Some(ToolChoice::Auto), _) => None,
            (Some(ToolChoice::None), false) => Some(TypeOnly { kind: "none" }),
            (Some(ToolChoice::Required), false) => Some(TypeOnly { kind: "any" }),
        };
        let body = Body {
            model: call.model,
            max_tokens: call.max_tokens,
            system: (!system.is_empty()).then_some(if self.prompt_cache {
                System::Cached([CachedText {
                    kind: "text",
                    text: system,
                    cache_control: Ephemeral::MARK,
                }])
            } else {
                System::Plain(system)
            }),
            messages: messages(&request.messages),
            temperature: call.temperature,
            tools,
            tool_choice,
        };
        serde_json::to_vec(&body)
    }
}

/// All system messages joined with a blank line.
fn system_text(messages: &[ktsu_shared::wire::gateway::Message]) -> String {
    let parts: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    parts.join("\n\n")
}

/// The conversation without system messages: one message per role turn, consecutive messages of
/// the same role merged (tool results first in a merged user message), no empty text blocks, no
/// empty messages.
fn messages(input: &[ktsu_shared::wire::gateway::Message]) -> Vec<OutMessage<'_>> {
    let mut out: Vec<OutMessage<'_>> = Vec::with_capacity(input.len());
    for m in input {
        let (role, blocks): (&'static str, Vec<Block<'_>>) = match m.role {
            Role::System => continue,
            Role::User => ("user", text_block(&m.content).into_iter().collect()),
            Role::Assistant => {
                let mut blocks: Vec<Block<'_>> = text_block(&m.content).into_iter().collect();
                blocks.extend(m.tool_calls.iter().map(|c| Block::ToolUse {
                    id: &c.id,
                    name: &c.name,
                    input: Args(&c.arguments),
                }));
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![Block::ToolResult {
                    tool_use_id: m.tool_call_id.as_deref().unwrap_or_default(),
                    content: &m.content,
                    is_error: m.is_error,
                }],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(OutMessage {
                role,
                content: blocks,
            }),
        }
    }
    for m in out.iter_mut().filter(|m| m.role == "user") {
        // Stable: tool results keep their order, then the texts keep theirs.
        m.content
            .sort_by_key(|b| !matches!(b, Block::ToolResult { .. }));
    }
    out
}

fn text_block(text: &str) -> Option<Block<'_>> {
    (!text.is_empty()).then_some(Block::Text { text })
}

/// Maps a 2xx answer (§7.2 response mapping) or classifies an error answer.
pub fn parse(answer: &Answer, call_id: &str) -> Result<Reply, Failure> {
    let status = answer.status.as_u16();
    if !answer.status.is_success() {
        return Err(upstream::failure_for_status(answer));
    }
    let response: Response =
        serde_json::from_slice(&answer.body).map_err(|e| upstream::undecodable(status, e))?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in response.content.unwrap_or_default() {
        match block {
            ContentBlock::Text { text } => content.push_str(&text),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: input,
            }),
            ContentBlock::Other => {}
        }
    }
    upstream::repair_tool_call_ids(&mut tool_calls, call_id);
    let u = response.usage.unwrap_or_default();
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
    Ok(Reply {
        content,
        tool_calls,
        usage: Usage {
            tokens_in: u
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            tokens_out: u.output_tokens.unwrap_or(0),
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
        },
        stop_reason: stop_reason(response.stop_reason.as_deref()),
        http_status: Some(status),
    })
}

fn stop_reason(reason: Option<&str>) -> StopReason {
    match reason {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens" | "model_context_window_exceeded") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::Refusal,
        _ => StopReason::Other,
    }
}

// ---- wire format --------------------------------------------------------------------------

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System>,
    messages: Vec<OutMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<TypeOnly>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum System {
    Plain(String),
    Cached([CachedText; 1]),
}

#[derive(Serialize)]
struct CachedText {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    cache_control: Ephemeral,
}

/// `{"type":"ephemeral"}`
#[derive(Serialize, Clone, Copy)]
struct Ephemeral {
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Ephemeral {
    const MARK: Ephemeral = Ephemeral { kind: "ephemeral" };
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Args<'a>,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    input_schema: Schema<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<Ephemeral>,
}

/// Tool-call arguments: `{}` when null.
struct Args<'a>(&'a Value);

impl Serialize for Args<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serde_json::Map::new().serialize(serializer),
            other => other.serialize(serializer),
        }
    }
}

/// A tool's input schema: `{"type":"object"}` when none was given.
pub(crate) struct Schema<'a>(pub(crate) &'a Value);

impl Serialize for Schema<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => {
                let mut map = serde_json::Map::new();
                map.insert("type".into(), Value::String("object".into()));
                map.serialize(serializer)
            }
            other => other.serialize(serializer),
        }
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    content: Option<Vec<ContentBlock>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<ResponseUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct ResponseUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResolvedValue;
    use awc::http::StatusCode;
    use ktsu_shared::diag::Pos;
    use ktsu_shared::http::Bytes;
    use ktsu_shared::project::ProviderType;
    use ktsu_shared::wire::gateway::{CallMetadata, GatewayRequest, Message, ToolDef};
    use serde_json::json;

    pub(crate) fn spec(values: &[(&str, &str)]) -> ProviderSpec {
        ProviderSpec {
            name: "anthropic".into(),
            kind: ProviderType::Anthropic,
            values: values
                .iter()
                .map(|(k, v)| ResolvedValue {
                    key: (*k).to_string(),
                    value: (*v).to_string(),
                    pos: Pos::new(3, 5),
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

    fn body_of(adapter: &Anthropic, request: &GatewayRequest) -> Value {
        let metadata = CallMetadata::default();
        let call = Call {
            call_id: "gw_0011223344556677",
            request,
            metadata: &metadata,
            group: "g",
            model: "claude-sonnet-4-5",
            max_tokens: 1024,
            temperature: Some(0.2),
            output_schema: None,
        };
        serde_json::from_slice(&adapter.body(&call).unwrap()).unwrap()
    }

    fn request(messages: Vec<Message>) -> GatewayRequest {
        serde_json::from_value(json!({"group": "g", "messages": messages})).unwrap()
    }

    #[test]
    fn config_checks() {
        assert!(Anthropic::from_spec(&spec(&[("api_key", "sk-1")])).is_ok());
        let errors = Anthropic::from_spec(&spec(&[
            ("api_key", "bad\nkey"),
            ("base_url", "ftp://x"),
            ("prompt_cache", "yes"),
        ]))
        .unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(
            errors.iter().all(|d| !d.message.contains("bad\nkey")),
            "keys never echo"
        );
        let a =
            Anthropic::from_spec(&spec(&[("api_key", "k"), ("base_url", "http://h:1/")])).unwrap();
        assert_eq!(a.url, "http://h:1/v1/messages");
    }

    #[test]
    fn system_merge_and_block_order() {
        let a =
            Anthropic::from_spec(&spec(&[("api_key", "k"), ("prompt_cache", "false")])).unwrap();
        let r = request(vec![
            Message::system("S1"),
            Message::user("hi"),
            Message::system("S2"),
            Message::assistant(
                "",
                vec![ToolCall {
                    id: "t1".into(),
                    name: "kv".into(),
                    arguments: Value::Null,
                }],
            ),
            Message::tool_result("t1", "42", false),
            Message::user("and?"),
            Message::assistant("", vec![]),
            Message::user(""),
        ]);
        let body = body_of(&a, &r);
        assert_eq!(body["system"], "S1\n\nS2");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "kv", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "42"},
                    {"type": "text", "text": "and?"}
                ]}
            ])
        );
        assert_eq!(body["temperature"], 0.2);
        assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
    }

    #[test]
    fn tools_and_cache_markers() {
        let a = Anthropic::from_spec(&spec(&[("api_key", "k")])).unwrap();
        let mut r = request(vec![Message::system("S"), Message::user("u")]);
        r.tools = vec![
            ToolDef {
                name: "a".into(),
                description: "A".into(),
                input_schema: json!({"type": "object"}),
            },
            ToolDef {
                name: "b".into(),
                description: String::new(),
                input_schema: Value::Null,
            },
        ];
        r.tool_choice = Some(ToolChoice::Required);
        let body = body_of(&a, &r);
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            body["tools"],
            json!([
                {"name": "a", "description": "A", "input_schema": {"type": "object"}},
                {"name": "b", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}
            ])
        );
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        r.tool_choice = Some(ToolChoice::None);
        assert_eq!(body_of(&a, &r)["tool_choice"], json!({"type": "none"}));
        r.tool_choice = Some(ToolChoice::Auto);
        assert!(body_of(&a, &r).get("tool_choice").is_none());
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
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [
                    {"type": "text", "text": "Let me "},
                    {"type": "thinking", "thinking": "hmm"},
                    {"type": "text", "text": "check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "kv_get", "input": {"key": "a"}},
                    {"type": "tool_use", "name": "kv_get", "input": {"key": "b"}}
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 1200, "output_tokens": 500, "cache_read_input_tokens": 8000, "cache_creation_input_tokens": null}
            })),
            "gw_0011223344556677",
        )
        .unwrap();
        assert_eq!(reply.content, "Let me check.");
        assert_eq!(reply.tool_calls[0].arguments, json!({"key": "a"}));
        assert_eq!(reply.tool_calls[1].id, "call_0011223344556677_1");
        assert_eq!(reply.stop_reason, StopReason::ToolUse);
        assert_eq!(
            reply.usage,
            Usage {
                tokens_in: 9200,
                tokens_out: 500,
                cache_read_tokens: 8000,
                cache_write_tokens: 0
            }
        );
        let empty = parse(
            &answer(
                200,
                json!({"content": [], "stop_reason": "model_context_window_exceeded"}),
            ),
            "gw_1",
        )
        .unwrap();
        assert_eq!(empty.content, "");
        assert_eq!(empty.stop_reason, StopReason::MaxTokens);
        assert_eq!(
            parse(
                &answer(200, json!({"content": [], "stop_reason": "pause_turn"})),
                "gw_1"
            )
            .unwrap()
            .stop_reason,
            StopReason::Other
        );
        let garbage = parse(&answer(200, json!({"content": "nope"})), "gw_1").unwrap_err();
        assert_eq!(
            garbage.class,
            ktsu_shared::wire::gateway::ErrorClass::Transient
        );
    }
}
