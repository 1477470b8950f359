//! Failures surfaced with their codes (runtime-gateway.md §3.10, §3.14), and peers that are
//! down or broken: the specified error, no panic, the runtime stays healthy.

use crate::harness::*;
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn gateway_error(status: u16, code: &str, retryable: bool) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-should-retry", "false")
        .set_body_json(json!({"error": code, "message": format!("{code} happened"), "retryable": retryable, "call_id": "gw_1"}))
}

async fn assert_healthy(h: &Harness) {
    let (status, _, health) = h.rt.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["running"], 0);
}

#[actix_rt::test]
async fn gateway_errors_keep_their_codes() {
    let mut h = Harness::start().await;
    let cases = [
        (
            gateway_error(502, "provider_error", true),
            "llm_error",
            "gateway error provider_error: provider_error happened",
        ),
        (
            gateway_error(400, "unknown_group", false),
            "llm_error",
            "gateway error unknown_group: unknown_group happened",
        ),
        (
            gateway_error(402, "budget_exceeded", false),
            "budget_exceeded",
            "gateway error budget_exceeded: budget_exceeded happened",
        ),
        (
            ResponseTemplate::new(500).set_body_string("<html>oops</html>"),
            "llm_error",
            "gateway returned 500",
        ),
        (
            ResponseTemplate::new(200).set_body_string("{\"content\": 5}"),
            "internal_error",
            "",
        ),
    ];
    for (template, code, error) in cases {
        h.gateway.push(template);
        let callback = h.run(&h.body()).await;
        assert_eq!(callback["status"], "failed", "{code}");
        assert_eq!(callback["error_code"], code, "{callback}");
        if code == "internal_error" {
            assert!(
                callback["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("internal error: decode gateway response: "),
                "{callback}"
            );
        } else {
            assert_eq!(callback["error"], error);
        }
    }
    let requests = h.gateway.requests().await;
    assert_eq!(
        requests.len(),
        5,
        "x-should-retry: false and errors without it are not retried"
    );
    assert_healthy(&h).await;
}

#[actix_rt::test]
async fn gateway_error_detail() {
    let mut h = Harness::start().await;
    h.gateway.push(gateway_error(502, "provider_error", false));
    let callback = h.run(&h.body()).await;
    assert_eq!(
        callback["error_detail"],
        json!({"gateway_error": "provider_error", "http_status": 502, "retryable": false})
    );
}

#[actix_rt::test]
async fn gateway_retries_what_it_is_told_to() {
    let mut h = Harness::start().await;
    h.gateway
        .push(
            ResponseTemplate::new(503)
                .insert_header("x-should-retry", "true")
                .insert_header("retry-after", "1")
                .set_body_json(
                    json!({"error": "overloaded", "message": "busy", "retryable": true}),
                ),
        )
        // An older gateway: no header, `retryable: true` in the body.
        .push(
            ResponseTemplate::new(502).set_body_json(
                json!({"error": "provider_error", "message": "x", "retryable": true}),
            ),
        )
        .text("{\"third\": \"time lucky\"}");
    let started = Instant::now();
    let callback = h.run(&h.body()).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After 1 s, then 2 s"
    );
    assert_eq!(h.gateway.requests().await.len(), 3);
    assert_eq!(callback["metrics"]["llm_calls"], 1);
}

#[actix_rt::test]
async fn unreachable_gateway() {
    let placeholder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = placeholder.local_addr().unwrap().port();
    drop(placeholder);
    let sink = CallbackSink::start().await;
    let rt = spawn_runtime(test_settings(&format!("http://127.0.0.1:{port}"))).await;
    let mut h = Harness {
        gateway: FakeGateway::start().await,
        sink,
        rt,
    };
    let started = Instant::now();
    let callback = h.run(&h.body()).await;
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error_code"], "gateway_unreachable");
    assert!(
        callback["error"]
            .as_str()
            .unwrap()
            .starts_with("gateway call: "),
        "{callback}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "connection failures are retried (1 s, 2 s)"
    );
    assert_healthy(&h).await;
}

