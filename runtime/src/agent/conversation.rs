//! The initial conversation (runtime-gateway.md §3.3) and the reading of a resumed one (§3.5).

use super::texts;
use ktsu_shared::wire::gateway::{Message, Role, ToolCall};
use ktsu_shared::wire::invoke::InvokeRequest;
use std::collections::HashSet;

/// `[system, user]`: the system prompt, followed (when there is an output schema) by a blank
/// line, T1, a newline and the schema pretty-printed; then the user message. The system message
/// is sent even when empty.
pub fn initial(request: &InvokeRequest) -> Vec<Message> {
    let mut system = request.system.clone();
    if let Some(schema) = &request.output_schema {
        let pretty = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
        system.push_str("\n\n");
        system.push_str(texts::SCHEMA_INSTRUCTION);
        system.push('\n');
        system.push_str(&pretty);
    }
    vec![
        Message::system(system),
        Message::user(request.user_message.clone()),
    ]
}

/// The tool calls of the last assistant message that has any, without a `tool` message for
/// their id after it, in their original order.
pub fn pending_calls(conversation: &[Message]) -> Vec<ToolCall> {
    let Some(at) = conversation
        .iter()
        .rposition(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
    else {
        return Vec::new();
    };
    let answered: HashSet<&str> = answered_ids(&conversation[at + 1..]);
    conversation[at]
        .tool_calls
        .iter()
        .filter(|call| !answered.contains(call.id.as_str()))
        .cloned()
        .collect()
}

/// Ids that have a `tool` message in `messages`.
pub fn answered_ids(messages: &[Message]) -> HashSet<&str> {
    messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .filter_map(|m| m.tool_call_id.as_deref())
        .collect()
}

/// The first system and the first user message (the frame of a reflect call).
pub fn frame(conversation: &[Message]) -> Vec<Message> {
    [Role::System, Role::User]
        .into_iter()
        .filter_map(|role| conversation.iter().find(|m| m.role == role).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: serde_json::Value) -> InvokeRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn initial_with_and_without_schema() {
        let plain = initial(&request(
            json!({"system": "Be brief.", "user_message": "Hi"}),
        ));
        assert_eq!(
            plain,
            vec![Message::system("Be brief."), Message::user("Hi")]
        );
        assert!(!plain[0].content.contains("JSON schema"));

        let with_schema = initial(&request(json!({
            "system": "S", "user_message": "U",
            "output_schema": {"type": "object", "required": ["b", "a"]}
        })));
        assert_eq!(
            with_schema[0].content,
            format!(
                "S\n\n{}\n{{\n  \"type\": \"object\",\n  \"required\": [\n    \"b\",\n    \"a\"\n  ]\n}}",
                texts::SCHEMA_INSTRUCTION
            )
        );
        let empty = initial(&request(json!({})));
        assert_eq!(empty, vec![Message::system(""), Message::user("")]);
    }

    #[test]
    fn pending_calls_of_the_last_assistant_with_calls() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "t".into(),
            arguments: json!({}),
        };
        let conversation = vec![
            Message::system("S"),
            Message::user("U"),
            Message::assistant("", vec![call("old")]),
            Message::tool_result("old", "r", false),
            Message::assistant("thinking", vec![call("a"), call("b"), call("c")]),
            Message::tool_result("b", "done", false),
        ];
        let pending: Vec<_> = pending_calls(&conversation)
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(pending, ["a", "c"]);
        assert!(pending_calls(&conversation[..2]).is_empty());
        assert_eq!(
            frame(&conversation),
            vec![Message::system("S"), Message::user("U")]
        );
    }
}
