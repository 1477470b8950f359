//! Streamable HTTP cases real servers rarely produce, on wiremock (runtime-gateway.md §4.2–§4.9).

use crate::{client, endpoint};
use ktsu_runtime::mcp::{CallOutcome, McpErrorKind, McpSession, TransportKind};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

type Handler = dyn Fn(&Value, &Request) -> ResponseTemplate + Send + Sync;

/// Answers each POST with `handler(message, request)`; DELETE with 200.
struct Scripted(Arc<Handler>);

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "DELETE" {
            return ResponseTemplate::new(200);
        }
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(message) => (self.0)(&message, request),
            Err(_) => ResponseTemplate::new(400),
        }
    }
}

async fn mock_mcp(
    handler: impl Fn(&Value, &Request) -> ResponseTemplate + Send + Sync + 'static,
) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/mcp"))
        .respond_with(Scripted(Arc::new(handler)))
        .mount(&server)
        .await;
    server
}

fn result(message: &Value, result: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("Mcp-Session-Id", "sess-1")
        .set_body_json(json!({"jsonrpc": "2.0", "id": message["id"], "result": result}))
}

fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.into_bytes(), "text/event-stream")
}

fn initialize_result(version: &str) -> Value {
    json!({"protocolVersion": version, "capabilities": {}, "serverInfo": {"name": "edge", "version": "0"}})
}

/// The standard handshake; everything else goes to `rest`.
fn with_handshake(
    rest: impl Fn(&Value, &Request) -> ResponseTemplate + Send + Sync + 'static,
) -> impl Fn(&Value, &Request) -> ResponseTemplate + Send + Sync + 'static {
    move |message, request| match message["method"].as_str() {
        Some("initialize") => result(message, initialize_result("2025-06-18")),
        Some(method) if message.get("id").is_none() && method.starts_with("notifications/") => {
            ResponseTemplate::new(202)
        }
        _ => rest(message, request),
    }
}

fn url(server: &MockServer) -> String {
    format!("{}/mcp", server.uri())
}

async fn posted(server: &MockServer) -> Vec<(Value, Request)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| (serde_json::from_slice(&r.body).unwrap(), r))
        .collect()
}

const T: Duration = Duration::from_secs(5);

#[actix_rt::test]
async fn headers_params_and_persistent_id_on_every_request() {
    let server = mock_mcp(with_handshake(|message, _| {
        result(message, json!({"tools": []}))
    }))
    .await;
    let client = client();
    let spec = json!({"auth_header": "X-Api-Key", "auth_value": "key-9", "persistent_id": "p-7",
                      "params": {"region": "eu", "api_key": "s"}});
    let mut session = McpSession::connect(&client, endpoint(&url(&server), spec, T))
        .await
        .unwrap();
    session.list_tools().await.unwrap();
    session.close("done").await;
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        4,
        "initialize, initialized, tools/list, DELETE"
    );
    for (index, request) in requests.iter().enumerate() {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header("x-api-key").as_deref(), Some("key-9"), "{index}");
        assert!(header("user-agent").unwrap().starts_with("ktsu-runtime/"));
        assert_eq!(request.url.query(), Some("persistentId=p-7"), "{index}");
        if index == 0 {
            assert!(
                header("mcp-protocol-version").is_none(),
                "none on initialize"
            );
            assert!(header("mcp-session-id").is_none());
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(body["id"], 1);
            assert_eq!(body["params"]["protocolVersion"], "2025-06-18");
            assert_eq!(body["params"]["capabilities"], json!({}));
            assert_eq!(body["params"]["clientInfo"]["name"], "ktsu");
            assert_eq!(
                body["params"]["config"],
                json!({"api_key": "s", "region": "eu"})
            );
        } else {
            assert_eq!(
                header("mcp-protocol-version").as_deref(),
                Some("2025-06-18"),
                "{index}"
            );
            assert_eq!(
                header("mcp-session-id").as_deref(),
                Some("sess-1"),
                "{index}"
            );
        }
        if request.method.as_str() == "POST" {
            assert_eq!(header("content-type").as_deref(), Some("application/json"));
            assert_eq!(
                header("accept").as_deref(),
                Some("application/json, text/event-stream")
            );
        }
    }
    assert_eq!(requests[3].method.as_str(), "DELETE");
    let ids: Vec<Value> = requests[..3]
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids, [json!(1), Value::Null, json!(2)]);
}

