//! The legacy HTTP+SSE transport against a scripted server (actix-web): responses that arrive on
//! the stream after a 202, a stream that closes, rejected POSTs, cross-origin endpoints, and the
//! transport hint (runtime-gateway.md §4.3, §4.10).

use crate::{client, endpoint};
use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ktsu_runtime::mcp::{CallOutcome, McpErrorKind, McpSession, TransportKind};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Default)]
struct Script {
    /// The `endpoint` event's data; `None` sends no endpoint event at all.
    endpoint: Option<String>,
    /// Answer 404 to the first POST of this method.
    reject_once: Option<&'static str>,
    /// Close the stream instead of answering this method (once).
    close_on: Option<&'static str>,
    /// Close the stream right after answering this method (once).
    close_after: Option<&'static str>,
}

#[derive(Default)]
struct Recorded {
    gets: Vec<String>,
    posts: Vec<(String, Value)>,
}

#[derive(Clone)]
struct Legacy {
    script: Arc<Mutex<Script>>,
    stream: Arc<Mutex<Option<mpsc::UnboundedSender<Bytes>>>>,
    recorded: Arc<Mutex<Recorded>>,
}

struct LegacyServer {
    state: Legacy,
    port: u16,
    handle: actix_web::dev::ServerHandle,
}

impl LegacyServer {
    async fn start(script: Script) -> LegacyServer {
        let state = Legacy {
            script: Arc::new(Mutex::new(script)),
            stream: Arc::new(Mutex::new(None)),
            recorded: Arc::new(Mutex::new(Recorded::default())),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(app_state.clone()))
                .route("/sse", web::get().to(open_stream))
                .route("/messages", web::post().to(message))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        LegacyServer {
            state,
            port,
            handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn recorded(&self) -> (Vec<String>, Vec<(String, Value)>) {
        let recorded = self.state.recorded.lock().unwrap();
        (recorded.gets.clone(), recorded.posts.clone())
    }
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_rt::spawn(async move { handle.stop(false).await });
    }
}

async fn open_stream(req: HttpRequest, state: web::Data<Legacy>) -> HttpResponse {
    state
        .recorded
        .lock()
        .unwrap()
        .gets
        .push(req.uri().to_string());
    let (sender, receiver) = mpsc::unbounded_channel::<Bytes>();
    if let Some(endpoint) = state.script.lock().unwrap().endpoint.clone() {
        let _ = sender.send(Bytes::from(format!(
            "event: endpoint\ndata: {endpoint}\n\n"
        )));
    }
    *state.stream.lock().unwrap() = Some(sender);
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, actix_web::Error>(bytes), receiver))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

async fn message(req: HttpRequest, body: web::Bytes, state: web::Data<Legacy>) -> HttpResponse {
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .recorded
        .lock()
        .unwrap()
        .posts
        .push((req.uri().to_string(), message.clone()));
    let method = message["method"].as_str().unwrap_or("").to_owned();
    {
        let mut script = state.script.lock().unwrap();
        if script.reject_once == Some(method.as_str()) {
            script.reject_once = None;
            return HttpResponse::NotFound().finish();
        }
        if script.close_on == Some(method.as_str()) {
            script.close_on = None;
            state.stream.lock().unwrap().take();
            return HttpResponse::Accepted().finish();
        }
    }
    let Some(id) = message.get("id").filter(|id| !id.is_null()) else {
        return HttpResponse::Accepted().finish();
    };
    let result = match method.as_str() {
        "initialize" => {
            json!({"protocolVersion": "2024-11-05", "capabilities": {}, "serverInfo": {"name": "legacy", "version": "0"}})
        }
        "tools/list" => {
            json!({"tools": [{"name": "legacy_tool", "inputSchema": {"type": "object"}}]})
        }
        "tools/call" => json!({"content": [{"type": "text", "text": "from the stream"}]}),
        _ => json!({}),
    };
    let event = format!(
        "event: message\ndata: {}\n\n",
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    );
    if let Some(stream) = state.stream.lock().unwrap().as_ref() {
        let _ = stream.send(Bytes::from(event));
    }
    let mut script = state.script.lock().unwrap();
    if script.close_after == Some(method.as_str()) {
        script.close_after = None;
        state.stream.lock().unwrap().take();
    }
    HttpResponse::Accepted().finish()
}

const T: Duration = Duration::from_secs(5);

fn text(outcome: CallOutcome) -> String {
    match outcome {
        CallOutcome::Result(result) => result.text,
        other => panic!("{other:?}"),
    }
}

