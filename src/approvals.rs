//! `ktsu approvals list|approve|reject` (cli-and-ops.md §1.7); `ktsu approvals` alone lists.

use crate::client::{block_on, view, Client, Failure, Target};
use crate::exit;
use crate::output::{self, Style};
use crate::records::Approval;
use crate::render;
use clap::{Args as ClapArgs, Subcommand};
use serde_json::{json, Value};

const APPROVAL_STATUSES: [&str; 6] = [
    "pending",
    "approved",
    "rejected",
    "timeout",
    "cancelled",
    "all",
];

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
    /// List approvals (default: pending ones of every run).
    List(ListArgs),
    /// Approve a tool call that waits for a decision.
    Approve(DecideArgs),
    /// Reject a tool call that waits for a decision.
    Reject(DecideArgs),
}

#[derive(Debug, ClapArgs)]
pub struct ListArgs {
    /// Only approvals of this run.
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run_id: Option<String>,
    /// Only approvals in this status (default pending; `all` for every status).
    #[arg(long, value_name = "STATUS", value_parser = APPROVAL_STATUSES)]
    pub status: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, ClapArgs)]
pub struct DecideArgs {
    pub run_id: String,
    /// The step, or a fan-out item address such as `analyze.2`.
    pub step_id: String,
    /// Which tool call of the step (needed when several wait).
    #[arg(long, value_name = "ID")]
    pub tool_use_id: Option<String>,
    /// Recorded with the decision.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

pub fn run(args: &Args, _quiet: bool) -> u8 {
    match &args.command {
        None => block_on(async { list(&args.list).await.unwrap_or_else(|f| f.report()) }),
        Some(Command::List(a)) => block_on(async { list(a).await.unwrap_or_else(|f| f.report()) }),
        Some(Command::Approve(a)) => {
            block_on(async { decide(a, "approved").await.unwrap_or_else(|f| f.report()) })
        }
        Some(Command::Reject(a)) => {
            block_on(async { decide(a, "rejected").await.unwrap_or_else(|f| f.report()) })
        }
    }
}

async fn list(a: &ListArgs) -> Result<u8, Failure> {
    let client = Client::new(&a.target.base_url())?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(r) = &a.run_id {
        query.push(("run_id", r.clone()));
    }
    if let Some(s) = &a.status {
        query.push(("status", s.clone()));
    }
    let value = client.get(&["approvals"], &query).await?;
    let approvals: Vec<Approval> = view(&value, "approval list")?;
    if a.target.json {
        output::print_json(&value);
    } else if approvals.is_empty() {
        let status = a.status.as_deref().unwrap_or("pending");
        if status == "all" {
            println!("no approvals");
        } else {
            println!("no {status} approvals");
        }
    } else {
        let style = Style {
            enabled: output::stdout_colour(),
        };
        let with_status = a.status.as_deref().is_some_and(|s| s != "pending");
        print!("{}", render::approval_list(&approvals, with_status, style));
    }
    Ok(exit::OK)
}

/// The tool call to decide: the given id, else the step's only pending one.
async fn target_tool_use(client: &Client, a: &DecideArgs) -> Result<String, Failure> {
    if let Some(id) = &a.tool_use_id {
        return Ok(id.clone());
    }
    let query = [
        ("run_id", a.run_id.clone()),
        ("status", "pending".to_string()),
    ];
    let value = client.get(&["approvals"], &query).await?;
    let approvals: Vec<Approval> = view(&value, "approval list")?;
    let ids: Vec<String> = approvals
        .into_iter()
        .filter(|p| p.step_id == a.step_id)
        .map(|p| p.tool_use_id)
        .collect();
    match ids.as_slice() {
        [] => Err(Failure::Unexpected(format!(
            "no pending approval for step \"{}\" of run {}",
            a.step_id, a.run_id
        ))),
        [one] => Ok(one.clone()),
        several => Err(Failure::Usage(format!(
            "step \"{}\" has {} pending approvals; choose one with --tool-use-id:\n  {}",
            a.step_id,
            several.len(),
            several.join("\n  ")
        ))),
    }
}

async fn decide(a: &DecideArgs, decision: &str) -> Result<u8, Failure> {
    let client = Client::new(&a.target.base_url())?;
    let tool_use_id = match target_tool_use(&client, a).await {
        Ok(id) => id,
        // "Nothing to decide" is a refusal like the server's 404 (cli-and-ops.md §1.7).
        Err(Failure::Unexpected(message)) => {
            output::error(message);
            return Ok(exit::REFUSED);
        }
        Err(other) => return Err(other),
    };
    let mut body = json!({"decision": decision, "tool_use_id": tool_use_id});
    if let Some(c) = &a.comment {
        body["comment"] = json!(c);
    }
    if let Some(user) = os_user() {
        body["decided_by"] = json!(user);
    }
    let value = client
        .post(
            &["runs", &a.run_id, "steps", &a.step_id, "approval", "decide"],
            &body,
        )
        .await?;
    if a.target.json {
        output::print_json(&value);
    } else {
        let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("-");
        println!(
            "{decision} {} ({}) — {} step {}",
            field("tool_name"),
            field("tool_use_id"),
            field("run_id"),
            field("step_id")
        );
    }
    Ok(exit::OK)
}

/// The OS user name: `USER`, else `LOGNAME`, else this process's uid looked up in
/// `/etc/passwd`.
fn os_user() -> Option<String> {
    for var in ["USER", "LOGNAME"] {
        if let Some(name) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            return Some(name);
        }
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid).then(|| fields[0].to_string())
    })
}
