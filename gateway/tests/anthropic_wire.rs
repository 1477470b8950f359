//! The Anthropic Messages adapter against a wiremock stand-in of the API: the exact outbound
//! request, the mapping of answers, and of error answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::http::StatusCode;
use common::{request, TestGateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RETRY: &str = "settings:\n  retry: { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 20, multiplier: 2.0, max_retry_after_s: 30 }\n";

fn gateway_yaml(base_url: &str, models: &str, extra_provider: &str) -> String {
    format!(
        "{RETRY}env:\n  - {{ name: ANTHROPIC_API_KEY, secret: true }}\nproviders:\n  - name: a\n    type: anthropic\n    timeout_s: 1\n    config: {{ api_key: \"{{{{ env.ANTHROPIC_API_KEY }}}}\", base_url: \"{base_url}/\", beta: prompt-caching-2024-07-31 {extra_provider} }}\nmodel_groups:\n  - {{ name: g, models: [{models}], strategy: fallback, default_temperature: 0.3 }}\n"
    )
}

async fn gateway(upstream: &MockServer, models: &str) -> TestGateway {
    TestGateway::start_with(
        &gateway_yaml(&upstream.uri(), models, ""),
        |_| {},
        &[("ANTHROPIC_API_KEY", "sk-ant-test-0001")],
    )
    .await
}

fn message(text: &str, stop: &str) -> Value {
    json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "content": [{"type": "text", "text": text}], "stop_reason": stop,
           "usage": {"input_tokens": 10, "output_tokens": 5}})
}

fn error(status: u16, kind: &str, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"type": "error", "error": {"type": kind, "message": text}}))
}

