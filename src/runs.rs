//! `ktsu runs list|get|cancel|watch` (cli-and-ops.md §1.6); `ktsu runs` alone lists.

use crate::client::{block_on, view, Client, Failure, Target};
use crate::exit;
use crate::format;
use crate::output::{self, Style};
use crate::records::{is_terminal, RunDoc, RunList, RUN_STATUSES};
use crate::render;
use clap::{Args as ClapArgs, Subcommand};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, ClapArgs)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List runs, newest first (GET /runs).
    List(ListArgs),
    /// Show one run: header, step table, what each step needs explained, output.
    Get(GetArgs),
    /// Cancel a run (POST /runs/{run_id}/cancel).
    Cancel(CancelArgs),
    /// Print the run's status changes until it ends; exit by its final status.
    Watch(WatchArgs),
}

#[derive(Debug, ClapArgs)]
pub struct ListArgs {
    /// Only runs of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only runs in this status.
    #[arg(long, value_name = "STATUS", value_parser = RUN_STATUSES)]
    pub status: Option<String>,
    /// At most this many runs (server default 50, at most 500).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Include sub-runs.
    #[arg(long)]
    pub children: bool,
    /// Only the direct sub-runs of this run.
    #[arg(long, value_name = "RUN_ID")]
    pub parent: Option<String>,
    /// Continue after a previous page (`next_cursor`).
    #[arg(long, value_name = "TOKEN")]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, ClapArgs)]
pub struct GetArgs {
    pub run_id: String,
    /// Print the run's envelope (GET /runs/{run_id}/envelope) as JSON instead.
    #[arg(long)]
    pub envelope: bool,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, ClapArgs)]
