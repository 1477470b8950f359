//! The fixed texts T1–T12 (runtime-gateway.md §3.15). Tests compare them exactly, so they live
//! in one place.

use crate::units::seconds_text;
use std::time::Duration;

/// T1: after the system prompt when there is an output schema (followed by `\n` and the
/// pretty-printed schema).
pub const SCHEMA_INSTRUCTION: &str = "Your final answer must be a single JSON object that conforms to the following JSON schema. Reply with the JSON object only.";

/// T2: the user message before the last turn when the invocation has tools.
pub const LAST_TURN: &str = "You have reached the maximum number of tool calls for this task. Tools are no longer available. Reply now with your final answer as a single JSON object that conforms to the output schema.";

/// T3 details.
pub const NO_JSON_OBJECT: &str = "no JSON object found";
pub const NOT_AN_OBJECT: &str = "the top-level value is not an object";
pub const EMPTY_REPLY: &str = "the reply was empty";

/// T3: the correction after a reply whose JSON could not be extracted.
pub fn invalid_json(detail: &str) -> String {
    format!("Your previous reply was not valid JSON ({detail}). Reply with only a JSON object that conforms to the output schema, with no other text.")
}

/// T4 heading; one line per violation follows.
pub const SCHEMA_VIOLATIONS: &str = "Your previous reply did not conform to the output schema. Fix these problems and reply with only the corrected JSON object:";

/// T5: the correction after a reply cut off at the token limit.
pub const TRUNCATED: &str = "Your previous reply was cut off at the output token limit. Reply with a shorter, complete JSON object that conforms to the output schema.";

/// T6: the tool result for a call to a tool the agent may not use.
pub fn tool_not_available(name: &str, available: &[&str]) -> String {
    let available = if available.is_empty() {
        "none".to_owned()
    } else {
        available.join(", ")
    };
    format!("Tool \"{name}\" is not available. Available tools: {available}.")
}

/// T7: the tool result for a call made while tools were withheld.
pub const TOOLS_WITHHELD: &str =
    "Tool calls are no longer available. Reply with your final JSON answer.";

/// T8: the tool result for a call the reviewer rejected.
pub const REJECTED: &str =
    "The human reviewer rejected this tool call. Do not retry it; continue without it.";

/// T9: appended to the reflect prompt.
pub const REFLECT_INSTRUCTION: &str = "Reply with the complete JSON object again, revised if needed, conforming to the output schema. Reply with the JSON object only.";

/// T10: the tool result of a call that timed out.
pub fn tool_timed_out(timeout: Duration) -> String {
    format!("Tool call timed out after {} s.", seconds_text(timeout))
}

/// T11: the tool result of a JSON-RPC error.
pub fn tool_failed(message: &str, code: i64) -> String {
    format!("Tool call failed: {message} (code {code}).")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions() {
        assert_eq!(
            invalid_json(NO_JSON_OBJECT),
            "Your previous reply was not valid JSON (no JSON object found). Reply with only a JSON object that conforms to the output schema, with no other text."
        );
        assert_eq!(
            tool_not_available("rm", &["kv_get", "kv_set"]),
            "Tool \"rm\" is not available. Available tools: kv_get, kv_set."
        );
        assert_eq!(
            tool_not_available("rm", &[]),
            "Tool \"rm\" is not available. Available tools: none."
        );
        assert_eq!(
            tool_timed_out(Duration::from_millis(1500)),
            "Tool call timed out after 1.5 s."
        );
        assert_eq!(
            tool_failed("bad arguments", -32602),
            "Tool call failed: bad arguments (code -32602)."
        );
    }
}
