use crate::cluster::{http, Cluster, Options, INTERNAL_TOKEN};
use crate::fixtures::{self, CANARY};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn options() -> Options {
    Options {
        env: vec![
            ("CANARY_SECRET".into(), CANARY.into()),
            // Supervision tests need heartbeats well inside the timeout.
            ("KTSU_HEARTBEAT_INTERVAL_S".into(), "0.5".into()),
        ],
        ..Options::default()
    }
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("step {id} in {run}"))
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

#[test]
fn hello_example_runs_across_three_processes_and_each_stops_cleanly_on_sigterm() {
    let mut cluster = Cluster::start(&example("hello"), Options::default());
    let accepted = cluster.invoke("hello", &json!({"name": "Ada"}));
    let run_id = accepted["run_id"].as_str().expect("run_id").to_string();
    let run = cluster.wait_finished(&run_id, Duration::from_secs(20));
    assert_eq!(run["run"]["status"], "complete", "{run}");
    let greeting = &run["run"]["output"]["greet"]["greeting"];
    assert!(greeting.as_str().is_some_and(|g| !g.is_empty()), "{run}");
    let greet = step(&run, "greet");
    assert_eq!(greet["attempt"], 1);
    assert_eq!(greet["metrics"]["model_resolved"], "mock/default");
    assert_eq!(run["run"]["totals"]["llm_calls"], 1);
    // The step ran on the runtime process, which registered itself.
    let registered = cluster.runtime.events("runtime.started");
    assert_eq!(greet["runtime_id"], registered[0]["runtime_id"], "{run}");

    // Graceful shutdown: runtime, orchestrator, gateway each exit 0 on SIGTERM.
    for service in [
        &mut cluster.runtime,
        &mut cluster.orchestrator,
        &mut cluster.gateway,
    ] {
        service.signal("TERM");
        let status = service.wait_exit(Duration::from_secs(20));
        assert_eq!(
            status.code(),
            Some(0),
            "{} exit: {status}\n{}",
            service.name,
            service.lines().join("\n")
        );
    }
}

#[test]
fn a_runtime_that_stops_heartbeating_fails_its_step_with_heartbeat_timeout() {
    let project = fixtures::project();
    let mut cluster = Cluster::start(
        project.path(),
        Options {
            heartbeat_timeout_s: Some(2),
            ..options()
        },
    );
    let run_id = cluster.invoke("stuck", &json!({}))["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    cluster.wait_run(&run_id, Duration::from_secs(10), |r| {
        step(r, "stuck")["status"] == "running"
    });
    // Let a few heartbeats pass so the step is known to be supervised, then kill the runtime.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        cluster.run(&run_id)["run"]["status"],
        "running",
        "a live runtime keeps its step"
    );
    let killed = Instant::now();
    cluster.runtime.kill9();
    let run = cluster.wait_finished(&run_id, Duration::from_secs(15));
    let elapsed = killed.elapsed();
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "stuck")["error_code"],
        "heartbeat_timeout",
        "{run}"
    );
    // Timeout 2 s after the last heartbeat, plus the supervisor's scan interval.
    assert!(
        elapsed < Duration::from_secs(6),
        "failed {elapsed:?} after the kill"
    );
}

#[test]
fn orchestrator_killed_mid_run_on_sqlite_resumes_without_re_running_finished_steps() {
    let project = fixtures::project();
    let db = project.path().join("ktsu.db");
    let mut cluster = Cluster::start(
        project.path(),
        Options {
            sqlite: Some(db.clone()),
            ..options()
        },
    );
    let run_id = cluster.invoke("chain", &json!({}))["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    cluster.wait_run(&run_id, Duration::from_secs(10), |r| {
        step(r, "first")["status"] == "complete" && step(r, "slow")["status"] == "running"
    });
    cluster.orchestrator.kill9();
    cluster.restart_orchestrator();
    let run = cluster.wait_finished(&run_id, Duration::from_secs(30));
    assert_eq!(run["run"]["status"], "complete", "{run}");
    assert_eq!(
        step(&run, "first")["attempt"],
        1,
        "finished step kept: {run}"
    );
    assert_eq!(
        step(&run, "slow")["attempt"],
        2,
        "in-flight step re-dispatched with a new attempt: {run}"
    );
    assert_eq!(step(&run, "last")["attempt"], 1);
    // The runtime executed `first` exactly once across both orchestrator processes.
    let first_invocations = cluster
        .runtime
        .events("invoke.accepted")
        .into_iter()
        .filter(|r| r["run_id"] == run_id.as_str() && r["step_id"] == "first")
        .count();
    assert_eq!(
        first_invocations,
        1,
        "{}",
        cluster.runtime.lines().join("\n")
    );
    let ready = cluster.orchestrator.events("orchestrator.ready");
    assert_eq!(
        ready[0]["recovered"], 1,
        "the new process resumed the run: {ready:?}"
    );
}

