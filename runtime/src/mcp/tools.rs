//! `tools/list` pages and `tools/call` results (runtime-gateway.md §4.8, §4.9): what the MCP
//! server answers, turned into tool definitions and into the text of a `tool` message.

use super::error::McpError;
use serde_json::{Map, Value};

/// One tool a server lists.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// The MCP name (what `tools/call` takes).
    pub name: String,
    /// `description`, else `title`, else `""`.
    pub description: String,
    /// The `inputSchema` as listed (possibly `null`).
    pub input_schema: Value,
}

/// The tools of one `tools/list` result, the next cursor (`None` = last page) and the number of
/// entries skipped for lacking a string `name`.
pub fn parse_tools_page(result: &Value) -> Result<(Vec<McpTool>, Option<String>, usize), McpError> {
    let Some(entries) = result.get("tools").and_then(Value::as_array) else {
        return Err(McpError::protocol(
            "parse tools/list response: missing field tools",
        ));
    };
    let mut tools = Vec::with_capacity(entries.len());
    let mut skipped = 0;
    for entry in entries {
        let Some(name) = entry.get("name").and_then(Value::as_str) else {
            skipped += 1;
            continue;
        };
        let text = |key: &str| {
            entry
                .get(key)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
        };
        let title = text("title").or_else(|| {
            entry
                .pointer("/annotations/title")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
        });
        tools.push(McpTool {
            name: name.to_owned(),
            description: text("description").or(title).unwrap_or("").to_owned(),
            input_schema: entry.get("inputSchema").cloned().unwrap_or(Value::Null),
        });
    }
    let next = match result.get("nextCursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(cursor)) if cursor.is_empty() => None,
        Some(Value::String(cursor)) => Some(cursor.clone()),
        Some(other) => {
            return Err(McpError::protocol(format!(
                "parse tools/list response: nextCursor must be a string, got {other}"
            )))
        }
    };
    Ok((tools, next, skipped))
}

/// The input schema offered to the model: a non-object becomes
/// `{"type":"object","properties":{}}`; an object without `type` gets `"type":"object"`.
pub fn model_input_schema(input_schema: &Value) -> Value {
    match input_schema {
        Value::Object(map) if map.contains_key("type") => input_schema.clone(),
        Value::Object(map) => {
            let mut map = map.clone();
            map.insert("type".into(), "object".into());
            Value::Object(map)
        }
        _ => {
            let mut map = Map::new();
            map.insert("type".into(), "object".into());
            map.insert("properties".into(), Value::Object(Map::new()));
            Value::Object(map)
        }
    }
}

/// The text of a `tool` message and whether it reports an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolText {
    pub text: String,
    pub is_error: bool,
}

/// Text of a result with no parts at all (T12).
pub const NO_CONTENT: &str = "(no content)";

/// A `tools/call` result → the text the model sees (parts joined with a blank line, in content
/// order), cut to `max_bytes`.
pub fn map_call_result(result: &Value, max_bytes: usize) -> Result<ToolText, McpError> {
    let Value::Object(result) = result else {
        return Err(McpError::protocol(
            "parse tools/call response: result is not an object",
        ));
    };
    let content = match result.get("content") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => {
            return Err(McpError::protocol(
                "parse tools/call response: content is not an array",
            ))
        }
    };
    let mut parts: Vec<String> = content.iter().map(content_part).collect();
    if let Some(structured) = result.get("structuredContent").filter(|v| !v.is_null()) {
        let echoed = content.iter().any(|item| {
            item.get("type").and_then(Value::as_str) == Some("text")
                && item
                    .get("text")
                    .and_then(Value::as_str)
                    .and_then(|text| serde_json::from_str::<Value>(text.trim()).ok())
                    .is_some_and(|parsed| &parsed == structured)
        });
        if !echoed {
            parts.push(structured.to_string());
        }
    }
    let text = if parts.is_empty() {
        NO_CONTENT.to_owned()
    } else {
        parts.join("\n\n")
    };
    Ok(ToolText {
        text: truncate(text, max_bytes),
        is_error: result.get("isError").and_then(Value::as_bool) == Some(true),
    })
}

/// One content item → one part of the text.
fn content_part(item: &Value) -> String {
    let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("");
    let kind = text("type");
    match kind {
        "text" => text("text").to_owned(),
        "image" | "audio" => format!(
            "[{kind} {}, {} bytes of base64 omitted]",
            text("mimeType"),
            text("data").len()
        ),
        "resource_link" => {
            let mut part = format!("[resource link: {} {}", text("name"), text("uri"));
            if let Some(mime) = item.get("mimeType").and_then(Value::as_str) {
                part.push(' ');
                part.push_str(mime);
            }
            part.push(']');
            part
        }
        "resource" => {
            let resource = item.get("resource").unwrap_or(&Value::Null);
            let field = |key: &str| resource.get(key).and_then(Value::as_str);
            let uri = field("uri").unwrap_or("");
            match (field("text"), field("blob")) {
                (Some(body), _) => format!("[resource {uri}]\n{body}"),
                (None, Some(_)) => format!(
                    "[resource {uri}: {}, binary omitted]",
                    field("mimeType").unwrap_or("")
                ),
                (None, None) => format!("[resource {uri}]"),
            }
        }
        other => format!("[{other} content omitted]"),
    }
}

