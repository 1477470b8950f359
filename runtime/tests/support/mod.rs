//! Test support: a runtime on 127.0.0.1:0, a fake gateway (wiremock, speaking the gateway's wire
//! format from a script), a fake MCP server (wiremock, JSON-RPC), a callback sink standing in for
//! the orchestrator (actix-web, restartable on the same port), and the official Python MCP SDK
//! server started by PID.

#![allow(dead_code)]

pub mod python;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ktsu_runtime::{Application, Settings, StopHandle};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

// ---------------------------------------------------------------------------------------------
// Runtime

pub struct TestRuntime {
    pub url: String,
    pub stop: StopHandle,
    pub runtime_id: String,
    pub client: awc::Client,
}

/// Settings for tests: loopback, port 0, no orchestrator, short timeouts.
pub fn test_settings(gateway_url: &str) -> Settings {
    let mut settings = Settings::defaults();
    settings.host = "127.0.0.1".into();
    settings.port = 0;
    settings.orchestrator_url = None;
    settings.gateway_url = gateway_url.trim_end_matches('/').to_owned();
    settings.heartbeat_interval = Duration::ZERO;
    settings.callback_retry = Duration::from_secs(10);
    settings.callback_timeout = Duration::from_secs(5);
    settings.mcp_timeout = Duration::from_secs(10);
    settings.shutdown_grace = Duration::from_secs(5);
    settings
}

pub async fn spawn_runtime(settings: Settings) -> TestRuntime {
    let app = Application::build(settings).await.expect("runtime starts");
    let url = format!("http://{}", app.local_addr());
    let stop = app.stop_handle();
    let runtime_id = app.runtime_id().to_owned();
    actix_rt::spawn(async move {
        let _ = app.run().await;
    });
    TestRuntime {
        url,
        stop,
        runtime_id,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
    }
}

impl TestRuntime {
    /// POSTs `body` (JSON) to `path`; returns status, headers and the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, HashMap<String, String>, Value) {
        self.post_raw(path, body.to_string(), &[]).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> (u16, HashMap<String, String>, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.url))
            .insert_header(("Content-Type", "application/json"));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = request.send_body(body).await.expect("runtime answers");
        let status = response.status().as_u16();
        let headers = header_map(response.headers());
        let bytes = response.body().limit(1 << 20).await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    pub async fn get(&self, path: &str) -> (u16, HashMap<String, String>, Value) {
        let mut response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("runtime answers");
        let status = response.status().as_u16();
        let headers = header_map(response.headers());
        let bytes = response.body().await.expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn invoke(&self, body: &Value) -> Value {
        let (status, _, answer) = self.post("/invoke", body).await;
        assert_eq!(status, 202, "invoke answered {status}: {answer}");
        answer
    }

    pub async fn cancel(
        &self,
        run_id: &str,
        step_id: &str,
        attempt: u32,
        reason: &str,
    ) -> (u16, Value) {
        let (status, _, body) = self
            .post(
                "/cancel",
                &json!({"run_id": run_id, "step_id": step_id, "attempt": attempt, "reason": reason}),
            )
            .await;
        (status, body)
    }
}

fn header_map(headers: &awc::http::header::HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect()
}

/// A unique root run id per call.
pub fn run_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    format!("run_{:016x}", NEXT.fetch_add(1, Ordering::Relaxed) + 0xa000)
}

/// A minimal valid InvokeRequest.
pub fn invoke_body(run_id: &str, callback_url: &str) -> Value {
    json!({
        "run_id": run_id, "step_id": "step", "attempt": 1, "agent_name": "tester",
        "workflow": "wf", "system": "You are a tester.", "user_message": "Do the thing.",
        "model": {"group": "standard", "max_tokens": 256},
        "tool_servers": [], "callback_url": callback_url
    })
}

// ---------------------------------------------------------------------------------------------
// Fake gateway

/// A gateway stand-in: answers `POST /invoke` from a script, in order, and records every request.
pub struct FakeGateway {
    pub server: MockServer,
    script: Arc<Mutex<VecDeque<ResponseTemplate>>>,
}

struct Scripted(Arc<Mutex<VecDeque<ResponseTemplate>>>);

