//! The deployment artefacts of cli-and-ops.md §7: systemd units (checked with
//! `systemd-analyze verify` when it is installed), Dockerfile, docker-compose file, env-file
//! examples. Everything else is checked by parsing the files, so the invariants hold on machines
//! without systemd or Docker too. No network, no long-running process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every variable of the configuration matrix, cli-and-ops.md §2.2 (pairs written `A` / `B`
/// there are listed one by one).
const MATRIX: &[&str] = &[
    "KTSU_ORCHESTRATOR_HOST",
    "KTSU_ORCHESTRATOR_PORT",
    "KTSU_OWN_URL",
    "KTSU_RUNTIME_URL",
    "KTSU_GATEWAY_URL",
    "KTSU_PROJECT_DIR",
    "KTSU_WORKFLOW_DIR",
    "KTSU_STORE_TYPE",
    "KTSU_DB_PATH",
    "KTSU_DB_POOL_SIZE",
    "KTSU_MEMORY_MAX_RUNS",
    "KTSU_HEARTBEAT_TIMEOUT_S",
    "KTSU_RUN_MAX_PARALLEL_STEPS",
    "KTSU_MAX_ACTIVE_RUNS",
    "KTSU_MAX_QUEUED_RUNS",
    "KTSU_FANOUT_MAX_ITEMS",
    "KTSU_MAX_BODY_BYTES",
    "KTSU_MAX_CALLBACK_BYTES",
    "KTSU_IDEMPOTENCY_TTL_S",
    "KTSU_MAX_WAIT_S",
    "KTSU_DISPATCH_TIMEOUT_S",
    "KTSU_DISPATCH_RETRY_S",
    "KTSU_SHUTDOWN_TIMEOUT_S",
    "KTSU_API_KEY",
    "KTSU_RUNTIME_HOST",
    "KTSU_RUNTIME_PORT",
    "KTSU_ORCHESTRATOR_URL",
    "KTSU_RUNTIME_ID",
    "KTSU_RUNTIME_ADVERTISE_URL",
    "KTSU_RUNTIME_MAX_CONCURRENCY",
    "KTSU_RUNTIME_MAX_QUEUE",
    "KTSU_HEARTBEAT_INTERVAL_S",
    "KTSU_RUNTIME_STEP_TIMEOUT_S",
    "KTSU_RUNTIME_LLM_TIMEOUT_S",
    "KTSU_RUNTIME_MCP_TIMEOUT_S",
    "KTSU_RUNTIME_CALLBACK_TIMEOUT_S",
    "KTSU_RUNTIME_CALLBACK_RETRY_S",
    "KTSU_RUNTIME_OUTPUT_GRACE_TURNS",
    "KTSU_RUNTIME_MAX_TOOL_RESULT_BYTES",
    "KTSU_RUNTIME_MAX_BODY_BYTES",
    "KTSU_RUNTIME_SHUTDOWN_GRACE_S",
    "KTSU_GATEWAY_HOST",
    "KTSU_GATEWAY_PORT",
    "KTSU_GATEWAY_CONFIG",
    "KTSU_GATEWAY_SHUTDOWN_GRACE_S",
    "KTSU_INTERNAL_TOKEN",
    "KTSU_LOG_FORMAT",
    "KTSU_LOG",
    "RUST_LOG",
    "NO_COLOR",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// `KTSU_*` names allowed in `deploy/` besides the matrix: `KTSU_PORT` (read only by the
/// compose file, §2.2) and the build-time variables of `ktsu version` (§1.10, Dockerfile).
const EXTRA_KTSU_NAMES: &[&str] = &["KTSU_PORT", "KTSU_BUILD_COMMIT", "KTSU_BUILD_DATE"];

/// The hardening block of §7.1, verbatim and in order, in all three units.
const HARDENING: &[&str] = &[
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
];

const SERVICES: &[&str] = &["gateway", "orchestrator", "runtime"];
const UNIT_FILES: &[&str] = &[
    "ktsu-gateway.service",
    "ktsu-orchestrator.service",
    "ktsu-runtime.service",
    "ktsu.target",
];
const INSTALLED_BINARY: &str = "/usr/local/bin/ktsu";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// systemd units

/// One `Key=value` line of a unit file with its section.
#[derive(Debug, Clone)]
struct UnitLine {
    section: String,
    key: String,
    value: String,
    /// The line as written (trimmed), for the verbatim checks.
    raw: String,
}

fn parse_unit(text: &str) -> Vec<UnitLine> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "no line continuations: {line}");
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a Key=value line: {line}"));
        assert!(!section.is_empty(), "directive outside a section: {line}");
        out.push(UnitLine {
            section: section.clone(),
            key: key.trim().to_string(),
            value: value.trim().to_string(),
            raw: line.to_string(),
        });
    }
    out
}

