//! The `ktsu` command line (cli-and-ops.md §1): parse arguments, call a library, map the
//! outcome to an exit code. Each command lives in its own module.

mod approvals;
mod client;
mod embedded;
mod follow;
mod format;
mod health;
mod invoke;
mod output;
mod progress;
mod records;
mod render;
mod run;
mod run_plan;
mod runs;
mod signals;
mod start;
mod validate;

/// mimalloc instead of glibc's malloc: less time per allocation on the services' hot paths and
/// freed memory given back (bench/README.md has the figures of both).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod version;
mod workflow;

use clap::{Parser, Subcommand};
use ktsu_shared::logging;
use std::process::ExitCode;

/// Exit codes of cli-and-ops.md §1.2.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFIG: u8 = 3;
    pub const NEEDS_HUMAN_REVIEW: u8 = 4;
    pub const CANCELLED: u8 = 5;
    pub const TIMEOUT: u8 = 6;
    pub const UNREACHABLE: u8 = 7;
    pub const REFUSED: u8 = 8;

    /// The exit code of a command that followed a run to this final status.
    pub fn for_status(status: &str) -> u8 {
        match status {
            "complete" => OK,
            "needs_human_review" => NEEDS_HUMAN_REVIEW,
            "cancelled" => CANCELLED,
            _ => FAILURE,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ktsu",
    version,
    about = "Run AI agent pipelines defined in YAML: schema-checked, recorded, safe.",
    arg_required_else_help = true,
    propagate_version = true
)]
struct Cli {
    /// Log format on stderr: auto (JSON when stderr is not a terminal), json or text
    /// (default: KTSU_LOG_FORMAT, else auto).
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["auto", "json", "text"])]
    log_format: Option<String>,
    /// Print only results (no progress, no hints).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a project: every file, every reference, every check, all errors at once.
    Validate(validate::Args),
    /// Start a service (gateway, orchestrator, runtime) or all three (--all) in the foreground.
    Start(Box<start::Args>),
    /// Run a workflow once with the services embedded in this process.
    Run(run::Args),
    /// Start a run on an orchestrator (POST /invoke/{workflow}), optionally waiting for its end.
    Invoke(invoke::Args),
    /// List, inspect, cancel or watch runs (`runs` alone lists).
    Runs(runs::Args),
    /// List pending tool-call approvals, approve or reject them.
    Approvals(approvals::Args),
    /// Check a service's /health (exit 0 iff it answers 200 with status ok).
    Health(health::Args),
    /// Inspect workflows.
    #[command(subcommand)]
    Workflow(workflow::Command),
    /// Print version, commit and build time.
    Version(version::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    if let Command::Start(args) = &cli.command {
        // Services initialise logging themselves, at `info`.
        let code = start::run(args, cli.log_format.as_deref());
        logging::flush();
        return ExitCode::from(code);
    }
    // Client commands log at `warn` unless KTSU_LOG / RUST_LOG say otherwise (cli-and-ops.md §2.2).
    let settings = match logging::LogSettings::from_env("cli", cli.log_format.as_deref(), "warn") {
        Ok(s) => s,
        Err(e) => {
            output::error(e);
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Err(e) = logging::init(&settings) {
        output::error(e);
        return ExitCode::from(exit::FAILURE);
    }
    let code = match cli.command {
        Command::Start(_) => exit::USAGE,
        Command::Validate(args) => validate::run(&args),
        Command::Run(args) => run::run(&args, cli.quiet),
        Command::Invoke(args) => invoke::run(&args, cli.quiet),
        Command::Runs(args) => runs::run(&args, cli.quiet),
        Command::Approvals(args) => approvals::run(&args, cli.quiet),
        Command::Health(args) => health::run(&args),
        Command::Workflow(cmd) => workflow::run(&cmd),
        Command::Version(args) => version::run(&args),
    };
    logging::flush();
    ExitCode::from(code)
}
