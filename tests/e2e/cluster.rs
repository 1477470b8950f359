//! The three services as separate processes of the real `ktsu` binary, wired over loopback:
//! gateway → orchestrator → runtime, each on an OS-chosen port read from its own JSON log.
//! Every process is killed by PID when its handle is dropped, also when a test panics.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A value no log line or record may contain: given to the services as their internal token.
pub const INTERNAL_TOKEN: &str = "e2e-internal-token-3c1f9a0b7d2e4f68";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ktsu")
}

/// One service process and every line it wrote to stderr (JSON log records).
pub struct Service {
    pub name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Service {
    pub fn spawn(name: &'static str, args: &[String], env: &[(String, String)]) -> Service {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env("KTSU_LOG_FORMAT", "json")
            .env("KTSU_INTERNAL_TOKEN", INTERNAL_TOKEN)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("KTSU_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("ktsu starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Service { name, child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The log records (lines that are JSON objects).
    pub fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            // A journald priority prefix (`<6>`) is not part of the record.
            .map(|l| {
                l.strip_prefix('<')
                    .and_then(|r| r.split_once('>'))
                    .map_or(l.as_str(), |(_, rest)| rest)
            })
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The records with this `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// Waits for the first record with this `event` that satisfies `filter`.
    pub fn wait_event(
        &mut self,
        event: &str,
        within: Duration,
        filter: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self.events(event).into_iter().find(|r| filter(r)) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {event}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not log {event} within {within:?}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`TERM`, `INT`) through kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {within:?}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How to start the cluster.
#[derive(Clone, Default)]
pub struct Options {
    /// `Some(file)`: the SQLite store at that path; `None`: memory.
    pub sqlite: Option<PathBuf>,
    pub heartbeat_timeout_s: Option<u32>,
    /// Extra environment for all three processes.
    pub env: Vec<(String, String)>,
    /// `KTSU_LOG` for all three (default: the services' own default, `info`).
    pub log: Option<String>,
    /// `--env FILE` for the orchestrator.
    pub env_file: Option<PathBuf>,
}

pub struct Cluster {
    pub gateway: Service,
    pub orchestrator: Service,
    pub runtime: Service,
    pub gateway_url: String,
    pub orchestrator_url: String,
    orchestrator_port: u16,
    project: PathBuf,
    options: Options,
}

fn addr_of(record: &Value) -> String {
    let addr = record["addr"].as_str().expect("addr field").to_string();
    format!("http://{addr}")
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in url")
}

impl Cluster {
    pub fn start(project: &Path, options: Options) -> Cluster {
        let env = Self::env(&options);
        let mut gateway = Service::spawn(
            "gateway",
            &args(
                &[
                    "start",
                    "gateway",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--config",
                ],
                &[project.join("gateway.yaml").display().to_string()],
            ),
            &env,
        );
        let gateway_url =
            addr_of(&gateway.wait_event("gateway.started", Duration::from_secs(20), |_| true));
        let mut orchestrator = Self::spawn_orchestrator(project, &options, &gateway_url, 0);
        let orchestrator_url = addr_of(&orchestrator.wait_event(
            "orchestrator.ready",
            Duration::from_secs(20),
            |_| true,
        ));
        let mut runtime = Service::spawn(
            "runtime",
            &args(
                &["start", "runtime", "--host", "127.0.0.1", "--port", "0"],
                &[
                    "--orchestrator".into(),
                    orchestrator_url.clone(),
                    "--gateway".into(),
                    gateway_url.clone(),
                ],
            ),
            &env,
        );
        runtime.wait_event("runtime.started", Duration::from_secs(20), |_| true);
        let mut cluster = Cluster {
            gateway,
            orchestrator,
            runtime,
            gateway_url,
            orchestrator_port: port_of(&orchestrator_url),
            orchestrator_url,
            project: project.to_path_buf(),
            options,
        };
        cluster.wait_healthy();
        cluster
    }

    fn env(options: &Options) -> Vec<(String, String)> {
        let mut env = options.env.clone();
        if let Some(log) = &options.log {
            env.push(("KTSU_LOG".into(), log.clone()));
        }
        env
    }

    fn spawn_orchestrator(
        project: &Path,
        options: &Options,
        gateway_url: &str,
        port: u16,
    ) -> Service {
        let mut extra = vec![
            "--project-dir".to_string(),
            project.display().to_string(),
            "--gateway-url".into(),
            gateway_url.to_string(),
            "--port".into(),
            port.to_string(),
        ];
        if let Some(path) = &options.sqlite {
            extra.extend([
                "--store-type".into(),
                "sqlite".into(),
                "--db-path".into(),
                path.display().to_string(),
            ]);
        }
        if let Some(file) = &options.env_file {
            extra.extend(["--env".into(), file.display().to_string()]);
        }
        if let Some(s) = options.heartbeat_timeout_s {
            extra.extend(["--heartbeat-timeout-s".into(), s.to_string()]);
        }
        Service::spawn(
            "orchestrator",
            &args(&["start", "orchestrator", "--host", "127.0.0.1"], &extra),
            &Self::env(options),
        )
    }

    /// Starts a new orchestrator process on the same port and store (after a kill).
    pub fn restart_orchestrator(&mut self) {
        self.orchestrator = Self::spawn_orchestrator(
            &self.project,
            &self.options,
            &self.gateway_url,
            self.orchestrator_port,
        );
        self.orchestrator
            .wait_event("orchestrator.ready", Duration::from_secs(30), |_| true);
    }

    /// Waits until the orchestrator's `/health` is 200: the runtime registered, the gateway up.
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/health", self.orchestrator_url);
        loop {
            if let Ok((200, _)) = http::get(&url) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "cluster not healthy within 30s: {:?}\n--- orchestrator\n{}\n--- runtime\n{}",
                    http::get(&url),
                    self.orchestrator.lines().join("\n"),
                    self.runtime.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every log line of the three processes.
    pub fn all_lines(&self) -> Vec<String> {
        let mut all = self.gateway.lines();
        all.extend(self.orchestrator.lines());
        all.extend(self.runtime.lines());
        all
    }

    pub fn invoke(&self, workflow: &str, input: &Value) -> Value {
        self.invoke_with(workflow, input, &[])
    }

    pub fn invoke_with(&self, workflow: &str, input: &Value, headers: &[(&str, &str)]) -> Value {
        let (status, body) = http::post(
            &format!("{}/invoke/{workflow}", self.orchestrator_url),
            input,
            headers,
        )
        .expect("invoke answered");
        assert_eq!(status, 202, "invoke {workflow}: {body}");
        body
    }

    pub fn run(&self, run_id: &str) -> Value {
        let (status, body) = http::get(&format!("{}/runs/{run_id}", self.orchestrator_url))
            .expect("GET /runs/{id} answered");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls the run until its status satisfies `done`.
    pub fn wait_run(&self, run_id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Ok((200, body)) = http::get(&format!("{}/runs/{run_id}", self.orchestrator_url))
            {
                if done(&body) {
                    return body;
                }
                if Instant::now() > deadline {
                    panic!(
                        "run {run_id} not done within {within:?}: {body}\n--- orchestrator\n{}",
                        self.orchestrator.lines().join("\n")
                    );
                }
            } else if Instant::now() > deadline {
                panic!("run {run_id} unreadable within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_finished(&self, run_id: &str, within: Duration) -> Value {
        self.wait_run(run_id, within, |b| {
            matches!(
                b["run"]["status"].as_str(),
                Some("complete" | "failed" | "cancelled" | "needs_human_review")
            )
        })
    }
}

fn args(fixed: &[&str], extra: &[String]) -> Vec<String> {
    fixed
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        .collect()
}

/// A minimal blocking HTTP/1.1 client for the tests (JSON in, JSON out, `Connection: close`).
pub mod http {
    use serde_json::Value;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn request(
        method: &str,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, Value)> {
        let rest = url.strip_prefix("http://").expect("http url");
        let (authority, path) = rest
            .split_once('/')
            .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
        let mut stream = TcpStream::connect(authority)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n", payload.len());
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(payload.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ))
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if n == 0 || rest.len() < n {
                break;
            }
            out.push_str(&rest[..n]);
            body = rest[n..].trim_start_matches("\r\n");
        }
        out
    }

    pub fn get(url: &str) -> std::io::Result<(u16, Value)> {
        request("GET", url, None, &[])
    }

    pub fn post(
        url: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, Value)> {
        request("POST", url, Some(body), headers)
    }
}