pub struct CancelArgs {
    pub run_id: String,
    /// Recorded as the run's cancel reason.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, ClapArgs)]
pub struct WatchArgs {
    pub run_id: String,
    #[command(flatten)]
    pub target: Target,
}

pub fn run(args: &Args, quiet: bool) -> u8 {
    match &args.command {
        None => block_on(async { finish(list(&args.list, quiet).await) }),
        Some(Command::List(a)) => block_on(async { finish(list(a, quiet).await) }),
        Some(Command::Get(a)) => block_on(async { finish(get(a).await) }),
        Some(Command::Cancel(a)) => block_on(async { finish(cancel(a).await) }),
        Some(Command::Watch(a)) => block_on(async { finish(watch(a).await) }),
    }
}

fn finish(result: Result<u8, Failure>) -> u8 {
    result.unwrap_or_else(|f| f.report())
}

fn client(target: &Target) -> Result<Client, Failure> {
    Client::new(&target.base_url())
}

/// Prints a `GET /runs/{id}` body: as is with `--json`, else the human record. Returns the
/// run's status.
pub fn show_record(value: &Value, json: bool) -> Result<String, Failure> {
    let doc: RunDoc = view(value, "run record")?;
    if json {
        output::print_json(value);
    } else {
        let style = Style {
            enabled: output::stdout_colour(),
        };
        print!("{}", render::run_record(&doc, style));
    }
    Ok(doc.run.status)
}

async fn list(a: &ListArgs, quiet: bool) -> Result<u8, Failure> {
    let client = client(&a.target)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(w) = &a.workflow {
        query.push(("workflow", w.clone()));
    }
    if let Some(s) = &a.status {
        query.push(("status", s.clone()));
    }
    if let Some(n) = a.limit {
        query.push(("limit", n.to_string()));
    }
    if a.children {
        query.push(("include_children", "true".into()));
    }
    if let Some(p) = &a.parent {
        query.push(("parent", p.clone()));
    }
    if let Some(c) = &a.cursor {
        query.push(("cursor", c.clone()));
    }
    let value = client.get(&["runs"], &query).await?;
    let page: RunList = view(&value, "run list")?;
    if a.target.json {
        output::print_json(&value);
    } else if page.runs.is_empty() {
        println!("no runs");
    } else {
        let style = Style {
            enabled: output::stdout_colour(),
        };
        print!("{}", render::run_list(&page.runs, style));
    }
    if let Some(cursor) = page.next_cursor.filter(|c| !c.is_empty()) {
        if !quiet {
            eprintln!("more: ktsu runs list --cursor {cursor}");
        }
    }
    Ok(exit::OK)
}

async fn get(a: &GetArgs) -> Result<u8, Failure> {
    let client = client(&a.target)?;
    if a.envelope {
        let value = client.get(&["runs", &a.run_id, "envelope"], &[]).await?;
        output::print_json(&value);
        return Ok(exit::OK);
    }
    let value = client.get(&["runs", &a.run_id], &[]).await?;
    show_record(&value, a.target.json)?;
    Ok(exit::OK)
}

async fn cancel(a: &CancelArgs) -> Result<u8, Failure> {
    let client = client(&a.target)?;
    let body = match &a.reason {
        Some(reason) => json!({"reason": reason}),
        None => json!({}),
    };
    let value = client.post(&["runs", &a.run_id, "cancel"], &body).await?;
    if a.target.json {
        output::print_json(&value);
    } else {
        let id = value
            .pointer("/run/id")
            .and_then(Value::as_str)
            .unwrap_or(&a.run_id);
        println!("{id} cancelled");
    }
    Ok(exit::OK)
}

/// The status of everything in a run record, keyed `run`, `<step>` and `<step>.<index>`.
fn statuses(doc: &RunDoc) -> Vec<(String, String)> {
    let mut all = vec![("run".to_string(), doc.run.status.clone())];
    for step in &doc.steps {
        all.push((step.id.clone(), step.outcome.status.clone()));
        for item in step.items.iter().flatten() {
            all.push((
                format!("{}.{}", step.id, item.index),
                item.outcome.status.clone(),
            ));
        }
    }
    all
}

/// One watch event from a status change: `(event name, JSON data)`.
fn watch_event(doc: &RunDoc, key: &str, status: &str) -> (String, Value) {
    let now = jiff::Timestamp::now().to_string();
    if key == "run" {
        let now = doc
            .run
            .completed_at
            .clone()
            .or_else(|| doc.run.started_at.clone())
            .unwrap_or(now);
        let mut data = json!({"ts": now, "event": format!("run.{status}"), "run_id": doc.run.id,
                              "workflow": doc.run.workflow_name, "status": status});
        if let Some(e) = &doc.run.error {
            data["error"] = json!(e);
        }
        if let Some(c) = &doc.run.error_code {
            data["error_code"] = json!(c);
        }
        return (format!("run.{status}"), data);
    }
    let (step_id, index) = match key.split_once('.') {
        Some((s, i)) => (s, i.parse::<u64>().ok()),
        None => (key, None),
    };
    let step = doc.steps.iter().find(|s| s.id == step_id);
    let outcome = match (step, index) {
        (Some(s), Some(i)) => s
            .items
            .iter()
            .flatten()
            .find(|it| it.index == i)
            .map(|it| &it.outcome),
        (Some(s), None) => Some(&s.outcome),
        _ => None,
    };
    let now = outcome
        .and_then(|o| o.ended_at.clone().or_else(|| o.started_at.clone()))
        .unwrap_or(now);
    let kind = if index.is_some() { "item" } else { "step" };
    let event = format!("{kind}.{status}");
    let mut data = json!({"ts": now, "event": event, "run_id": doc.run.id, "step_id": step_id, "status": status});
    if let Some(i) = index {
        data["item_index"] = json!(i);
    }
    if let Some(o) = outcome {
        data["attempt"] = json!(o.attempt);
        for (name, value) in [
            ("error", &o.error),
            ("error_code", &o.error_code),
            ("skip_reason", &o.skip_reason),
        ] {
            if let Some(v) = value {
                data[name] = json!(v);
            }
        }
    }
    (event, data)
}

fn watch_line(event: &str, data: &Value, style: Style) -> String {
    let time = data
        .get("ts")
        .and_then(Value::as_str)
        .map(format::local_time)
        .unwrap_or_default();
    let mut line = format!("{time}  {event}");
    if let Some(step) = data.get("step_id").and_then(Value::as_str) {
        line.push_str("  ");
        line.push_str(step);
        if let Some(i) = data.get("item_index") {
            line.push_str(&format!(".{i}"));
        }
    }
    let status = data.get("status").and_then(Value::as_str).unwrap_or("");
    let detail = match (
        data.get("error_code").and_then(Value::as_str),
        data.get("error").and_then(Value::as_str),
        data.get("skip_reason").and_then(Value::as_str),
    ) {
        (Some(c), Some(e), _) => format!("{c}: {e}"),
        (_, _, Some(r)) if status == "skipped" => r.to_string(),
        _ => String::new(),
    };
    if !detail.is_empty()
        && matches!(
            status,
            "failed" | "skipped" | "cancelled" | "needs_human_review"
        )
    {
        line.push_str("  ");
        line.push_str(&style.status(&detail));
    }
    line
}

/// `runs watch` through the polling fallback of cli-and-ops.md §1.6: one line per status
/// change seen by `GET /runs/{id}` every second.
async fn watch(a: &WatchArgs) -> Result<u8, Failure> {
    let client = client(&a.target)?;
    let style = Style {
        enabled: output::stdout_colour(),
    };
    let mut seen: HashMap<String, String> = HashMap::new();
    loop {
        let value = crate::follow::fetch(&client, &a.run_id, Duration::from_secs(1)).await?;
        let doc: RunDoc = view(&value, "run record")?;
        let current = statuses(&doc);
        // Steps and items first, the run last: a final run line closes the watch.
        for (key, status) in current.iter().skip(1).chain(current.iter().take(1)) {
            if status == "pending" || seen.get(key) == Some(status) {
                continue;
            }
            seen.insert(key.clone(), status.clone());
            let (event, data) = watch_event(&doc, key, status);
            if a.target.json {
                println!("{}", serde_json::to_string(&data).unwrap_or_default());
            } else {
                println!("{}", watch_line(&event, &data, style));
            }
        }
        if is_terminal(&doc.run.status) {
            return Ok(exit::for_status(&doc.run.status));
        }
        actix_rt::time::sleep(Duration::from_secs(1)).await;
    }
}