impl Respond for Scripted {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.lock().unwrap().pop_front().unwrap_or_else(|| {
            ResponseTemplate::new(500).set_body_json(json!({
                "error": "internal_error", "message": "test script exhausted", "retryable": false
            }))
        })
    }
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let server = MockServer::start().await;
        let script = Arc::new(Mutex::new(VecDeque::new()));
        Mock::given(method("POST"))
            .and(path("/invoke"))
            .respond_with(Scripted(Arc::clone(&script)))
            .mount(&server)
            .await;
        FakeGateway { server, script }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn push(&self, template: ResponseTemplate) -> &Self {
        self.script.lock().unwrap().push_back(template);
        self
    }

    /// A text reply.
    pub fn text(&self, content: &str) -> &Self {
        self.push(ResponseTemplate::new(200).set_body_json(reply(content, json!([]), "end_turn")))
    }

    /// A text reply that takes `delay` to come (a slow model, or one that never answers in
    /// time).
    pub fn text_after(&self, delay: Duration, content: &str) -> &Self {
        self.push(
            ResponseTemplate::new(200)
                .set_body_json(reply(content, json!([]), "end_turn"))
                .set_delay(delay),
        )
    }

    /// A reply with tool calls `[(id, name, arguments)]`.
    pub fn tool_calls(&self, calls: &[(&str, &str, Value)]) -> &Self {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, args)| json!({"id": id, "name": name, "arguments": args}))
            .collect();
        self.push(ResponseTemplate::new(200).set_body_json(reply(
            "",
            Value::Array(calls),
            "tool_use",
        )))
    }

    /// The bodies of every `/invoke` request so far.
    pub async fn requests(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/invoke")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    pub async fn request_headers(&self) -> Vec<HashMap<String, String>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                r.headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .collect()
    }
}

/// A gateway 200 body.
pub fn reply(content: &str, tool_calls: Value, stop_reason: &str) -> Value {
    json!({
        "content": content, "model_resolved": "mock/test-model", "tokens_in": 100,
        "tokens_out": 20, "cost_usd": 0.001, "tool_calls": tool_calls, "stop_reason": stop_reason,
        "cache_read_tokens": 10, "cache_write_tokens": 0, "call_id": "gw_0000000000000001"
    })
}

// ---------------------------------------------------------------------------------------------
// Fake MCP server (Streamable HTTP, JSON answers)

/// What a fake tool answers: the `result` of `tools/call` for (name, arguments).
pub type ToolFn = Arc<dyn Fn(&str, &Value) -> Value + Send + Sync>;

/// A JSON-RPC MCP server on wiremock: `initialize` (with a session id), `tools/list` with the
/// given tools, `tools/call` through `call`, 202 to notifications, 200 to DELETE.
pub struct FakeMcp {
    pub server: MockServer,
    pub calls: Arc<Mutex<Vec<(String, Value)>>>,
}

struct McpResponder {
    tools: Vec<Value>,
    call: ToolFn,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    delay: Option<Duration>,
}

impl Respond for McpResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "DELETE" {
            return ResponseTemplate::new(200);
        }
        let Ok(message) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400);
        };
        let id = message.get("id").cloned();
        let method = message["method"].as_str().unwrap_or("");
        let Some(id) = id else {
            return ResponseTemplate::new(202);
        };
        let session = ("Mcp-Session-Id", "fake-session-1");
        let result = match method {
            "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                   "serverInfo": {"name": "fake", "version": "1"}}),
            "tools/list" => json!({"tools": self.tools}),
            "tools/call" => {
                let name = message["params"]["name"].as_str().unwrap_or("").to_owned();
                let args = message["params"]["arguments"].clone();
                self.calls
                    .lock()
                    .unwrap()
                    .push((name.clone(), args.clone()));
                let result = (self.call)(&name, &args);
                let template = ResponseTemplate::new(200)
                    .insert_header(session.0, session.1)
                    .set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": result}));
                return match self.delay {
                    Some(delay) => template.set_delay(delay),
                    None => template,
                };
            }
            other => {
                return ResponseTemplate::new(200).set_body_json(json!({
                    "jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": format!("no method {other}")}
                }))
            }
        };
        ResponseTemplate::new(200)
            .insert_header(session.0, session.1)
            .set_body_json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }
}

impl FakeMcp {
    /// `tools`: (name, description); every tool answers `call(name, args)`.
    pub async fn start(tools: &[&str], call: ToolFn) -> FakeMcp {
        Self::start_with_delay(tools, call, None).await
    }

    pub async fn start_with_delay(
        tools: &[&str],
        call: ToolFn,
        delay: Option<Duration>,
    ) -> FakeMcp {
        let server = MockServer::start().await;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let tools = tools
            .iter()
            .map(|name| json!({"name": name, "description": format!("The {name} tool."),
                              "inputSchema": {"type": "object", "properties": {"key": {"type": "string"}}}}))
            .collect();
        Mock::given(path("/mcp"))
            .respond_with(McpResponder {
                tools,
                call,
                calls: Arc::clone(&calls),
                delay,
            })
            .mount(&server)
            .await;
        FakeMcp { server, calls }
    }

    pub fn url(&self) -> String {
        format!("{}/mcp", self.server.uri())
    }

    /// The JSON-RPC methods received, in order (DELETE as `DELETE`).
    pub async fn methods(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                if r.method.as_str() == "DELETE" {
                    "DELETE".to_owned()
                } else {
                    serde_json::from_slice::<Value>(&r.body)
                        .ok()
                        .and_then(|m| m["method"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                }
            })
            .collect()
    }

    pub fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }
}

/// A tool function answering with one text part.
pub fn text_tool(f: impl Fn(&str, &Value) -> String + Send + Sync + 'static) -> ToolFn {
    Arc::new(move |name, args| json!({"content": [{"type": "text", "text": f(name, args)}]}))
}

