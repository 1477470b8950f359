//! Orchestrator benchmark: what the orchestrator itself costs per step, per run and per waiting
//! run, on the memory store and on SQLite.
//!
//! The orchestrator runs in a child process of this binary, started as `ktsu start
//! orchestrator` starts it (settings from flags and environment, one HTTP worker per core, JSON
//! logs at `info` written to /dev/null), so that its RSS is its own. This process holds the
//! load generator and a zero-latency runtime stand-in: a small actix server on 127.0.0.1 that
//! answers every `POST /invoke` with 202 and then posts a valid `ok` callback to the
//! `callback_url` of the invocation, at once or after `--delay`.
//!
//! 1. Per-step overhead: a chain of 50 transform steps, one run after another, each invoked
//!    with `?wait=30`; invoke → complete divided by 50. A one-transform workflow gives the fixed
//!    cost of a run, so that `(chain − one) / 49` is the cost of one more step.
//! 2. One agent step with the zero-latency stand-in: invoke → complete latency and completed
//!    runs per second with 16 and 64 clients, each client invoking with `?wait=30`.
//! 3. 10,000 runs, each waiting 2 s on its agent step (the stand-in holds each callback 2 s):
//!    completion time, errors, and the orchestrator's RSS (idle, peak, after the runs ended), in
//!    `--waves` waves so that a bounded store shows as a plateau.
//!
//! ```text
//! cargo run --release -p ktsu-bench --bin bench-orchestrator
//! cargo run --release -p ktsu-bench --bin bench-orchestrator -- \
//!     [--only chain|agent|concurrent] [--store memory|sqlite] [--chain-runs 300] \
//!     [--runs 4000] [--concurrent 10000] [--waves 2]
//! ```

use actix_web::{web, App, HttpResponse, HttpServer};
use ktsu_bench::{flag, number, percentile, ChildProcess};
use ktsu_shared::logging::{self, LogFormat, LogSettings};
use ktsu_shared::service::settings::Env;
use ktsu_shared::wire::callback::{CallbackPayload, CallbackStatus};
use ktsu_shared::wire::invoke::{InvokeAccepted, InvokeRequest};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The allocator of the `ktsu` binary, so that the orchestrator child measures what production runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// Child mode: serve the orchestrator (flags follow).
const SERVE_ORCHESTRATOR: &str = "--serve-orchestrator";
/// The production default filter of `ktsu start` (cli-and-ops.md §2.2).
const LOG_FILTER: &str = "info,actix_server=warn";
/// Shared by the orchestrator child and the stand-in, as in a deployment with a token.
const INTERNAL_TOKEN: &str = "bench-internal-token-0123456789";
/// Steps of the transform chain.
const CHAIN_STEPS: usize = 50;
/// Simultaneous connections of the stand-in's callback client (one runtime's outbound pool).
const CALLBACK_CONNECTIONS: usize = 256;
/// Repeats of a callback that got no answer or 429/5xx (100 ms, doubling: 3.1 s in all).
const CALLBACK_RETRIES: usize = 5;
/// Simultaneous connections of the load generator while it submits the concurrent runs.
const SUBMIT_CONNECTIONS: usize = 256;