#[test]
fn cancel_stops_the_run_and_tells_the_runtime() {
    let project = fixtures::project();
    let mut cluster = Cluster::start(project.path(), options());
    let run_id = cluster.invoke("stuck", &json!({}))["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    cluster.wait_run(&run_id, Duration::from_secs(10), |r| {
        step(r, "stuck")["status"] == "running"
    });
    let (status, body) = http::post(
        &format!("{}/runs/{run_id}/cancel", cluster.orchestrator_url),
        &json!({"reason": "e2e"}),
        &[],
    )
    .expect("cancel");
    assert_eq!(status, 200, "{body}");
    let run = cluster.wait_finished(&run_id, Duration::from_secs(10));
    assert_eq!(run["run"]["status"], "cancelled");
    assert_eq!(run["run"]["cancel_reason"], "e2e");
    assert_eq!(step(&run, "stuck")["status"], "cancelled");
    cluster
        .runtime
        .wait_event("invoke.cancelled", Duration::from_secs(10), |r| {
            r["run_id"] == run_id.as_str()
        });
    let (status, body) = http::post(
        &format!("{}/runs/{run_id}/cancel", cluster.orchestrator_url),
        &json!({}),
        &[],
    )
    .expect("cancel again");
    assert_eq!(
        status, 200,
        "cancelling a cancelled run is idempotent: {body}"
    );
}

#[test]
fn a_run_over_its_cost_budget_fails_with_budget_exceeded() {
    let project = fixtures::project();
    let cluster = Cluster::start(project.path(), options());
    let run_id = cluster.invoke("budget", &json!({}))["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    let run = cluster.wait_finished(&run_id, Duration::from_secs(20));
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "spend")["error_code"],
        "budget_exceeded",
        "{run}"
    );
    let spent = run["run"]["totals"]["cost_usd"].as_f64().unwrap_or(0.0);
    assert!(spent <= 0.000001, "spent {spent} over the budget");
}

/// A one-shot HTTP listener that records the request it receives and answers 200.
fn hook() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tx.send(format!("{head}\r\n{}", String::from_utf8_lossy(&body)));
        }
    });
    (url, rx)
}

#[test]
fn secrets_reach_their_target_but_no_log_line_or_record() {
    let project = fixtures::project();
    let cluster = Cluster::start(
        project.path(),
        Options {
            log: Some("debug".into()),
            ..options()
        },
    );
    let (hook_url, received) = hook();
    let run_id = cluster.invoke("canary", &json!({"hook": hook_url}))["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    let run = cluster.wait_finished(&run_id, Duration::from_secs(20));
    assert_eq!(run["run"]["status"], "complete", "{run}");
    let request = received
        .recv_timeout(Duration::from_secs(5))
        .expect("webhook received");
    assert!(
        request.contains(&format!("Bearer {CANARY}")),
        "the secret reaches its target: {request}"
    );

    // A webhook with the secret in its URL fails: the error names the URL, scrubbed.
    let failed_id = cluster.invoke("canary-fail", &json!({}))["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    let failed = cluster.wait_finished(&failed_id, Duration::from_secs(20));
    assert_eq!(failed["run"]["status"], "failed", "{failed}");
    let error = step(&failed, "leak")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("[REDACTED]"), "{error}");
    assert!(!failed.to_string().contains(CANARY), "{failed}");

    let (_, envelope) = http::get(&format!(
        "{}/runs/{run_id}/envelope",
        cluster.orchestrator_url
    ))
    .expect("envelope");
    let (_, listing) = http::get(&format!("{}/runs", cluster.orchestrator_url)).expect("list");
    for (what, text) in [
        ("run record", run.to_string()),
        ("envelope", envelope.to_string()),
        ("run list", listing.to_string()),
    ] {
        assert!(!text.contains(CANARY), "{what} contains the secret: {text}");
        assert!(
            !text.contains(INTERNAL_TOKEN),
            "{what} contains the internal token"
        );
    }
    let lines = cluster.all_lines();
    assert!(lines.len() > 20, "debug logging produced lines");
    assert!(
        lines.iter().any(|l| l.contains("[REDACTED]")),
        "the failed webhook's URL is logged with the secret replaced"
    );
    for line in lines {
        assert!(
            !line.contains(CANARY),
            "a log line contains the secret: {line}"
        );
        assert!(
            !line.contains(INTERNAL_TOKEN),
            "a log line contains the internal token: {line}"
        );
    }
}
