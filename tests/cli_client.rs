//! The client commands (`invoke`, `runs`, `approvals`, `health`) against `ktsu start --all`
//! running as a separate process on OS-assigned ports (cli-and-ops.md §1.5–§1.7, §1.10, §9
//! items 3–4).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod cli_support;

use cli_support::*;
use serde_json::Value;
use std::time::Duration;

fn run_id_from(out: &std::process::Output) -> String {
    let text = stdout(out);
    text.trim()
        .strip_prefix("run_id: ")
        .unwrap_or_else(|| panic!("no run id in {text:?} / {}", stderr(out)))
        .to_string()
}

#[test]
fn invoke_runs_and_health() {
    let project = lab_project("http://127.0.0.1:9/mcp");
    let cluster = Cluster::start(project.path(), &[]);

    // invoke without --wait: the run id, or the server's body
    let out = cluster.ktsu(&["invoke", "hello", "--input", r#"{"name":"Ada"}"#]);
    assert_exit(&out, 0);
    let first = run_id_from(&out);
    assert!(first.starts_with("run_"), "{first}");
    let out = cluster.ktsu(&["invoke", "hello", "--input", r#"{"name":"Bo"}"#, "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["status"], "accepted");

    // --wait: the record, exit by status
    let out = cluster.ktsu(&["invoke", "hello", "--input", r#"{"name":"Cy"}"#, "--wait"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("  hello  complete\n"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("\nOutput\n"), "{}", stdout(&out));
    let out = cluster.ktsu(&["invoke", "triage", "--wait", "--json"]);
    assert_exit(&out, 1);
    let failed = json(&out);
    assert_eq!(failed["run"]["status"], "failed");
    let failed_id = failed["run"]["id"].as_str().unwrap().to_string();
    assert_exit(&cluster.ktsu(&["invoke", "review", "--wait"]), 4);

    // refusals and their details
    let out = cluster.ktsu(&["invoke", "hello", "--input", "{}"]);
    assert_exit(&out, 8);
    assert_eq!(
        stderr(&out),
        "error: input does not match params.schema (params_invalid, HTTP 422)\n  /name: missing required property \"name\"\n"
    );
    let out = cluster.ktsu(&["invoke", "helo"]);
    assert_exit(&out, 8);
    assert!(
        stderr(&out).contains("(workflow_not_found, HTTP 404)"),
        "{}",
        stderr(&out)
    );
    assert_exit(&cluster.ktsu(&["invoke", "hello", "--input", "[1]"]), 2);
    assert_exit(&cluster.ktsu(&["invoke", "hello", "--timeout", "1s"]), 2);

    // idempotent replay prints the same run
    let key = [
        "invoke",
        "hello",
        "--input",
        r#"{"name":"Di"}"#,
        "--idempotency-key",
        "k-1",
    ];
    let a = run_id_from(&cluster.ktsu(&key));
    let b = run_id_from(&cluster.ktsu(&key));
    assert_eq!(a, b);

    // a slow run: --timeout gives 6 and leaves it running; cancel ends it
    let out = cluster.ktsu(&["invoke", "slow", "--wait", "--timeout", "1s"]);
    assert_exit(&out, 6);
    let slow_line = stdout(&out).lines().next().unwrap_or("").to_string();
    assert!(slow_line.ends_with("  slow  running"), "{}", stdout(&out));
    let slow_id = slow_line.split_whitespace().nth(1).unwrap().to_string();
    let out = cluster.ktsu(&["runs", "cancel", &slow_id, "--reason", "test over"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("{slow_id} cancelled\n"));
    let out = cluster.ktsu(&["runs", "cancel", &slow_id, "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["run"]["status"], "cancelled");
    let out = cluster.ktsu(&["runs", "cancel", &failed_id]);
    assert_exit(&out, 8);
    assert!(
        stderr(&out).contains("(run_finished, HTTP 409)"),
        "{}",
        stderr(&out)
    );

    // runs list: table, filters, JSON as served
    let out = cluster.ktsu(&["runs"]);
    assert_exit(&out, 0);
    let table = stdout(&out);
    assert!(
        table.starts_with("RUN ID                WORKFLOW  STATUS"),
        "{table}"
    );
    assert!(table.contains(&format!("{first}  hello")), "{table}");
    let out = cluster.ktsu(&["runs", "list", "--status", "failed", "--json"]);
    assert_exit(&out, 0);
    let runs = json(&out)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], failed_id.as_str());
    let out = cluster.ktsu(&["runs", "list", "--limit", "1"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).lines().count(), 2);
    assert!(
        stderr(&out).starts_with("more: ktsu runs list --cursor "),
        "{}",
        stderr(&out)
    );
    let out = cluster.ktsu(&["runs", "list", "--children", "--workflow", "archive"]);
    assert_exit(&out, 0);
    assert_exit(&cluster.ktsu(&["runs", "list", "--status", "done"]), 2);

    // runs get: the operator's view, the JSON body, the envelope
    let out = cluster.ktsu(&["runs", "get", &failed_id]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("\nError     airlock_violation: "), "{text}");
    assert!(
        text.contains("\n  flags      low_risk, billing\n"),
        "{text}"
    );
    assert!(text.contains("\n  violations /approved: "), "{text}");
    let out = cluster.ktsu(&["runs", "get", &failed_id, "--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_eq!(doc["run"]["id"], failed_id.as_str());
    assert_eq!(doc["steps"].as_array().unwrap().len(), 3);
    let out = cluster.ktsu(&["runs", "get", &failed_id, "--envelope"]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["run_id"], failed_id.as_str());
    let out = cluster.ktsu(&["runs", "get", "run_0000000000000000"]);
    assert_exit(&out, 8);
    assert!(
        stderr(&out).contains("(run_not_found, HTTP 404)"),
        "{}",
        stderr(&out)
    );

    // runs watch (polling) of a finished run exits by its status
    let out = cluster.ktsu(&["runs", "watch", &failed_id]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("  step.failed  check  airlock_violation: "),
        "{}",
        stdout(&out)
    );
    let last = stdout(&out)
        .trim_end()
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    assert!(
        last.contains("  run.failed  airlock_violation: "),
        "{}",
        stdout(&out)
    );

    // health
    let out = cluster.ktsu(&["health"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "ok\n");
    let out = cluster.ktsu(&[
        "health",
        &format!("{}/health", cluster.orchestrator),
        "--json",
    ]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["services"]["runtime"], "ok");
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let out = ktsu(&["health", &closed]);
    assert_exit(&out, 7);
    let out = ktsu(&["runs", "list", "--orchestrator", &closed]);
    assert_exit(&out, 7);
    assert!(
        stderr(&out).starts_with(&format!("error: cannot reach {closed}: ")),
        "{}",
        stderr(&out)
    );
    assert_exit(
        &ktsu(&["runs", "list", "--orchestrator", "localhost:5050"]),
        2,
    );
}

#[test]
fn api_key_is_sent_from_the_environment() {
    let project = lab_project("http://127.0.0.1:9/mcp");
    let cluster = Cluster::start(project.path(), &[("KTSU_API_KEY", "test-key-4321")]);
    let out = cluster.ktsu(&["runs", "list"]);
    assert_exit(&out, 8);
    assert!(
        stderr(&out).contains("(unauthorized, HTTP 401)"),
        "{}",
        stderr(&out)
    );
    let out = cluster.ktsu_env(&["runs", "list"], &[("KTSU_API_KEY", "test-key-4321")]);
    assert_exit(&out, 0);
    // An explicit header wins over the default one.
    let out = cluster.ktsu_env(
        &[
            "invoke",
            "hello",
            "--input",
            r#"{"name":"Ed"}"#,
            "-H",
            "Authorization: Bearer wrong",
        ],
        &[("KTSU_API_KEY", "test-key-4321")],
    );
    assert_exit(&out, 8);
}

fn pending_approvals(cluster: &Cluster, run_id: &str) -> Vec<Value> {
    let out = cluster.ktsu(&["approvals", "list", "--run", run_id, "--json"]);
    assert_exit(&out, 0);
    json(&out).as_array().unwrap().clone()
}

fn start_gated(cluster: &Cluster) -> String {
    let run_id = run_id_from(&cluster.ktsu(&["invoke", "gated"]));
    eventually(Duration::from_secs(30), "a pending approval", || {
        (!pending_approvals(cluster, &run_id).is_empty()).then_some(())
    });
    run_id
}

#[test]
fn approvals_round_trip() {
    let mcp = McpServer::start();
    let project = lab_project(&mcp.url);
    let cluster = Cluster::start(project.path(), &[]);

    // approve: the tool runs, the run completes
    let run_id = start_gated(&cluster);
    let out = cluster.ktsu(&["approvals"]);
    assert_exit(&out, 0);
    let table = stdout(&out);
    assert!(table.starts_with("RUN ID"), "{table}");
    assert!(
        table.contains("  TOOL USE ID  ") && table.contains("  WAITING  EXPIRES\n"),
        "{table}"
    );
    assert!(
        table.contains(&format!("{run_id}  work  delete_record  ")),
        "{table}"
    );
    assert!(table.contains(" → reject"), "{table}");
    let out = cluster.ktsu(&["runs", "get", &run_id]);
    assert!(
        stdout(&out).contains("work  agent  pending_approval"),
        "{}",
        stdout(&out)
    );
    let out = cluster.ktsu(&["approvals", "approve", &run_id, "work", "--comment", "fine"]);
    assert_exit(&out, 0);
    let line = stdout(&out);
    assert!(line.starts_with("approved delete_record ("), "{line}");
    assert!(
        line.ends_with(&format!(") — {run_id} step work\n")),
        "{line}"
    );
    let out = cluster.ktsu(&["runs", "watch", &run_id]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("run.complete"), "{}", stdout(&out));
    assert_eq!(*mcp.calls.lock().unwrap(), 1);
    // nothing left to decide
    assert_exit(&cluster.ktsu(&["approvals", "approve", &run_id, "work"]), 8);
    let out = cluster.ktsu(&["approvals", "list", "--run", &run_id, "--status", "all"]);
    assert!(stdout(&out).contains("approved"), "{}", stdout(&out));

    // reject (on_reject: fail): the run fails, the tool never runs
    let run_id = start_gated(&cluster);
    let tool_use_id = pending_approvals(&cluster, &run_id)[0]["tool_use_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cluster.ktsu(&[
        "approvals",
        "reject",
        &run_id,
        "work",
        "--tool-use-id",
        &tool_use_id,
        "--json",
    ]);
    assert_exit(&out, 0);
    assert_eq!(json(&out)["status"], "rejected");
    let out = cluster.ktsu(&[
        "approvals",
        "reject",
        &run_id,
        "work",
        "--tool-use-id",
        &tool_use_id,
    ]);
    assert_exit(&out, 8);
    assert!(
        stderr(&out).contains("(approval_already_decided, HTTP 409)"),
        "{}",
        stderr(&out)
    );
    let out = cluster.ktsu(&["runs", "watch", &run_id, "--json"]);
    assert_exit(&out, 1);
    let last: Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "run.failed");
    assert_eq!(last["error_code"], "approval_rejected");
    assert_eq!(*mcp.calls.lock().unwrap(), 1);
}
