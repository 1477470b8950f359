//! End-to-end benchmark: the `hello` workflow through the three services as separate processes
//! of the release `ktsu` binary (gateway with the built-in mock provider at zero latency,
//! orchestrator, runtime), on the memory store and on SQLite.
//!
//! For each store: invoke→complete latency with one client (p50/p99), then completed runs per
//! second with 16 and 64 concurrent clients, and the RSS (current and peak) of each service.
//! A client invokes with `POST /invoke/hello?wait=30`, which answers when the run has finished,
//! so one request measures the whole run.
//!
//!     cargo build --release --bin ktsu
//!     cargo run --release -p ktsu-bench --bin bench-e2e [-- --runs 2000 --ktsu target/release/ktsu]

use ktsu_bench::{flag, percentile, ChildProcess};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// One service process; killed by PID when dropped.
struct Service {
    child: ChildProcess,
}

impl Service {
    /// Starts `ktsu <args>` and waits for the log record with `event`; returns its `addr`.
    fn start(ktsu: &Path, args: &[String], event: &str) -> BenchResult<(Service, String)> {
        let mut child = Command::new(ktsu)
            .args(args)
            .env("KTSU_LOG_FORMAT", "json")
            .env("KTSU_INTERNAL_TOKEN", "bench-internal-token-0123456789")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        let wanted = format!("\"event\":\"{event}\"");
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep draining after the address is known so the service never blocks on stderr.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains(&wanted) {
                    let addr = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["addr"].as_str().map(str::to_string));
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let service = Service {
            child: ChildProcess(child),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(addr)) => Ok((service, format!("http://{addr}"))),
            _ => Err(format!("ktsu {} did not log {event}", args.join(" ")).into()),
        }
    }

    /// `(VmRSS, VmHWM)` in MiB (zeros if the process is gone).
    fn rss(&self) -> (f64, f64) {
        let (rss, peak) = self.child.memory_kib().unwrap_or((0, 0));
        (rss as f64 / 1024.0, peak as f64 / 1024.0)
    }
}

struct Cluster {
    gateway: Service,
    orchestrator: Service,
    runtime: Service,
    url: String,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn start_cluster(ktsu: &Path, project: &Path, sqlite: Option<&Path>) -> BenchResult<Cluster> {
    let project = project.display().to_string();
    let gateway_file = format!("{project}/gateway.yaml");
    let (gateway, gateway_url) = Service::start(
        ktsu,
        &strings(&[
            "start",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
            &gateway_file,
        ]),
        "gateway.started",
    )?;
    let mut args = strings(&[
        "start",
        "orchestrator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--project-dir",
        &project,
        "--gateway-url",
        &gateway_url,
    ]);
    if let Some(db) = sqlite {
        args.extend(strings(&[
            "--store-type",
            "sqlite",
            "--db-path",
            &db.display().to_string(),
        ]));
    }
    let (orchestrator, url) = Service::start(ktsu, &args, "orchestrator.ready")?;
    let (runtime, _) = Service::start(
        ktsu,
        &strings(&[
            "start",
            "runtime",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--orchestrator",
            &url,
            "--gateway",
            &gateway_url,
        ]),
        "runtime.started",
    )?;
    Ok(Cluster {
        gateway,
        orchestrator,
        runtime,
        url,
    })
}

/// Runs `total` hello runs with `clients` concurrent clients; returns the latency of each
/// completed run and the wall time.
async fn load(
    url: &str,
    clients: usize,
    total: usize,
) -> BenchResult<(Vec<Duration>, Duration, usize)> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let next = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let next = next.clone();
        let target = format!("{url}/invoke/hello?wait=30");
        tasks.push(actix_rt::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let n = next.get();
                if n >= total {
                    break;
                }
                next.set(n + 1);
                let t = Instant::now();
                let outcome = client
                    .post(&target)
                    .send_json(&serde_json::json!({"name": "Ada"}))
                    .await;
                let ok = match outcome {
                    Ok(mut res) => res
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|v| v["status"] == "complete"),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::with_capacity(total);
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await?;
        all.extend(latencies);
        errors += e;
    }
    Ok((all, started.elapsed(), errors))
}

/// A percentile in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    percentile(sorted, p).as_secs_f64() * 1000.0
}

async fn measure(ktsu: &Path, project: &Path, store: &str, runs: usize) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("ktsu.db");
    let cluster = start_cluster(ktsu, project, (store == "sqlite").then_some(db.as_path()))?;
    // Warm up connections, caches and the store.
    load(&cluster.url, 4, 200).await?;
    let (mut seq, _, errors) = load(&cluster.url, 1, runs / 4).await?;
    seq.sort();
    println!(
        "{store:<7} sequential   p50 {:>7.3} ms  p99 {:>7.3} ms  ({} runs, {errors} errors)",
        percentile_ms(&seq, 0.5),
        percentile_ms(&seq, 0.99),
        seq.len()
    );
    for clients in [16, 64] {
        let (mut lat, wall, errors) = load(&cluster.url, clients, runs).await?;
        lat.sort();
        println!(
            "{store:<7} {clients:>2} clients   {:>7.0} runs/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} runs, {errors} errors)",
            lat.len() as f64 / wall.as_secs_f64(),
            percentile_ms(&lat, 0.5),
            percentile_ms(&lat, 0.99),
            lat.len()
        );
    }
    for (name, service) in [
        ("gateway", &cluster.gateway),
        ("orchestrator", &cluster.orchestrator),
        ("runtime", &cluster.runtime),
    ] {
        let (rss, peak) = service.rss();
        println!("{store:<7} RSS {name:<13} now {rss:>6.1} MiB  peak {peak:>6.1} MiB");
    }
    Ok(())
}

fn main() -> ExitCode {
    let runs: usize = flag("--runs").and_then(|r| r.parse().ok()).unwrap_or(4000);
    let ktsu = flag("--ktsu").map(PathBuf::from).or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("ktsu")))
    });
    let Some(ktsu) = ktsu.filter(|p| p.is_file()) else {
        eprintln!("error: the ktsu binary was not found beside this one; build it with `cargo build --release --bin ktsu` or pass --ktsu PATH");
        return ExitCode::from(2);
    };
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    let result = actix_rt::System::new().block_on(async move {
        for store in ["memory", "sqlite"] {
            measure(&ktsu, &project, store, runs).await?;
        }
        Ok::<(), Box<dyn Error>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