fn main() -> ExitCode {
    let result = if std::env::args().any(|a| a == SERVE_ORCHESTRATOR) {
        serve_orchestrator()
    } else {
        actix_rt::System::new().block_on(bench())
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
// The project

const AGENT: &str = r#"kind: agent
name: worker
model: standard
params:
  schema:
    type: object
    required: [text]
    properties:
      text: { type: string }
prompt:
  system: You classify support tickets. Answer with one JSON object only.
  user: "Classify this ticket: {{ params.text }}"
output:
  schema:
    type: object
    required: [answer]
    properties:
      answer: { type: string }
"#;

const ONE_AGENT: &str = r#"kind: workflow
name: one-agent
params:
  schema:
    type: object
    required: [text]
    properties:
      text: { type: string, minLength: 1 }
pipeline:
  - id: classify
    agent: agents/worker.agent.yaml
    params: { text: "{{ params.text }}" }
"#;

/// A chain of `steps` transforms: the first reads the params, every other one the step before.
/// Each unwraps the previous `{"result": …}` (`map: {expr: result}`), so the data keeps its
/// size along the chain: the figure is orchestration, not data growth.
fn chain_workflow(name: &str, steps: usize) -> String {
    let mut yaml = format!(
        "kind: workflow\nname: {name}\nparams:\n  schema:\n    type: object\n    required: [tickets]\n    properties:\n      tickets: {{ type: array }}\npipeline:\n"
    );
    for i in 0..steps {
        if i == 0 {
            yaml.push_str("  - id: s00\n    transform:\n      inputs: [ { from: \"{{ params.tickets }}\" } ]\n      ops:\n        - filter: { expr: \"score > `0.1`\" }\n");
        } else {
            yaml.push_str(&format!(
                "  - id: s{i:02}\n    transform:\n      inputs: [ {{ from: s{:02} }} ]\n      ops:\n        - map: {{ expr: result }}\n",
                i - 1
            ));
        }
    }
    yaml
}

fn chain_params() -> Value {
    json!({"tickets": [
        {"id": 1, "score": 0.92, "queue": "billing"},
        {"id": 2, "score": 0.35, "queue": "tech"},
        {"id": 3, "score": 0.71, "queue": "billing"},
        {"id": 4, "score": 0.05, "queue": "spam"},
        {"id": 5, "score": 0.64, "queue": "account"}
    ]})
}

fn agent_params() -> Value {
    json!({"text": "The invoice for March was charged twice on my credit card."})
}

fn write_project(dir: &Path) -> BenchResult<()> {
    let files = [
        ("agents/worker.agent.yaml", AGENT.to_string()),
        ("workflows/one-agent.workflow.yaml", ONE_AGENT.to_string()),
        (
            "workflows/chain.workflow.yaml",
            chain_workflow("chain", CHAIN_STEPS),
        ),
        (
            "workflows/chain-one.workflow.yaml",
            chain_workflow("chain-one", 1),
        ),
    ];
    for (path, text) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(full, text)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The orchestrator (child process)

/// Serves the orchestrator as `ktsu start orchestrator` would; prints `PORT <n>` once ready.
fn serve_orchestrator() -> BenchResult<()> {
    logging::init(&LogSettings {
        service: "orchestrator".into(),
        format: LogFormat::Json,
        filter: flag("--log-filter").unwrap_or_else(|| LOG_FILTER.into()),
    })?;
    let flags = ktsu_orchestrator::Flags {
        host: Some("127.0.0.1".into()),
        port: Some("0".into()),
        runtime_url: flag("--runtime-url"),
        project_dir: flag("--project-dir").map(PathBuf::from),
        store_type: flag("--store-type"),
        db_path: flag("--db-path"),
        ..ktsu_orchestrator::Flags::default()
    };
    let settings = ktsu_orchestrator::Settings::resolve(&flags, &Env)?;
    actix_rt::System::new().block_on(async move {
        let app = ktsu_orchestrator::Application::build(settings).await?;
        println!("PORT {}", app.address().port());
        std::io::stdout().flush()?;
        app.run().await?;
        Ok(())
    })
}

/// The orchestrator child, killed by PID when dropped.
struct OrchestratorProcess {
    child: ChildProcess,
    url: String,
}

/// The store of one measurement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Memory,
    Sqlite,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "sqlite",
        }
    }
}

