//! The single-process lease (orchestrator.md §8.3): table `lease` holds one row naming the
//! process that serves the store. Exactly one orchestrator process may serve a store.
//!
//! A holder must renew every [`LEASE_RENEW_INTERVAL`]. Another owner may take the lease over
//! when the holder has not renewed for [`LEASE_STALE_AFTER`], or at once when the holder ran
//! on this host and its process is gone — a crashed orchestrator restarted by its supervisor
//! succeeds on the first try. "Gone" includes a holder with *this* process's pid that this
//! process does not know: in a container the orchestrator is often pid 1 on every start, so a
//! crashed predecessor has the same host and pid as its successor.

use ktsu_shared::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How often the holder renews the lease.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// A lease not renewed for this long may be taken over by another process.
pub const LEASE_STALE_AFTER: Duration = Duration::from_secs(15);

/// This process as a lease holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ThisProcess {
    pub host: String,
    pub pid: u32,
}

impl ThisProcess {
    pub(super) fn current() -> ThisProcess {
        ThisProcess {
            host: this_host(),
            pid: std::process::id(),
        }
    }
}

/// The row of table `lease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Holder {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// `None` when the stored text is not a timestamp (treated as stale).
    pub renewed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nobody holds a valid lease: write ours.
    Take,
    /// We already hold it: refresh `renewed_at`.
    Renew,
    Held {
        host: String,
        pid: u32,
    },
}

/// Why the lease could not be taken.
#[derive(Debug)]
pub(super) enum AcquireError {
    Held { host: String, pid: u32 },
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for AcquireError {
    fn from(err: rusqlite::Error) -> Self {
        AcquireError::Sqlite(err)
    }
}

/// The lease rule, free of I/O: `process_alive` answers for a pid on this host,
/// `held_here` whether an owner is held by a live store of this very process.
pub(super) fn decide(
    current: Option<&Holder>,
    owner: &str,
    me: &ThisProcess,
    now: Timestamp,
    process_alive: &dyn Fn(u32) -> bool,
    held_here: &dyn Fn(&str) -> bool,
) -> Decision {
    let Some(holder) = current else {
        return Decision::Take;
    };
    if holder.owner == owner {
        return Decision::Renew;
    }
    let fresh = holder
        .renewed_at
        .is_some_and(|renewed| now.duration_since(renewed) < LEASE_STALE_AFTER);
    if !fresh {
        return Decision::Take;
    }
    if holder.host == me.host {
        let gone = if holder.pid == me.pid {
            // Our own pid under another owner: another store of this process, or the crashed
            // predecessor that had the same pid (containers).
            !held_here(&holder.owner)
        } else {
            !process_alive(holder.pid)
        };
        if gone {
            return Decision::Take;
        }
    }
    Decision::Held {
        host: holder.host.clone(),
        pid: holder.pid,
    }
}

fn lease_row(conn: &Connection) -> rusqlite::Result<Option<Holder>> {
    conn.query_row(
        "SELECT owner, host, pid, renewed_at FROM lease WHERE id = 1",
        [],
        |row| {
            let renewed: String = row.get(3)?;
            Ok(Holder {
                owner: row.get(0)?,
                host: row.get(1)?,
                pid: row.get(2)?,
                renewed_at: Timestamp::parse(&renewed).ok(),
            })
        },
    )
    .optional()
}

fn write_lease(
    conn: &Connection,
    owner: &str,
    me: &ThisProcess,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let now = now.to_string();
    conn.execute(
        "INSERT INTO lease (id, owner, host, pid, acquired_at, renewed_at) VALUES (1, ?1, ?2, ?3, ?4, ?4) \
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, host = excluded.host, \
         pid = excluded.pid, acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at",
        params![owner, me.host, me.pid, now],
    )?;
    Ok(())
}

fn refresh_lease(conn: &Connection, owner: &str, now: Timestamp) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE lease SET renewed_at = ?1 WHERE id = 1 AND owner = ?2",
        params![now.to_string(), owner],
    )
}

/// Takes or renews the lease for `owner` of the store at `path`. `tx` is inside a
/// `BEGIN IMMEDIATE` transaction (read, decide and write under the write lock), so two
/// processes starting together cannot both win; the caller commits.
pub(super) fn acquire(tx: &Connection, path: &Path, owner: &str) -> Result<(), AcquireError> {
    let me = ThisProcess::current();
    let now = Timestamp::now();
    let holder = lease_row(tx)?;
    let held_here = |o: &str| registry::holds(path, o);
    match decide(holder.as_ref(), owner, &me, now, &process_alive, &held_here) {
        Decision::Held { host, pid } => return Err(AcquireError::Held { host, pid }),
        Decision::Renew => {
            refresh_lease(tx, owner, now)?;
        }
        Decision::Take => {
            if let Some(previous) = &holder {
                log::warn!(target: "ktsu::store", event = "store.lease_taken_over",
                    previous_host = previous.host.as_str(), previous_pid = previous.pid;
                    "took over the store lease of {}:{}", previous.host, previous.pid);
            }
            write_lease(tx, owner, &me, now)?;
        }
    }
    // Registered before the caller's commit makes the row visible: another store of this
    // process that reads the row must already see that a live store here holds it. A commit
    // that then fails leaves an entry nobody consults (no row names this owner).
    registry::add(path, owner);
    Ok(())
}

