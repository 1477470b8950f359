//! The initial conversation (runtime-gateway.md §3.3) and the reading of a resumed one (§3.5).

use super::texts;
use ktsu_shared::wire::gateway::{Message, Role, ToolCall};
use ktsu_shared::wire::invoke::InvokeRequest;
use std::collections::HashSet;

/// `[system, user]`: the system prompt, followed (when there is an output schema) by a blank
/// line, T1, a newline and the schema pretty-printed; then the user message. The system message
/// is sent even when empty.
///
/// The prompts move out of `request` into the messages instead of being copied: they can be
/// large (a document to triage), and a waiting leg should hold them once. The returned length
/// is the system prompt's, at the start of the system message; [`return_prompts`] puts both
/// back.
pub fn initial(request: &mut InvokeRequest) -> (Vec<Message>, usize) {
    let prompt = std::mem::take(&mut request.system);
    let system_len = prompt.len();
    let system = match &request.output_schema {
        // Joined in one exact allocation: the system message lives as long as the leg.
        Some(schema) => [
            prompt.as_str(),
            "\n\n",
            texts::SCHEMA_INSTRUCTION,
            "\n",
            &serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string()),
        ]
        .concat(),
        None => prompt,
    };
    let user = std::mem::take(&mut request.user_message);
    (
        vec![Message::system(system), Message::user(user)],
        system_len,
    )
}

/// Gives `request` back the prompts [`initial`] moved into `conversation` (the first two
/// messages, which later turns never change).
pub fn return_prompts(conversation: &[Message], system_len: usize, request: &mut InvokeRequest) {
    if let [system, user, ..] = conversation {
        request.system = system
            .content
            .get(..system_len)
            .unwrap_or_default()
            .to_owned();
        request.user_message = user.content.clone();
    }
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
        let original = request(json!({"system": "Be brief.", "user_message": "Hi"}));
        let mut lent = original.clone();
        let (plain, system_len) = initial(&mut lent);
        assert_eq!(
            plain,
            vec![Message::system("Be brief."), Message::user("Hi")]
        );
        assert!(!plain[0].content.contains("JSON schema"));
        assert_eq!((lent.system.as_str(), lent.user_message.as_str()), ("", ""));
        return_prompts(&plain, system_len, &mut lent);
        assert_eq!(lent, original);

        let original = request(json!({
            "system": "S é", "user_message": "U",
            "output_schema": {"type": "object", "required": ["b", "a"]}
        }));
        let mut lent = original.clone();
        let (with_schema, system_len) = initial(&mut lent);
        assert_eq!(
            with_schema[0].content,
            format!(
                "S é\n\n{}\n{{\n  \"type\": \"object\",\n  \"required\": [\n    \"b\",\n    \"a\"\n  ]\n}}",
                texts::SCHEMA_INSTRUCTION
            )
        );
        return_prompts(&with_schema, system_len, &mut lent);
        assert_eq!(lent, original);
        let (empty, _) = initial(&mut request(json!({})));
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
