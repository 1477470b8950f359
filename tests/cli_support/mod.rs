//! Shared by the CLI tests: running the real binary, a test project whose mock provider is
//! scripted per agent, `ktsu start --all` on OS-assigned ports (stopped by PID on drop, also
//! on panic), and a minimal MCP tool server for approval round trips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code // each test file uses a different part
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ktsu")
}

/// A `ktsu` command with a clean environment for the CLI's own variables.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("NO_COLOR", "1");
    for var in [
        "KTSU_PROJECT_DIR",
        "KTSU_WORKFLOW_DIR",
        "KTSU_ORCHESTRATOR_URL",
        "KTSU_API_KEY",
        "KTSU_INTERNAL_TOKEN",
        "KTSU_LOG",
        "RUST_LOG",
        "KTSU_STORE_TYPE",
        "KTSU_DB_PATH",
        "NOTIFY_SOCKET",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub fn ktsu(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

/// Asserts the exit code, showing both streams otherwise.
#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

pub fn write_files(dir: &Path, files: &[(&str, String)]) {
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
}

fn agent(name: &str, output_schema: &str, extra: &str) -> String {
    format!(
        "kind: agent\nname: {name}\nmodel: standard\nmax_turns: 3\nprompt:\n  system: Answer with one JSON object.\n  user: Go.\n{extra}output:\n  schema: {output_schema}\n"
    )
}

fn one_step(name: &str, agent_file: &str) -> String {
    format!(
        "kind: workflow\nname: {name}\npipeline:\n  - id: work\n    agent: agents/{agent_file}\n"
    )
}

/// A project exercising every run outcome with the scripted mock provider:
/// `hello` (complete, needs `name`), `triage` (a flagged step, then a step whose output
/// fails the step's schema, an Air-Lock failure: failed), `review` (needs_human_review), `slow` (30 s per model call), `gated` (a tool
/// behind approval on the MCP server at `mcp_url`), `archive` (a sub-workflow).
pub fn lab_project(mcp_url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        (
            "gateway.yaml",
            "kind: gateway\nproviders:\n  - name: mock\n    type: mock\n    config: { tool_mode: first, script: mock-script.yaml }\nmodel_groups:\n  - name: standard\n    models: [mock/default]\n".to_string(),
        ),
        (
            "mock-script.yaml",
            r#"rules:
  - match: { agent: classifier }
    reply: { json: { label: billing, ktsu_flags: [low_risk, billing], ktsu_rationale: "Invoice words, no urgency." } }
  - match: { agent: checker }
    reply: { json: { verdict: "no" } }
  - match: { agent: reviewer }
    reply: { json: { answer: unsure, ktsu_needs_human: true } }
  - match: { agent: sleeper }
    reply: { generate: true, latency_ms: 30000 }
"#
            .to_string(),
        ),
        (
            "agents/greeter.agent.yaml",
            agent(
                "greeter",
                "{ type: object, required: [greeting], properties: { greeting: { type: string } } }",
                "",
            ),
        ),
        (
            "agents/classifier.agent.yaml",
            agent("classifier", "{ type: object, required: [label] }", ""),
        ),
        (
            "agents/checker.agent.yaml",
            agent(
                "checker",
                "{ type: object, required: [verdict], properties: { verdict: { type: string } } }",
                "",
            ),
        ),
        (
            "agents/reviewer.agent.yaml",
            agent("reviewer", "{ type: object, required: [answer] }", ""),
        ),
        (
            "agents/sleeper.agent.yaml",
            agent("sleeper", "{ type: object }", ""),
        ),
        (
            "agents/janitor.agent.yaml",
            agent(
                "janitor",
                "{ type: object }",
                "servers:\n  - name: admin\n    path: ../servers/admin.server.yaml\n    access:\n      allowlist:\n        - name: delete_record\n          require_approval: { on_reject: fail, timeout: 30m, timeout_behavior: reject }\n",
            ),
        ),
        (
            "servers/admin.server.yaml",
            format!("kind: tool-server\nname: admin\nurl: {mcp_url}\n"),
        ),
        (
            "workflows/hello.workflow.yaml",
            "kind: workflow\nname: hello\nparams:\n  schema:\n    type: object\n    required: [name]\n    properties:\n      name: { type: string }\npipeline:\n  - id: greet\n    agent: agents/greeter.agent.yaml\n".to_string(),
        ),
        (
            "workflows/triage.workflow.yaml",
            "kind: workflow\nname: triage\npipeline:\n  - id: classify\n    agent: agents/classifier.agent.yaml\n  - id: check\n    agent: agents/checker.agent.yaml\n    depends_on: [classify]\n    output:\n      schema: { type: object, required: [approved] }\n  - id: archive\n    workflow: ./archive.workflow.yaml\n    depends_on: [check]\n".to_string(),
        ),
        (
            "workflows/archive.workflow.yaml",
            "kind: workflow\nname: archive\nvisibility: sub-workflow\npipeline:\n  - id: store\n    agent: ../agents/greeter.agent.yaml\n".to_string(),
        ),
        ("workflows/review.workflow.yaml", one_step("review", "reviewer.agent.yaml")),
        ("workflows/slow.workflow.yaml", one_step("slow", "sleeper.agent.yaml")),
        ("workflows/gated.workflow.yaml", one_step("gated", "janitor.agent.yaml")),
    ];
    let files: Vec<(&str, String)> = files.into_iter().collect();
    write_files(dir.path(), &files);
    dir
}

pub fn workflow_file(project: &Path, name: &str) -> String {
    project
        .join(format!("workflows/{name}.workflow.yaml"))
        .to_string_lossy()
        .into_owned()
}

/// A process started by a test, killed by PID when dropped (also when the test panics).
pub struct Spawned {
    pub child: Child,
    /// stderr lines read so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Spawns with stdout captured and stderr collected line by line.
    pub fn start(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Spawned { child, log }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no log line with {needle:?} within {within:?}:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    /// Sends a signal by PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit (at most `within`) and returns (code, stdout, stderr).
    pub fn finish(mut self, within: Duration) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        std::thread::sleep(Duration::from_millis(50));
        let err = self.log.lock().unwrap().join("\n");
        (status.code(), out, err)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ktsu start --all` on OS-assigned loopback ports.
pub struct Cluster {
    pub process: Spawned,
    pub orchestrator: String,
}

impl Cluster {
    pub fn start(project: &Path, envs: &[(&str, &str)]) -> Cluster {
        let mut cmd = command(&[
            "start",
            "--all",
            "--project-dir",
            project.to_str().unwrap(),
            "--orchestrator-port",
            "0",
            "--runtime-port",
            "0",
            "--gateway-port",
            "0",
            "--log-format",
            "json",
        ]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let process = Spawned::start(cmd);
        let ready = process.wait_for_log("\"ktsu.ready\"", Duration::from_secs(60));
        let line: serde_json::Value = serde_json::from_str(&ready).unwrap();
        let orchestrator = line["orchestrator"].as_str().unwrap().to_string();
        Cluster {
            process,
            orchestrator,
        }
    }

    /// A `ktsu` client command aimed at this cluster.
    pub fn ktsu(&self, args: &[&str]) -> Output {
        self.ktsu_env(args, &[])
    }

    pub fn ktsu_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = command(args);
        cmd.env("KTSU_ORCHESTRATOR_URL", &self.orchestrator);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal MCP server (Streamable HTTP, JSON answers) with one tool, `delete_record`.
/// Serves until the process ends; `calls` counts `tools/call` requests.
pub struct McpServer {
    pub url: String,
    pub calls: Arc<Mutex<u32>>,
}

impl McpServer {
    pub fn start() -> McpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(0));
        let counter = Arc::clone(&calls);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || serve_connection(stream, &counter));
            }
        });
        McpServer { url, calls }
    }
}

fn serve_connection(stream: TcpStream, calls: &Mutex<u32>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let method = request_line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) = match method.as_str() {
            "POST" => answer_rpc(&body, calls),
            "DELETE" => ("200 OK", String::new()),
            _ => ("405 Method Not Allowed", String::new()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nMcp-Session-Id: test-session\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer_rpc(body: &[u8], calls: &Mutex<u32>) -> (&'static str, String) {
    let Ok(msg) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ("400 Bad Request", String::new());
    };
    let Some(id) = msg.get("id").cloned() else {
        return ("202 Accepted", String::new()); // a notification
    };
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => serde_json::json!({
            "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "test-admin", "version": "1.0.0"}
        }),
        "tools/list" => serde_json::json!({"tools": [{
            "name": "delete_record",
            "description": "Delete a record by id",
            "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}
        }]}),
        "tools/call" => {
            *calls.lock().unwrap() += 1;
            serde_json::json!({"content": [{"type": "text", "text": "deleted"}], "isError": false})
        }
        _ => serde_json::json!({}),
    };
    let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
    ("200 OK", answer.to_string())
}

/// Polls `check` until it returns `Some`, at most `within`.
pub fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}
