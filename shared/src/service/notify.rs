//! systemd readiness and watchdog (cli-and-ops.md §3.3): `READY=1`, `STOPPING=1` and
//! `WATCHDOG=1` datagrams to `$NOTIFY_SOCKET`. Without it every call is a silent no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification (`READY=1\nSTATUS=…`). Failures are ignored: readiness reporting must
/// never take a service down.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let path = socket.to_string_lossy().into_owned();
    let _ = match path.strip_prefix('@') {
        // An abstract socket (Linux): `@name`.
        Some(name) => {
            abstract_addr(name).and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
        }
        None => sock.send_to(state.as_bytes(), &path),
    };
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets need Linux",
    ))
}

/// `READY=1` with the listening address.
pub fn ready(addr: &str) {
    notify(&format!("READY=1\nSTATUS=ready: listening on {addr}"));
}

/// `STOPPING=1` when shutdown starts.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}

/// The watchdog ping period (half of `WATCHDOG_USEC`) when systemd asked for one for this
/// process (`WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if !pid.is_empty() && pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// One `WATCHDOG=1` ping.
pub fn watchdog() {
    notify("WATCHDOG=1");
}
