//! Agent runtime benchmark.
//!
//! 1. Overhead per agent turn: legs of two turns (a tool call, then the answer) against a
//!    zero-latency fake gateway and a zero-latency fake MCP server, run one after another. The
//!    turn overhead is the time from the gateway's answer with the tool call leaving the fake to
//!    the next gateway request arriving: everything the runtime does for one turn (decode the
//!    answer, route and execute the tool call over MCP, extend the conversation, encode and send
//!    the next request), plus the loopback hops and the fakes' own HTTP handling.
//! 2. Memory: RSS of the process with 1,000 agent loops waiting on a slow gateway. The gateway
//!    runs in a child process of this binary, so that only the runtime (and the client posting
//!    the invocations) is measured.
//!
//!     cargo run --release -p ktsu-bench --bin bench-runtime [-- --legs 2000 --loops 1000]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ktsu_bench::{number, percentile};
use ktsu_runtime::{Application, Settings, StopHandle};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// Child mode: serve the slow gateway for the memory measurement.
const SERVE_SLOW_PEERS: &str = "--serve-slow-peers";
/// Loops started (and waiting) before the baseline RSS is taken, so that one-time costs
/// (connection pools, lazily built tables, thread arenas) are not charged to the loops.
const WARM_LOOPS: usize = 50;

