//! The support-triage example end to end: its MCP tool servers (the official MCP Python SDK, via
//! `examples/support-triage/tools/triage_tools.py`), fan-out, a transform, a conditional
//! webhook, a sub-workflow and a tool gated by approval, across three service processes.

use crate::cluster::{http, Cluster, Options};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN_HEADER: (&str, &str) = ("X-Api-Secret", "dev-triage-token");

/// The example's tool servers, killed by PID on drop; `HOOK` lines are the webhooks received.
struct ToolServers {
    child: Child,
    ports: [u16; 3],
    hooks: Arc<Mutex<Vec<String>>>,
}

impl Drop for ToolServers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdk_missing() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import mcp, uvicorn"])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("import failed")
                .to_string(),
        ),
        Err(e) => Some(format!("python3 cannot run: {e}")),
    }
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/support-triage")
}

fn start_tools() -> ToolServers {
    let mut child = Command::new("python3")
        .arg(example_dir().join("tools/triage_tools.py"))
        .args(["--wiki-port", "0", "--hooks-port", "0", "--crm-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 starts");
    let stdout = child.stdout.take().expect("stdout");
    let hooks = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&hooks);
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ports) = line.strip_prefix("READY ") {
                let ports: Vec<u16> = ports
                    .split(' ')
                    .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
                    .collect();
                let _ = ready_tx.send(ports);
            } else if let Some(hook) = line.strip_prefix("HOOK ") {
                sink.lock().unwrap().push(hook.to_string());
            }
        }
    });
    let ports = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("tool servers ready");
    ToolServers {
        child,
        ports: [ports[0], ports[1], ports[2]],
        hooks,
    }
}

/// A copy of the example whose URLs point at the tool servers' ports.
fn project_copy(ports: [u16; 3]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&example_dir(), dir.path(), &|text: String| {
        text.replace("127.0.0.1:8765", &format!("127.0.0.1:{}", ports[0]))
            .replace("127.0.0.1:8766", &format!("127.0.0.1:{}", ports[1]))
            .replace("127.0.0.1:8767", &format!("127.0.0.1:{}", ports[2]))
    });
    dir
}

fn copy_dir(from: &Path, to: &Path, rewrite: &dyn Fn(String) -> String) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target, rewrite);
        } else if entry.path().extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(entry.path()).expect("read yaml");
            std::fs::write(target, rewrite(text)).expect("write yaml");
        }
    }
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("step {id} in {run}"))
}

fn wait_hooks(tools: &ToolServers, prefix: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hooks: Vec<String> = tools
            .hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.starts_with(prefix))
            .cloned()
            .collect();
        if hooks.len() >= count || Instant::now() > deadline {
            return hooks;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn support_triage_runs_with_real_mcp_servers_and_an_approval() {
    if let Some(reason) = sdk_missing() {
        println!("SKIPPED: the MCP Python SDK is not importable: {reason}");
        return;
    }
    let tools = start_tools();
    let project = project_copy(tools.ports);
    let cluster = Cluster::start(
        project.path(),
        Options {
            env_file: Some(project.path().join("environments/dev.env.yaml")),
            ..Options::default()
        },
    );

    // invoke.auth: the workflow's own secret header is required.
    let (status, body) = http::post(
        &format!("{}/invoke/support-triage", cluster.orchestrator_url),
        &json!({"message": "x", "user_id": "u-1"}),
        &[],
    )
    .expect("invoke answered");
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );

    // 1. A plain ticket: wiki search over MCP, fan-out scoring, transform, Slack webhook, archive sub-run.
    let ticket = json!({"message": "I was charged twice for order 1234", "user_id": "u-1001"});
    let run_id = cluster.invoke_with("support-triage", &ticket, &[TOKEN_HEADER])["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    let run = cluster.wait_finished(&run_id, Duration::from_secs(30));
    assert_eq!(run["run"]["status"], "complete", "{run}");
    assert_eq!(run["run"]["output"]["category"], "billing");
    assert_eq!(
        run["run"]["output"]["links"],
        json!([{"score": 0.95, "url": "https://wiki.example.com/billing/duplicate-charges"}])
    );
    assert_eq!(
        step(&run, "parse")["metrics"]["tool_calls"],
        1,
        "the parser searched the wiki"
    );
    assert_eq!(
        step(&run, "score-links")["output"]["results"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_eq!(step(&run, "notify")["output"]["status_code"], 200);
    let archive = step(&run, "archive");
    assert_eq!(archive["output"]["archived"], true, "{archive}");
    assert!(
        archive["child_run_id"]
            .as_str()
            .is_some_and(|c| c == format!("{run_id}.archive")),
        "{archive}"
    );
    let slack = wait_hooks(&tools, "/slack", 1);
    assert!(slack[0].contains("Ticket from u-1001"), "{slack:?}");
    assert_eq!(wait_hooks(&tools, "/archive", 1).len(), 1);

    // 2. A ticket about an outdated page: the parser asks to delete it, a human approves.
    let ticket = json!({"message": "The outdated invoices page confused me", "user_id": "u-1001"});
    let run_id = cluster.invoke_with("support-triage", &ticket, &[TOKEN_HEADER])["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    cluster.wait_run(&run_id, Duration::from_secs(20), |r| {
        step(r, "parse")["status"] == "pending_approval"
    });
    let (_, pending) = http::get(&format!(
        "{}/approvals?run_id={run_id}",
        cluster.orchestrator_url
    ))
    .expect("approvals");
    let approval = &pending[0];
    assert_eq!(approval["tool_name"], "wiki_delete_page", "{pending}");
    let pager = wait_hooks(&tools, "/pager", 1);
    assert!(
        pager[0].contains("Approval needed for wiki_delete_page"),
        "the approval hook fired: {pager:?}"
    );
    let (status, decided) = http::post(
        &format!("{}/runs/{run_id}/steps/parse/approval/decide", cluster.orchestrator_url),
        &json!({"decision": "approved", "tool_use_id": approval["tool_use_id"], "decided_by": "e2e"}),
        &[],
    )
    .expect("decide");
    assert_eq!(status, 200, "{decided}");
    let run = cluster.wait_finished(&run_id, Duration::from_secs(30));
    assert_eq!(run["run"]["status"], "complete", "{run}");
    let (status, again) = http::post(
        &format!(
            "{}/runs/{run_id}/steps/parse/approval/decide",
            cluster.orchestrator_url
        ),
        &json!({"decision": "rejected", "tool_use_id": approval["tool_use_id"]}),
        &[],
    )
    .expect("decide again");
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("approval_already_decided")),
        "{again}"
    );
}
