//! Against the official MCP Python SDK (`tests/mcp/server.py`), in streamable-http and sse mode.
//! When the SDK is not installed, each test prints `SKIPPED: <reason>` and returns.

use crate::support::python::{sdk_paginates, PythonServer};
use crate::support::*;
use crate::{client, endpoint};
use ktsu_runtime::mcp::{CallOutcome, McpErrorKind, McpSession, TransportKind};
use serde_json::json;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(15);

fn names(tools: &[ktsu_runtime::mcp::McpTool]) -> Vec<&str> {
    tools.iter().map(|t| t.name.as_str()).collect()
}

fn text(outcome: CallOutcome) -> (String, bool) {
    match outcome {
        CallOutcome::Result(result) => (result.text, result.is_error),
        other => panic!("expected a result, got {other:?}"),
    }
}

#[actix_rt::test]
async fn streamable_http_discovery_and_calls() {
    crate::require_sdk!();
    let server = PythonServer::start("streamable-http", &[]);
    let client = client();
    let url = format!("{}/mcp", server.base_url());
    let mut session = McpSession::connect(
        &client,
        endpoint(&url, json!({"params": {"region": "eu"}}), TIMEOUT),
    )
    .await
    .expect("connects");
    assert_eq!(session.transport(), TransportKind::Streamable);
    assert_eq!(session.protocol_version(), "2025-06-18");
    assert!(session.has_session(), "the SDK issues Mcp-Session-Id");

    let tools = session.list_tools().await.expect("lists");
    for expected in [
        "kv_get",
        "add",
        "explode",
        "read_file",
        "delete_file",
        "slow",
    ] {
        assert!(
            names(&tools).contains(&expected),
            "{expected} in {:?}",
            names(&tools)
        );
    }
    let kv_get = tools.iter().find(|t| t.name == "kv_get").unwrap();
    assert_eq!(kv_get.description, "Read the value stored under a key.");
    assert_eq!(kv_get.input_schema["required"], json!(["key"]));

    // A string result: the text part, plus the SDK's structured `{"result": …}` (not equal to
    // the text once parsed, so it is appended).
    let (kv, is_error) = text(
        session
            .call_tool("kv_get", &json!({"key": "a"}), 100_000)
            .await
            .unwrap(),
    );
    assert!(!is_error);
    assert_eq!(kv, "42\n\n{\"result\":\"42\"}");
    let (sum, _) = text(
        session
            .call_tool("add", &json!({"a": 2, "b": 3}), 100_000)
            .await
            .unwrap(),
    );
    assert!(sum.contains('5'), "{sum}");
    let (failure, is_error) = text(
        session
            .call_tool("explode", &json!({"reason": "boom"}), 100_000)
            .await
            .unwrap(),
    );
    assert!(is_error, "isError is honoured: {failure}");
    match session
        .call_tool("no_such_tool", &json!({}), 100_000)
        .await
        .unwrap()
    {
        CallOutcome::Result(result) => assert!(result.is_error, "{result:?}"),
        CallOutcome::RpcError(error) => assert!(error.code < 0, "{error:?}"),
        other => panic!("unexpected {other:?}"),
    }
    session.close("test finished").await;
}

#[actix_rt::test]
async fn request_timeout_then_the_session_still_works() {
    crate::require_sdk!();
    let server = PythonServer::start("streamable-http", &[]);
    let client = client();
    let url = format!("{}/mcp", server.base_url());
    let mut session =
        McpSession::connect(&client, endpoint(&url, json!({"timeout_s": 0.5}), TIMEOUT))
            .await
            .unwrap();
    session.list_tools().await.unwrap();
    let outcome = session
        .call_tool("slow", &json!({"seconds": 5}), 100_000)
        .await
        .unwrap();
    assert_eq!(outcome, CallOutcome::TimedOut(Duration::from_millis(500)));
    assert!(session.in_flight().is_empty(), "cancelled, not pending");
    let (kv, _) = text(
        session
            .call_tool("kv_get", &json!({"key": "a"}), 100_000)
            .await
            .unwrap(),
    );
    assert!(kv.starts_with("42"));
    session.close("done").await;
}

#[actix_rt::test]
async fn legacy_sse_transport_by_fallback() {
    crate::require_sdk!();
    let server = PythonServer::start("sse", &[]);
    let client = client();
    // The base URL: POST / is refused, GET / is not a stream, GET /sse is.
    let mut session =
        McpSession::connect(&client, endpoint(&server.base_url(), json!({}), TIMEOUT))
            .await
            .expect("falls back to HTTP+SSE");
    assert_eq!(session.transport(), TransportKind::Legacy);
    assert!(["2025-06-18", "2025-03-26", "2024-11-05"].contains(&session.protocol_version()));
    let tools = session.list_tools().await.unwrap();
    assert!(names(&tools).contains(&"kv_get"));
    let (kv, is_error) = text(
        session
            .call_tool("kv_get", &json!({"key": "a"}), 100_000)
            .await
            .unwrap(),
    );
    assert!(kv.starts_with("42") && !is_error, "{kv}");
    let (_, is_error) = text(
        session
            .call_tool("explode", &json!({"reason": "x"}), 100_000)
            .await
            .unwrap(),
    );
    assert!(is_error);
    session.close("done").await;

    // The `/sse` URL itself: POST /sse answers 405, the GET works; later sessions use the hint.
    let url = format!("{}/sse", server.base_url());
    for _ in 0..2 {
        let mut session = McpSession::connect(&client, endpoint(&url, json!({}), TIMEOUT))
            .await
            .unwrap();
        assert_eq!(session.transport(), TransportKind::Legacy);
        session.list_tools().await.unwrap();
        session.close("done").await;
    }
}