struct Unit {
    name: String,
    lines: Vec<UnitLine>,
}

impl Unit {
    fn load(file: &str) -> Unit {
        Unit {
            name: file.to_string(),
            lines: parse_unit(&read(&deploy().join("systemd").join(file))),
        }
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l.section == section && l.key == key)
            .map(|l| l.value.as_str())
            .collect()
    }

    /// The single value of a key (fails when it is missing or repeated).
    fn one(&self, section: &str, key: &str) -> &str {
        let values = self.all(section, key);
        assert_eq!(
            values.len(),
            1,
            "{}: [{section}] {key}= {values:?}",
            self.name
        );
        values[0]
    }

    /// The words of every occurrence of a list-valued key.
    fn words(&self, section: &str, key: &str) -> BTreeSet<String> {
        self.all(section, key)
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(str::to_string)
            .collect()
    }

    /// `Environment=NAME=value` lines as (name, value).
    fn environment(&self) -> Vec<(String, String)> {
        self.all("Service", "Environment")
            .iter()
            .map(|v| {
                let (name, value) = v
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{}: Environment={v}", self.name));
                (name.to_string(), value.to_string())
            })
            .collect()
    }

    fn env(&self, name: &str) -> Option<String> {
        self.environment()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A systemd time span in whole seconds (`45`, `45s`, `2min`, `1min 30s`).
fn seconds(span: &str) -> u64 {
    let mut total = 0;
    for part in span.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits
            .parse()
            .unwrap_or_else(|_| panic!("time span {span}"));
        total += match &part[digits.len()..] {
            "" | "s" | "sec" => n,
            "m" | "min" => n * 60,
            "h" => n * 3600,
            other => panic!("unit {other} in time span {span}"),
        };
    }
    total
}

/// Drain bound of a service (§3.4): the unit's `Environment=` value, else the §2.2 default.
fn drain_bound(unit: &Unit, service: &str) -> u64 {
    let (var, default) = match service {
        "orchestrator" => ("KTSU_SHUTDOWN_TIMEOUT_S", 30),
        "runtime" => ("KTSU_RUNTIME_SHUTDOWN_GRACE_S", 30),
        "gateway" => ("KTSU_GATEWAY_SHUTDOWN_GRACE_S", 10),
        _ => unreachable!(),
    };
    unit.env(var)
        .map_or(default, |v| v.parse().expect("numeric drain bound"))
}

fn looks_secret(name: &str) -> bool {
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|w| name.contains(w))
        || name == "SLACK_WEBHOOK_URL"
}

