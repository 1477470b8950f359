//! The HTTP API over real HTTP on 127.0.0.1: health, auth, framework errors, and bad input of
//! every kind — each answered with the specified JSON error while the gateway stays healthy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::http::StatusCode;
use common::{raw_exchange, raw_upstream, request, TestGateway};
use ktsu_shared::secret::Secret;
use serde_json::json;
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MOCK: &str = "providers:\n  - { name: mock, type: mock }\nmodel_groups:\n  - { name: standard, models: [mock/default] }\n";

/// Every error answer: status, code, `retryable`, `x-should-retry`, and a call id in both the
/// header and the body.
fn assert_error(
    answer: &common::Answer,
    status: u16,
    code: &str,
    retryable: bool,
    should_retry: &str,
) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
    assert_eq!(answer.code(), code, "{}", answer.body);
    assert_eq!(
        answer.body["retryable"],
        json!(retryable),
        "{}",
        answer.body
    );
    assert!(answer.body["message"].is_string());
    assert_eq!(answer.header("x-should-retry"), Some(should_retry));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let id = answer.header("x-ktsu-call-id").unwrap();
    assert!(id.starts_with("gw_") && id.len() == 19, "{id}");
    assert_eq!(answer.body["call_id"], id);
}

#[actix_rt::test]
async fn health_routes() {
    let gw = TestGateway::start(MOCK).await;
    let health = gw.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.body,
        json!({"status": "ok", "service": "gateway", "version": ktsu_shared::VERSION})
    );
    assert_eq!(health.header("cache-control"), Some("no-store"));
    let live = gw.get("/health/live").await;
    assert_eq!(
        (live.status, live.body.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let head = gw
        .client
        .head(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);

    let post = gw
        .client
        .post(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers().get("allow").unwrap(), "GET, HEAD");
    let missing = gw.get("/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"], "not_found");
    assert_eq!(missing.body["retryable"], false);
    let get_invoke = gw.get("/invoke").await;
    assert_error(&get_invoke, 405, "method_not_allowed", false, "false");
    assert_eq!(get_invoke.header("allow"), Some("POST"));
    gw.stop().await;
}