#[actix_rt::test]
async fn exact_request_and_response_mapping() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "text", "text": "Let me check "},
                {"type": "text", "text": "the ledger."},
                {"type": "tool_use", "id": "toolu_03", "name": "kv_get", "input": {"key": "c"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 1200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 8000, "output_tokens": 500}
        })))
        .mount(&upstream)
        .await;
    let gw = gateway(&upstream, "a/claude-sonnet-4-5-20250929").await;
    let schema =
        json!({"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}});
    let answer = gw
        .post(json!({
            "run_id": "run_0123456789abcdef", "step_id": "triage", "group": "g", "max_tokens": 512,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is a?"},
                {"role": "system", "content": "Answer in JSON."},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "toolu_01", "name": "kv_get", "arguments": {"key": "a"}},
                    {"id": "toolu_02", "name": "kv_get", "arguments": null}]},
                {"role": "tool", "tool_call_id": "toolu_01", "content": "42"},
                {"role": "tool", "tool_call_id": "toolu_02", "content": "no such key", "is_error": true},
                {"role": "user", "content": "Thanks, and c?"}
            ],
            "tools": [
                {"name": "kv_get", "description": "Read a key", "input_schema": schema},
                {"name": "kv_set", "description": "Write a key", "input_schema": {"type": "object"}}
            ],
            "tool_choice": "required",
            "metadata": {"agent_name": "triage-agent", "attempt": 1, "turn": 2, "purpose": "turn"}
        }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let b = &answer.body;
    assert_eq!(b["content"], "Let me check the ledger.");
    assert_eq!(
        b["tool_calls"],
        json!([{"id": "toolu_03", "name": "kv_get", "arguments": {"key": "c"}}])
    );
    assert_eq!(b["stop_reason"], "tool_use");
    assert_eq!(b["model_resolved"], "a/claude-sonnet-4-5-20250929");
    assert_eq!(
        (b["tokens_in"].clone(), b["tokens_out"].clone()),
        (json!(9200), json!(500))
    );
    assert_eq!(
        (
            b["cache_read_tokens"].clone(),
            b["cache_write_tokens"].clone()
        ),
        (json!(8000), json!(0))
    );
    // P1 of runtime-gateway.md §10.3, priced by the built-in table through the dated id.
    assert!(
        (b["cost_usd"].as_f64().unwrap() - 0.0135).abs() < 1e-12,
        "{b}"
    );
    assert_eq!(b["attempts"][0]["http_status"], 200);

    let sent = upstream.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), "/v1/messages");
    let header = |name: &str| {
        sent.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("x-api-key").as_deref(), Some("sk-ant-test-0001"));
    assert_eq!(header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(
        header("anthropic-beta").as_deref(),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert!(header("authorization").is_none());
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 512,
            "system": [{"type": "text", "text": "You are terse.\n\nAnswer in JSON.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is a?"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "kv_get", "input": {"key": "a"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "kv_get", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "42"},
                    {"type": "tool_result", "tool_use_id": "toolu_02", "content": "no such key", "is_error": true},
                    {"type": "text", "text": "Thanks, and c?"}
                ]}
            ],
            "temperature": 0.3,
            "tools": [
                {"name": "kv_get", "description": "Read a key", "input_schema": schema},
                {"name": "kv_set", "description": "Write a key", "input_schema": {"type": "object"},
                 "cache_control": {"type": "ephemeral"}}
            ],
            "tool_choice": {"type": "any"}
        })
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn prompt_cache_off_and_plain_answers() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "content": [], "stop_reason": "max_tokens",
            "usage": {"input_tokens": 3, "cache_creation_input_tokens": 6000, "output_tokens": 400}
        })))
        .mount(&upstream)
        .await;
    let yaml = gateway_yaml(
        &upstream.uri(),
        "a/claude-sonnet-4-5",
        ", prompt_cache: \"false\", anthropic_version: 2024-01-01",
    );
    let gw =
        TestGateway::start_with(&yaml, |_| {}, &[("ANTHROPIC_API_KEY", "sk-ant-test-0002")]).await;
    let mut req = request("g");
    req["messages"] = json!([{"role": "system", "content": "S"}, {"role": "user", "content": "u"}]);
    req["temperature"] = json!(1);
    let answer = gw.post(req).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.body["content"], "",
        "an empty content array is a valid answer"
    );
    assert_eq!(answer.body["stop_reason"], "max_tokens");
    assert_eq!(answer.body["tokens_in"], 6003);
    assert_eq!(answer.body["cache_write_tokens"], 6000);
    let sent = &upstream.received_requests().await.unwrap()[0];
    assert_eq!(sent.headers.get("anthropic-version").unwrap(), "2024-01-01");
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["system"], "S");
    assert_eq!(body["temperature"].as_f64(), Some(1.0));
    assert_eq!(
        body["max_tokens"], 1024,
        "no max_tokens and no group default: 1024"
    );
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
    gw.stop().await;
}

#[actix_rt::test]
async fn billing_errors_are_budget_exceeded() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-one"})))
        .respond_with(error(
            400,
            "billing_error",
            "Your credit balance is too low",
        ))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-two"})))
        .respond_with(
            ResponseTemplate::new(402).set_body_json(
                json!({"type": "error", "error": {"type": "x", "message": "pay up"}}),
            ),
        )
        .mount(&upstream)
        .await;
    let gw = gateway(&upstream, "a/claude-one, a/claude-two").await;
    let answer = gw.post(request("g")).await;
    assert_eq!(answer.status.as_u16(), 402, "{}", answer.body);
    assert_eq!(answer.code(), "budget_exceeded");
    assert_eq!(answer.body["retryable"], false);
    assert_eq!(answer.header("x-should-retry"), Some("false"));
    let attempts = answer.body["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        2,
        "billing: no retry, next model: {attempts:?}"
    );
    assert!(attempts.iter().all(|a| a["error"] == "billing"));
    assert_eq!(answer.body["message"], "upstream returned 402: pay up");
    gw.stop().await;
}

#[actix_rt::test]
async fn rate_limit_with_retry_after_is_honoured() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(error(429, "rate_limit_error", "slow down").insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message("ok", "end_turn")))
        .mount(&upstream)
        .await;
    let gw = gateway(&upstream, "a/claude-haiku-4-5").await;
    let started = Instant::now();
    let answer = gw.post(request("g")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
    let attempts = &answer.body["attempts"];
    assert_eq!(
        attempts[0],
        json!({"model": "a/claude-haiku-4-5", "attempt": 1, "outcome": "error", "http_status": 429,
               "duration_ms": attempts[0]["duration_ms"], "error": "transient", "retry_after_ms": 1000})
    );
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["outcome"], "ok");
    // Haiku 4.5: 10 in × $1 + 5 out × $5 per million.
    assert!((answer.body["cost_usd"].as_f64().unwrap() - 0.000035).abs() < 1e-12);
    gw.stop().await;
}