#[test]
fn units_follow_the_spec() {
    for service in SERVICES {
        let unit = Unit::load(&format!("ktsu-{service}.service"));
        let name = &unit.name;

        // Readiness, watchdog, restart policy.
        assert_eq!(unit.one("Service", "Type"), "notify", "{name}");
        assert_eq!(unit.one("Service", "NotifyAccess"), "main", "{name}");
        assert!(seconds(unit.one("Service", "WatchdogSec")) > 0, "{name}");
        assert_eq!(unit.one("Service", "Restart"), "on-failure", "{name}");
        assert_eq!(
            unit.one("Service", "RestartPreventExitStatus"),
            "2 3",
            "{name}: no restart loop on usage (2) or configuration (3) errors"
        );
        assert_eq!(
            unit.one("Service", "ExecStart"),
            format!("{INSTALLED_BINARY} start {service}"),
            "{name}"
        );
        assert_eq!(unit.one("Service", "DynamicUser"), "yes", "{name}");

        // Settings and secrets come from the env files (optional, so '-').
        assert_eq!(
            unit.all("Service", "EnvironmentFile"),
            vec![
                "-/etc/ktsu/ktsu.env".to_string(),
                format!("-/etc/ktsu/{service}.env")
            ],
            "{name}"
        );
        for (var, value) in unit.environment() {
            assert!(
                MATRIX.contains(&var.as_str()),
                "{name}: Environment={var} is not in the §2.2 matrix"
            );
            assert!(
                !looks_secret(&var),
                "{name}: secret {var} belongs in an EnvironmentFile, not the unit"
            );
            assert!(!value.is_empty(), "{name}: empty Environment={var}");
        }

        // Ordering gateway -> orchestrator -> runtime, with Wants= (never Requires=).
        let peers: &[&str] = match *service {
            "gateway" => &["network-online.target"],
            "orchestrator" => &["network-online.target", "ktsu-gateway.service"],
            _ => &[
                "network-online.target",
                "ktsu-orchestrator.service",
                "ktsu-gateway.service",
            ],
        };
        assert_eq!(unit.words("Unit", "Wants"), set(peers), "{name}: Wants=");
        assert_eq!(unit.words("Unit", "After"), set(peers), "{name}: After=");
        for hard in ["Requires", "BindsTo", "Requisite"] {
            assert!(unit.all("Unit", hard).is_empty(), "{name}: {hard}=");
        }
        assert_eq!(unit.one("Unit", "PartOf"), "ktsu.target", "{name}");
        assert_eq!(unit.one("Install", "WantedBy"), "ktsu.target", "{name}");

        // Stopping: systemd must wait longer than the service drains.
        let stop = seconds(unit.one("Service", "TimeoutStopSec"));
        let bound = drain_bound(&unit, service);
        assert!(
            stop > bound,
            "{name}: TimeoutStopSec={stop} must exceed the drain bound {bound}"
        );

        // State: only the orchestrator, in its StateDirectory.
        if *service == "orchestrator" {
            assert_eq!(unit.one("Service", "StateDirectory"), "ktsu");
            assert_eq!(unit.one("Service", "WorkingDirectory"), "/var/lib/ktsu");
            assert_eq!(unit.env("KTSU_STORE_TYPE").as_deref(), Some("sqlite"));
            let db = unit.env("KTSU_DB_PATH").expect("KTSU_DB_PATH");
            assert!(db.starts_with("/var/lib/ktsu/"), "{db}");
        } else {
            for key in ["StateDirectory", "WorkingDirectory"] {
                assert!(unit.all("Service", key).is_empty(), "{name}: {key}=");
            }
            assert_eq!(unit.env("KTSU_DB_PATH"), None, "{name}");
            assert_eq!(unit.env("KTSU_STORE_TYPE"), None, "{name}");
        }

        // The hardening block, verbatim: these lines, in this order, one after the other.
        let service_lines: Vec<&str> = unit
            .lines
            .iter()
            .filter(|l| l.section == "Service")
            .map(|l| l.raw.as_str())
            .collect();
        let start = service_lines
            .iter()
            .position(|l| *l == HARDENING[0])
            .unwrap_or_else(|| panic!("{name}: no hardening block"));
        assert_eq!(
            service_lines.get(start..start + HARDENING.len()),
            Some(HARDENING),
            "{name}: hardening block differs from cli-and-ops.md §7.1"
        );
    }

    let target = Unit::load("ktsu.target");
    assert_eq!(
        target.words("Unit", "Wants"),
        set(&[
            "ktsu-gateway.service",
            "ktsu-orchestrator.service",
            "ktsu-runtime.service"
        ])
    );
    assert_eq!(target.one("Install", "WantedBy"), "multi-user.target");
}

