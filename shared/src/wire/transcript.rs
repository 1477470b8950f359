//! The checkpoint transcript (runtime-gateway.md §3.2): gateway messages written in the
//! reference shape `[{"role","content"}]` with string content, so that checkpoints survive any
//! orchestrator that keeps only role and content.
//!
//! | gateway message | transcript message |
//! |---|---|
//! | system / user / assistant without tool calls | same role, same content |
//! | assistant with tool calls | assistant, content = JSON text `[{"type":"text","text":T}?, {"type":"tool_use","id","name","input"}…]` |
//! | tool | user, content = JSON text `[{"type":"tool_result","tool_use_id","content","is_error"?:true}]` |
//!
//! [`decode`] reverses [`encode`] (and also takes messages already in gateway format), so
//! `decode(encode(m)) == m` for the transcripts the runtime produces.

use super::gateway::{Message, Role, ToolCall};
use serde_json::{json, Map, Value};

/// A transcript entry that cannot be read as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message {index}: {detail}")]
pub struct TranscriptError {
    /// Position in the transcript, from 0.
    pub index: usize,
    pub detail: String,
}

/// Gateway messages → transcript (JSON values, reference shape).
pub fn encode(messages: &[Message]) -> Vec<Value> {
    messages.iter().map(encode_message).collect()
}

/// One gateway message → one transcript message.
pub fn encode_message(message: &Message) -> Value {
    match message.role {
        Role::Assistant if !message.tool_calls.is_empty() => {
            let mut blocks = Vec::with_capacity(message.tool_calls.len() + 1);
            if !message.content.is_empty() {
                blocks.push(json!({"type": "text", "text": message.content}));
            }
            blocks.extend(message.tool_calls.iter().map(|call| {
                json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
            }));
            transcript_entry("assistant", Value::Array(blocks).to_string())
        }
        Role::Tool => {
            let mut block = Map::new();
            block.insert("type".into(), "tool_result".into());
            block.insert(
                "tool_use_id".into(),
                message.tool_call_id.clone().unwrap_or_default().into(),
            );
            block.insert("content".into(), message.content.clone().into());
            if message.is_error {
                block.insert("is_error".into(), true.into());
            }
            let blocks = Value::Array(vec![Value::Object(block)]);
            transcript_entry("user", blocks.to_string())
        }
        role => transcript_entry(role.as_str(), message.content.clone()),
    }
}

fn transcript_entry(role: &str, content: String) -> Value {
    json!({"role": role, "content": content})
}

/// Transcript → gateway messages (resume).
///
/// An entry with `tool_calls` or role `tool` is already in gateway format and taken as it is.
/// Otherwise an assistant content that is a JSON array of `text`/`tool_use` blocks with at least
/// one `tool_use` becomes an assistant message with tool calls; a user content that is a
/// non-empty JSON array of `tool_result` blocks becomes one `tool` message per block; anything
/// else is a plain message.
pub fn decode(transcript: &[Value]) -> Result<Vec<Message>, TranscriptError> {
    let mut messages = Vec::with_capacity(transcript.len());
    for (index, entry) in transcript.iter().enumerate() {
        let fail = |detail: String| TranscriptError { index, detail };
        let object = entry
            .as_object()
            .ok_or_else(|| fail("expected an object".to_owned()))?;
        let role = object.get("role").and_then(Value::as_str);
        let has_tool_calls = object
            .get("tool_calls")
            .is_some_and(|calls| !calls.is_null());
        if has_tool_calls || role == Some("tool") {
            let message: Message =
                serde_json::from_value(entry.clone()).map_err(|err| fail(err.to_string()))?;
            if message.role == Role::Tool && message.tool_call_id.is_none() {
                return Err(fail("a tool message needs tool_call_id".to_owned()));
            }
            messages.push(message);
            continue;
        }
        let content = match object.get("content") {
            None | Some(Value::Null) => "",
            Some(Value::String(text)) => text.as_str(),
            Some(_) => return Err(fail("content must be a string".to_owned())),
        };
        match role {
            Some("assistant") => messages.push(
                decode_tool_use(content).unwrap_or_else(|| Message::assistant(content, Vec::new())),
            ),
            Some("user") => match decode_tool_results(content) {
                Some(results) => messages.extend(results),
                None => messages.push(Message::user(content)),
            },
            Some("system") => messages.push(Message::system(content)),
            Some(other) => return Err(fail(format!("unknown role {other:?}"))),
            None => return Err(fail("role must be a string".to_owned())),
        }
    }
    Ok(messages)
}