#[actix_rt::test]
async fn llm_call_timeout() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["timeouts"] = json!({"llm_call_s": 0.2});
    h.gateway.text_after(Duration::from_secs(30), "{}");
    let callback = h.run(&body).await;
    assert_eq!(callback["error_code"], "llm_timeout");
    assert_eq!(callback["error"], "gateway call: timed out after 5.2 s");
    assert_eq!(h.gateway.requests().await[0]["timeout_s"], 0.2);
}

#[actix_rt::test]
async fn unreachable_mcp_server_fails_discovery_without_any_model_call() {
    let mut h = Harness::start().await;
    let placeholder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = placeholder.local_addr().unwrap().port();
    drop(placeholder);
    let mut body = h.body();
    body["tool_servers"] = json!([{"name": "kv", "url": format!("http://127.0.0.1:{port}/mcp")}]);
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error_code"], "tool_discovery_failed");
    assert_eq!(
        callback["error"],
        format!("discover tools from kv: mcp_transport: connect http://127.0.0.1:{port}/mcp: connection refused")
    );
    assert_eq!(
        callback["error_detail"],
        json!({"server": "kv", "mcp_error": "mcp_transport"})
    );
    assert!(h.gateway.requests().await.is_empty());
    assert_healthy(&h).await;
}

#[actix_rt::test]
async fn garbage_speaking_mcp_server() {
    let mut h = Harness::start().await;
    let garbage = MockServer::start().await;
    Mock::given(path("/mcp"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<<<not json at all>>>"))
        .mount(&garbage)
        .await;
    let mut body = h.body();
    body["tool_servers"] = json!([{"name": "junk", "url": format!("{}/mcp", garbage.uri())}]);
    let callback = h.run(&body).await;
    assert_eq!(callback["error_code"], "tool_discovery_failed");
    assert_eq!(callback["error_detail"]["mcp_error"], "mcp_no_transport");
    assert_eq!(
        callback["error"],
        "discover tools from junk: mcp_no_transport: server speaks neither Streamable HTTP (POST 200) nor HTTP+SSE (GET 404)"
    );
    assert_healthy(&h).await;
}

#[actix_rt::test]
async fn broken_tool_call_fails_the_leg() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start(
        &["kv_get"],
        std::sync::Arc::new(|_: &str, _: &serde_json::Value| json!("a string is not a result")),
    )
    .await;
    let mut body = h.body();
    body["tool_servers"] = json!([{"name": "kv", "url": mcp.url()}]);
    h.gateway
        .tool_calls(&[("t1", "kv_get", json!({"key": "a"}))]);
    let callback = h.run(&body).await;
    assert_eq!(callback["error_code"], "tool_call_failed");
    assert_eq!(
        callback["error"],
        "tool call kv_get: mcp_protocol: parse tools/call response: result is not an object"
    );
    assert_eq!(
        callback["error_detail"],
        json!({"server": "kv", "tool": "kv_get", "mcp_error": "mcp_protocol"})
    );
}

/// Cancelling while a tool call is in flight: the server gets notifications/cancelled for it,
/// then the session DELETE; the callback covers the work done.
#[actix_rt::test]
async fn cancel_mid_tool_call_cancels_the_mcp_request() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start_with_delay(
        &["kv_get"],
        text_tool(|_, _| "late".to_owned()),
        Some(Duration::from_secs(30)),
    )
    .await;
    let mut body = h.body();
    body["tool_servers"] = json!([{"name": "kv", "url": mcp.url()}]);
    h.gateway
        .tool_calls(&[("t1", "kv_get", json!({"key": "a"}))]);
    let run = body["run_id"].as_str().unwrap().to_owned();
    h.rt.invoke(&body).await;
    for _ in 0..50 {
        if !mcp.calls().is_empty() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) =
        h.rt.cancel(&run, "step", 1, "run cancelled: operator request")
            .await;
    assert_eq!(status, 200);
    let callback = h.sink.next(WAIT).await.body;
    assert_eq!(callback["status"], "cancelled");
    assert_eq!(
        callback["metrics"]["llm_calls"], 1,
        "the work done is reported"
    );
    assert_eq!(callback["messages"].as_array().unwrap().len(), 3);
    let requests = mcp.server.received_requests().await.unwrap();
    let cancelled: Vec<serde_json::Value> = requests
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter(|m| m["method"] == "notifications/cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["params"]["requestId"], 3);
    assert_eq!(
        cancelled[0]["params"]["reason"],
        "cancelled: run cancelled: operator request"
    );
    assert_eq!(mcp.methods().await.last().unwrap(), "DELETE");
}

/// What a broken server answers to a request with this id.
type Garbage = fn(&serde_json::Value) -> ResponseTemplate;

/// An MCP server that shakes hands properly, then answers `method` with `garbage`.
async fn garbage_after_the_handshake(method: &'static str, garbage: Garbage) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/mcp"))
        .respond_with(move |request: &wiremock::Request| {
            let message: serde_json::Value =
                serde_json::from_slice(&request.body).unwrap_or_default();
            let answer = |result: serde_json::Value| {
                ResponseTemplate::new(200)
                    .set_body_json(json!({"jsonrpc": "2.0", "id": message["id"], "result": result}))
            };
            match message["method"].as_str() {
                _ if request.method.as_str() == "DELETE" => ResponseTemplate::new(200),
                Some(called) if called == method => garbage(&message["id"]),
                Some("initialize") => answer(json!({"protocolVersion": "2025-06-18",
                    "capabilities": {}, "serverInfo": {"name": "junk", "version": "0"}})),
                Some("tools/list") => answer(json!({"tools": [{"name": "kv_get"}]})),
                _ => ResponseTemplate::new(202),
            }
        })
        .mount(&server)
        .await;
    server
}

/// A server that turns to garbage after the handshake, at discovery or at a tool call: the
/// specified cause in the callback, no model call after the failure, the runtime healthy.
#[actix_rt::test]
async fn mcp_server_answering_garbage_mid_session() {
    let mut h = Harness::start().await;
    let cases: [(&str, Garbage, &str, &str); 4] = [
        (
            "tools/list",
            |_| ResponseTemplate::new(200).set_body_raw(b"\x00\xffnot json".to_vec(), "application/json"),
            "tool_discovery_failed",
            "discover tools from junk: mcp_protocol: parse tools/list response: no JSON-RPC response in the body",
        ),
        (
            "tools/list",
            |id| ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": {"tools": "all of them"}})),
            "tool_discovery_failed",
            "discover tools from junk: mcp_protocol: parse tools/list response: missing field tools",
        ),
        (
            "initialize",
            |id| ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": {"hello": "world"}})),
            "tool_discovery_failed",
            "discover tools from junk: mcp_unsupported_version: server chose protocol (none)",
        ),
        (
            "tools/call",
            |_| ResponseTemplate::new(200).set_body_raw(b"data: {{{{\n\n: just noise\n\n".to_vec(), "text/event-stream"),
            "tool_call_failed",
            "tool call kv_get: mcp_stream_closed: tools/call: stream closed before response",
        ),
    ];
    for (method, garbage, code, error) in cases {
        let junk = garbage_after_the_handshake(method, garbage).await;
        let mut body = h.body();
        body["tool_servers"] = json!([{"name": "junk", "url": format!("{}/mcp", junk.uri())}]);
        let calls_before = h.gateway.requests().await.len();
        if method == "tools/call" {
            h.gateway
                .tool_calls(&[("t1", "kv_get", json!({"key": "a"}))]);
        }
        let callback = h.run(&body).await;
        assert_eq!(callback["status"], "failed", "{method}: {callback}");
        assert_eq!(callback["error_code"], code, "{method}");
        assert_eq!(callback["error"], error, "{method}");
        let expected_calls = usize::from(method == "tools/call");
        assert_eq!(
            h.gateway.requests().await.len() - calls_before,
            expected_calls,
            "{method}"
        );
        assert_healthy(&h).await;
    }
}