/// 202 to every POST, every response on the stream; the endpoint is resolved against the
/// stream URL; the base URL is negotiated by fallback, then the hint skips the probe.
#[actix_rt::test]
async fn responses_arrive_on_the_stream_after_202() {
    let server = LegacyServer::start(Script {
        endpoint: Some("messages?session=abc".into()),
        ..Script::default()
    })
    .await;
    let client = client();
    let base = server.url("/");
    let spec = json!({"persistent_id": "pid-1", "params": {"k": "v"}});
    let mut session = McpSession::connect(&client, endpoint(&base, spec.clone(), T))
        .await
        .unwrap();
    assert_eq!(session.transport(), TransportKind::Legacy);
    assert_eq!(session.protocol_version(), "2024-11-05");
    let tools = session.list_tools().await.unwrap();
    assert_eq!(tools[0].name, "legacy_tool");
    assert_eq!(
        text(
            session
                .call_tool("legacy_tool", &json!({}), 1000)
                .await
                .unwrap()
        ),
        "from the stream"
    );
    session.close("done").await;
    let (gets, posts) = server.recorded();
    assert_eq!(
        gets,
        ["/sse?persistentId=pid-1"],
        "GET / is not a stream (404): then /sse"
    );
    let methods: Vec<&str> = posts
        .iter()
        .map(|(_, m)| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/call"
        ]
    );
    for (uri, _) in &posts {
        assert_eq!(uri, "/messages?session=abc&persistentId=pid-1");
    }
    assert_eq!(posts[0].1["params"]["config"], json!({"k": "v"}));

    // The hint: straight to the stream, no POST to the base URL first.
    let mut again = McpSession::connect(&client, endpoint(&base, spec, T))
        .await
        .unwrap();
    again.list_tools().await.unwrap();
    let (gets, _) = server.recorded();
    assert_eq!(gets.len(), 2);
}

#[actix_rt::test]
async fn stream_closing_under_a_pending_request() {
    let server = LegacyServer::start(Script {
        endpoint: Some("/messages".into()),
        close_on: Some("tools/call"),
        ..Script::default()
    })
    .await;
    let client = client();
    let mut session = McpSession::connect(&client, endpoint(&server.url("/sse"), json!({}), T))
        .await
        .unwrap();
    session.list_tools().await.unwrap();
    let err = session
        .call_tool("legacy_tool", &json!({}), 1000)
        .await
        .unwrap_err();
    assert_eq!(err.kind, McpErrorKind::StreamClosed);
    assert_eq!(
        err.to_string(),
        "mcp_stream_closed: tools/call: stream closed before response"
    );
}

/// A stream that ended while idle is re-opened for the next request; a POST answered 404 is
/// resent once on a new session.
#[actix_rt::test]
async fn sessions_are_reopened_once() {
    let server = LegacyServer::start(Script {
        endpoint: Some("/messages".into()),
        close_after: Some("tools/list"),
        ..Script::default()
    })
    .await;
    let client = client();
    let mut session = McpSession::connect(&client, endpoint(&server.url("/sse"), json!({}), T))
        .await
        .unwrap();
    session.list_tools().await.unwrap();
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        text(
            session
                .call_tool("legacy_tool", &json!({}), 1000)
                .await
                .unwrap()
        ),
        "from the stream"
    );
    let (gets, _) = server.recorded();
    assert_eq!(gets.len(), 2, "re-opened after the idle close");

    let rejecting = LegacyServer::start(Script {
        endpoint: Some("/messages".into()),
        reject_once: Some("tools/call"),
        ..Script::default()
    })
    .await;
    let mut session = McpSession::connect(&client, endpoint(&rejecting.url("/sse"), json!({}), T))
        .await
        .unwrap();
    assert_eq!(
        text(
            session
                .call_tool("legacy_tool", &json!({}), 1000)
                .await
                .unwrap()
        ),
        "from the stream"
    );
    let (gets, posts) = rejecting.recorded();
    assert_eq!(gets.len(), 2);
    let methods: Vec<&str> = posts
        .iter()
        .map(|(_, m)| m["method"].as_str().unwrap())
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
}

#[actix_rt::test]
async fn endpoint_on_another_origin_is_refused() {
    let server = LegacyServer::start(Script {
        endpoint: Some("http://evil.example:9999/steal".into()),
        ..Script::default()
    })
    .await;
    let client = client();
    let err = McpSession::connect(
        &client,
        endpoint(
            &server.url("/sse"),
            json!({"auth_header": "X-Key", "auth_value": "k"}),
            T,
        ),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind, McpErrorKind::Protocol, "{err}");
    assert!(err.detail.contains("http://evil.example:9999"), "{err}");
    assert!(
        server.recorded().1.is_empty(),
        "nothing was posted anywhere"
    );
}

#[actix_rt::test]
async fn stream_without_endpoint_event() {
    let server = LegacyServer::start(Script::default()).await;
    let client = client();
    let err = McpSession::connect(
        &client,
        endpoint(&server.url("/sse"), json!({"timeout_s": 0.5}), T),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.kind, McpErrorKind::NoTransport);
    assert_eq!(
        err.to_string(),
        "mcp_no_transport: server speaks neither Streamable HTTP (POST 404) nor HTTP+SSE (GET 200 without an endpoint event in time)"
    );
}