/// `[{"type":"text"|"tool_use",…}…]` with at least one `tool_use` → assistant with tool calls.
fn decode_tool_use(content: &str) -> Option<Message> {
    let blocks = json_array_of_objects(content)?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str)? {
            "text" => text.push_str(block.get("text")?.as_str()?),
            "tool_use" => calls.push(ToolCall {
                id: block.get("id")?.as_str()?.to_owned(),
                name: block.get("name")?.as_str()?.to_owned(),
                arguments: block.get("input").cloned().unwrap_or(Value::Null),
            }),
            _ => return None,
        }
    }
    (!calls.is_empty()).then(|| Message::assistant(text, calls))
}

/// A non-empty `[{"type":"tool_result",…}…]` → one tool message per block.
fn decode_tool_results(content: &str) -> Option<Vec<Message>> {
    let blocks = json_array_of_objects(content)?;
    if blocks.is_empty() {
        return None;
    }
    blocks
        .iter()
        .map(|block| {
            if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                return None;
            }
            let id = block.get("tool_use_id")?.as_str()?;
            let text = match block.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|part| part.get("text").and_then(Value::as_str))
                    .collect(),
                Some(_) => return None,
            };
            let is_error = block
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some(Message::tool_result(id, text, is_error))
        })
        .collect()
}

