//! `ktsu invoke <workflow>` (cli-and-ops.md §1.5): `POST /invoke/{workflow}`; with `--wait`,
//! follow the run (a first `?wait=` slice, then polling every second) and exit by its status.

use crate::client::{block_on, Client, Failure, Target};
use crate::embedded::or_signal;
use crate::exit;
use crate::follow::{self, ApprovalHint, Ending, Schedule};
use crate::format::{self, parse_flag_duration};
use crate::output;
use crate::progress::Progress;
use crate::records::is_terminal;
use crate::runs::show_record;
use crate::signals;
use awc::http::header::{HeaderName, HeaderValue};
use clap::Args as ClapArgs;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// The longest `?wait=` asked for, so the request stays within the 30 s request timeout.
const WAIT_SLICE: Duration = Duration::from_secs(25);
/// Room for the answer after the server's wait ends.
const WAIT_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The workflow's name.
    pub workflow: String,
    /// Run input: JSON text, `@path` or `@-` (stdin). Must be a JSON object.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Extra request header `Name: value` (repeatable), e.g. for the workflow's invoke.auth.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Sent as Idempotency-Key; a replay prints the existing run.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Follow the run to its end and exit by its status (0/1/4/5).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: stop waiting after this long, print the current record, exit 6.
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = parse_flag_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub target: Target,
}

/// `Name: value` → a header.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let bad = || format!("invalid header \"{text}\" (expected 'Name: value')");
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
    Ok((name, value))
}

pub fn run(args: &Args, quiet: bool) -> u8 {
    let input = match crate::run::read_input(&args.input) {
        Ok(v) => v,
        Err(e) => {
            output::error(e);
            return exit::USAGE;
        }
    };
    let mut headers = Vec::new();
    for text in &args.headers {
        match parse_header(text) {
            Ok(h) => headers.push(h),
            Err(e) => {
                output::error(e);
                return exit::USAGE;
            }
        }
    }
    if let Some(key) = &args.idempotency_key {
        match HeaderValue::from_str(key) {
            Ok(v) => headers.push((HeaderName::from_static("idempotency-key"), v)),
            Err(_) => {
                output::error("--idempotency-key must be visible ASCII");
                return exit::USAGE;
            }
        }
    }
    block_on(async move {
        let client = match Client::new(&args.target.base_url()) {
            Ok(c) => c,
            Err(f) => return f.report(),
        };
        if !args.wait {
            return start_only(&client, args, &input, &headers)
                .await
                .unwrap_or_else(|f| f.report());
        }
        let progress = Progress::new(
            output::progress_allowed(args.target.json, quiet),
            &args.workflow,
            "starting",
        );
        let mut signal: Pin<Box<dyn Future<Output = signals::Signal>>> = Box::pin(signals::first());
        let hint = (!quiet).then(|| ApprovalHint {
            extra_args: String::new(),
        });
        let waited = or_signal(
            start_and_follow(&client, args, &input, &headers, &progress, hint.as_ref()),
            &mut signal,
        )
        .await;
        let mut progress = progress;
        progress.clear();
        match waited {
            Err(signal) => {
                if !quiet {
                    eprintln!("interrupted; the run keeps going on the orchestrator");
                }
                signal.exit_code()
            }
            Ok(Err(f)) => f.report(),
            Ok(Ok((ending, run_id))) => {
                report_ending(&ending, &run_id, args).unwrap_or_else(|f| f.report())
            }
        }
    })
}

/// Without `--wait`: the run id, or the server's body with `--json`.
async fn start_only(
    client: &Client,
    args: &Args,
    input: &Value,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<u8, Failure> {
    let url = client.url(&["invoke", &args.workflow], &[]);
    let body = client
        .post_raw(&url, input, headers, crate::client::REQUEST_TIMEOUT)
        .await?
        .into_json()?;
    if args.target.json {
        output::print_json(&body);
    } else {
        println!("run_id: {}", run_id_of(&body)?);
    }
    Ok(exit::OK)
}

fn run_id_of(body: &Value) -> Result<String, Failure> {
    body.get("run_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Failure::Unexpected("the invoke answer has no run_id".into()))
}

/// Invoke with a first `?wait=` slice, then poll until the end or the deadline.
async fn start_and_follow(
    client: &Client,
    args: &Args,
    input: &Value,
    headers: &[(HeaderName, HeaderValue)],
    progress: &Progress,
    hint: Option<&ApprovalHint>,
) -> Result<(Ending, String), Failure> {
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let slice = deadline.map_or(WAIT_SLICE, |d| {
        WAIT_SLICE.min(d.saturating_duration_since(Instant::now()))
    });
    let url = client.url(
        &["invoke", &args.workflow],
        &[("wait", slice.as_secs().to_string())],
    );
    let body = client
        .post_raw(&url, input, headers, slice + WAIT_MARGIN)
        .await?
        .into_json()?;
    let run_id = run_id_of(&body)?;
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    progress.set(&run_id, status);
    // A run that ended within the wait comes back whole: `{run_id, status, run, steps}`.
    if is_terminal(status) && body.get("run").is_some() {
        let doc =
            json!({"run": body["run"], "steps": body.get("steps").cloned().unwrap_or(json!([]))});
        return Ok((Ending::Finished(doc), run_id));
    }
    let ending =
        follow::follow(client, &run_id, progress, Schedule::REMOTE, deadline, hint).await?;
    Ok((ending, run_id))
}

fn report_ending(ending: &Ending, run_id: &str, args: &Args) -> Result<u8, Failure> {
    match ending {
        Ending::Finished(doc) => {
            let status = show_record(doc, args.target.json)?;
            Ok(exit::for_status(&status))
        }
        Ending::TimedOut(doc) => {
            show_record(doc, args.target.json)?;
            let waited = args.timeout.map(format::duration).unwrap_or_default();
            output::error(format!(
                "--timeout {waited} elapsed before run {run_id} ended; it keeps going (ktsu runs get {run_id})"
            ));
            Ok(exit::TIMEOUT)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_parse_or_explain() {
        let (n, v) = parse_header("X-Api-Secret:  s3cret ").unwrap();
        assert_eq!(n.as_str(), "x-api-secret");
        assert_eq!(v.to_str().ok(), Some("s3cret"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
