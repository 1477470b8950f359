//! `ktsu health [URL] [--timeout 3s]` (cli-and-ops.md §1.10, §4): GET a service's `/health`,
//! print `ok` or what is not, exit 0 iff HTTP 200 with `status` `ok`, else 7. Container health
//! checks use it, so images need no curl.

use crate::client::{block_on, Client, Failure, DEFAULT_ORCHESTRATOR_URL};
use crate::exit;
use crate::format::parse_flag_duration;
use crate::output;
use clap::Args as ClapArgs;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Health URL (default: $KTSU_ORCHESTRATOR_URL/health); a bare base URL gets `/health`.
    pub url: Option<String>,
    /// Give up after this long (connect included).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_flag_duration)]
    pub timeout: Duration,
    /// Print the health body as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The URL to probe: the argument, else the orchestrator's; `/health` added to a bare base.
fn health_url(given: Option<&str>) -> String {
    let url = given.map(str::to_string).unwrap_or_else(|| {
        std::env::var("KTSU_ORCHESTRATOR_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_ORCHESTRATOR_URL.to_string())
    });
    let url = url.trim().trim_end_matches('/').to_string();
    let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    if after_scheme.contains('/') {
        url
    } else {
        format!("{url}/health")
    }
}

/// `ok`, or the status and each service whose value is not `ok`.
fn describe(body: &Value) -> String {
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    if status == "ok" {
        return "ok".into();
    }
    let mut text = status.to_string();
    if let Some(services) = body.get("services").and_then(Value::as_object) {
        for (name, value) in services {
            let value = value.as_str().unwrap_or("unknown");
            if value != "ok" {
                text.push_str(&format!("\n  {name}: {value}"));
            }
        }
    }
    text
}

pub fn run(args: &Args) -> u8 {
    let url = health_url(args.url.as_deref());
    block_on(async move {
        match probe(&url, args.timeout, args.json).await {
            Ok(code) => code,
            Err(f) => {
                f.report();
                // Whatever went wrong, the service is not known to be healthy.
                if f.exit_code() == exit::USAGE {
                    exit::USAGE
                } else {
                    exit::UNREACHABLE
                }
            }
        }
    })
}

async fn probe(url: &str, timeout: Duration, json: bool) -> Result<u8, Failure> {
    let client = Client::with_timeout(url, timeout)?;
    let answer = client.get_raw(client.base(), Some(timeout)).await?;
    let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let healthy = answer.status == 200
        && body
            .as_ref()
            .and_then(|b| b.get("status"))
            .and_then(Value::as_str)
            == Some("ok");
    match &body {
        Some(b) if json => output::print_json(b),
        Some(b) => println!("{}", describe(b)),
        None => {
            let text = String::from_utf8_lossy(&answer.body);
            println!("HTTP {} {}", answer.status, text.trim());
        }
    }
    if !healthy && answer.status != 200 {
        log::debug!("{url} answered HTTP {}", answer.status);
    }
    Ok(if healthy { exit::OK } else { exit::UNREACHABLE })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_and_descriptions() {
        assert_eq!(
            health_url(Some("http://127.0.0.1:5052")),
            "http://127.0.0.1:5052/health"
        );
        assert_eq!(
            health_url(Some("http://127.0.0.1:5052/health/live")),
            "http://127.0.0.1:5052/health/live"
        );
        assert_eq!(
            describe(&json!({"status": "ok", "services": {"gateway": "unconfigured"}})),
            "ok"
        );
        assert_eq!(
            describe(
                &json!({"status": "error", "services": {"orchestrator": "ok", "gateway": "down", "runtime": "ok"}})
            ),
            "error\n  gateway: down"
        );
    }
}
