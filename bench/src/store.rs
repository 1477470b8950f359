//! Store benchmark: what persisting one typical small run costs, memory vs SQLite.
//!
//! A run here is what the orchestrator writes for a three-step pipeline (agent, transform,
//! webhook): `create_run` with its three step records, six commits (start, dispatch
//! acknowledged, then one per step completion, the last one finishing the run, each with its
//! events), and one `get_run_full` as `GET /runs/{id}` would do. Measured sequentially (one
//! task) and with `--concurrency` tasks at once; SQLite on a temporary file with the
//! production settings (WAL, `synchronous=FULL`, so every commit is on disk when it returns).
//!
//!     cargo run --release -p ktsu-bench --bin bench-store [-- --runs 2000 --concurrency 16]

use ktsu_bench::{number, percentile};
use ktsu_orchestrator::model::{
    NewEvent, RunRecord, RunStatus, StepMetrics, StepRecord, StepStatus, StepType, Totals,
};
use ktsu_orchestrator::store::{
    ChangeSet, MemoryStore, NewRun, SqliteOptions, SqliteStore, Store, StoreError, WriteStats,
};
use ktsu_shared::time::Timestamp;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn step(run_id: &str, id: &str, position: u32, step_type: StepType, now: Timestamp) -> StepRecord {
    let depends_on = if position == 0 {
        Vec::new()
    } else {
        vec!["classify".to_string()]
    };
    StepRecord::pending(run_id, id, step_type, position, depends_on, now)
}

fn new_run(id: &str, now: Timestamp) -> NewRun {
    let run = RunRecord {
        id: id.into(),
        workflow_name: "support-triage".into(),
        status: RunStatus::Pending,
        root_run_id: id.into(),
        parent_run_id: None,
        parent_step_id: None,
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        deadline_at: None,
        timeout_s: Some(60),
        budget_usd: Some(0.5),
        payload: json!({"message": "my invoice is wrong", "user_id": "u-7"}),
        output: None,
        error: None,
        error_code: None,
        failed_step: None,
        cancel_reason: None,
        totals: Totals::default(),
        version: 1,
    };
    let steps = vec![
        step(id, "classify", 0, StepType::Agent, now),
        step(id, "shape", 1, StepType::Transform, now),
        step(id, "notify", 2, StepType::Webhook, now),
    ];
    NewRun { run, steps }
}

fn event(name: &str, step_id: &str, now: Timestamp) -> NewEvent {
    NewEvent {
        ts: now,
        event: name.into(),
        data: json!({"step_id": step_id, "status": name.rsplit('.').next(), "attempt": 1}),
    }
}

/// The six change sets of a run, in commit order, as the run actor would produce them.
fn change_sets(created: &NewRun) -> Vec<ChangeSet> {
    let now = Timestamp::now();
    let mut run = created.run.clone();
    let mut steps = created.steps.clone();
    let mut sets = Vec::with_capacity(6);

    run.status = RunStatus::Running;
    run.started_at = Some(now);
    steps[0].status = StepStatus::Running;
    steps[0].attempt = 1;
    steps[0].started_at = Some(now);
    sets.push(ChangeSet {
        run: Some(run.clone()),
        steps: vec![steps[0].clone()],
        events: vec![
            event("run.running", "", now),
            event("step.running", "classify", now),
        ],
        ..ChangeSet::default()
    });
    steps[0].runtime_id = Some("rt-9c41e2".into());
    sets.push(ChangeSet {
        steps: vec![steps[0].clone()],
        events: vec![event("step.dispatched", "classify", now)],
        ..ChangeSet::default()
    });
    steps[0].status = StepStatus::Complete;
    steps[0].ended_at = Some(now);
    steps[0].output = Some(json!({"category": "billing", "priority": "high"}));
    steps[0].metrics = StepMetrics {
        duration_ms: 2301,
        tokens_in: 812,
        tokens_out: 96,
        cost_usd: 0.0039,
        llm_calls: 2,
        tool_calls: 1,
        ..StepMetrics::default()
    };
    steps[1].status = StepStatus::Running;
    steps[1].attempt = 1;
    run.totals = Totals::of(steps.iter().map(|s| &s.metrics));
    sets.push(ChangeSet {
        run: Some(run.clone()),
        steps: vec![steps[0].clone(), steps[1].clone()],
        events: vec![
            event("step.complete", "classify", now),
            event("step.running", "shape", now),
        ],
        ..ChangeSet::default()
    });
    steps[1].status = StepStatus::Complete;
    steps[1].output = Some(json!({"queue": "billing-high"}));
    steps[2].status = StepStatus::Running;
    steps[2].attempt = 1;
    sets.push(ChangeSet {
        steps: vec![steps[1].clone(), steps[2].clone()],
        events: vec![
            event("step.complete", "shape", now),
            event("step.running", "notify", now),
        ],
        ..ChangeSet::default()
    });
    steps[2].status = StepStatus::Complete;
    steps[2].output = Some(json!({"sent": true, "status_code": 200, "body": {"ok": true}}));
    sets.push(ChangeSet {
        steps: vec![steps[2].clone()],
        events: vec![event("step.complete", "notify", now)],
        ..ChangeSet::default()
    });
    run.status = RunStatus::Complete;
    run.completed_at = Some(now);
    run.output = steps[2].output.clone();
    sets.push(ChangeSet {
        run: Some(run),
        events: vec![event("run.complete", "", now)],
        ..ChangeSet::default()
    });
    sets
}

