//! The official MCP Python SDK server (`tests/mcp/server.py`), started on 127.0.0.1 with an
//! OS-chosen port and killed by PID when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Why the interop tests cannot run here (printed as `SKIPPED: <reason>`), or `None` when the
/// SDK is importable.
pub fn sdk_missing() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import mcp, uvicorn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "the mcp Python SDK is not importable (python3 -c \"import mcp\": {})",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        )),
        Err(err) => Some(format!("python3 cannot be run: {err}")),
    }
}

/// Whether the installed SDK has the low-level server API with cursor pagination (mcp 2.x).
pub fn sdk_paginates() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import mcp_types; from mcp.server.lowlevel import Server",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running SDK server.
pub struct PythonServer {
    child: Child,
    pub port: u16,
    /// The server's stderr (the SDK logs tool exceptions there); kept out of the test output.
    _stderr: tempfile::NamedTempFile,
}

impl PythonServer {
    /// Starts `server.py <mode> [extra…]` and waits (at most 30 s) for its `PORT <n>` line.
    pub fn start(mode: &str, extra: &[&str]) -> PythonServer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/server.py");
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(mode)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("stderr file"))
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("PORT ") {
                    let _ = sender.send(port.trim().parse::<u16>().ok());
                    return;
                }
            }
            let _ = sender.send(None);
        });
        match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => PythonServer {
                child,
                port,
                _stderr: stderr,
            },
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(stderr.path()).unwrap_or_default();
                panic!("the MCP SDK server ({mode}) did not report its port: {other:?}\n{log}");
            }
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PythonServer {
    /// Killed by PID (SIGKILL to this child only), then reaped.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Skips the calling test (printing why) when the SDK is missing.
#[macro_export]
macro_rules! require_sdk {
    () => {
        if let Some(reason) = $crate::support::python::sdk_missing() {
            println!("SKIPPED: {reason}");
            return;
        }
    };
}