impl OrchestratorProcess {
    /// Starts the orchestrator on `project` with `store` (SQLite in `state_dir`), the stand-in
    /// at `runtime_url` as its configured runtime, and `env` (`KTSU_*` settings) on top of a
    /// cleared environment.
    fn spawn(
        project: &Path,
        store: StoreKind,
        state_dir: &Path,
        runtime_url: &str,
        env: &[(&str, String)],
    ) -> BenchResult<OrchestratorProcess> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg(SERVE_ORCHESTRATOR)
            .arg("--project-dir")
            .arg(project)
            .arg("--runtime-url")
            .arg(runtime_url)
            .arg("--store-type")
            .arg(store.name())
            .arg("--log-filter")
            .arg(flag("--log-filter").unwrap_or_else(|| LOG_FILTER.into()));
        if store == StoreKind::Sqlite {
            command.arg("--db-path").arg(state_dir.join("ktsu.db"));
        }
        // A cleared environment: no stray KTSU_* setting of the shell changes the figures.
        command.env_clear();
        // Passed through for allocator experiments (`glibc.malloc.trim_threshold`, …).
        if let Some(tunables) = std::env::var_os("GLIBC_TUNABLES") {
            command.env("GLIBC_TUNABLES", tunables);
        }
        command
            .env("KTSU_INTERNAL_TOKEN", INTERNAL_TOKEN)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        // Built before the check, so that a child that failed is reaped on the way out.
        let mut process = OrchestratorProcess {
            child: ChildProcess(child),
            url: String::new(),
        };
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        match (
            read,
            line.trim().strip_prefix("PORT ").map(str::parse::<u16>),
        ) {
            (Ok(_), Some(Ok(port))) => {
                process.url = format!("http://127.0.0.1:{port}");
                Ok(process)
            }
            _ => Err("the orchestrator did not start (run it by hand to see why)".into()),
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// The runtime stand-in (this process)

/// What the stand-in saw.
#[derive(Default)]
struct StandInStats {
    invokes: AtomicUsize,
    /// Invocations whose callback is not answered yet (the runs waiting on their agent step).
    waiting: AtomicUsize,
    peak_waiting: AtomicUsize,
    callbacks_accepted: AtomicUsize,
    callbacks_failed: AtomicUsize,
    /// Callback requests repeated after a failure that a runtime retries.
    callback_retries: AtomicUsize,
    last_accepted: Mutex<Option<Instant>>,
    first_error: Mutex<Option<String>>,
}

impl StandInStats {
    fn fail(&self, error: String) {
        self.callbacks_failed.fetch_add(1, Ordering::SeqCst);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(error);
    }

    fn answered(&self) -> usize {
        self.callbacks_accepted.load(Ordering::SeqCst)
            + self.callbacks_failed.load(Ordering::SeqCst)
    }

    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn last_accepted(&self) -> Option<Instant> {
        *self
            .last_accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

struct StandIn {
    url: String,
    stats: Arc<StandInStats>,
    handle: actix_web::dev::ServerHandle,
}

/// Per worker thread of the stand-in (awc clients are bound to their thread).
struct StandInWorker {
    client: awc::Client,
    stats: Arc<StandInStats>,
    delay: Duration,
}

/// The `ok` callback of an invocation, as a ktsu runtime sends it.
fn callback_body(invoke: &InvokeRequest) -> CallbackPayload {
    let mut payload = CallbackPayload::new(CallbackStatus::Ok);
    payload.run_id = invoke.run_id.clone();
    payload.step_id = invoke.step_id.clone();
    payload.output = Some(json!({"answer": "billing"}));
    payload.attempt = Some(invoke.attempt);
    payload.runtime_id = "rt-bench".into();
    payload.metrics.model_resolved = "mock/bench".into();
    payload.metrics.tokens_in = 96;
    payload.metrics.tokens_out = 12;
    payload.metrics.cost_usd = 0.0001;
    payload.metrics.llm_calls = 1;
    payload.messages = vec![
        json!({"role": "user", "content": invoke.user_message}),
        json!({"role": "assistant", "content": "{\"answer\": \"billing\"}"}),
    ];
    payload
}

/// How one callback request ended.
enum Delivery {
    Accepted,
    /// Worth another try, as a runtime would: no answer (e.g. a pooled keep-alive connection
    /// the orchestrator closed just as it was reused), or 429/5xx.
    Retry(String),
    Refused(String),
}

async fn post_callback(client: &awc::Client, url: &str, body: &CallbackPayload) -> Delivery {
    let mut response = match client.post(url).send_json(body).await {
        Ok(response) => response,
        Err(e) => return Delivery::Retry(format!("callback: {e}")),
    };
    let status = response.status();
    let answer: Value = match response.json().await {
        Ok(answer) => answer,
        Err(e) => return Delivery::Retry(format!("callback answer: {e}")),
    };
    if status == 200 && answer["status"] == "accepted" {
        Delivery::Accepted
    } else if status == 429 || status.is_server_error() {
        Delivery::Retry(format!("callback answered {status}: {answer}"))
    } else {
        Delivery::Refused(format!("callback answered {status}: {answer}"))
    }
}

/// Posts the callback, retrying a few times with backoff like a runtime does; counts retries,
/// so that the report shows them.
async fn deliver_callback(client: awc::Client, stats: Arc<StandInStats>, invoke: InvokeRequest) {
    let body = callback_body(&invoke);
    let mut backoff = Duration::from_millis(100);
    let mut outcome = post_callback(&client, &invoke.callback_url, &body).await;
    for _ in 0..CALLBACK_RETRIES {
        if !matches!(outcome, Delivery::Retry(_)) {
            break;
        }
        stats.callback_retries.fetch_add(1, Ordering::SeqCst);
        actix_rt::time::sleep(backoff).await;
        backoff *= 2;
        outcome = post_callback(&client, &invoke.callback_url, &body).await;
    }
    stats.waiting.fetch_sub(1, Ordering::SeqCst);
    match outcome {
        Delivery::Accepted => {
            *stats
                .last_accepted
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            stats.callbacks_accepted.fetch_add(1, Ordering::SeqCst);
        }
        Delivery::Retry(e) | Delivery::Refused(e) => stats.fail(e),
    }
}

/// `POST /invoke`: 202 at once; the callback leaves after the worker's delay.
async fn stand_in_invoke(worker: web::Data<StandInWorker>, body: web::Bytes) -> HttpResponse {
    let invoke: InvokeRequest = match serde_json::from_slice(&body) {
        Ok(invoke) => invoke,
        Err(e) => {
            worker.stats.fail(format!("undecodable invocation: {e}"));
            return HttpResponse::BadRequest().finish();
        }
    };
    let stats = Arc::clone(&worker.stats);
    stats.invokes.fetch_add(1, Ordering::SeqCst);
    let waiting = stats.waiting.fetch_add(1, Ordering::SeqCst) + 1;
    stats.peak_waiting.fetch_max(waiting, Ordering::SeqCst);
    let accepted = InvokeAccepted::new(&invoke, "rt-bench", false, false);
    let client = worker.client.clone();
    let delay = worker.delay;
    actix_rt::spawn(async move {
        if !delay.is_zero() {
            actix_rt::time::sleep(delay).await;
        }
        deliver_callback(client, stats, invoke).await;
    });
    HttpResponse::Accepted().json(accepted)
}

impl StandIn {
    /// One worker thread: a runtime stand-in costs next to nothing, and the two cores are
    /// shared with the orchestrator and the load generator.
    fn start(delay: Duration) -> BenchResult<StandIn> {
        let stats = Arc::new(StandInStats::default());
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::clone(&stats);
        let server = HttpServer::new(move || {
            let client = awc::Client::builder()
                .connector(awc::Connector::new().limit(CALLBACK_CONNECTIONS))
                .timeout(Duration::from_secs(60))
                .bearer_auth(INTERNAL_TOKEN)
                .finish();
            App::new()
                .app_data(web::Data::new(StandInWorker {
                    client,
                    stats: Arc::clone(&shared),
                    delay,
                }))
                .app_data(web::PayloadConfig::new(16 << 20))
                .route("/invoke", web::post().to(stand_in_invoke))
                .route(
                    "/cancel",
                    web::post().to(|| async { HttpResponse::Ok().json(json!({"cancelled": []})) }),
                )
                .route(
                    "/health",
                    web::get().to(|| async { HttpResponse::Ok().json(json!({"status": "ok"})) }),
                )
        })
        .workers(1)
        .backlog(4096)
        .max_connections(100_000)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(StandIn {
            url: format!("http://{addr}"),
            stats,
            handle,
        })
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator (this process)

fn client(connections: usize) -> awc::Client {
    let connector = awc::Connector::new().limit(connections);
    awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(120))
        .finish()
}

/// What the clients of one measurement got.
#[derive(Default)]
struct LoadResult {
    latencies: Vec<Duration>,
    wall: Duration,
    errors: usize,
    first_error: Option<String>,
}

/// The part of an invoke answer the load generator reads. The rest (with `?wait=` the run and
/// every step record) is skipped unparsed, so that the client's decoding does not weigh on the
/// figures more than reading the bytes must.
#[derive(serde::Deserialize)]
struct InvokeAnswer {
    status: String,
}

/// `POST <url>/invoke/<workflow>?wait=30`, which must answer 200 with a `complete` run.
async fn invoke_and_wait(client: &awc::Client, target: &str, body: &Value) -> Result<(), String> {
    let mut response = client
        .post(target)
        .send_json(body)
        .await
        .map_err(|e| format!("invoke: {e}"))?;
    let bytes = response
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| format!("invoke answer: {e}"))?;
    let answer = serde_json::from_slice::<InvokeAnswer>(&bytes);
    match answer {
        Ok(answer) if response.status() == 200 && answer.status == "complete" => Ok(()),
        _ => Err(format!(
            "invoke answered {}: {}",
            response.status(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
        )),
    }
}

/// `total` runs of `workflow` from `clients` concurrent clients, each invoking with `?wait=30`
/// (the answer comes when the run has ended, so one request times the whole run).
async fn load(
    url: &str,
    workflow: &str,
    body: &Value,
    clients: usize,
    total: usize,
) -> BenchResult<LoadResult> {
    let client = client(clients);
    let next = Rc::new(Cell::new(0usize));
    let target = format!("{url}/invoke/{workflow}?wait=30");
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (client, next, target, body) = (
            client.clone(),
            Rc::clone(&next),
            target.clone(),
            body.clone(),
        );
        tasks.push(actix_rt::spawn(async move {
            let mut result = LoadResult::default();
            loop {
                let n = next.get();
                if n >= total {
                    break;
                }
                next.set(n + 1);
                let sent = Instant::now();
                match invoke_and_wait(&client, &target, &body).await {
                    Ok(()) => result.latencies.push(sent.elapsed()),
                    Err(e) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(e);
                    }
                }
            }
            result
        }));
    }
    let mut all = LoadResult::default();
    for task in tasks {
        let part = task.await?;
        all.latencies.extend(part.latencies);
        all.errors += part.errors;
        if all.first_error.is_none() {
            all.first_error = part.first_error;
        }
    }
    all.wall = started.elapsed();
    all.latencies.sort();
    Ok(all)
}

/// Nearest-rank percentile of sorted durations.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report_errors(label: &str, result: &LoadResult) {
    if result.errors > 0 {
        println!(
            "  {label}: {} errors, first: {}",
            result.errors,
            result.first_error.as_deref().unwrap_or("?")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Per-step overhead on a chain of transforms

async fn chain_overhead(
    orchestrator: &OrchestratorProcess,
    store: StoreKind,
    runs: usize,
) -> BenchResult<()> {
    let body = chain_params();
    let url = &orchestrator.url;
    // Warm-up: connections, the store's first pages and caches, the allocator's arenas.
    load(url, "chain", &body, 1, (runs / 10).max(10)).await?;
    load(url, "chain-one", &body, 1, (runs / 10).max(10)).await?;
    // Interleaved rounds, so that a drift of the shared machine hits both workflows alike.
    let rounds = 5;
    let mut chain = LoadResult::default();
    let mut one = LoadResult::default();
    for _ in 0..rounds {
        for (workflow, into) in [("chain", &mut chain), ("chain-one", &mut one)] {
            let part = load(url, workflow, &body, 1, runs.div_ceil(rounds)).await?;
            into.latencies.extend(part.latencies);
            into.errors += part.errors;
            if into.first_error.is_none() {
                into.first_error = part.first_error;
            }
        }
    }
    chain.latencies.sort();
    one.latencies.sort();
    let steps = u32::try_from(CHAIN_STEPS)?;
    let per_step: Vec<Duration> = chain.latencies.iter().map(|d| *d / steps).collect();
    let (chain_p50, one_p50) = (
        percentile(&chain.latencies, 0.5),
        percentile(&one.latencies, 0.5),
    );
    let increment = chain_p50.saturating_sub(one_p50) / (steps - 1);
    println!(
        "{:<7} chain of {CHAIN_STEPS} transforms ({} runs, one client): per step p50 {:>6.1} µs  p99 {:>6.1} µs \
         | run p50 {:>7.3} ms  p99 {:>7.3} ms | one-transform run p50 {:>7.3} ms | each further step {:>6.1} µs",
        store.name(),
        chain.latencies.len(),
        us(percentile(&per_step, 0.5)),
        us(percentile(&per_step, 0.99)),
        ms(chain_p50),
        ms(percentile(&chain.latencies, 0.99)),
        ms(one_p50),
        us(increment),
    );
    report_errors("chain", &chain);
    report_errors("chain-one", &one);
    let (rss, peak) = orchestrator.child.memory_kib()?;
    println!(
        "{:<7} orchestrator RSS after the chains {:.1} MiB, peak {:.1} MiB",
        store.name(),
        mib(rss),
        mib(peak)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. One agent step with a zero-latency runtime

async fn agent_throughput(
    orchestrator: &OrchestratorProcess,
    store: StoreKind,
    runs: usize,
) -> BenchResult<()> {
    let body = agent_params();
    let url = &orchestrator.url;
    load(url, "one-agent", &body, 16, 500.min(runs)).await?;
    let sequential = load(url, "one-agent", &body, 1, (runs / 4).max(100)).await?;
    println!(
        "{:<7} one agent step,  1 client : {:>6.0} runs/s | p50 {:>7.3} ms  p99 {:>7.3} ms ({} runs, {} errors)",
        store.name(),
        sequential.latencies.len() as f64 / sequential.wall.as_secs_f64(),
        ms(percentile(&sequential.latencies, 0.5)),
        ms(percentile(&sequential.latencies, 0.99)),
        sequential.latencies.len(),
        sequential.errors
    );
    report_errors("1 client", &sequential);
    for clients in [16, 64] {
        let result = load(url, "one-agent", &body, clients, runs).await?;
        println!(
            "{:<7} one agent step, {clients:>2} clients: {:>6.0} runs/s | p50 {:>7.3} ms  p99 {:>7.3} ms ({} runs, {} errors)",
            store.name(),
            result.latencies.len() as f64 / result.wall.as_secs_f64(),
            ms(percentile(&result.latencies, 0.5)),
            ms(percentile(&result.latencies, 0.99)),
            result.latencies.len(),
            result.errors
        );
        report_errors(&format!("{clients} clients"), &result);
    }
    let (rss, peak) = orchestrator.child.memory_kib()?;
    println!(
        "{:<7} orchestrator RSS after these runs {:.1} MiB, peak {:.1} MiB",
        store.name(),
        mib(rss),
        mib(peak)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Many concurrent runs waiting on an agent step

/// Submits `total` runs (202, no wait) over `SUBMIT_CONNECTIONS` connections; returns the run
/// ids accepted and the failures.
async fn submit(url: &str, total: usize) -> BenchResult<(Vec<String>, usize, Option<String>)> {
    let client = client(SUBMIT_CONNECTIONS);
    let target = format!("{url}/invoke/one-agent");
    let body = agent_params();
    let next = Rc::new(Cell::new(0usize));
    let accepted = Rc::new(RefCell::new(Vec::with_capacity(total)));
    let failures = Rc::new(RefCell::new((0usize, None::<String>)));
    let mut tasks = Vec::with_capacity(SUBMIT_CONNECTIONS);
    for _ in 0..SUBMIT_CONNECTIONS {
        let (client, target, body) = (client.clone(), target.clone(), body.clone());
        let (next, accepted, failures) =
            (Rc::clone(&next), Rc::clone(&accepted), Rc::clone(&failures));
        tasks.push(actix_rt::spawn(async move {
            loop {
                let n = next.get();
                if n >= total {
                    break;
                }
                next.set(n + 1);
                let outcome = async {
                    let mut response = client
                        .post(&target)
                        .send_json(&body)
                        .await
                        .map_err(|e| format!("invoke: {e}"))?;
                    let answer: Value = response
                        .json()
                        .await
                        .map_err(|e| format!("invoke answer: {e}"))?;
                    match answer["run_id"].as_str() {
                        Some(id) if response.status() == 202 => Ok(id.to_string()),
                        _ => Err(format!("invoke answered {}: {answer}", response.status())),
                    }
                }
                .await;
                match outcome {
                    Ok(id) => accepted.borrow_mut().push(id),
                    Err(e) => {
                        let mut failures = failures.borrow_mut();
                        failures.0 += 1;
                        failures.1.get_or_insert(e);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let ids = accepted.take();
    let (failed, first) = failures.take();
    Ok((ids, failed, first))
}

/// Counts the final statuses of `ids` (`GET /runs/{id}`, 64 at a time).
async fn final_statuses(
    url: &str,
    ids: &[String],
) -> BenchResult<std::collections::BTreeMap<String, usize>> {
    let client = client(64);
    let next = Rc::new(Cell::new(0usize));
    let ids: Rc<Vec<String>> = Rc::new(ids.to_vec());
    let counts = Rc::new(RefCell::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, next, ids, counts) = (
            client.clone(),
            Rc::clone(&next),
            Rc::clone(&ids),
            Rc::clone(&counts),
        );
        let url = url.to_string();
        tasks.push(actix_rt::spawn(async move {
            loop {
                let n = next.get();
                let Some(id) = ids.get(n) else {
                    break;
                };
                next.set(n + 1);
                let status = match client.get(format!("{url}/runs/{id}")).send().await {
                    Ok(mut response) => match response.json::<Value>().limit(16 << 20).await {
                        Ok(v) => v["run"]["status"]
                            .as_str()
                            .unwrap_or("unreadable")
                            .to_string(),
                        Err(_) => "unreadable".to_string(),
                    },
                    Err(_) => "unreachable".to_string(),
                };
                *counts.borrow_mut().entry(status).or_default() += 1;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(counts.take())
}

async fn concurrent_runs(
    project: &Path,
    store: StoreKind,
    total: usize,
    waves: usize,
    delay: Duration,
) -> BenchResult<()> {
    let state = tempfile::tempdir()?;
    let stand_in = StandIn::start(delay)?;
    // Admission would otherwise hold runs back (KTSU_MAX_ACTIVE_RUNS defaults to 1,000) and
    // measure the limit instead of the orchestrator; the queue bound then never applies.
    let env = [
        ("KTSU_MAX_ACTIVE_RUNS", "0".to_string()),
        ("KTSU_MAX_QUEUED_RUNS", total.max(10_000).to_string()),
    ];
    let orchestrator =
        OrchestratorProcess::spawn(project, store, state.path(), &stand_in.url, &env)?;
    let url = orchestrator.url.clone();
    // Warm-up: the same kind of runs, a few hundred, so that one-time costs are in the idle figure.
    load(&url, "one-agent", &agent_params(), 16, 200).await?;
    let (warm, _) = orchestrator.child.memory_kib()?;
    // Let the warm-up's callbacks finish before the stand-in's counters start.
    let warm_answered = wait_answered(&stand_in.stats, 200, Duration::from_secs(30)).await;
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = orchestrator.child.memory_kib()?;
    println!(
        "{:<7} {total} runs waiting {:.0} s each; orchestrator RSS idle {:.1} MiB (after a {} run warm-up; {:.1} MiB right after it)",
        store.name(),
        delay.as_secs_f64(),
        mib(idle),
        warm_answered,
        mib(warm)
    );
    for wave in 1..=waves {
        let stats = &stand_in.stats;
        let before_answered = stats.answered();
        let before_accepted = stats.callbacks_accepted.load(Ordering::SeqCst);
        let before_retries = stats.callback_retries.load(Ordering::SeqCst);
        stats.peak_waiting.store(0, Ordering::SeqCst);
        // VmHWM of this wave alone (when the kernel lets us reset it).
        let peak_reset = orchestrator.child.reset_peak().is_ok();
        let started = Instant::now();
        let (ids, submit_errors, submit_error) = submit(&url, total).await?;
        let submitted = started.elapsed();
        let expected = before_answered + ids.len();
        let answered = wait_answered(stats, expected, Duration::from_secs(300)).await;
        let completed_in = stats
            .last_accepted()
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
        let accepted = stats.callbacks_accepted.load(Ordering::SeqCst) - before_accepted;
        let retries = stats.callback_retries.load(Ordering::SeqCst) - before_retries;
        let (_, peak) = orchestrator.child.memory_kib()?;
        // The runs have ended: give the allocator a moment, then the resident size left.
        actix_rt::time::sleep(Duration::from_secs(3)).await;
        let (after, _) = orchestrator.child.memory_kib()?;
        let statuses = final_statuses(&url, &ids).await?;
        let complete = statuses.get("complete").copied().unwrap_or(0);
        let errors = submit_errors + (total - submit_errors).saturating_sub(complete);
        println!(
            "{:<7} wave {wave}: all {} runs submitted in {:.2} s, last completed at {:.2} s; {} at once on their agent step at the peak; \
             errors {errors} (callback retries {retries}) | RSS peak{} {:.1} MiB, 3 s after the runs {:.1} MiB",
            store.name(),
            ids.len(),
            submitted.as_secs_f64(),
            completed_in.as_secs_f64(),
            stats.peak_waiting.load(Ordering::SeqCst),
            if peak_reset { "" } else { " (since start)" },
            mib(peak),
            mib(after),
        );
        if errors > 0 || answered < expected {
            println!(
                "  submit failures {submit_errors} (first: {}), callbacks accepted {accepted} of {}, first stand-in error: {}, final statuses {statuses:?}",
                submit_error.as_deref().unwrap_or("-"),
                ids.len(),
                stats.first_error().as_deref().unwrap_or("-"),
            );
        }
    }
    drop(orchestrator);
    stand_in.stop().await;
    Ok(())
}

/// Waits until the stand-in has had `expected` callbacks answered (or `limit` passed).
async fn wait_answered(stats: &StandInStats, expected: usize, limit: Duration) -> usize {
    let started = Instant::now();
    loop {
        let answered = stats.answered();
        if answered >= expected || started.elapsed() > limit {
            return answered;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------

async fn bench() -> BenchResult<()> {
    let only = flag("--only");
    let wants = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let stores: Vec<StoreKind> = match flag("--store").as_deref() {
        Some("memory") => vec![StoreKind::Memory],
        Some("sqlite") => vec![StoreKind::Sqlite],
        Some(other) => return Err(format!("--store {other}: expected memory or sqlite").into()),
        None => vec![StoreKind::Memory, StoreKind::Sqlite],
    };
    let chain_runs = number("--chain-runs", 300).max(10);
    let runs = number("--runs", 4000).max(100);
    let concurrent = number("--concurrent", 10_000).max(1);
    let waves = number("--waves", 2).max(1);
    let delay = Duration::from_millis(u64::try_from(number("--delay-ms", 2000))?);
    let project = tempfile::tempdir()?;
    write_project(project.path())?;
    if wants("chain") || wants("agent") {
        for store in &stores {
            let state = tempfile::tempdir()?;
            let stand_in = StandIn::start(Duration::ZERO)?;
            // Production defaults: no KTSU_* setting besides the internal token.
            let orchestrator = OrchestratorProcess::spawn(
                project.path(),
                *store,
                state.path(),
                &stand_in.url,
                &[],
            )?;
            if wants("chain") {
                chain_overhead(&orchestrator, *store, chain_runs).await?;
            }
            if wants("agent") {
                agent_throughput(&orchestrator, *store, runs).await?;
            }
            drop(orchestrator);
            stand_in.stop().await;
        }
    }
    if wants("concurrent") {
        for store in &stores {
            concurrent_runs(project.path(), *store, concurrent, waves, delay).await?;
        }
    }
    Ok(())
}