#[actix_rt::test]
async fn overloaded_529_and_5xx_are_retried_then_fall_back() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-busy"})))
        .respond_with(error(529, "overloaded_error", "Overloaded"))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-broken"})))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-fine"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(message("done", "end_turn")))
        .mount(&upstream)
        .await;
    let gw = gateway(&upstream, "a/claude-busy, a/claude-broken, a/claude-fine").await;
    let answer = gw.post(request("g")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["model_resolved"], "a/claude-fine");
    let statuses: Vec<(String, u64)> = answer.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["model"].as_str().unwrap().to_string(),
                a["http_status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("a/claude-busy".into(), 529),
            ("a/claude-busy".into(), 529),
            ("a/claude-broken".into(), 500),
            ("a/claude-broken".into(), 500),
            ("a/claude-fine".into(), 200)
        ]
    );

    // Without a healthy model: 502, retryable, message from the last attempt.
    let only_busy = gateway(&upstream, "a/claude-busy").await;
    let answer = only_busy.post(request("g")).await;
    assert_eq!(answer.status.as_u16(), 502);
    assert_eq!(answer.code(), "provider_error");
    assert_eq!(answer.body["retryable"], true);
    assert_eq!(answer.header("x-should-retry"), Some("false"));
    assert_eq!(answer.body["message"], "upstream returned 529: Overloaded");
    only_busy.stop().await;
    gw.stop().await;
}

#[actix_rt::test]
async fn non_transient_errors() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-nokey"})))
        .respond_with(error(401, "authentication_error", "invalid x-api-key"))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-bad-request"})))
        .respond_with(error(
            400,
            "invalid_request_error",
            "messages: roles must alternate",
        ))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-unused"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(message("never", "end_turn")))
        .mount(&upstream)
        .await;
    let gw = gateway(
        &upstream,
        "a/claude-nokey, a/claude-bad-request, a/claude-unused",
    )
    .await;
    let answer = gw.post(request("g")).await;
    // auth → next candidate; invalid_request → stop at once.
    assert_eq!(answer.status.as_u16(), 502, "{}", answer.body);
    assert_eq!(answer.body["retryable"], false);
    assert_eq!(
        answer.body["message"],
        "upstream returned 400: messages: roles must alternate"
    );
    let errors: Vec<&str> = answer.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors, vec!["auth", "invalid_request"]);
    gw.stop().await;
}

#[actix_rt::test]
async fn timeouts_and_retry_limits() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-slow"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(message("late", "end_turn"))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-no-retry"})))
        .respond_with(error(503, "api_error", "down").insert_header("x-should-retry", "false"))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "claude-far-future"})))
        .respond_with(error(429, "rate_limit_error", "later").insert_header("retry-after", "120"))
        .mount(&upstream)
        .await;
    let slow = gateway(&upstream, "a/claude-slow").await;
    let started = Instant::now();
    let answer = slow.post(request("g")).await;
    assert_eq!(answer.status.as_u16(), 504, "{}", answer.body);
    assert_eq!(answer.code(), "provider_timeout");
    assert_eq!(answer.body["retryable"], true);
    assert_eq!(
        answer.body["attempts"].as_array().unwrap().len(),
        2,
        "timeouts are retried"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    slow.stop().await;

    let limited = gateway(&upstream, "a/claude-no-retry, a/claude-far-future").await;
    let answer = limited.post(request("g")).await;
    assert_eq!(answer.status.as_u16(), 502, "{}", answer.body);
    let models: Vec<&str> = answer.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        vec!["a/claude-no-retry", "a/claude-far-future"],
        "one attempt each"
    );
    limited.stop().await;
}