/// Runs a command with a time limit; (exit success, stdout + stderr). `None` when it cannot be
/// started. Never leaves the child behind.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Option<(bool, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let mut stderr = child.stderr.take()?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().ok()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut output = out_reader.join().unwrap_or_default();
    output.push_str(&err_reader.join().unwrap_or_default());
    Some((status.success(), output))
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn systemd_verify(tool: &Path, dir: &Path, files: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(tool);
    cmd.arg("verify")
        .arg("--man=no")
        .args(files)
        .current_dir(dir);
    // Keep the host's settings out of it: plain messages, no pager, no colour.
    cmd.env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .env_remove("SYSTEMD_LOG_LEVEL");
    run_bounded(&mut cmd, Duration::from_secs(30)).expect("systemd-analyze runs")
}

/// cli-and-ops.md §7.1 "Verification": the four unit files, with the binary path pointed at the
/// freshly built `ktsu`, pass `systemd-analyze verify` without a word about a ktsu unit.
#[test]
fn systemd_analyze_verify_units() {
    let Some(tool) = find_in_path("systemd-analyze") else {
        println!("SKIPPED: systemd-analyze not available");
        return;
    };
    let binary = env!("CARGO_BIN_EXE_ktsu");
    let dir = tempfile::tempdir().unwrap();

    // Environment probe: a trivially valid unit. If even that does not verify cleanly,
    // `verify` cannot run here (no unit search path, sandbox, ...): nothing to learn.
    fs::write(
        dir.path().join("ktsu-deploy-probe.service"),
        format!(
            "[Unit]\nDescription=probe\n\n[Service]\nType=oneshot\nExecStart={binary} version\n"
        ),
    )
    .unwrap();
    let (ok, output) = systemd_verify(&tool, dir.path(), &["ktsu-deploy-probe.service"]);
    if !ok || output.contains("ktsu-deploy-probe") {
        println!("SKIPPED: systemd-analyze verify cannot run in this environment: {output}");
        return;
    }
    // And it does look at what it verifies: an unknown key is reported.
    fs::write(
        dir.path().join("ktsu-deploy-probe.service"),
        format!("[Service]\nType=oneshot\nExecStart={binary} version\nNoSuchKeyKtsu=1\n"),
    )
    .unwrap();
    let (_, output) = systemd_verify(&tool, dir.path(), &["ktsu-deploy-probe.service"]);
    assert!(
        output.contains("NoSuchKeyKtsu"),
        "systemd-analyze verify did not report an unknown key: {output:?}"
    );
    fs::remove_file(dir.path().join("ktsu-deploy-probe.service")).unwrap();

    for file in UNIT_FILES {
        let text = read(&deploy().join("systemd").join(file));
        fs::write(
            dir.path().join(file),
            text.replace(INSTALLED_BINARY, binary),
        )
        .unwrap();
    }
    let (ok, output) = systemd_verify(&tool, dir.path(), UNIT_FILES);
    let about_ktsu: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("ktsu-") || l.contains("ktsu.target"))
        .collect();
    assert!(
        ok && about_ktsu.is_empty(),
        "systemd-analyze verify failed (success: {ok}):\n{output}"
    );
    if !output.trim().is_empty() {
        println!("systemd-analyze verify (lines about other units, ignored):\n{output}");
    }
}

// ---------------------------------------------------------------------------------------------
// docker-compose

fn compose() -> Value {
    let text = read(&deploy().join("docker-compose.yaml"));
    let doc = ktsu_shared::yaml::parse(&text).unwrap_or_else(|e| panic!("compose YAML: {e:?}"));
    assert!(
        doc.duplicate_keys.is_empty(),
        "duplicate keys: {:?}",
        doc.duplicate_keys
    );
    doc.root.to_json().expect("compose as JSON")
}

fn str_list(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("a string: {s}")))
        .collect()
}

