//! Following a run to a final status (cli-and-ops.md §1.4, §1.5): `GET /runs/{id}` polling
//! with a growing interval, the progress line kept current, a hint when a step waits for
//! approval, a deadline for `--timeout`; and the cancel-then-settle sequence of `ktsu run`.

use crate::client::{view, Client, Failure};
use crate::progress::Progress;
use crate::records::{is_terminal, RunDoc};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How often to poll: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub first: Duration,
    pub max: Duration,
}

impl Schedule {
    /// Every second (remote orchestrators, cli-and-ops.md §1.5).
    pub const REMOTE: Schedule = Schedule {
        first: Duration::from_secs(1),
        max: Duration::from_secs(1),
    };
    /// In-process services over loopback: notice a fast run at once, settle at 4 polls/s.
    pub const EMBEDDED: Schedule = Schedule {
        first: Duration::from_millis(10),
        max: Duration::from_millis(250),
    };
}

/// Consecutive failed polls (unreachable, 5xx) tolerated before giving up.
const POLL_RETRIES: u32 = 3;
/// How long `run` waits for `cancelled` after asking for it.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(5);

/// How following ended.
pub enum Ending {
    /// The run reached a final status: the `GET /runs/{id}` body.
    Finished(Value),
    /// The deadline passed first: the latest body.
    TimedOut(Value),
}

/// What to tell the operator when a step waits for a human.
pub struct ApprovalHint {
    /// Appended to the suggested `ktsu approvals approve` command (e.g. `--orchestrator URL`).
    pub extra_args: String,
}

/// One `GET /runs/{id}`, retried on transient failures.
pub async fn fetch(client: &Client, run_id: &str, pause: Duration) -> Result<Value, Failure> {
    let mut failures = 0;
    loop {
        match client.get(&["runs", run_id], &[]).await {
            Ok(value) => return Ok(value),
            Err(e) if e.exit_code() == crate::exit::UNREACHABLE && failures < POLL_RETRIES => {
                failures += 1;
                log::debug!("polling run {run_id} failed ({}); retrying", e.message());
                actix_rt::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls the run until it ends or `deadline` passes.
pub async fn follow(
    client: &Client,
    run_id: &str,
    progress: &Progress,
    schedule: Schedule,
    deadline: Option<Instant>,
    hint: Option<&ApprovalHint>,
) -> Result<Ending, Failure> {
    let mut interval = schedule.first;
    let mut hinted: HashSet<String> = HashSet::new();
    loop {
        let value = fetch(client, run_id, schedule.max).await?;
        let doc: RunDoc = view(&value, "run record")?;
        progress.update(&doc);
        if let Some(hint) = hint {
            for step in doc.waiting_for_approval() {
                if hinted.insert(step.clone()) {
                    progress.println(&format!(
                        "hint: step {step} waits for approval: ktsu approvals approve {run_id} {step}{}",
                        hint.extra_args
                    ));
                }
            }
        }
        if is_terminal(&doc.run.status) {
            return Ok(Ending::Finished(value));
        }
        let now = Instant::now();
        let mut pause = interval;
        if let Some(deadline) = deadline {
            if now >= deadline {
                return Ok(Ending::TimedOut(value));
            }
            pause = pause.min(deadline - now);
        }
        actix_rt::time::sleep(pause).await;
        interval = (interval * 2).min(schedule.max);
    }
}

/// Asks for the run's cancellation, then waits up to [`SETTLE_WITHIN`] for a final status.
/// Returns the latest record (`None` when even reading it failed).
pub async fn cancel_and_settle(
    client: &Client,
    run_id: &str,
    reason: &str,
    progress: &Progress,
) -> Option<Value> {
    match client
        .post(&["runs", run_id, "cancel"], &json!({"reason": reason}))
        .await
    {
        Ok(_) => {}
        // The run ended by itself in the meantime: its record says how.
        Err(e) if e.code() == Some("run_finished") => {}
        Err(e) => log::warn!("cancelling run {run_id} failed: {}", e.message()),
    }
    let deadline = Instant::now() + SETTLE_WITHIN;
    match follow(
        client,
        run_id,
        progress,
        Schedule::EMBEDDED,
        Some(deadline),
        None,
    )
    .await
    {
        Ok(Ending::Finished(v) | Ending::TimedOut(v)) => Some(v),
        Err(e) => {
            log::warn!("reading run {run_id} failed: {}", e.message());
            None
        }
    }
}
