//! From request bytes to a routing [`Plan`] (runtime-gateway.md §6.2): JSON errors in the shared
//! vocabulary, then every value checked with a precise `invalid_request` message, then the
//! group, the resolved `max_tokens` and temperature, and the deadline. `metadata` is decoded
//! once by the caller (its `attempt` goes into every log record of the call).

use crate::error::InvokeError;
use crate::router::Plan;
use crate::state::Gateway;
use actix_web::error::JsonPayloadError;
use ktsu_shared::api_error::{codes, json_error};
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::wire::gateway::{CallMetadata, GatewayRequest, Role};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// `max_tokens` when neither the request nor the group gives one (the runtime's own default).
pub const FALLBACK_MAX_TOKENS: u64 = 1024;

/// Decodes the body; syntax errors are `invalid_json`, a wrong shape `invalid_request`.
pub fn decode(body: &[u8], limit: usize) -> Result<GatewayRequest, InvokeError> {
    serde_json::from_slice(body).map_err(|e| {
        let error = json_error(&JsonPayloadError::Deserialize(e), limit);
        if error.code() == codes::INVALID_JSON {
            InvokeError::InvalidJson(error.message().to_string())
        } else {
            InvokeError::InvalidRequest(error.message().to_string())
        }
    })
}

fn invalid(detail: impl std::fmt::Display) -> InvokeError {
    InvokeError::InvalidRequest(format!("invalid request: {detail}"))
}