/// Cuts `text` to at most `max_bytes` bytes at a UTF-8 boundary and says how much was dropped.
pub fn truncate(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let omitted = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("\n[truncated: {omitted} bytes omitted]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(result: Value) -> ToolText {
        map_call_result(&result, 100_000).unwrap()
    }

    #[test]
    fn pages_and_cursors() {
        let (tools, next, skipped) = parse_tools_page(&json!({
            "tools": [
                {"name": "kv_get", "description": "Read", "inputSchema": {"type": "object"}},
                {"name": "titled", "title": "Titled tool"},
                {"name": "annotated", "annotations": {"title": "From annotations"}},
                {"description": "no name"},
                {"name": 5}
            ],
            "nextCursor": "page-2"
        }))
        .unwrap();
        let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["kv_get", "titled", "annotated"]);
        assert_eq!(skipped, 2);
        assert_eq!(tools[1].description, "Titled tool");
        assert_eq!(tools[2].description, "From annotations");
        assert_eq!(tools[1].input_schema, Value::Null);
        assert_eq!(next.as_deref(), Some("page-2"));
        for last in [
            json!({"tools": []}),
            json!({"tools": [], "nextCursor": null}),
            json!({"tools": [], "nextCursor": ""}),
        ] {
            assert_eq!(parse_tools_page(&last).unwrap().1, None);
        }
        let err = parse_tools_page(&json!({"items": []})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mcp_protocol: parse tools/list response: missing field tools"
        );
        assert!(parse_tools_page(&json!({"tools": [], "nextCursor": 3})).is_err());
    }

    #[test]
    fn input_schemas_offered_to_the_model() {
        let empty = json!({"type": "object", "properties": {}});
        assert_eq!(model_input_schema(&Value::Null), empty);
        assert_eq!(model_input_schema(&json!("x")), empty);
        assert_eq!(
            model_input_schema(&json!({"properties": {"a": {}}})),
            json!({"properties": {"a": {}}, "type": "object"})
        );
        let given = json!({"type": "object", "required": ["a"]});
        assert_eq!(model_input_schema(&given), given);
    }

    #[test]
    fn every_content_kind() {
        let text = map(json!({"content": [
            {"type": "text", "text": "hello"},
            {"type": "image", "mimeType": "image/png", "data": "AAAA"},
            {"type": "audio", "mimeType": "audio/wav", "data": "AAAAAA"},
            {"type": "resource_link", "name": "doc", "uri": "file:///d.txt", "mimeType": "text/plain"},
            {"type": "resource_link", "name": "bare", "uri": "file:///b"},
            {"type": "resource", "resource": {"uri": "file:///r.txt", "text": "body"}},
            {"type": "resource", "resource": {"uri": "file:///r.bin", "mimeType": "application/pdf", "blob": "AA=="}},
            {"type": "hologram"}
        ]}));
        assert_eq!(
            text.text,
            "hello\n\n[image image/png, 4 bytes of base64 omitted]\n\n[audio audio/wav, 6 bytes of base64 omitted]\n\n\
             [resource link: doc file:///d.txt text/plain]\n\n[resource link: bare file:///b]\n\n\
             [resource file:///r.txt]\nbody\n\n[resource file:///r.bin: application/pdf, binary omitted]\n\n\
             [hologram content omitted]"
        );
        assert!(!text.is_error);
    }

    #[test]
    fn structured_content_is_appended_unless_echoed() {
        let echoed = map(json!({
            "content": [{"type": "text", "text": " {\"sum\": 3} "}],
            "structuredContent": {"sum": 3}
        }));
        assert_eq!(echoed.text, " {\"sum\": 3} ");
        let separate = map(json!({
            "content": [{"type": "text", "text": "done"}],
            "structuredContent": {"sum": 3, "parts": [1, 2]}
        }));
        assert_eq!(separate.text, "done\n\n{\"sum\":3,\"parts\":[1,2]}");
        let only = map(json!({"structuredContent": {"ok": true}}));
        assert_eq!(only.text, "{\"ok\":true}");
    }

    #[test]
    fn empty_error_and_malformed_results() {
        assert_eq!(map(json!({"content": []})).text, "(no content)");
        assert_eq!(map(json!({})).text, "(no content)");
        let error = map(json!({"content": [{"type": "text", "text": "bad"}], "isError": true}));
        assert_eq!((error.text.as_str(), error.is_error), ("bad", true));
        assert!(map_call_result(&json!([]), 10).is_err());
        assert!(map_call_result(&json!({"content": "x"}), 10).is_err());
    }

    #[test]
    fn long_results_are_cut_at_a_character_boundary() {
        let cut =
            map_call_result(&json!({"content": [{"type": "text", "text": "ab✓cd"}]}), 3).unwrap();
        // "✓" is three bytes: the cut falls back to two bytes.
        assert_eq!(cut.text, "ab\n[truncated: 5 bytes omitted]");
        assert_eq!(truncate("short".into(), 5), "short");
    }
}
