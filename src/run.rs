//! `ktsu run <workflow>` (cli-and-ops.md §1.4): validate the project and the input, start the
//! three services in this process on loopback ports, invoke the workflow, follow the run, print
//! its record and exit by its status. The plan and the checks are in `run_plan`; this module
//! drives the services and the run.

use crate::client::{Client, Failure, REQUEST_TIMEOUT};
use crate::embedded::{self, or_signal, Services};
use crate::exit;
use crate::follow::{self, ApprovalHint, Ending, Schedule};
use crate::format::{self, parse_flag_duration};
use crate::output;
use crate::progress::Progress;
use crate::run_plan::{self, Invocation};
use crate::runs::show_record;
use crate::signals::{self, Signal};
use crate::validate::ProjectArgs;
use clap::Args as ClapArgs;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// How long the embedded services get to report ready (cli-and-ops.md §1.4 step 3).
const READY_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Path of a `*.workflow.yaml` file, or a workflow name looked up in the workflow dir.
    pub workflow: String,
    /// Run input: JSON text, `@path` or `@-` (stdin). Must be a JSON object.
    #[arg(long, default_value = "{}")]
    pub input: String,
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Gateway file (default: <project>/gateway.yaml if it exists, else the built-in mock).
    #[arg(long, value_name = "FILE")]
    pub gateway_config: Option<PathBuf>,
    /// Serve every model group with the built-in mock provider, even if a gateway file exists.
    #[arg(long)]
    pub mock: bool,
    /// Where the run record is kept: memory (default) or sqlite. KTSU_STORE_TYPE is ignored.
    #[arg(long, value_name = "TYPE")]
    pub store_type: Option<String>,
    /// SQLite file with --store-type sqlite (default ktsu.db). KTSU_DB_PATH is ignored.
    #[arg(long, value_name = "FILE")]
    pub db_path: Option<String>,
    /// Cancel the run after this long (exit 6), e.g. 90s, 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_flag_duration)]
    pub timeout: Option<Duration>,
    /// Print the run record (GET /runs/{id}) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Reads `--input` (cli-and-ops.md §1.1): JSON text, `@path` or `@-`; must be an object.
pub fn read_input(input: &str) -> Result<serde_json::Value, String> {
    let text = match input.strip_prefix('@') {
        Some("-") => {
            let mut buf = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf)
                .map_err(|e| format!("cannot read --input from stdin: {e}"))?;
            buf
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --input file {path}: {e}"))?,
        None => input.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "--input is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    if !value.is_object() {
        return Err("--input must be a JSON object".into());
    }
    Ok(value)
}

pub fn run(args: &Args, quiet: bool) -> u8 {
    // `ktsu run` is a foreground command, never a systemd service: the embedded services must
    // not report READY/STOPPING or watchdog pings to a NOTIFY_SOCKET inherited from a unit
    // that runs this command. Removed before any thread exists.
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(var);
    }
    let input = match read_input(&args.input) {
        Ok(v) => v,
        Err(e) => {
            output::error(e);
            return exit::USAGE;
        }
    };
    let prepared = match run_plan::prepare(args, input) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let options = Options {
        json: args.json,
        quiet,
        timeout: args.timeout,
        suggest_mock: prepared.uses_gateway_file,
    };
    actix_rt::System::new().block_on(execute(prepared.plan, prepared.invocation, options))
}

/// Output and waiting choices.
struct Options {
    json: bool,
    quiet: bool,
    timeout: Option<Duration>,
    /// A gateway file is served: a configuration failure may be fixed with `--mock`.
    suggest_mock: bool,
}

type SignalFuture = Pin<Box<dyn Future<Output = Signal>>>;