/// `content` parsed as a JSON array whose elements are all objects.
fn json_array_of_objects(content: &str) -> Option<Vec<Map<String, Value>>> {
    if !content.trim_start().starts_with('[') {
        return None; // cheap exit for ordinary text
    }
    match serde_json::from_str::<Value>(content).ok()? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments,
        }
    }

    #[test]
    fn encodes_as_the_spec_table_says() {
        let messages = vec![
            Message::system("S"),
            Message::user("U"),
            Message::assistant("", vec![call("toolu_1", "kv_get", json!({"key": "a"}))]),
            Message::tool_result("toolu_1", "42", false),
            Message::assistant("Checking.", vec![call("t2", "x", Value::Null)]),
            Message::tool_result("t2", "boom", true),
            Message::assistant("{\"answer\":42}", vec![]),
        ];
        let transcript = encode(&messages);
        assert_eq!(
            Value::Array(transcript.clone()),
            json!([
                {"role": "system", "content": "S"},
                {"role": "user", "content": "U"},
                {"role": "assistant", "content": r#"[{"type":"tool_use","id":"toolu_1","name":"kv_get","input":{"key":"a"}}]"#},
                {"role": "user", "content": r#"[{"type":"tool_result","tool_use_id":"toolu_1","content":"42"}]"#},
                {"role": "assistant", "content": r#"[{"type":"text","text":"Checking."},{"type":"tool_use","id":"t2","name":"x","input":null}]"#},
                {"role": "user", "content": r#"[{"type":"tool_result","tool_use_id":"t2","content":"boom","is_error":true}]"#},
                {"role": "assistant", "content": "{\"answer\":42}"}
            ])
        );
        assert_eq!(decode(&transcript).unwrap(), messages);
    }

    #[test]
    fn decodes_reference_variants() {
        let transcript = vec![
            // Several results in one user message, content as text blocks.
            json!({"role": "user", "content": r#"[{"type":"tool_result","tool_use_id":"a","content":[{"type":"text","text":"x"},{"type":"text","text":"y"}]},{"type":"tool_result","tool_use_id":"b","content":"z","is_error":false}]"#}),
            // Text blocks concatenated.
            json!({"role": "assistant", "content": r#"[{"type":"text","text":"a"},{"type":"tool_use","id":"i","name":"n","input":{}},{"type":"text","text":"b"}]"#}),
            // Text-only block array is plain text.
            json!({"role": "assistant", "content": r#"[{"type":"text","text":"only text"}]"#}),
            // An unknown block type makes it plain text.
            json!({"role": "assistant", "content": r#"[{"type":"tool_use","id":"i","name":"n"},{"type":"image"}]"#}),
            json!({"role": "user", "content": "[]"}),
            json!({"role": "user", "content": "[1, 2]"}),
            json!({"role": "system"}),
        ];
        let messages = decode(&transcript).unwrap();
        assert_eq!(
            messages,
            vec![
                Message::tool_result("a", "xy", false),
                Message::tool_result("b", "z", false),
                Message::assistant("ab", vec![call("i", "n", json!({}))]),
                Message::assistant(r#"[{"type":"text","text":"only text"}]"#, vec![]),
                Message::assistant(
                    r#"[{"type":"tool_use","id":"i","name":"n"},{"type":"image"}]"#,
                    vec![]
                ),
                Message::user("[]"),
                Message::user("[1, 2]"),
                Message::system(""),
            ]
        );
    }

    #[test]
    fn takes_gateway_format_as_is() {
        // The orchestrator's rejection result appended after a structured checkpoint.
        let transcript = vec![
            json!({"role": "assistant", "content": "", "tool_calls": [{"id": "t1", "name": "delete", "arguments": {"id": 7}}]}),
            json!({"role": "tool", "tool_call_id": "t1", "content": "The human reviewer rejected this tool call. Do not retry it; continue without it."}),
        ];
        let messages = decode(&transcript).unwrap();
        assert_eq!(messages[0].tool_calls[0].arguments, json!({"id": 7}));
        assert_eq!(messages[1].tool_call_id.as_deref(), Some("t1"));
    }

    #[test]
    fn rejects_undecodable_entries() {
        let cases = [
            (json!("text"), "message 0: expected an object"),
            (
                json!({"role": "robot", "content": "x"}),
                "message 0: unknown role \"robot\"",
            ),
            (json!({"content": "x"}), "message 0: role must be a string"),
            (
                json!({"role": "user", "content": 5}),
                "message 0: content must be a string",
            ),
            (
                json!({"role": "tool", "content": "x"}),
                "message 0: a tool message needs tool_call_id",
            ),
        ];
        for (entry, expected) in cases {
            assert_eq!(decode(&[entry]).unwrap_err().to_string(), expected);
        }
        let err = decode(&[
            json!({"role": "user", "content": "ok"}),
            json!({"role": "assistant", "tool_calls": 3}),
        ])
        .unwrap_err();
        assert_eq!(err.index, 1);
    }

    fn arguments() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        prop_oneof![
            Just(Value::Null),
            prop::collection::btree_map(".{0,6}", leaf, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    }

    /// Ordinary text: anything that is not itself a JSON array (which would read as blocks).
    fn text() -> impl Strategy<Value = String> {
        ".{0,24}".prop_filter("not a JSON array", |text| {
            !matches!(serde_json::from_str::<Value>(text), Ok(Value::Array(_)))
        })
    }

    fn message() -> impl Strategy<Value = Message> {
        let tool_call =
            (".{0,10}", ".{0,10}", arguments()).prop_map(|(id, name, arguments)| ToolCall {
                id,
                name,
                arguments,
            });
        prop_oneof![
            text().prop_map(Message::system),
            text().prop_map(Message::user),
            text().prop_map(|t| Message::assistant(t, vec![])),
            (".{0,24}", prop::collection::vec(tool_call, 1..4))
                .prop_map(|(t, calls)| Message::assistant(t, calls)),
            (".{0,10}", ".{0,24}", any::<bool>())
                .prop_map(|(id, t, is_error)| Message::tool_result(id, t, is_error)),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(messages in prop::collection::vec(message(), 0..8)) {
            let transcript = encode(&messages);
            let decoded = decode(&transcript).unwrap();
            prop_assert_eq!(&decoded, &messages);
            prop_assert_eq!(&encode(&decoded), &transcript);
            // Through JSON text too, as a stored checkpoint travels.
            let text = serde_json::to_string(&transcript).unwrap();
            let reread: Vec<Value> = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(decode(&reread).unwrap(), messages);
        }
    }
}