/// Refreshes `renewed_at` when `owner` still holds the lease. A lease that another owner took
/// over is never taken back: this process lost it and must stop serving the store.
pub(super) fn renew(tx: &Connection, path: &Path, owner: &str) -> Result<(), AcquireError> {
    let now = Timestamp::now();
    if refresh_lease(tx, owner, now)? == 0 {
        match lease_row(tx)? {
            Some(holder) => {
                registry::remove(path, owner);
                return Err(AcquireError::Held {
                    host: holder.host,
                    pid: holder.pid,
                });
            }
            // The row was deleted (by hand): nobody else holds it, so it is still ours.
            None => write_lease(tx, owner, &ThisProcess::current(), now)?,
        }
    }
    Ok(())
}

/// Deletes the lease row if `owner` holds it (a lease taken over is left alone).
pub(super) fn release(conn: &Connection, path: &Path, owner: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM lease WHERE id = 1 AND owner = ?1", [owner])?;
    registry::remove(path, owner);
    Ok(())
}

/// Forgets `owner` when its store is dropped without releasing: a later store of this process
/// may then take the lease over at once.
pub(super) fn forget(path: &Path, owner: &str) {
    registry::remove(path, owner);
}

/// The default lease owner of a store opened by this process: host, pid, process start time
/// and a counter, so that every store instance has its own owner id.
pub(super) fn default_owner() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let me = ThisProcess::current();
    format!(
        "{}:{}:{}:{n}",
        me.host,
        me.pid,
        registry::process_started().unix_micros()
    )
}

/// Leases held by live stores of this process, by database path.
mod registry {
    use super::*;
    use std::sync::OnceLock;

    static HELD: Mutex<BTreeSet<(PathBuf, String)>> = Mutex::new(BTreeSet::new());

    pub(super) fn add(path: &Path, owner: &str) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert((path.to_path_buf(), owner.to_string()));
    }

    pub(super) fn remove(path: &Path, owner: &str) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(&(path.to_path_buf(), owner.to_string()));
    }

    pub(super) fn holds(path: &Path, owner: &str) -> bool {
        let held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        held.contains(&(path.to_path_buf(), owner.to_string()))
    }

    /// When this process first opened a store (part of default owner ids).
    pub(super) fn process_started() -> Timestamp {
        static STARTED: OnceLock<Timestamp> = OnceLock::new();
        *STARTED.get_or_init(Timestamp::now)
    }
}

/// The host name: the kernel's (Linux), else `$HOSTNAME`, else `localhost`.
pub(crate) fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether a process of this host is alive, from `/proc/<pid>/stat` (no signal, no unsafe
/// code). A zombie (`Z`) or dead (`X`) process counts as gone. Where `/proc` cannot answer
/// (another OS, a restricted mount) the process is presumed alive: the lease then expires
/// after [`LEASE_STALE_AFTER`] instead of being taken over at once.
pub(super) fn process_alive(pid: u32) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last `)` (comm may contain parentheses).
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(err) => err.kind() != std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ThisProcess {
        ThisProcess {
            host: "box".into(),
            pid: 100,
        }
    }

    fn holder(owner: &str, host: &str, pid: u32, age_s: u64, now: Timestamp) -> Holder {
        Holder {
            owner: owner.into(),
            host: host.into(),
            pid,
            renewed_at: Some(now - Duration::from_secs(age_s)),
        }
    }

    fn decide_with(current: Option<&Holder>, alive: bool, here: bool, now: Timestamp) -> Decision {
        decide(current, "me", &me(), now, &|_| alive, &|_| here)
    }

    #[test]
    fn lease_rules() {
        let now = Timestamp::from_unix_micros(1_000_000_000_000);
        assert_eq!(decide_with(None, true, false, now), Decision::Take);
        let own = holder("me", "box", 100, 1, now);
        assert_eq!(decide_with(Some(&own), true, false, now), Decision::Renew);
        let held = Decision::Held {
            host: "other".into(),
            pid: 7,
        };
        let remote_fresh = holder("x", "other", 7, 14, now);
        assert_eq!(
            decide_with(Some(&remote_fresh), false, false, now),
            held,
            "remote pids are not probed"
        );
        let remote_stale = holder("x", "other", 7, 15, now);
        assert_eq!(
            decide_with(Some(&remote_stale), true, false, now),
            Decision::Take
        );
        let local_alive = holder("x", "box", 7, 1, now);
        assert!(matches!(
            decide_with(Some(&local_alive), true, false, now),
            Decision::Held { .. }
        ));
        assert_eq!(
            decide_with(Some(&local_alive), false, false, now),
            Decision::Take,
            "crashed"
        );
        let same_pid = holder("x", "box", 100, 1, now);
        assert_eq!(
            decide_with(Some(&same_pid), true, false, now),
            Decision::Take,
            "predecessor with our pid"
        );
        assert!(
            matches!(
                decide_with(Some(&same_pid), true, true, now),
                Decision::Held { .. }
            ),
            "another store of this process"
        );
        let garbled = Holder {
            renewed_at: None,
            ..remote_fresh.clone()
        };
        assert_eq!(
            decide_with(Some(&garbled), true, false, now),
            Decision::Take
        );
        let future = holder("x", "other", 7, 0, now + Duration::from_secs(60));
        assert!(
            matches!(
                decide_with(Some(&future), true, false, now),
                Decision::Held { .. }
            ),
            "clock skew keeps it held"
        );
    }

    #[test]
    fn liveness_of_real_processes() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid), "an exited and reaped child is gone");
        assert!(!this_host().is_empty());
    }
}