async fn execute(plan: embedded::Plan, invocation: Invocation, options: Options) -> u8 {
    let token = match embedded::internal_token() {
        Ok(t) => t,
        Err(f) => {
            output::error(f.message);
            return f.code;
        }
    };
    let services = match embedded::start(plan, token).await {
        Ok(s) => s,
        Err(f) => {
            output::error(&f.message);
            if f.code == exit::CONFIG && options.suggest_mock {
                eprintln!("hint: run with --mock to serve every model group with the built-in mock provider");
            }
            return f.code;
        }
    };
    let mut signal: SignalFuture = Box::pin(signals::first());
    match or_signal(services.wait_ready(READY_WITHIN), &mut signal).await {
        Ok(true) => {}
        Ok(false) => {
            output::error(format!(
                "the embedded services did not become ready within {}s",
                READY_WITHIN.as_secs()
            ));
            services.stop().await;
            return exit::UNREACHABLE;
        }
        Err(s) => {
            services.stop().await;
            return s.exit_code();
        }
    }
    let code = drive(&services, &invocation, &options, &mut signal).await;
    services.stop().await;
    code
}

/// Invokes the workflow and follows the run to its end, a timeout or a signal.
async fn drive(
    services: &Services,
    invocation: &Invocation,
    options: &Options,
    signal: &mut SignalFuture,
) -> u8 {
    let client = match Client::new(&services.orchestrator_url) {
        Ok(c) => c,
        Err(f) => return f.report(),
    };
    let mut progress = Progress::new(
        output::progress_allowed(options.json, options.quiet),
        &invocation.workflow,
        "starting",
    );
    let url = client.url(&["invoke", &invocation.workflow], &[]);
    // Not interruptible: the answer (202) is immediate, and a signal arriving meanwhile is
    // kept by the handler and seen while following, when the run id is known and the run can
    // be cancelled (an uncancelled run would hold the shutdown until its step ends).
    let started = client
        .post_raw(
            &url,
            &invocation.input,
            &invocation.headers,
            REQUEST_TIMEOUT,
        )
        .await
        .and_then(|a| a.into_json());
    let run_id = match started.and_then(|body| {
        body.get("run_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Failure::Unexpected("the invoke answer has no run_id".into()))
    }) {
        Ok(id) => id,
        Err(f) => {
            progress.clear();
            return f.report();
        }
    };
    progress.set(&run_id, "pending");
    let hint = (!options.quiet).then(|| ApprovalHint {
        extra_args: format!(" --orchestrator {}", services.orchestrator_url),
    });
    let deadline = options.timeout.map(|t| Instant::now() + t);
    let followed = or_signal(
        follow::follow(
            &client,
            &run_id,
            &progress,
            Schedule::EMBEDDED,
            deadline,
            hint.as_ref(),
        ),
        signal,
    )
    .await;
    match followed {
        Ok(Ok(Ending::Finished(record))) => {
            progress.clear();
            print_record(&record, options.json)
        }
        Ok(Ok(Ending::TimedOut(_))) => {
            let waited = options.timeout.map(format::duration).unwrap_or_default();
            let reason = format!("ktsu run --timeout {waited} elapsed");
            let record = follow::cancel_and_settle(&client, &run_id, &reason, &progress).await;
            progress.clear();
            if let Some(record) = record {
                print_record(&record, options.json);
            }
            output::error(format!(
                "--timeout {waited} elapsed before the run ended; it was cancelled"
            ));
            exit::TIMEOUT
        }
        Ok(Err(f)) => {
            progress.clear();
            f.report()
        }
        Err(s) => {
            // First signal: cancel the run and show where it stood; a second one exits at
            // once (signals::first).
            let reason = format!("interrupted ({})", s.name());
            let record = follow::cancel_and_settle(&client, &run_id, &reason, &progress).await;
            progress.clear();
            if let Some(record) = record {
                print_record(&record, options.json);
            }
            s.exit_code()
        }
    }
}

/// Prints the record; the exit code of its status.
fn print_record(record: &Value, json: bool) -> u8 {
    match show_record(record, json) {
        Ok(status) => exit::for_status(&status),
        Err(f) => f.report(),
    }
}