// ---------------------------------------------------------------------------------------------
// Callback sink (the orchestrator's callback route)

/// One callback the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct SinkScript {
    /// Statuses to answer, in order; then 200.
    statuses: VecDeque<u16>,
    delay: Option<Duration>,
}

/// An HTTP server on 127.0.0.1 that records callbacks (and heartbeats, registrations).
pub struct CallbackSink {
    pub port: u16,
    server: actix_web::dev::ServerHandle,
    received: mpsc::UnboundedReceiver<Received>,
    script: Arc<Mutex<SinkScript>>,
    heartbeat_answers: Arc<Mutex<VecDeque<Value>>>,
    others: Arc<Mutex<Vec<Received>>>,
    arrivals: Arc<Mutex<Vec<Received>>>,
}

impl CallbackSink {
    pub async fn start() -> CallbackSink {
        Self::start_on(0).await
    }

    /// Starts on `port` (0 = any); binding retries briefly so a restart can reuse the port.
    pub async fn start_on(port: u16) -> CallbackSink {
        let listener = {
            let mut attempts = 0;
            loop {
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(listener) => break listener,
                    Err(err) if attempts < 50 => {
                        attempts += 1;
                        let _ = err;
                        actix_rt::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(err) => panic!("cannot bind the callback sink: {err}"),
                }
            }
        };
        let port = listener.local_addr().unwrap().port();
        let (sender, received) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(SinkScript::default()));
        let heartbeat_answers = Arc::new(Mutex::new(VecDeque::new()));
        let others = Arc::new(Mutex::new(Vec::new()));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let state = SinkState {
            sender,
            script: Arc::clone(&script),
            heartbeat_answers: Arc::clone(&heartbeat_answers),
            others: Arc::clone(&others),
            arrivals: Arc::clone(&arrivals),
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::to(sink_handler))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        CallbackSink {
            port,
            server: handle,
            received,
            script,
            heartbeat_answers,
            others,
            arrivals,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A callback URL as the orchestrator builds it.
    pub fn callback_url(&self, run_id: &str, step: &str, attempt: u32) -> String {
        format!(
            "{}/runs/{run_id}/steps/{step}/complete?attempt={attempt}",
            self.url()
        )
    }

    pub fn answer_with(&self, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .statuses
            .extend(statuses.iter().copied());
    }

    pub fn delay(&self, delay: Duration) {
        self.script.lock().unwrap().delay = Some(delay);
    }

    pub fn heartbeat_answer(&self, answer: Value) {
        self.heartbeat_answers.lock().unwrap().push_back(answer);
    }

    /// Heartbeats and registrations received so far.
    pub fn others(&self) -> Vec<Received> {
        self.others.lock().unwrap().clone()
    }

    /// Every callback request as it arrived, answered yet or not (scripted failures and
    /// delayed answers included).
    pub fn arrivals(&self) -> Vec<Received> {
        self.arrivals.lock().unwrap().clone()
    }

    /// The next callback, or a panic after `within`.
    pub async fn next(&mut self, within: Duration) -> Received {
        actix_rt::time::timeout(within, self.received.recv())
            .await
            .unwrap_or_else(|_| panic!("no callback within {within:?}"))
            .expect("sink open")
    }

    /// The next callback if one comes within `within`.
    pub async fn try_next(&mut self, within: Duration) -> Option<Received> {
        actix_rt::time::timeout(within, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

#[derive(Clone)]
struct SinkState {
    sender: mpsc::UnboundedSender<Received>,
    script: Arc<Mutex<SinkScript>>,
    heartbeat_answers: Arc<Mutex<VecDeque<Value>>>,
    others: Arc<Mutex<Vec<Received>>>,
    arrivals: Arc<Mutex<Vec<Received>>>,
}

async fn sink_handler(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SinkState>,
) -> HttpResponse {
    let received = Received {
        path: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    if req.path() == "/heartbeat" || req.path() == "/runtimes/register" {
        let answer = if req.path() == "/heartbeat" {
            state
                .heartbeat_answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| json!({"status": "ok", "cancel": []}))
        } else {
            json!({"status": "registered", "heartbeat_interval_s": 5, "heartbeat_timeout_s": 30})
        };
        state.others.lock().unwrap().push(received);
        return HttpResponse::Ok().json(answer);
    }
    state.arrivals.lock().unwrap().push(received.clone());
    let (status, delay) = {
        let mut script = state.script.lock().unwrap();
        (script.statuses.pop_front().unwrap_or(200), script.delay)
    };
    if let Some(delay) = delay {
        actix_rt::time::sleep(delay).await;
    }
    if (200..300).contains(&status) {
        let _ = state.sender.send(received);
        HttpResponse::Ok().json(json!({"status": "accepted"}))
    } else {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .json(json!({"error": "test", "message": "scripted failure"}))
    }
}
