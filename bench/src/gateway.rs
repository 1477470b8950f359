//! LLM gateway benchmark: the latency the gateway adds to one LLM call, and its memory.
//!
//! A fake upstream speaking the OpenAI Chat Completions wire format (or Anthropic Messages with
//! `--wire anthropic`) answers every call at once from a fixed body. The same calls are timed
//! two ways, interleaved so that drifts of a shared machine hit both alike:
//!
//! - direct: client → fake upstream, with the very body and headers the gateway sends it (the
//!   first one the gateway forwarded is captured and replayed);
//! - through the gateway: client → `POST /invoke` → gateway → fake upstream.
//!
//! The added latency is the difference of the two distributions at p50 and at p99, first with
//! one client (sequential), then with `--concurrency` clients. The gateway runs in a child
//! process of this binary, with the production defaults of `ktsu start gateway` (one worker per
//! core, JSON logs at `info`, written to /dev/null), so that its RSS is its own: idle (started,
//! no call yet), after the load, and the peak (`VmHWM`).
//!
//!     cargo run --release -p ktsu-bench --bin bench-gateway [-- --requests 5000 --concurrency 32]

use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ktsu_bench::{flag, number, percentile, ChildProcess};
use ktsu_gateway::{Application, GatewayFile, Settings};
use ktsu_shared::logging::{self, LogFormat, LogSettings};
use serde_json::json;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The allocator of the `ktsu` binary, so that the gateway child measures what production runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// Child mode: serve the gateway file that follows.
const SERVE_GATEWAY: &str = "--serve-gateway";
/// The gateway's log filter: the production default of `ktsu start` (cli-and-ops.md §2.2)
/// unless `--log-filter` says otherwise (`warn` shows what the per-call records cost).
const LOG_FILTER: &str = "info,actix_server=warn";

fn main() -> ExitCode {
    let result = match flag(SERVE_GATEWAY) {
        Some(config) => serve_gateway(
            PathBuf::from(config),
            flag("--log-filter").unwrap_or_else(|| LOG_FILTER.into()),
        ),
        None => actix_rt::System::new().block_on(bench()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway (child process)

/// Serves `config` as `ktsu start gateway` would, on 127.0.0.1 and a port chosen by the OS;
/// prints `PORT <n>` once listening.
fn serve_gateway(config: PathBuf, filter: String) -> BenchResult<()> {
    logging::init(&LogSettings {
        service: "gateway".into(),
        format: LogFormat::Json,
        filter,
    })?;
    actix_rt::System::new().block_on(async move {
        let mut settings = Settings::local(GatewayFile::Path(config));
        // One worker per core, as `ktsu start gateway` runs it.
        settings.workers = None;
        let app = Application::build(settings).await?;
        println!("PORT {}", app.local_addr().port());
        std::io::stdout().flush()?;
        app.run().await?;
        Ok(())
    })
}

/// The gateway child, killed by PID when dropped.
struct GatewayProcess {
    child: ChildProcess,
    url: String,
}

impl GatewayProcess {
    fn spawn(config: &Path, log_filter: &str) -> BenchResult<GatewayProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(SERVE_GATEWAY)
            .arg(config)
            .arg("--log-filter")
            .arg(log_filter)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("KTSU_INTERNAL_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let port = line.trim().strip_prefix("PORT ").map(str::parse::<u16>);
        // Built before the check, so that a child that failed is reaped on the way out.
        let mut process = GatewayProcess {
            child: ChildProcess(child),
            url: String::new(),
        };
        match (read, port) {
            (Ok(_), Some(Ok(port))) => {
                process.url = format!("http://127.0.0.1:{port}");
                Ok(process)
            }
            _ => Err("the gateway did not start (run it by hand to see why)".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fake upstream (this process)

/// Which provider wire format the fake upstream speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    OpenAi,
    Anthropic,
}

impl Wire {
    fn path(self) -> &'static str {
        match self {
            Wire::OpenAi => "/v1/chat/completions",
            Wire::Anthropic => "/v1/messages",
        }
    }

    /// A typical short answer with usage.
    fn answer(self) -> Bytes {
        let body = match self {
            Wire::OpenAi => json!({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_767_225_600,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                    "content": "{\"category\":\"billing\",\"priority\":\"high\",\"ktsu_confidence\":0.92}"}}],
                "usage": {"prompt_tokens": 96, "completion_tokens": 21, "total_tokens": 117,
                          "prompt_tokens_details": {"cached_tokens": 0}}
            }),
            Wire::Anthropic => json!({
                "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
                "content": [{"type": "text",
                    "text": "{\"category\":\"billing\",\"priority\":\"high\",\"ktsu_confidence\":0.92}"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 96, "output_tokens": 21,
                          "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
            }),
        };
        Bytes::from(body.to_string())
    }

    /// The gateway file: one provider at the fake upstream, one group with one priced model.
    fn gateway_yaml(self, upstream: &str) -> String {
        let (kind, base_url, model) = match self {
            Wire::OpenAi => ("openai", format!("{upstream}/v1"), "gpt-4o-mini"),
            Wire::Anthropic => ("anthropic", upstream.to_string(), "claude-haiku-4-5"),
        };
        format!(
            "providers:\n  - name: fake\n    type: {kind}\n    max_concurrency: 256\n    config: {{ base_url: \"{base_url}\", api_key: sk-bench-0123456789 }}\nmodel_groups:\n  - {{ name: bench, models: [fake/{model}] }}\n"
        )
    }
}

/// Headers (name, value) and body of one forwarded request.
type ForwardedRequest = (Vec<(String, String)>, Bytes);

/// The first request the gateway forwarded: replayed by the direct client.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Option<ForwardedRequest>>>);

impl Captured {
    fn get(&self) -> Option<ForwardedRequest> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Upstream {
    answer: Bytes,
    captured: Captured,
}

async fn upstream_answer(
    upstream: web::Data<Upstream>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    {
        let mut captured = upstream
            .captured
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if captured.is_none() && !req.headers().contains_key("x-bench-direct") {
            let headers = req
                .headers()
                .iter()
                .filter(|(name, _)| !matches!(name.as_str(), "host" | "content-length" | "date"))
                .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.into())))
                .collect();
            *captured = Some((headers, body));
        }
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(upstream.answer.clone())
}

/// Starts the fake upstream on one worker thread of this process; returns its URL.
fn start_upstream(wire: Wire, captured: Captured) -> BenchResult<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let answer = wire.answer();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(Upstream {
                answer: answer.clone(),
                captured: captured.clone(),
            }))
            .route(wire.path(), web::post().to(upstream_answer))
    })
    .workers(1)
    .backlog(1024)
    .disable_signals()
    .listen(listener)?
    .run();
    actix_rt::spawn(server);
    Ok(format!("http://{addr}"))
}