#[test]
fn compose_follows_the_spec() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    assert_eq!(
        services.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        SERVICES.iter().copied().collect::<BTreeSet<_>>()
    );
    assert!(
        c["volumes"].get("ktsu-state").is_some(),
        "named volume ktsu-state"
    );
    // The backup commands of §7.4 name the volume ktsu_ktsu-state.
    assert_eq!(c["name"], "ktsu", "compose project name");

    for name in SERVICES {
        let s = &services[*name];
        // One image, built from the repository root.
        assert_eq!(s["image"], "ktsu:local", "{name}");
        assert_eq!(s["build"]["context"], "..", "{name}");
        assert_eq!(s["build"]["dockerfile"], "deploy/Dockerfile", "{name}");
        assert_eq!(str_list(&s["command"]), vec!["start", name], "{name}");
        assert_eq!(s["restart"], "unless-stopped", "{name}");
        let grace = seconds(s["stop_grace_period"].as_str().expect("stop_grace_period"));
        assert!(
            grace > 30,
            "{name}: stop_grace_period must exceed the drain bounds"
        );

        // Health checks through `ktsu health`; the orchestrator's on /health/live (§4).
        let (port, route) = match *name {
            "gateway" => (5052, "/health"),
            "orchestrator" => (5050, "/health/live"),
            _ => (5051, "/health"),
        };
        let hc = &s["healthcheck"];
        assert_eq!(
            str_list(&hc["test"]),
            vec![
                "CMD",
                "ktsu",
                "health",
                &format!("http://127.0.0.1:{port}{route}")
            ],
            "{name}"
        );
        assert_eq!(hc["interval"], "5s", "{name}");
        assert_eq!(hc["timeout"], "3s", "{name}");
        assert_eq!(hc["retries"], 10, "{name}");
        assert_eq!(hc["start_period"], "10s", "{name}");

        // Start order gateway -> orchestrator -> runtime.
        let deps: &[&str] = match *name {
            "gateway" => &[],
            "orchestrator" => &["gateway"],
            _ => &["orchestrator", "gateway"],
        };
        let depends = s.get("depends_on").and_then(Value::as_object);
        assert_eq!(
            depends.map_or(0, |d| d.len()),
            deps.len(),
            "{name}: depends_on {depends:?}"
        );
        for dep in deps {
            assert_eq!(
                s["depends_on"][*dep]["condition"], "service_healthy",
                "{name} depends on {dep}"
            );
        }

        // Environment: matrix names only; the shared token interpolated, never written here.
        let env = s["environment"].as_object().expect("environment mapping");
        for (var, value) in env {
            assert!(
                MATRIX.contains(&var.as_str()),
                "{name}: {var} is not in the §2.2 matrix"
            );
            if looks_secret(var) {
                assert_eq!(
                    value.as_str(),
                    Some(format!("${{{var}:-}}").as_str()),
                    "{name}: secret {var} must come from the environment"
                );
            }
        }
        assert!(env.contains_key("KTSU_INTERNAL_TOKEN"), "{name}");

        // Provider keys reach the gateway only.
        assert_eq!(s.get("env_file").is_some(), *name == "gateway", "{name}");
        // Only the orchestrator is published, on loopback.
        match s.get("ports") {
            Some(ports) => {
                assert_eq!(*name, "orchestrator");
                assert_eq!(str_list(ports), vec!["127.0.0.1:${KTSU_PORT:-5050}:5050"]);
            }
            None => assert_ne!(*name, "orchestrator"),
        }
        // Bind-mounted project directories exist (paths are relative to deploy/).
        if let Some(volumes) = s.get("volumes") {
            for v in str_list(volumes) {
                let source = v.split(':').next().unwrap();
                if source.starts_with('.') {
                    assert!(deploy().join(source).is_dir(), "{name}: volume {v}");
                }
            }
        }
    }

    let env = |svc: &str, var: &str| services[svc]["environment"][var].clone();
    assert_eq!(
        env("orchestrator", "KTSU_GATEWAY_URL"),
        "http://gateway:5052"
    );
    assert_eq!(
        env("orchestrator", "KTSU_RUNTIME_URL"),
        "http://runtime:5051"
    );
    assert_eq!(
        env("orchestrator", "KTSU_OWN_URL"),
        "http://orchestrator:5050"
    );
    assert_eq!(env("orchestrator", "KTSU_STORE_TYPE"), "sqlite");
    assert_eq!(env("orchestrator", "KTSU_DB_PATH"), "/var/lib/ktsu/ktsu.db");
    assert_eq!(env("orchestrator", "KTSU_PROJECT_DIR"), "/srv/ktsu");
    assert_eq!(
        env("runtime", "KTSU_ORCHESTRATOR_URL"),
        "http://orchestrator:5050"
    );
    assert_eq!(env("runtime", "KTSU_GATEWAY_URL"), "http://gateway:5052");
    assert_eq!(
        env("runtime", "KTSU_RUNTIME_ADVERTISE_URL"),
        "http://runtime:5051"
    );
    assert!(str_list(&services["orchestrator"]["volumes"]).contains(&"ktsu-state:/var/lib/ktsu"));
    assert!(services["runtime"].get("volumes").is_none());
}