fn main() -> ExitCode {
    let serve = std::env::args().any(|a| a == SERVE_SLOW_PEERS);
    let result = actix_rt::System::new().block_on(async move {
        if serve {
            serve_slow_peers().await
        } else {
            bench().await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> BenchResult<()> {
    let legs = number("--legs", 2000).max(10);
    let loops = number("--loops", 1000).max(1);
    turn_overhead(legs).await?;
    waiting_memory(loops).await
}

/// Runtime settings for a benchmark: loopback, any port, no orchestrator, this gateway.
fn settings(gateway_url: String) -> Settings {
    let mut settings = Settings::defaults();
    settings.host = "127.0.0.1".into();
    settings.port = 0;
    settings.orchestrator_url = None;
    settings.heartbeat_interval = Duration::ZERO;
    settings.gateway_url = gateway_url;
    settings
}

/// Starts a runtime in this process; returns its URL and stop handle.
async fn start_runtime(settings: Settings) -> BenchResult<(String, StopHandle)> {
    let app = Application::build(settings).await?;
    let url = format!("http://{}", app.local_addr());
    let stop = app.stop_handle();
    actix_rt::spawn(app.run());
    Ok((url, stop))
}

/// A typical invocation: a system prompt, a user message and an output schema; with `tools`,
/// one MCP server at `peers`.
fn invoke_body(run_id: &str, peers: &str, tools: bool) -> Value {
    let mut body = json!({
        "run_id": run_id, "step_id": "classify", "attempt": 1, "agent_name": "bench-agent",
        "workflow": "bench",
        "system": "You are a careful support triage specialist. Read the ticket, look up what you need with the tools, and answer with the category and priority of the ticket.",
        "user_message": "Ticket #4711: the invoice for March was charged twice on my credit card. Please refund one of the charges and tell me when it will arrive.",
        "model": {"group": "standard", "max_tokens": 1024},
        "callback_url": format!("{peers}/runs/{run_id}/steps/classify/complete?attempt=1"),
        "output_schema": {"type": "object", "required": ["answer"],
                          "properties": {"answer": {"type": "string"}, "ktsu_confidence": {"type": "number"}}},
        "tool_servers": []
    });
    if tools {
        body["tool_servers"] = json!([{"name": "kv", "url": format!("{peers}/mcp"), "allowlist": ["kv_*"], "timeout_s": 30}]);
    }
    body
}

async fn post_invoke(client: &awc::Client, runtime: &str, body: &Value) -> BenchResult<()> {
    let response = client
        .post(format!("{runtime}/invoke"))
        .send_json(body)
        .await
        .map_err(|e| format!("invoke: {e}"))?;
    if response.status() != 202 {
        return Err(format!("invoke answered {}", response.status()).into());
    }
    Ok(())
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

// ---------------------------------------------------------------------------------------------
// 1. Overhead per turn

/// What the fake peers saw, per run id.
#[derive(Default)]
struct Timeline {
    /// Gateway answer with the tool call handed to the HTTP layer.
    tool_answer_sent: HashMap<String, Instant>,
    /// The second gateway request (after the tool call) arrived.
    second_request: HashMap<String, Instant>,
    callbacks: HashMap<String, Instant>,
}

#[derive(Clone, Default)]
struct Peers {
    timeline: Arc<Mutex<Timeline>>,
}

impl Peers {
    fn record(&self, update: impl FnOnce(&mut Timeline)) {
        update(&mut self.timeline.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// `(callback, tool answer sent, second request)` once the leg of `run_id` called back.
    fn finished(&self, run_id: &str) -> Option<(Instant, Option<Instant>, Option<Instant>)> {
        let timeline = self.timeline.lock().unwrap_or_else(PoisonError::into_inner);
        let callback = timeline.callbacks.get(run_id).copied()?;
        Some((
            callback,
            timeline.tool_answer_sent.get(run_id).copied(),
            timeline.second_request.get(run_id).copied(),
        ))
    }
}

/// Turn 1: a tool call; turn 2 (after the tool result): the answer.
async fn fake_gateway(peers: web::Data<Peers>, body: web::Bytes) -> HttpResponse {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let run_id = request["run_id"].as_str().unwrap_or("").to_owned();
    let after_tool = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    let reply = |content: &str, tool_calls: Value| {
        json!({"content": content, "model_resolved": "mock/bench", "tokens_in": 120, "tokens_out": 12,
               "cost_usd": 0.0001, "tool_calls": tool_calls, "stop_reason": "end_turn"})
    };
    if after_tool {
        peers.record(|t| {
            t.second_request.insert(run_id, Instant::now());
        });
        return HttpResponse::Ok().json(reply("{\"answer\": \"42\"}", json!([])));
    }
    let response = HttpResponse::Ok().json(reply(
        "",
        json!([{"id": "toolu_1", "name": "kv_get", "arguments": {"key": "a"}}]),
    ));
    peers.record(|t| {
        t.tool_answer_sent.insert(run_id, Instant::now());
    });
    response
}

/// A Streamable HTTP MCP server with one tool, answering in JSON.
async fn fake_mcp(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if req.method() == actix_web::http::Method::DELETE {
        return HttpResponse::Ok().finish();
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = message.get("id").cloned() else {
        return HttpResponse::Accepted().finish();
    };
    let result = match message["method"].as_str() {
        Some("initialize") => json!({"protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}}, "serverInfo": {"name": "bench", "version": "1"}}),
        Some("tools/list") => json!({"tools": [{"name": "kv_get", "description": "Read a key.",
            "inputSchema": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}}]}),
        _ => json!({"content": [{"type": "text", "text": "42"}]}),
    };
    HttpResponse::Ok()
        .insert_header(("Mcp-Session-Id", "bench-session"))
        .json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

async fn fake_callback(peers: web::Data<Peers>, body: web::Bytes) -> HttpResponse {
    let callback: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let run_id = callback["run_id"].as_str().unwrap_or("").to_owned();
    if callback["status"] != "ok" {
        eprintln!(
            "warning: leg {run_id} ended {}: {}",
            callback["status"], callback["error"]
        );
    }
    peers.record(|t| {
        t.callbacks.insert(run_id, Instant::now());
    });
    HttpResponse::Ok().json(json!({"status": "accepted"}))
}

/// The gateway, MCP server and orchestrator fakes on one port (one worker thread).
fn start_peers(peers: Peers) -> BenchResult<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(peers.clone()))
            .app_data(web::PayloadConfig::new(64 << 20))
            .route("/gateway/invoke", web::post().to(fake_gateway))
            .route("/mcp", web::to(fake_mcp))
            .default_service(web::to(fake_callback))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    actix_rt::spawn(server);
    Ok(format!("http://{addr}"))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn turn_overhead(legs: usize) -> BenchResult<()> {
    let peers = Peers::default();
    let peers_url = start_peers(peers.clone())?;
    let (runtime, stop) = start_runtime(settings(format!("{peers_url}/gateway"))).await?;
    let client = client();

    let warmup = legs / 10;
    let mut turn_gaps = Vec::with_capacity(legs);
    let mut leg_times = Vec::with_capacity(legs);
    for i in 0..warmup + legs {
        let run_id = format!("run_{i:016x}");
        let started = Instant::now();
        post_invoke(&client, &runtime, &invoke_body(&run_id, &peers_url, true)).await?;
        let finished = loop {
            if let Some(finished) = peers.finished(&run_id) {
                break finished;
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("leg {run_id} did not call back").into());
            }
            actix_rt::time::sleep(Duration::from_micros(50)).await;
        };
        if i < warmup {
            continue;
        }
        let (callback_at, Some(answer_sent), Some(next_request)) = finished else {
            return Err(format!("leg {run_id} did not make two gateway calls").into());
        };
        turn_gaps.push(next_request.saturating_duration_since(answer_sent));
        leg_times.push(callback_at.saturating_duration_since(started));
    }
    turn_gaps.sort();
    leg_times.sort();
    println!(
        "## Overhead per agent turn ({legs} legs after {warmup} warm-up legs, zero-latency fakes)"
    );
    println!(
        "turn with one tool call (gateway answer -> next gateway request): median {}, p99 {}, max {}",
        ms(percentile(&turn_gaps, 0.5)),
        ms(percentile(&turn_gaps, 0.99)),
        ms(percentile(&turn_gaps, 1.0))
    );
    println!(
        "whole leg (invoke -> callback: MCP discovery, 2 turns, session close, callback): median {}, p99 {}",
        ms(percentile(&leg_times, 0.5)),
        ms(percentile(&leg_times, 0.99))
    );
    stop.stop();
    stop.stopped().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Memory of waiting loops

/// Child mode: a gateway that holds every call for ten minutes (counting them at `/count`) and
/// a callback sink; prints `PORT <n>` once listening.
async fn serve_slow_peers() -> BenchResult<()> {
    let waiting = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        let arrived = Arc::clone(&waiting);
        let counted = Arc::clone(&waiting);
        App::new()
            .route(
                "/gateway/invoke",
                web::post().to(move || {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    async {
                        actix_rt::time::sleep(Duration::from_secs(600)).await;
                        HttpResponse::ServiceUnavailable().finish()
                    }
                }),
            )
            .route(
                "/count",
                web::get().to(move || {
                    let count = counted.load(Ordering::SeqCst);
                    async move { HttpResponse::Ok().body(count.to_string()) }
                }),
            )
            .default_service(web::to(|| async {
                HttpResponse::Ok().json(json!({"status": "accepted"}))
            }))
    })
    .workers(2)
    .backlog(4096)
    .max_connections(100_000)
    .disable_signals()
    .listen(listener)?
    .run();
    println!("PORT {port}");
    server.await?;
    Ok(())
}

/// The child process, killed by PID when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the slow peers in a child process; returns it and its URL.
fn spawn_slow_peers() -> BenchResult<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg(SERVE_SLOW_PEERS)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let child = Child(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .ok_or("the slow peers did not report a port")?
        .parse()?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

fn rss_kib() -> BenchResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}

async fn waiting_count(client: &awc::Client, peers: &str) -> BenchResult<usize> {
    let mut response = client
        .get(format!("{peers}/count"))
        .send()
        .await
        .map_err(|e| format!("count: {e}"))?;
    let body = response.body().await.map_err(|e| format!("count: {e}"))?;
    Ok(std::str::from_utf8(&body)?.trim().parse()?)
}

/// Waits until `expected` gateway calls are held by the slow gateway.
async fn wait_for_waiting(client: &awc::Client, peers: &str, expected: usize) -> BenchResult<()> {
    let started = Instant::now();
    loop {
        let waiting = waiting_count(client, peers).await?;
        if waiting >= expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("only {waiting} of {expected} loops reached the gateway").into());
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Let every leg settle on its await point.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// Starts `count` loops (run ids from `first`) and waits until all of them wait on the gateway.
async fn start_loops(
    client: &awc::Client,
    runtime: &str,
    peers: &str,
    first: usize,
    count: usize,
) -> BenchResult<()> {
    for i in first..first + count {
        let body = invoke_body(&format!("run_{i:016x}"), peers, false);
        post_invoke(client, runtime, &body).await?;
    }
    wait_for_waiting(client, peers, first + count).await
}

async fn waiting_memory(loops: usize) -> BenchResult<()> {
    let (child, peers) = spawn_slow_peers()?;
    let mut settings = settings(format!("{peers}/gateway"));
    settings.max_concurrency = u32::try_from(loops + WARM_LOOPS)?;
    settings.max_queue = 0;
    let (runtime, _stop) = start_runtime(settings).await?;
    let client = client();

    let idle = rss_kib()?;
    start_loops(&client, &runtime, &peers, 0, WARM_LOOPS).await?;
    let before = rss_kib()?;
    start_loops(&client, &runtime, &peers, WARM_LOOPS, loops).await?;
    let after = rss_kib()?;
    let per_loop_kib = after.saturating_sub(before) as f64 / loops as f64;
    println!("## Memory of waiting loops ({loops} loops waiting on a slow gateway)");
    println!(
        "RSS: idle {idle} KiB, with {WARM_LOOPS} waiting loops {before} KiB, with {} waiting loops {after} KiB",
        WARM_LOOPS + loops
    );
    println!(
        "per waiting loop: {per_loop_kib:.1} KiB ({:.1} KB)",
        per_loop_kib * 1.024
    );
    // The loops are still waiting: the process ends with them (the gateway child first).
    drop(child);
    Ok(())
}
