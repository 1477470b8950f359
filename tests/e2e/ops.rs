//! Operations contract (cli-and-ops.md §3–§5, §9): `start --all`, exit codes at startup, sd_notify
//! readiness/watchdog/stopping, health while a peer is down, and the log line format.

use crate::cluster::{binary, http, Service};
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn hello() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/hello")
        .display()
        .to_string()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn start_all_serves_health_on_three_ports_and_exits_zero_on_sigterm() {
    let mut all = Service::spawn(
        "all",
        &strings(&[
            "start",
            "--all",
            "--project-dir",
            &hello(),
            "--orchestrator-port",
            "0",
            "--runtime-port",
            "0",
            "--gateway-port",
            "0",
        ]),
        &[],
    );
    let ready = all.wait_event("ktsu.ready", Duration::from_secs(30), |_| true);
    for service in ["orchestrator", "runtime", "gateway"] {
        let url = ready[service]
            .as_str()
            .unwrap_or_else(|| panic!("{service} url in {ready}"));
        let (status, body) = http::get(&format!("{url}/health")).expect("health answered");
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("ok")),
            "{service}: {body}"
        );
    }
    // Every stderr line is one JSON record with the envelope fields.
    for line in all.lines() {
        let record: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["ts", "level", "service", "target", "msg"] {
            assert!(record[field].is_string(), "{field} missing: {line}");
        }
    }
    all.signal("TERM");
    let status = all.wait_exit(Duration::from_secs(40));
    assert_eq!(status.code(), Some(0), "{}", all.lines().join("\n"));
    let stopped = all.events("ktsu.stopped");
    assert_eq!(stopped[0]["exit_code"], 0);
}

fn exit_code(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("KTSU_LOG_FORMAT", "text")
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("ktsu runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn startup_exit_codes_name_the_problem() {
    let (code, err) = exit_code(
        &["start", "orchestrator", "--project-dir", &hello()],
        &[("KTSU_ORCHESTRATOR_PORT", "abc")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("KTSU_ORCHESTRATOR_PORT"), "{err}");

    let broken = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(broken.path().join("workflows")).expect("mkdir");
    std::fs::write(
        broken.path().join("workflows/bad.workflow.yaml"),
        "kind: workflow\nname: bad\npipelin: []\n",
    )
    .expect("write");
    let (code, err) = exit_code(
        &[
            "start",
            "orchestrator",
            "--project-dir",
            &broken.path().display().to_string(),
            "--port",
            "0",
        ],
        &[],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("bad.workflow.yaml:3:1"),
        "one line per error with file:line:col: {err}"
    );

    let (code, err) = exit_code(
        &[
            "start",
            "gateway",
            "--config",
            "/nonexistent/gateway.yaml",
            "--port",
            "0",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
}

/// Datagrams received on a NOTIFY_SOCKET until `until` matches one or `within` elapses.
fn notifications(
    socket: &UnixDatagram,
    within: Duration,
    until: impl Fn(&str) -> bool,
) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = until(&text);
            got.push((Instant::now(), text));
            if done {
                break;
            }
        }
    }
    got
}

#[test]
fn each_service_notifies_systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, args) in [
        (
            "gateway",
            strings(&[
                "start",
                "gateway",
                "--mock",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ]),
        ),
        (
            "orchestrator",
            strings(&[
                "start",
                "orchestrator",
                "--project-dir",
                &hello(),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ]),
        ),
        (
            "runtime",
            strings(&[
                "start",
                "runtime",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--orchestrator",
                "",
            ]),
        ),
    ] {
        let path = dir.path().join(format!("{name}.sock"));
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        let mut service = Service::spawn(
            name,
            &args,
            &[
                ("NOTIFY_SOCKET".into(), path.display().to_string()),
                ("WATCHDOG_USEC".into(), "2000000".into()),
            ],
        );
        let ready = notifications(&socket, Duration::from_secs(20), |m| m.contains("READY=1"));
        let ready_line = &ready.last().expect("a notification").1;
        assert!(ready_line.contains("READY=1"), "{name}: {ready:?}");
        // READY=1 comes after the port accepts connections.
        let addr = ready_line
            .rsplit("listening on ")
            .next()
            .expect("address in STATUS")
            .trim();
        assert!(
            std::net::TcpStream::connect(addr).is_ok(),
            "{name} accepts on {addr}"
        );
        let pings = notifications(&socket, Duration::from_millis(2600), |_| false);
        let watchdogs: Vec<&Instant> = pings
            .iter()
            .filter(|(_, m)| m == "WATCHDOG=1")
            .map(|(t, _)| t)
            .collect();
        assert!(
            watchdogs.len() >= 2,
            "{name}: WATCHDOG=1 at least every second: {pings:?}"
        );
        for pair in watchdogs.windows(2) {
            assert!(
                pair[1].duration_since(*pair[0]) <= Duration::from_millis(1300),
                "{name}: gap between pings"
            );
        }
        service.signal("TERM");
        let stopping = notifications(&socket, Duration::from_secs(10), |m| {
            m.contains("STOPPING=1")
        });
        assert!(
            stopping.iter().any(|(_, m)| m.contains("STOPPING=1")),
            "{name}: {stopping:?}"
        );
        assert_eq!(
            service.wait_exit(Duration::from_secs(40)).code(),
            Some(0),
            "{name}"
        );
    }
}

#[test]
fn orchestrator_health_reports_a_down_gateway_while_liveness_stays_ok() {
    // A port nobody listens on: bind, read the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut orchestrator = Service::spawn(
        "orchestrator",
        &strings(&[
            "start",
            "orchestrator",
            "--project-dir",
            &hello(),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--gateway-url",
            &format!("http://{closed}"),
        ]),
        &[("JOURNAL_STREAM".into(), "8:1234".into())],
    );
    let ready = orchestrator.wait_event("orchestrator.ready", Duration::from_secs(20), |_| true);
    let url = format!("http://{}", ready["addr"].as_str().expect("addr"));
    let (status, body) = http::get(&format!("{url}/health")).expect("health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["services"]["gateway"], "down", "{body}");
    assert_eq!(
        http::get(&format!("{url}/health/live")).expect("live").0,
        200
    );
    // Under journald every line carries the syslog priority prefix.
    let lines = orchestrator.lines();
    assert!(
        lines.iter().all(|l| l.starts_with("<6>")
            || l.starts_with("<4>")
            || l.starts_with("<3>")
            || l.starts_with("<7>")),
        "{lines:?}"
    );
}