/// Notifications and a server ping arrive on the response stream before the response.
#[actix_rt::test]
async fn notifications_and_pings_before_the_response() {
    let server = mock_mcp(with_handshake(|message, _| {
        if message["method"] == "tools/call" {
            let id = &message["id"];
            sse(format!(
                ": comment\n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\n\n\
                 data: {{\"jsonrpc\":\"2.0\",\"id\":\"srv-ping\",\"method\":\"ping\"}}\n\n\
                 data: {{\"jsonrpc\":\"2.0\",\"id\":\"srv-sample\",\"method\":\"sampling/createMessage\",\"params\":{{}}}}\n\n\
                 data: not json\n\n\
                 data: {{\"jsonrpc\":\"2.0\",\"id\":999,\"result\":{{}}}}\n\n\
                 data: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"streamed\"}}]}}}}\n\n"
            ))
        } else if message.get("method").is_none() {
            ResponseTemplate::new(202)
        } else {
            result(message, json!({"tools": [{"name": "t"}]}))
        }
    }))
    .await;
    let client = client();
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let outcome = session.call_tool("t", &json!({}), 1000).await.unwrap();
    match outcome {
        CallOutcome::Result(result) => assert_eq!(result.text, "streamed"),
        other => panic!("{other:?}"),
    }
    let answers: Vec<Value> = posted(&server)
        .await
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| m.get("method").is_none())
        .collect();
    assert_eq!(
        answers,
        [
            json!({"jsonrpc": "2.0", "id": "srv-ping", "result": {}}),
            json!({"jsonrpc": "2.0", "id": "srv-sample", "error": {"code": -32601, "message": "Method not found"}})
        ]
    );
}

#[actix_rt::test]
async fn batched_json_answers() {
    let server = mock_mcp(with_handshake(|message, _| {
        ResponseTemplate::new(200).set_body_json(json!([
            {"jsonrpc": "2.0", "method": "notifications/message", "params": {}},
            {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": [{"name": "batched"}]}}
        ]))
    }))
    .await;
    let client = client();
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let tools = session.list_tools().await.unwrap();
    assert_eq!(tools[0].name, "batched");
}

/// 404 on a session: re-initialize once and resend; a second 404 in a row fails.
#[actix_rt::test]
async fn session_expiry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let server = mock_mcp(with_handshake(move |message, _| {
        if message["method"] == "tools/call" && seen.fetch_add(1, Ordering::SeqCst) == 0 {
            return ResponseTemplate::new(404);
        }
        result(
            message,
            json!({"content": [{"type": "text", "text": "after renewal"}]}),
        )
    }))
    .await;
    let client = client();
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let outcome = session.call_tool("t", &json!({}), 1000).await.unwrap();
    assert!(
        matches!(outcome, CallOutcome::Result(ref r) if r.text == "after renewal"),
        "{outcome:?}"
    );
    let methods: Vec<String> = posted(&server)
        .await
        .into_iter()
        .map(|(m, _)| m["method"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "notifications/initialized",
            "tools/call",
            "initialize",
            "notifications/initialized",
            "tools/call"
        ]
    );

    let always = server_always_404().await;
    let mut session = McpSession::connect(&client, endpoint(&url(&always), json!({}), T))
        .await
        .unwrap();
    let err = session.list_tools().await.unwrap_err();
    assert_eq!(err.kind, McpErrorKind::SessionExpired);
    assert_eq!(
        err.to_string(),
        "mcp_session_expired: tools/list: session expired twice"
    );
}