// ---------------------------------------------------------------------------------------------
// Clients

/// One way of making the call: where to, with which headers and body.
#[derive(Clone)]
struct Target {
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Target {
    async fn call(&self, client: &awc::Client) -> BenchResult<Duration> {
        let mut request = client.post(&self.url);
        for (name, value) in &self.headers {
            request = request.insert_header((name.as_str(), value.as_str()));
        }
        let started = Instant::now();
        let mut response = request
            .send_body(self.body.clone())
            .await
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        let body = response
            .body()
            .limit(1 << 20)
            .await
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        let elapsed = started.elapsed();
        if !response.status().is_success() {
            return Err(format!(
                "POST {} answered {}: {}",
                self.url,
                response.status(),
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        Ok(elapsed)
    }
}

/// A typical agent turn: system prompt, user message, max_tokens, ids and metadata.
fn invoke_body() -> Bytes {
    let body = json!({
        "run_id": "run_4f2a9c1e7b3d5a60", "step_id": "classify", "group": "bench", "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a careful support triage specialist. Read the ticket and answer with the category and priority of the ticket as JSON matching the schema."},
            {"role": "user", "content": "Ticket #4711: the invoice for March was charged twice on my credit card. Please refund one of the charges and tell me when it will arrive."}
        ],
        "metadata": {"agent_name": "triage-agent", "attempt": 1, "turn": 1, "purpose": "turn"}
    });
    Bytes::from(body.to_string())
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// `count` calls one after another, alternating the order of direct and gateway calls.
async fn sequential(
    client: &awc::Client,
    direct: &Target,
    gateway: &Target,
    count: usize,
) -> BenchResult<(Vec<Duration>, Vec<Duration>)> {
    let mut direct_times = Vec::with_capacity(count);
    let mut gateway_times = Vec::with_capacity(count);
    for i in 0..count {
        if i % 2 == 0 {
            direct_times.push(direct.call(client).await?);
            gateway_times.push(gateway.call(client).await?);
        } else {
            gateway_times.push(gateway.call(client).await?);
            direct_times.push(direct.call(client).await?);
        }
    }
    Ok((direct_times, gateway_times))
}

/// `clients` tasks making `per_client` calls each, one after another; every latency, and the
/// calls per second.
async fn concurrent(
    target: &Target,
    clients: usize,
    per_client: usize,
) -> BenchResult<(Vec<Duration>, f64)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let target = target.clone();
            actix_rt::spawn(async move {
                let client = client();
                let mut times = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    times.push(target.call(&client).await.map_err(|e| e.to_string())?);
                }
                Ok::<_, String>(times)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(clients * per_client);
    for task in tasks {
        all.extend(task.await??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((all, rate))
}

// ---------------------------------------------------------------------------------------------
// Figures

fn ms(d: f64) -> String {
    format!("{d:.3} ms")
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints p50 and p99 of both ways and their differences.
fn report(label: &str, mut direct: Vec<Duration>, mut gateway: Vec<Duration>) {
    direct.sort();
    gateway.sort();
    let at = |p: f64| {
        let d = millis(percentile(&direct, p));
        let g = millis(percentile(&gateway, p));
        (d, g, g - d)
    };
    let (d50, g50, a50) = at(0.5);
    let (d99, g99, a99) = at(0.99);
    println!(
        "{label}: direct p50 {} p99 {} | via gateway p50 {} p99 {} | added p50 {} p99 {}",
        ms(d50),
        ms(d99),
        ms(g50),
        ms(g99),
        ms(a50),
        ms(a99)
    );
}

async fn wait_healthy(client: &awc::Client, url: &str) -> BenchResult<()> {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{url}/health")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the gateway did not become healthy".into());
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bench() -> BenchResult<()> {
    let requests = number("--requests", 5000).max(100);
    let clients = number("--concurrency", 32).max(1);
    let rounds = number("--rounds", 3).max(1);
    let per_client = number("--per-client", 300).max(10);
    let wire = match flag("--wire").as_deref() {
        None | Some("openai") => Wire::OpenAi,
        Some("anthropic") => Wire::Anthropic,
        Some(other) => {
            return Err(format!("--wire must be openai or anthropic, not {other}").into())
        }
    };

    let captured = Captured::default();
    let upstream = start_upstream(wire, captured.clone())?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, wire.gateway_yaml(&upstream))?;
    let log_filter = flag("--log-filter").unwrap_or_else(|| LOG_FILTER.into());
    let gateway_process = GatewayProcess::spawn(&config, &log_filter)?;
    let client = client();
    wait_healthy(&client, &gateway_process.url).await?;
    // Let the workers settle before the idle figure.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let (idle_kib, _) = gateway_process.child.memory_kib()?;

    let gateway = Target {
        url: format!("{}/invoke", gateway_process.url),
        headers: vec![("content-type".into(), "application/json".into())],
        body: invoke_body(),
    };
    gateway.call(&client).await?;
    let (mut headers, body) = captured.get().ok_or("the upstream saw no gateway call")?;
    headers.push(("x-bench-direct".into(), "1".into()));
    let direct = Target {
        url: format!("{upstream}{}", wire.path()),
        headers,
        body,
    };

    // Warm-up: connections, allocator arenas, lazily built tables.
    sequential(&client, &direct, &gateway, requests / 10).await?;
    concurrent(&gateway, clients, per_client / 10).await?;
    concurrent(&direct, clients, per_client / 10).await?;

    println!(
        "## LLM gateway added latency ({} wire format, fake upstream answering at once)",
        match wire {
            Wire::OpenAi => "OpenAI",
            Wire::Anthropic => "Anthropic",
        }
    );
    let (d, g) = sequential(&client, &direct, &gateway, requests).await?;
    report(&format!("sequential ({requests} calls each way)"), d, g);

    let mut direct_times = Vec::new();
    let mut gateway_times = Vec::new();
    let (mut direct_rate, mut gateway_rate) = (0.0, 0.0);
    for _ in 0..rounds {
        let (times, rate) = concurrent(&direct, clients, per_client).await?;
        direct_times.extend(times);
        direct_rate += rate / rounds as f64;
        let (times, rate) = concurrent(&gateway, clients, per_client).await?;
        gateway_times.extend(times);
        gateway_rate += rate / rounds as f64;
    }
    report(
        &format!(
            "{clients} concurrent clients ({} calls each way)",
            direct_times.len()
        ),
        direct_times,
        gateway_times,
    );
    println!("throughput: direct {direct_rate:.0} calls/s, via gateway {gateway_rate:.0} calls/s");

    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let (after_kib, peak_kib) = gateway_process.child.memory_kib()?;
    println!("## LLM gateway memory (child process, VmRSS / VmHWM)");
    println!("RSS: idle {idle_kib} KiB, after the load {after_kib} KiB, peak {peak_kib} KiB");
    Ok(())
}
