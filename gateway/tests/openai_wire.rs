//! The OpenAI Chat Completions adapter against a wiremock stand-in of the API: the exact
//! outbound request, the mapping of answers, and of error answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::http::StatusCode;
use common::{request, TestGateway};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn yaml(base_url: &str, models: &str, extra: &str) -> String {
    format!(
        "settings:\n  retry: {{ max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 20 }}\nproviders:\n  - name: o\n    type: openai\n    timeout_s: 1\n    config: {{ base_url: \"{base_url}/v1\", api_key: sk-proj-test-0001 {extra} }}\nmodel_groups:\n  - {{ name: g, models: [{models}], strategy: fallback }}\n"
    )
}

fn completion(content: Value, finish: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
           "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}})
}

fn error(status: u16, code: Value, text: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(
        json!({"error": {"message": text, "type": "some_type", "param": null, "code": code}}),
    )
}

#[actix_rt::test]
async fn exact_request_and_response_mapping() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-2", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "kv_get", "arguments": "{\"key\":\"b\"}"}}]}}],
            "usage": {"prompt_tokens": 12000, "completion_tokens": 200, "total_tokens": 12200,
                      "prompt_tokens_details": {"cached_tokens": 10240}}
        })))
        .mount(&upstream)
        .await;
    let extra = ", organization: org-123, project: proj_456, max_tokens_param: max_completion_tokens, json_schema_output: \"true\"";
    let gw = TestGateway::start(&yaml(&upstream.uri(), "o/gpt-4o-mini-2024-07-18", extra)).await;
    let answer = gw
        .post(json!({
            "group": "g", "max_tokens": 300, "temperature": 0.7,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Read a"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "name": "kv_get", "arguments": {"key": "a"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "no such key", "is_error": true},
                {"role": "user", "content": "Then b"}
            ],
            "tools": [{"name": "kv_get", "description": "Read a key", "input_schema": {"type": "object", "properties": {"key": {"type": "string"}}}}],
            "output_schema": {"type": "object"}
        }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let b = &answer.body;
    assert_eq!(b["content"], "");
    assert_eq!(
        b["tool_calls"],
        json!([{"id": "call_abc", "name": "kv_get", "arguments": {"key": "b"}}])
    );
    assert_eq!(b["stop_reason"], "tool_use");
    assert_eq!(
        (b["tokens_in"].clone(), b["tokens_out"].clone()),
        (json!(12000), json!(200))
    );
    assert_eq!(
        (
            b["cache_read_tokens"].clone(),
            b["cache_write_tokens"].clone()
        ),
        (json!(10240), json!(0))
    );
    // P3 of runtime-gateway.md §10.3.
    assert!(
        (b["cost_usd"].as_f64().unwrap() - 0.001152).abs() < 1e-12,
        "{b}"
    );

    let sent = &upstream.received_requests().await.unwrap()[0];
    assert_eq!(sent.url.path(), "/v1/chat/completions");
    let header = |name: &str| {
        sent.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer sk-proj-test-0001")
    );
    assert_eq!(header("openai-organization").as_deref(), Some("org-123"));
    assert_eq!(header("openai-project").as_deref(), Some("proj_456"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "gpt-4o-mini-2024-07-18",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Read a"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "kv_get", "arguments": "{\"key\":\"a\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Error: no such key"},
                {"role": "user", "content": "Then b"}
            ],
            "max_completion_tokens": 300,
            "temperature": 0.7,
            "tools": [{"type": "function", "function": {"name": "kv_get", "description": "Read a key",
                       "parameters": {"type": "object", "properties": {"key": {"type": "string"}}}}}]
        }),
        "tools may be called, so no response_format; tool_choice auto is omitted"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn compatible_server_defaults() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion(json!("hi there"), "stop")),
        )
        .mount(&upstream)
        .await;
    let gw = TestGateway::start(&yaml(
        &upstream.uri(),
        "o/qwen2.5:0.5b",
        ", send_temperature: \"false\"",
    ))
    .await;
    let mut req = request("g");
    req["temperature"] = json!(0.2);
    req["tools"] = json!([{"name": "t", "input_schema": {"type": "object"}}]);
    req["tool_choice"] = json!("none");
    let answer = gw.post(req).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["content"], "hi there");
    assert_eq!(answer.body["stop_reason"], "end_turn");
    assert_eq!(answer.body["cost_usd"], 0, "unpriced model");
    let body: Value =
        serde_json::from_slice(&upstream.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        body["max_tokens"], 1024,
        "a non-OpenAI host gets max_tokens"
    );
    assert!(body.get("max_completion_tokens").is_none());
    assert!(body.get("temperature").is_none(), "send_temperature: false");
    assert_eq!(body["tool_choice"], "none");
    gw.stop().await;
}