async fn server_always_404() -> MockServer {
    mock_mcp(with_handshake(|_, _| ResponseTemplate::new(404))).await
}

/// A server that never answers: the request times out, `notifications/cancelled` follows.
#[actix_rt::test]
async fn hanging_server_hits_the_timeout() {
    let server = mock_mcp(with_handshake(|message, _| {
        if message["method"] == "tools/call" {
            result(message, json!({"content": []})).set_delay(Duration::from_secs(30))
        } else {
            result(message, json!({"tools": []}))
        }
    }))
    .await;
    let client = client();
    let mut session = McpSession::connect(
        &client,
        endpoint(&url(&server), json!({"timeout_s": 0.3}), T),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let outcome = session.call_tool("t", &json!({}), 1000).await.unwrap();
    assert_eq!(outcome, CallOutcome::TimedOut(Duration::from_millis(300)));
    assert!(started.elapsed() < Duration::from_secs(3));
    let cancelled: Vec<Value> = posted(&server)
        .await
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| m["method"] == "notifications/cancelled")
        .collect();
    assert_eq!(
        cancelled.len(),
        1,
        "{:?}",
        posted(&server)
            .await
            .into_iter()
            .map(|(m, _)| m)
            .collect::<Vec<_>>()
    );
    assert_eq!(cancelled[0]["params"]["requestId"], 2);
    assert_eq!(cancelled[0]["params"]["reason"], "request timed out");

    // tools/list timing out is an error (discovery fails with mcp_timeout).
    let slow_list = server_slow_list().await;
    let mut session = McpSession::connect(
        &client,
        endpoint(&url(&slow_list), json!({"timeout_s": 0.3}), T),
    )
    .await
    .unwrap();
    let err = session.list_tools().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "mcp_timeout: tools/list: no response within 0.3 s"
    );
}

async fn server_slow_list() -> MockServer {
    mock_mcp(with_handshake(|message, _| {
        result(message, json!({"tools": []})).set_delay(Duration::from_secs(30))
    }))
    .await
}

#[actix_rt::test]
async fn initialize_failures() {
    let client = client();
    let cases: Vec<(ResponseTemplate, McpErrorKind, &str)> = vec![
        (
            ResponseTemplate::new(401),
            McpErrorKind::Unauthorized,
            "mcp_unauthorized: initialize: server returned 401",
        ),
        (
            ResponseTemplate::new(403),
            McpErrorKind::Unauthorized,
            "mcp_unauthorized: initialize: server returned 403",
        ),
        (
            ResponseTemplate::new(500),
            McpErrorKind::HttpStatus,
            "mcp_http_status: initialize: server returned 500",
        ),
    ];
    for (template, kind, text) in cases {
        let server = MockServer::start().await;
        Mock::given(path("/mcp"))
            .respond_with(template)
            .mount(&server)
            .await;
        let err = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
            .await
            .err()
            .unwrap();
        assert_eq!((err.kind, err.to_string().as_str()), (kind, text));
    }

    // An unknown version: the session is closed (DELETE) and discovery fails.
    let server = mock_mcp(|message, _| result(message, initialize_result("2099-01-01"))).await;
    let err = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "mcp_unsupported_version: server chose protocol 2099-01-01"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.last().unwrap().method.as_str(), "DELETE");

    // A JSON-RPC error other than "method not found".
    let server = server_with_error(-32603).await;
    let err = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "mcp_rpc_error: initialize error -32603: boom"
    );

    // A session id HTTP allows but MCP does not (a space).
    let server = mock_mcp(|message, _| {
        result(message, initialize_result("2025-06-18"))
            .insert_header("Mcp-Session-Id", "has space")
    })
    .await;
    let err = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind, McpErrorKind::Protocol);
}