/// §7.3: `docker compose config -q` when Docker Compose is installed (it needs no daemon).
#[test]
fn docker_compose_config() {
    let Some(docker) = find_in_path("docker") else {
        println!("SKIPPED: docker not available");
        return;
    };
    let probe = run_bounded(
        Command::new(&docker).args(["compose", "version"]),
        Duration::from_secs(20),
    );
    if !matches!(probe, Some((true, _))) {
        println!("SKIPPED: docker compose not available");
        return;
    }
    let (ok, output) = run_bounded(
        Command::new(&docker)
            .args([
                "compose",
                "-f",
                "deploy/docker-compose.yaml",
                "config",
                "-q",
            ])
            .current_dir(root()),
        Duration::from_secs(20),
    )
    .expect("docker compose runs");
    assert!(ok, "docker compose config failed:\n{output}");
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// Instructions of a Dockerfile: comments dropped, continuation lines joined.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
        }
    }
    out
}

#[test]
fn dockerfile_follows_the_spec() {
    let text = read(&deploy().join("Dockerfile"));
    let instructions = dockerfile_instructions(&text);
    let with = |keyword: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter_map(|i| i.strip_prefix(keyword)?.strip_prefix(' '))
            .collect()
    };

    // Two stages: the toolchain of rust-toolchain.toml, then a slim runtime.
    let toolchain = read(&root().join("rust-toolchain.toml"));
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .expect("channel")
        .trim_matches('"');
    assert!(
        with("ARG").contains(&format!("RUST_VERSION={channel}").as_str()),
        "ARG RUST_VERSION={channel}"
    );
    assert_eq!(
        with("FROM"),
        vec![
            "rust:${RUST_VERSION}-slim-bookworm AS builder",
            "debian:bookworm-slim"
        ]
    );
    assert!(
        with("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked --bin ktsu")),
        "locked release build of ktsu"
    );
    assert!(with("RUN")
        .iter()
        .any(|r| r.contains("--mount=type=cache,target=/usr/local/cargo/registry")));
    assert_eq!(
        with("COPY").last().copied(),
        Some("--from=builder /usr/local/bin/ktsu /usr/local/bin/ktsu")
    );

    // Non-root, state directory, entry point.
    assert!(with("RUN").iter().any(|r| r.contains("--uid 10001")));
    assert_eq!(with("USER"), vec!["ktsu"]);
    assert_eq!(with("WORKDIR").last().copied(), Some("/var/lib/ktsu"));
    assert_eq!(with("VOLUME"), vec!["/var/lib/ktsu"]);
    assert_eq!(with("EXPOSE"), vec!["5050 5051 5052"]);
    let json = |s: &str| -> Vec<String> { serde_json::from_str(s).expect("exec form") };
    assert_eq!(json(with("ENTRYPOINT")[0]), vec!["ktsu"]);
    assert_eq!(
        json(with("CMD")[0]),
        vec!["start", "--all", "--project-dir", "/srv/ktsu"]
    );
    let env = with("ENV").join(" ");
    for setting in [
        "KTSU_LOG_FORMAT=json",
        "KTSU_DB_PATH=/var/lib/ktsu/ktsu.db",
        "KTSU_ORCHESTRATOR_HOST=0.0.0.0",
    ] {
        assert!(env.contains(setting), "ENV {setting}");
    }

    // The health check is `ktsu health`, exec form: no shell, curl or wget in the image.
    let healthcheck = with("HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1);
    let cmd = healthcheck[0]
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]")
        .1;
    assert_eq!(
        json(cmd),
        vec!["ktsu", "health", "http://127.0.0.1:5050/health/live"]
    );
    for i in &instructions {
        assert!(
            !i.contains("curl") && !i.contains("wget"),
            "no curl/wget: {i}"
        );
    }

    let ignore = read(&root().join(".dockerignore"));
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for p in ["target", ".git", "*.db*", ".env"] {
        assert!(patterns.contains(p), ".dockerignore lacks {p}");
    }
}