#[actix_rt::test]
async fn auth_header_is_required_and_sent() {
    crate::require_sdk!();
    for mode in ["streamable-http", "sse"] {
        let server = PythonServer::start(
            mode,
            &["--auth-header", "X-Api-Key", "--auth-value", "k-interop-1"],
        );
        let client = client();
        let url = match mode {
            "sse" => format!("{}/sse", server.base_url()),
            _ => format!("{}/mcp", server.base_url()),
        };
        let refused = McpSession::connect(&client, endpoint(&url, json!({}), TIMEOUT)).await;
        let err = refused.err().expect("refused without the header");
        if mode == "streamable-http" {
            assert_eq!(err.kind, McpErrorKind::Unauthorized, "{err}");
            assert_eq!(
                err.to_string(),
                "mcp_unauthorized: initialize: server returned 401"
            );
        } else {
            assert_eq!(err.kind, McpErrorKind::Unauthorized, "{mode}: {err}");
        }
        let auth = json!({"auth_header": "X-Api-Key", "auth_value": "k-interop-1"});
        let mut session = McpSession::connect(&client, endpoint(&url, auth, TIMEOUT))
            .await
            .unwrap_or_else(|err| panic!("{mode}: {err}"));
        let tools = session.list_tools().await.unwrap();
        assert!(!tools.is_empty());
        let (kv, _) = text(
            session
                .call_tool("kv_get", &json!({"key": "a"}), 100_000)
                .await
                .unwrap(),
        );
        assert!(kv.starts_with("42"), "{mode}: {kv}");
        session.close("done").await;
    }
}

#[actix_rt::test]
async fn paginated_tools_list() {
    crate::require_sdk!();
    if !sdk_paginates() {
        println!("SKIPPED: the installed mcp SDK has no low-level cursor API (mcp 2.x needed)");
        return;
    }
    let server = PythonServer::start("paginated", &[]);
    let client = client();
    let url = format!("{}/mcp", server.base_url());
    let mut session = McpSession::connect(&client, endpoint(&url, json!({}), TIMEOUT))
        .await
        .unwrap();
    let tools = session.list_tools().await.unwrap();
    assert_eq!(
        names(&tools),
        [
            "page_tool_0",
            "page_tool_1",
            "page_tool_2",
            "page_tool_3",
            "page_tool_4"
        ]
    );
    let (result, _) = text(
        session
            .call_tool("page_tool_3", &json!({"x": "hi"}), 100_000)
            .await
            .unwrap(),
    );
    assert_eq!(result, "page_tool_3(hi)");
    session.close("done").await;
}

/// Through the runtime: the allowlist filters what the model is offered, and a tool call goes
/// to the SDK server and back.
#[actix_rt::test]
async fn runtime_leg_against_the_sdk_server() {
    crate::require_sdk!();
    for mode in ["streamable-http", "sse"] {
        let server = PythonServer::start(mode, &[]);
        let gateway = FakeGateway::start().await;
        let mut sink = CallbackSink::start().await;
        let rt = spawn_runtime(test_settings(&gateway.url())).await;
        let run = run_id();
        let mut body = invoke_body(&run, &sink.callback_url(&run, "step", 1));
        let url = match mode {
            "sse" => format!("{}/sse", server.base_url()),
            _ => format!("{}/mcp", server.base_url()),
        };
        body["tool_servers"] =
            json!([{"name": "files", "url": url, "allowlist": ["kv_get", "read_*"]}]);
        gateway
            .tool_calls(&[
                ("t1", "read_file", json!({"path": "/tmp/x"})),
                ("t2", "delete_file", json!({"path": "/"})),
            ])
            .text("{\"done\": true}");
        rt.invoke(&body).await;
        let callback = sink.next(Duration::from_secs(30)).await.body;
        assert_eq!(callback["status"], "ok", "{mode}: {callback}");
        let requests = gateway.requests().await;
        let offered: Vec<&str> = requests[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(offered, ["kv_get", "read_file"], "{mode}");
        let results = requests[1]["messages"].as_array().unwrap();
        assert!(
            results[3]["content"]
                .as_str()
                .unwrap()
                .starts_with("contents of /tmp/x"),
            "{mode}: {}",
            results[3]
        );
        assert_eq!(results[4]["is_error"], true, "delete_file is not allowed");
        assert!(results[4]["content"]
            .as_str()
            .unwrap()
            .starts_with("Tool \"delete_file\" is not available."));
        assert_eq!(callback["metrics"]["tool_calls"], 1);
    }
}