async fn server_with_error(code: i64) -> MockServer {
    mock_mcp(move |message, _| {
        if message["method"] == "initialize" {
            ResponseTemplate::new(200).set_body_json(
                json!({"jsonrpc": "2.0", "id": message["id"], "error": {"code": code, "message": "boom"}}),
            )
        } else {
            result(message, json!({"tools": [{"name": "plain_tool"}]}))
        }
    })
    .await
}

/// "Method not found" to initialize: a plain JSON-RPC tool server (no session, no
/// `notifications/initialized`, version 2024-11-05).
#[actix_rt::test]
async fn plain_json_rpc_servers() {
    let server = server_with_error(-32601).await;
    let client = client();
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    assert_eq!(session.protocol_version(), "2024-11-05");
    assert!(!session.has_session());
    assert_eq!(session.list_tools().await.unwrap()[0].name, "plain_tool");
    session.close("done").await;
    let requests = server.received_requests().await.unwrap();
    let methods: Vec<String> = requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .map(|m| m["method"].as_str().unwrap_or("").to_owned())
                .unwrap_or_else(|_| r.method.to_string())
        })
        .collect();
    assert_eq!(
        methods,
        ["initialize", "tools/list"],
        "no initialized, no DELETE"
    );
    assert_eq!(
        requests[1].headers.get("mcp-protocol-version").unwrap(),
        "2024-11-05"
    );
}

#[actix_rt::test]
async fn protocol_violations() {
    let client = client();
    // 202 to a request.
    let server = mock_mcp(with_handshake(|_, _| ResponseTemplate::new(202))).await;
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let err = session.list_tools().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "mcp_protocol: tools/list: 202 without a response"
    );

    // The event stream ends before the response.
    let server = mock_mcp(with_handshake(|_, _| {
        sse("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n".into())
    }))
    .await;
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let err = session.call_tool("t", &json!({}), 100).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "mcp_stream_closed: tools/call: stream closed before response"
    );

    // A result without `tools`.
    let server = mock_mcp(with_handshake(|message, _| {
        result(message, json!({"items": []}))
    }))
    .await;
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let err = session.list_tools().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "mcp_protocol: parse tools/list response: missing field tools"
    );

    // A cursor that repeats.
    let server = mock_mcp(with_handshake(|message, _| {
        result(
            message,
            json!({"tools": [{"name": "x"}], "nextCursor": "again"}),
        )
    }))
    .await;
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let err = session.list_tools().await.unwrap_err();
    assert_eq!(err.kind, McpErrorKind::Protocol);

    // A JSON-RPC error to tools/list.
    let server = mock_mcp(with_handshake(|message, _| {
        ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "id": message["id"],
            "error": {"code": -32603, "message": "internal error"}}))
    }))
    .await;
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    let err = session.list_tools().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "mcp_rpc_error: tools/list error -32603: internal error"
    );
    // …and to tools/call: the model sees it.
    let outcome = session.call_tool("t", &json!({}), 100).await.unwrap();
    assert!(
        matches!(outcome, CallOutcome::RpcError(ref e) if e.code == -32603),
        "{outcome:?}"
    );
}

/// Two pages, then the last.
#[actix_rt::test]
async fn pagination() {
    let server = mock_mcp(with_handshake(|message, _| {
        match message["params"]["cursor"].as_str() {
            None => result(
                message,
                json!({"tools": [{"name": "a"}, {"name": "b"}], "nextCursor": "p2"}),
            ),
            Some("p2") => result(message, json!({"tools": [{"name": "c"}], "nextCursor": ""})),
            Some(_) => ResponseTemplate::new(500),
        }
    }))
    .await;
    let client = client();
    let mut session = McpSession::connect(&client, endpoint(&url(&server), json!({}), T))
        .await
        .unwrap();
    assert_eq!(session.transport(), TransportKind::Streamable);
    let tools = session.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let lists: Vec<Value> = posted(&server)
        .await
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| m["method"] == "tools/list")
        .collect();
    assert!(
        lists[0].get("params").is_none(),
        "the first page has no params"
    );
    assert_eq!(lists[1]["params"], json!({"cursor": "p2"}));
}