// ---------------------------------------------------------------------------------------------
// Names used across deploy/

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every `KTSU_*` word in the text.
fn ktsu_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("KTSU_") {
        let start = i + off;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + 5;
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !preceded {
            names.insert(text[start..end].trim_end_matches('_').to_string());
        }
        i = end;
    }
    names
}

/// Names declared in an `env:` list of the examples (`- { name: X, ... }` or `- name: X`).
fn declared_in_examples() -> BTreeSet<String> {
    let mut files = Vec::new();
    files_under(&root().join("examples"), &mut files);
    let mut names = BTreeSet::new();
    for f in files {
        if f.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for line in read(&f).lines() {
            if let Some(rest) = line.split("name: ").nth(1) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name.chars().all(|c| !c.is_ascii_lowercase()) {
                    names.insert(name);
                }
            }
        }
    }
    names
}

#[test]
fn every_variable_named_in_deploy_is_in_the_matrix() {
    let mut files = Vec::new();
    files_under(&deploy(), &mut files);
    files.push(root().join(".dockerignore"));
    for file in &files {
        for name in ktsu_names(&read(file)) {
            assert!(
                MATRIX.contains(&name.as_str()) || EXTRA_KTSU_NAMES.contains(&name.as_str()),
                "{}: {name} is not in the §2.2 matrix",
                file.display()
            );
        }
    }
    // KTSU_PORT is the compose file's own (§2.2); build-time names belong to the Dockerfile.
    for file in &files {
        let text = read(file);
        let name = file.file_name().unwrap().to_string_lossy();
        if name.ends_with(".service") || name.ends_with(".target") || name.ends_with(".env.example")
        {
            for extra in EXTRA_KTSU_NAMES {
                let ours = name == "compose.env.example" && *extra == "KTSU_PORT";
                assert!(ours || !text.contains(extra), "{name}: {extra}");
            }
        }
    }
}

/// The env-file examples assign only matrix variables or variables the examples declare, and
/// never ship a secret value.
#[test]
fn env_file_examples() {
    let declared = declared_in_examples();
    let mut files = Vec::new();
    files_under(&deploy(), &mut files);
    let examples: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".env.example"))
        .collect();
    let names: BTreeSet<String> = examples
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "ktsu.env.example",
        "gateway.env.example",
        "orchestrator.env.example",
        "runtime.env.example",
        "compose.env.example",
    ] {
        assert!(names.contains(expected), "deploy/ lacks {expected}");
    }
    for file in examples {
        for line in read(file).lines() {
            let active = !line.starts_with('#');
            let assignment = line.strip_prefix('#').unwrap_or(line);
            let Some((var, value)) = assignment.split_once('=') else {
                continue;
            };
            if var.is_empty()
                || !var
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                continue; // prose
            }
            assert!(
                MATRIX.contains(&var) || EXTRA_KTSU_NAMES.contains(&var) || declared.contains(var),
                "{}: {var} is neither in the §2.2 matrix nor declared by an example",
                file.display()
            );
            if active && looks_secret(var) {
                assert!(value.is_empty(), "{}: {var} has a value", file.display());
            }
        }
    }
}
