//! Opening a SQLite store (orchestrator.md §1.2 step 4, §8.3): the file, the pragmas, the
//! schema check and the versioned migrations.

use super::OpenError;
use ktsu_shared::time::Timestamp;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

/// One embedded schema migration. Applied in `version` order, each in its own transaction,
/// and recorded in `schema_migrations`. An applied migration is never edited.
pub(super) struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("../migrations/0001_init.sql"),
}];

/// The schema version this build writes.
pub(super) fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const CREATE_SCHEMA_MIGRATIONS: &str =
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, \
     name TEXT NOT NULL, applied_at TEXT NOT NULL)";

/// Busy handler bound: how long a statement waits for a lock held by another connection.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Creates the database file with mode 0600 when it does not exist, so it is never readable
/// by others even for an instant; an existing file keeps its mode. SQLite gives the `-wal`
/// and `-shm` files the mode of the database file.
pub(super) fn create_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

/// Paths are plain file names, never `file:` URIs, so the file created above is the file
/// SQLite opens.
pub(super) fn writer_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Read connections cannot write even by mistake.
pub(super) fn reader_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// The pragmas every connection gets; returns the journal mode SQLite reports after asking
/// for WAL (the caller refuses anything else).
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<String> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode = switch_to_wal(conn)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(mode)
}

/// `PRAGMA journal_mode=WAL`, retried while busy. Switching a new file to WAL needs an
/// exclusive lock, and SQLite answers `SQLITE_BUSY` at once, without its busy handler, when two
/// connections race for it (two processes starting together).
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)) {
            Err(err)
                if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

pub(super) fn is_wal(mode: &str) -> bool {
    mode.eq_ignore_ascii_case("wal")
}

/// What an opened database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Schema {
    /// No schema object at all: a new store.
    Empty,
    /// A ktsu store at this migration version (0: the bookkeeping table only).
    Versioned(u32),
    /// Schema objects but no `schema_migrations`: not ours, never touched.
    Foreign,
}

pub(super) fn inspect(conn: &Connection) -> rusqlite::Result<Schema> {
    let has_migrations: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |row| row.get(0),
    )?;
    if has_migrations {
        let version: u32 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )?;
        return Ok(Schema::Versioned(version));
    }
    let objects: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
        [],
        |row| row.get(0),
    )?;
    Ok(if objects == 0 {
        Schema::Empty
    } else {
        Schema::Foreign
    })
}

/// Refuses a database this build must not serve.
pub(super) fn check_schema(path: &Path, schema: Schema) -> Result<(), OpenError> {
    match schema {
        Schema::Foreign => Err(OpenError::Unrecognised {
            path: path.to_path_buf(),
        }),
        Schema::Versioned(found) if found > latest_version() => Err(OpenError::NewerSchema {
            found,
            supported: latest_version(),
        }),
        Schema::Empty | Schema::Versioned(_) => Ok(()),
    }
}

pub(super) fn has_lease_table(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lease')",
        [],
        |row| row.get(0),
    )
}

/// Applies every pending migration, each in its own `BEGIN IMMEDIATE` transaction that first
/// re-reads the version, so two processes opening a new file together apply each migration
/// once. Returns the versions applied now.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<Vec<u32>, OpenError> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let failed = |cause: rusqlite::Error| OpenError::Migration {
            path: path.to_path_buf(),
            version: migration.version,
            name: migration.name,
            cause: cause.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let schema = inspect(&tx).map_err(failed)?;
        check_schema(path, schema)?;
        match schema {
            Schema::Versioned(current) if current >= migration.version => continue,
            Schema::Empty => tx.execute_batch(CREATE_SCHEMA_MIGRATIONS).map_err(failed)?,
            Schema::Versioned(_) | Schema::Foreign => {}
        }
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                migration.version,
                migration.name,
                Timestamp::now().to_string()
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        log::info!(target: "ktsu::store", event = "store.migrated", version = migration.version;
            "applied store migration {} ({})", migration.version, migration.name);
        applied.push(migration.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
        assert_eq!(latest_version(), 1);
    }

    #[test]
    fn only_wal_is_accepted() {
        assert!(is_wal("wal"));
        assert!(is_wal("WAL"));
        for other in ["delete", "memory", "truncate", "persist", "off", ""] {
            assert!(!is_wal(other), "{other}");
        }
    }

    #[test]
    fn migration_one_is_the_specified_schema() {
        let sql = MIGRATIONS[0].sql;
        for table in [
            "CREATE TABLE runs (",
            "CREATE TABLE steps (",
            "CREATE TABLE step_items (",
            "CREATE TABLE approvals (",
            "CREATE TABLE events (",
            "CREATE TABLE idempotency_keys (",
            "CREATE TABLE lease (",
        ] {
            assert!(sql.contains(table), "{table}");
        }
        for index in [
            "CREATE INDEX runs_created ON runs(created_at DESC, id DESC);",
            "CREATE INDEX runs_workflow ON runs(workflow_name, created_at DESC, id DESC);",
            "CREATE INDEX runs_status ON runs(status, created_at DESC, id DESC);",
            "CREATE INDEX runs_parent ON runs(parent_run_id);",
            "CREATE INDEX runs_root ON runs(root_run_id);",
            "CREATE INDEX approvals_status ON approvals(status, created_at);",
            "CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);",
        ] {
            assert!(sql.contains(index), "{index}");
        }
    }
}