#[actix_rt::test]
async fn finish_reasons_and_refusals() {
    let upstream = MockServer::start().await;
    for (model, content, finish) in [
        ("len", json!("cut"), "length"),
        ("filter", json!(""), "content_filter"),
    ] {
        Mock::given(method("POST"))
            .and(body_partial_json(json!({"model": model})))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(content, finish)))
            .mount(&upstream)
            .await;
    }
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "refuse"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}
        })))
        .mount(&upstream)
        .await;
    for (model, content, stop) in [
        ("len", "cut", "max_tokens"),
        ("filter", "", "content_filter"),
        ("refuse", "I can't help with that.", "refusal"),
    ] {
        let gw = TestGateway::start(&yaml(&upstream.uri(), &format!("o/{model}"), "")).await;
        let answer = gw.post(request("g")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(
            (
                answer.body["content"].as_str().unwrap(),
                answer.body["stop_reason"].as_str().unwrap()
            ),
            (content, stop)
        );
        gw.stop().await;
    }
}

#[actix_rt::test]
async fn error_answers() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "quota"})))
        .respond_with(error(
            429,
            json!("insufficient_quota"),
            "You exceeded your current quota",
        ))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "limited"})))
        .respond_with(
            error(429, json!(null), "Rate limit reached").insert_header("retry-after-ms", "300"),
        )
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "limited"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(json!("ok"), "stop")))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "down"})))
        .respond_with(error(503, json!(503), "The server is overloaded"))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "spend"})))
        .respond_with(error(
            400,
            json!("billing_hard_limit_reached"),
            "Billing hard limit has been reached",
        ))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "busy"})))
        .respond_with(error(529, json!(null), "Overloaded"))
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "hang"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(json!("late"), "stop"))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"model": "empty"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"choices": []})))
        .mount(&upstream)
        .await;

    let cases: [(&str, u16, &str, bool, usize); 6] = [
        ("quota", 402, "budget_exceeded", false, 1),
        ("spend", 402, "budget_exceeded", false, 1),
        ("down", 502, "provider_error", true, 2),
        ("busy", 502, "provider_error", true, 2),
        ("hang", 504, "provider_timeout", true, 2),
        ("empty", 502, "provider_error", true, 2),
    ];
    for (model, status, code, retryable, attempts) in cases {
        let gw = TestGateway::start(&yaml(&upstream.uri(), &format!("o/{model}"), "")).await;
        let answer = gw.post(request("g")).await;
        assert_eq!(answer.status.as_u16(), status, "{model}: {}", answer.body);
        assert_eq!(answer.code(), code, "{model}");
        assert_eq!(answer.body["retryable"], retryable, "{model}");
        assert_eq!(answer.header("x-should-retry"), Some("false"));
        assert_eq!(
            answer.body["attempts"].as_array().unwrap().len(),
            attempts,
            "{model}"
        );
        gw.assert_healthy().await;
        gw.stop().await;
    }

    let gw = TestGateway::start(&yaml(&upstream.uri(), "o/limited", "")).await;
    let started = Instant::now();
    let answer = gw.post(request("g")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(answer.body["attempts"][0]["retry_after_ms"], 300);
    gw.stop().await;
}