/// Checks every field and resolves the group; `started` is when the request arrived (the
/// deadline counts from there).
pub fn plan<'a>(
    gateway: &'a Gateway,
    request: &'a GatewayRequest,
    metadata: CallMetadata,
    started: Instant,
) -> Result<Plan<'a>, InvokeError> {
    if request.group.is_empty() {
        return Err(invalid("group is required"));
    }
    if request.messages.is_empty() {
        return Err(invalid("messages must contain at least one message"));
    }
    for (i, m) in request.messages.iter().enumerate() {
        if m.role == Role::Tool && m.tool_call_id.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(format_args!(
                "messages[{i}]: a tool message requires tool_call_id"
            )));
        }
        if let Some((j, _)) = m
            .tool_calls
            .iter()
            .enumerate()
            .find(|(_, c)| c.name.is_empty())
        {
            return Err(invalid(format_args!(
                "messages[{i}].tool_calls[{j}]: name must not be empty"
            )));
        }
    }
    let mut names = HashSet::with_capacity(request.tools.len());
    for (i, tool) in request.tools.iter().enumerate() {
        if tool.name.is_empty() {
            return Err(invalid(format_args!("tools[{i}]: name must not be empty")));
        }
        if !names.insert(tool.name.as_str()) {
            return Err(invalid(format_args!(
                "tools[{i}]: duplicate tool name \"{}\"",
                tool.name
            )));
        }
        if !matches!(tool.input_schema, Value::Object(_) | Value::Null) {
            return Err(invalid(format_args!(
                "tools[{i}].input_schema must be a JSON Schema object"
            )));
        }
    }
    if let Some(t) = request.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(invalid(format_args!(
                "temperature must be between 0 and 2, found {t}"
            )));
        }
    }
    if let Some(b) = &request.budget {
        if !(b.limit_usd.is_finite() && b.limit_usd >= 0.0) {
            return Err(invalid("budget.limit_usd must be a number ≥ 0"));
        }
        if !(b.spent_usd.is_finite() && b.spent_usd >= 0.0) {
            return Err(invalid("budget.spent_usd must be a number ≥ 0"));
        }
    }
    if let Some(t) = request.timeout_s {
        if !(t.is_finite() && t > 0.0) {
            return Err(invalid(format_args!(
                "timeout_s must be greater than 0, found {t}"
            )));
        }
    }
    let output_schema = match &request.output_schema {
        None => None,
        Some(schema @ (Value::Object(_) | Value::Bool(_))) => Some(
            CompiledSchema::compile(schema)
                .map_err(|e| invalid(format_args!("output_schema: {e}")))?,
        ),
        Some(_) => return Err(invalid("output_schema must be a JSON Schema object")),
    };
    let group = gateway
        .group(&request.group)
        .ok_or_else(|| InvokeError::UnknownGroup(request.group.clone()))?;
    let max_tokens = match u64::try_from(request.max_tokens) {
        Ok(n) if n > 0 => n,
        _ => group.default_max_tokens.unwrap_or(FALLBACK_MAX_TOKENS),
    };
    let mut timeout = Duration::from_secs(gateway.settings.request_timeout_s);
    if let Some(t) = request
        .timeout_s
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
    {
        timeout = timeout.min(t);
    }
    Ok(Plan::new(
        request,
        metadata,
        &request.group,
        group,
        max_tokens,
        request.temperature.or(group.default_temperature),
        output_schema,
        started + timeout,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::settings::{GatewayFile, Settings};
    use serde_json::json;
    use std::collections::HashMap;

    fn gateway() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            "settings: { request_timeout_s: 60 }\nproviders:\n  - { name: mock, type: mock }\nmodel_groups:\n  - { name: g, models: [mock/a], default_max_tokens: 77, default_temperature: 0.5 }\n",
        )
        .unwrap();
        let config = load(
            &Settings::local(GatewayFile::Path(path)),
            &HashMap::<String, String>::new(),
        )
        .unwrap();
        Gateway::build(config, None).unwrap()
    }

    fn check(gateway: &Gateway, body: Value) -> Result<(u64, Option<f64>, Duration), InvokeError> {
        let bytes = serde_json::to_vec(&body).unwrap();
        let request = decode(&bytes, 1 << 20)?;
        let now = Instant::now();
        let p = plan(gateway, &request, CallMetadata::default(), now)?;
        Ok((p.max_tokens, p.temperature, p.deadline - now))
    }

    fn message(result: Result<(u64, Option<f64>, Duration), InvokeError>) -> (String, String) {
        let e = result.unwrap_err();
        (e.code().to_string(), e.message())
    }

    #[test]
    fn defaults_and_deadline() {
        let g = gateway();
        let ok = json!({"group": "g", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            check(&g, ok).unwrap(),
            (77, Some(0.5), Duration::from_secs(60))
        );
        let given = json!({"group": "g", "max_tokens": 5, "temperature": 0, "timeout_s": 2.5,
            "messages": [{"role": "user", "content": "hi"}], "metadata": {"attempt": "x"}});
        assert_eq!(
            check(&g, given).unwrap(),
            (5, Some(0.0), Duration::from_millis(2500))
        );
        let capped = json!({"group": "g", "max_tokens": -3, "timeout_s": 900, "messages": [{"role": "user"}]});
        assert_eq!(check(&g, capped).unwrap().2, Duration::from_secs(60));
    }

    #[test]
    fn every_rejection_is_precise() {
        let g = gateway();
        let cases = [
            (
                json!({"group": "g", "messages": []}),
                "invalid_request",
                "invalid request: messages must contain at least one message",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "invalid_request",
                "invalid request: group is required",
            ),
            (
                json!({"group": "nope", "messages": [{"role": "user"}]}),
                "unknown_group",
                "model group \"nope\" not found",
            ),
            (
                json!({"group": "g", "messages": [{"role": "tool", "content": "x"}]}),
                "invalid_request",
                "invalid request: messages[0]: a tool message requires tool_call_id",
            ),
            (
                json!({"group": "g", "messages": [{"role": "user"}], "tools": [{"name": "a"}, {"name": "a"}]}),
                "invalid_request",
                "invalid request: tools[1]: duplicate tool name \"a\"",
            ),
            (
                json!({"group": "g", "messages": [{"role": "user"}], "tools": [{"name": ""}]}),
                "invalid_request",
                "invalid request: tools[0]: name must not be empty",
            ),
            (
                json!({"group": "g", "messages": [{"role": "user"}], "tools": [{"name": "a", "input_schema": 3}]}),
                "invalid_request",
                "invalid request: tools[0].input_schema must be a JSON Schema object",
            ),
            (
                json!({"group": "g", "messages": [{"role": "user"}], "temperature": 3}),
                "invalid_request",
                "invalid request: temperature must be between 0 and 2, found 3",
            ),
            (
                json!({"group": "g", "messages": [{"role": "user"}], "budget": {"limit_usd": -1}}),
                "invalid_request",
                "invalid request: budget.limit_usd must be a number ≥ 0",
            ),
            (
                json!({"group": "g", "messages": [{"role": "user"}], "timeout_s": 0}),
                "invalid_request",
                "invalid request: timeout_s must be greater than 0, found 0",
            ),
            (
                json!({"group": "g", "messages": [{"role": "user"}], "output_schema": "x"}),
                "invalid_request",
                "invalid request: output_schema must be a JSON Schema object",
            ),
        ];
        for (body, code, text) in cases {
            assert_eq!(
                message(check(&g, body.clone())),
                (code.to_string(), text.to_string()),
                "{body}"
            );
        }
        let (code, text) = message(check(
            &g,
            json!({"group": "g", "messages": [{"role": "user"}], "output_schema": {"type": "nope"}}),
        ));
        assert_eq!(code, "invalid_request");
        assert!(
            text.starts_with("invalid request: output_schema: "),
            "{text}"
        );
        let (code, _) = message(check(
            &g,
            json!({"group": "g", "messages": [{"role": "robot"}]}),
        ));
        assert_eq!(code, "invalid_request");
        let (code, _) = message(check(
            &g,
            json!({"group": 5, "messages": [{"role": "user"}]}),
        ));
        assert_eq!(code, "invalid_request");
    }

    #[test]
    fn json_errors() {
        for bytes in [
            &b"{\"group\": "[..],
            b"not json",
            b"",
            b"{} trailing",
            b"\xff\xfe",
        ] {
            let e = decode(bytes, 100).unwrap_err();
            assert_eq!(
                e.code(),
                "invalid_json",
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert!(e.message().starts_with("invalid JSON: "));
        }
        assert_eq!(decode(b"[1]", 100).unwrap_err().code(), "invalid_request");
    }
}