#[actix_rt::test]
async fn success_carries_the_call_id() {
    let gw = TestGateway::start(MOCK).await;
    let answer = gw.post(request("standard")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let id = answer.header("x-ktsu-call-id").unwrap();
    assert_eq!(answer.body["call_id"], id);
    assert_eq!(answer.body["content"], r#"{"result":"mock"}"#);
    assert_eq!(answer.body["model_resolved"], "mock/default");
    assert_eq!(answer.body["stop_reason"], "end_turn");
    assert_eq!(answer.body["cost_usd"], 0);
    assert_eq!(answer.body["attempts"][0]["outcome"], "ok");
    assert!(answer.body.get("budget").is_none() && answer.body.get("tool_calls").is_none());
    let again = gw.post(request("standard")).await;
    assert_ne!(
        again.header("x-ktsu-call-id"),
        Some(id),
        "a new id per call"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn internal_token() {
    let gw = TestGateway::start_with(
        MOCK,
        |s| s.internal_token = Some(Secret::new("s3cret-internal-token")),
        &[],
    )
    .await;
    assert_error(
        &gw.post(request("standard")).await,
        401,
        "unauthorized",
        false,
        "false",
    );
    let wrong = gw
        .post_with(request("standard"), &[("authorization", "Bearer nope")])
        .await;
    assert_error(&wrong, 401, "unauthorized", false, "false");
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    let right = gw
        .post_with(
            request("standard"),
            &[("authorization", "Bearer s3cret-internal-token")],
        )
        .await;
    assert_eq!(right.status, StatusCode::OK);
    // Health is never protected; an unauthenticated bad body is still 401, not 400.
    gw.assert_healthy().await;
    assert_eq!(
        gw.post_raw(b"{not json").await.status,
        StatusCode::UNAUTHORIZED
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn bad_input_gets_precise_json_errors() {
    let gw = TestGateway::start(MOCK).await;
    let malformed = gw
        .post_raw(b"{\"group\": \"standard\", \"messages\": [")
        .await;
    assert_error(&malformed, 400, "invalid_json", false, "false");
    assert!(malformed.body["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON: "));
    assert_error(&gw.post_raw(b"").await, 400, "invalid_json", false, "false");
    let shape = gw
        .post(json!({"group": "standard", "messages": "hello"}))
        .await;
    assert_error(&shape, 400, "invalid_request", false, "false");
    let unknown = gw.post(request("premium")).await;
    assert_error(&unknown, 400, "unknown_group", false, "false");
    assert_eq!(unknown.body["message"], "model group \"premium\" not found");
    let empty = gw.post(json!({"group": "standard", "messages": []})).await;
    assert_error(&empty, 400, "invalid_request", false, "false");
    let tool = gw
        .post(json!({"group": "standard", "messages": [{"role": "tool", "content": "x"}]}))
        .await;
    assert_error(&tool, 400, "invalid_request", false, "false");
    gw.assert_healthy().await;
    gw.stop().await;
}

#[actix_rt::test]
async fn a_20_mb_body_is_refused() {
    let gw = TestGateway::start(MOCK).await;
    let body = vec![b'x'; 20 * 1024 * 1024];
    // Declared length: refused before the body is read.
    let head = format!(
        "POST /invoke HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, text) = raw_exchange(gw.addr, head, body.clone()).await;
    assert!(status.contains(" 413 "), "{status}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["error"], "payload_too_large");
    assert_eq!(json["retryable"], false);
    assert_eq!(
        json["limit_bytes"],
        serde_json::Value::Null,
        "the gateway's own envelope"
    );
    // Chunked, no declared length: refused once the limit is crossed.
    let mut chunked = Vec::new();
    for chunk in body.chunks(1 << 20) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /invoke HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string();
    let (status, text) = raw_exchange(gw.addr, head, chunked).await;
    assert!(status.contains(" 413 "), "{status}");
    assert!(text.contains("payload_too_large"), "{text}");
    gw.assert_healthy().await;
    gw.stop().await;
}

#[actix_rt::test]
async fn a_provider_that_hangs_times_out() {
    let yaml = "providers:\n  - { name: slow, type: mock, timeout_s: 1, config: { latency_ms: 30000 } }\nmodel_groups:\n  - { name: g, models: [slow/x], retry: { max_attempts: 1 } }\n";
    let gw = TestGateway::start(yaml).await;
    let started = Instant::now();
    let answer = gw.post(request("g")).await;
    assert_error(&answer, 504, "provider_timeout", true, "false");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer.body["attempts"][0]["error"], "timeout");
    // A request deadline shorter than the provider timeout: deadline_exceeded.
    let mut short = request("g");
    short["timeout_s"] = json!(0.3);
    assert_error(
        &gw.post(short).await,
        504,
        "deadline_exceeded",
        true,
        "false",
    );
    gw.assert_healthy().await;
    gw.stop().await;

    // A real upstream that accepts the connection and never answers.
    let silent = raw_upstream(4, None, Duration::from_secs(5));
    let yaml = format!(
        "providers:\n  - {{ name: o, type: openai, timeout_s: 1, config: {{ base_url: \"{silent}/v1\", api_key: k }} }}\nmodel_groups:\n  - {{ name: g, models: [o/gpt-4o-mini], retry: {{ max_attempts: 1 }} }}\n"
    );
    let gw = TestGateway::start(&yaml).await;
    let started = Instant::now();
    let answer = gw.post(request("g")).await;
    assert_error(&answer, 504, "provider_timeout", true, "false");
    assert_eq!(answer.body["message"], "upstream timed out after 1 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    gw.assert_healthy().await;
    gw.stop().await;
}

#[actix_rt::test]
async fn a_provider_that_returns_garbage() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>definitely not json", "text/html"),
        )
        .mount(&upstream)
        .await;
    let yaml = format!(
        "providers:\n  - {{ name: o, type: openai, config: {{ base_url: \"{}/v1\", api_key: sk-test-garbage }} }}\nmodel_groups:\n  - {{ name: g, models: [o/gpt-4o-mini], retry: {{ max_attempts: 2, initial_backoff_ms: 1, max_backoff_ms: 2 }} }}\n",
        upstream.uri()
    );
    let gw = TestGateway::start(&yaml).await;
    let answer = gw.post(request("g")).await;
    assert_error(&answer, 502, "provider_error", true, "false");
    assert_eq!(
        answer.body["attempts"].as_array().unwrap().len(),
        2,
        "transient: retried"
    );
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .starts_with("upstream returned 200: undecodable"));
    gw.assert_healthy().await;
    gw.stop().await;

    // Valid JSON of the wrong shape, from the Anthropic side.
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"content": "not blocks"})))
        .mount(&upstream)
        .await;
    let yaml = format!(
        "providers:\n  - {{ name: a, type: anthropic, config: {{ base_url: \"{}\", api_key: k }} }}\nmodel_groups:\n  - {{ name: g, models: [a/claude-haiku-4-5], retry: {{ max_attempts: 1 }} }}\n",
        upstream.uri()
    );
    let gw = TestGateway::start(&yaml).await;
    let answer = gw.post(request("g")).await;
    assert_error(&answer, 502, "provider_error", true, "false");
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .starts_with("upstream returned 200: undecodable response body: "));
    gw.assert_healthy().await;
    gw.stop().await;

    // Bytes that are not HTTP at all.
    let noise = raw_upstream(
        4,
        Some(b"\x00\x01 definitely not HTTP\r\n\r\n"),
        Duration::ZERO,
    );
    let yaml = format!(
        "providers:\n  - {{ name: o, type: openai, config: {{ base_url: \"{noise}/v1\", api_key: k }} }}\nmodel_groups:\n  - {{ name: g, models: [o/gpt-4o-mini], retry: {{ max_attempts: 1 }} }}\n"
    );
    let gw = TestGateway::start(&yaml).await;
    let answer = gw.post(request("g")).await;
    assert_error(&answer, 502, "provider_error", true, "false");
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .starts_with("http request failed: "),
        "{}",
        answer.body
    );
    assert_eq!(answer.body["attempts"][0]["error"], "transient");
    gw.assert_healthy().await;
    gw.stop().await;
}

#[actix_rt::test]
async fn secrets_never_reach_an_error_body() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key sk-ant-live-VERYSECRET"}
        })))
        .mount(&upstream)
        .await;
    let yaml = format!(
        "env:\n  - {{ name: ANTHROPIC_API_KEY, secret: true }}\nproviders:\n  - {{ name: a, type: anthropic, config: {{ api_key: \"{{{{ env.ANTHROPIC_API_KEY }}}}\", base_url: \"{}\" }} }}\nmodel_groups:\n  - {{ name: g, models: [a/claude-haiku-4-5] }}\n",
        upstream.uri()
    );
    let gw = TestGateway::start_with(
        &yaml,
        |_| {},
        &[("ANTHROPIC_API_KEY", "sk-ant-live-VERYSECRET")],
    )
    .await;
    let answer = gw.post(request("g")).await;
    assert_error(&answer, 502, "provider_error", false, "false");
    let text = answer.body.to_string();
    assert!(!text.contains("VERYSECRET"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    // The key was sent upstream, as a header.
    let sent = &upstream.received_requests().await.unwrap()[0];
    assert_eq!(
        sent.headers.get("x-api-key").unwrap(),
        "sk-ant-live-VERYSECRET"
    );
    gw.stop().await;
}