/// Latencies of one run's operations.
#[derive(Default)]
struct Latencies {
    create: Vec<Duration>,
    commit: Vec<Duration>,
    read: Vec<Duration>,
}

impl Latencies {
    fn extend(&mut self, other: Latencies) {
        self.create.extend(other.create);
        self.commit.extend(other.commit);
        self.read.extend(other.read);
    }
}

/// One run through the store, timing each operation.
async fn one_run(store: &Store, id: &str, into: &mut Latencies) -> Result<(), StoreError> {
    let created = new_run(id, Timestamp::now());
    let sets = change_sets(&created);
    let started = Instant::now();
    store.create_run(created, None).await?;
    into.create.push(started.elapsed());
    let mut version = 1;
    for changes in sets {
        let started = Instant::now();
        version = store.commit(id, version, changes).await?;
        into.commit.push(started.elapsed());
    }
    let started = Instant::now();
    let full = store.get_run_full(id).await?;
    into.read.push(started.elapsed());
    match full {
        Some(full) if full.run.status == RunStatus::Complete && full.steps.len() == 3 => Ok(()),
        _ => Err(StoreError::Unavailable(format!(
            "run {id} did not read back complete"
        ))),
    }
}

struct Figures {
    runs_per_s: f64,
    p50: Duration,
    p99: Duration,
    mean: Duration,
    create_p50: Duration,
    read_p50: Duration,
}

/// `runs` runs spread over `tasks` concurrent tasks; run ids carry `label` to stay unique.
async fn measure(
    store: &Store,
    label: &str,
    runs: usize,
    tasks: usize,
) -> Result<Figures, StoreError> {
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let store = store.clone();
        let label = label.to_string();
        let share = runs / tasks + usize::from(task < runs % tasks);
        handles.push(actix_rt::spawn(async move {
            let mut latencies = Latencies::default();
            for i in 0..share {
                let id = format!("run_{label}_{task:02}_{i:08}");
                one_run(&store, &id, &mut latencies).await?;
            }
            Ok::<_, StoreError>(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for handle in handles {
        let task = handle
            .await
            .map_err(|e| StoreError::Unavailable(format!("benchmark task failed: {e}")))?;
        latencies.extend(task?);
    }
    let elapsed = started.elapsed();
    latencies.commit.sort();
    latencies.create.sort();
    latencies.read.sort();
    let total: Duration = latencies.commit.iter().sum();
    let count = u32::try_from(latencies.commit.len().max(1)).unwrap_or(u32::MAX);
    Ok(Figures {
        runs_per_s: runs as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies.commit, 0.50),
        p99: percentile(&latencies.commit, 0.99),
        mean: total / count,
        create_p50: percentile(&latencies.create, 0.50),
        read_p50: percentile(&latencies.read, 0.50),
    })
}

fn write_stats(store: &Store) -> Option<WriteStats> {
    match store {
        Store::Sqlite(sqlite) => Some(sqlite.write_stats()),
        Store::Memory(_) => None,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print(store: &str, mode: &str, f: &Figures) {
    println!(
        "{store:<7} {mode:<14} {:>8.0} runs/s | commit p50 {:>7.3} ms  p99 {:>7.3} ms  mean {:>7.3} ms \
         | create_run p50 {:>7.3} ms | get_run_full p50 {:>7.3} ms",
        f.runs_per_s,
        ms(f.p50),
        ms(f.p99),
        ms(f.mean),
        ms(f.create_p50),
        ms(f.read_p50)
    );
}

async fn bench(runs: usize, concurrency: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let memory = Store::Memory(Arc::new(MemoryStore::new(usize::MAX)));
    let sqlite = SqliteStore::open(SqliteOptions::new(dir.path().join("bench.db")))
        .map_err(|e| e.to_string())?;
    let sqlite = Store::Sqlite(Arc::new(sqlite));
    println!(
        "{runs} runs per measurement; a run = create_run (3 steps) + 6 commits + get_run_full"
    );
    for (name, store) in [("memory", &memory), ("sqlite", &sqlite)] {
        // Warm-up: first allocations, page cache, statement caches.
        measure(store, &format!("{name}w"), 50.min(runs), 1)
            .await
            .map_err(|e| e.to_string())?;
        for (mode, tasks) in [
            ("sequential".to_string(), 1),
            (format!("{concurrency} concurrent"), concurrency),
        ] {
            let before = write_stats(store);
            let figures = measure(store, &format!("{name}{tasks}"), runs, tasks)
                .await
                .map_err(|e| e.to_string())?;
            print(name, &mode, &figures);
            if let (Some(before), Some(after)) = (before, write_stats(store)) {
                let writes = after.writes - before.writes;
                let transactions = (after.transactions - before.transactions).max(1);
                println!(
                    "{:<22} {writes} writes in {transactions} transactions ({:.1} writes per fsync)",
                    "",
                    writes as f64 / transactions as f64
                );
            }
        }
    }
    sqlite.close().await.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let runs = number("--runs", 2000).max(1);
    let concurrency = number("--concurrency", 16).max(1);
    match actix_rt::System::new().block_on(bench(runs, concurrency)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-store: {err}");
            ExitCode::FAILURE
        }
    }
}
