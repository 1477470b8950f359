//! The SQLite store (orchestrator.md §8.3).
//!
//! Writes go to one connection owned by a dedicated thread ([`writer`]): every commit runs in
//! a `BEGIN IMMEDIATE … COMMIT` with `synchronous=FULL` (commits queued together share one
//! transaction, each in its own savepoint), and nobody is answered before that `COMMIT`
//! returned, so a returned commit is on disk. Reads use a pool of read-only connections inside
//! the blocking pool ([`read`]). WAL lets readers and the writer proceed without waiting for
//! each other. The schema comes from versioned, embedded migrations ([`open`]); a lease row
//! keeps a second process away ([`lease`]).

mod codec;
mod lease;
mod open;
mod read;
mod write;
mod writer;

#[cfg(test)]
pub(crate) use lease::this_host;
pub use lease::{LEASE_RENEW_INTERVAL, LEASE_STALE_AFTER};
pub use writer::WriteStats;

use super::{ApprovalFilter, ChangeSet, Created, Cursor, NewRun, RunFilter, StoreError};
use crate::model::{ApprovalRecord, EventRecord, IdempotencyRecord, RunFull, RunRecord};
use crate::store::rules;
use ktsu_shared::time::Timestamp;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use writer::Writer;

/// How to open a SQLite store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file (`KTSU_DB_PATH`); created with mode 0600 when missing. Its directory
    /// must be writable: the `-wal` and `-shm` files live beside it.
    pub path: PathBuf,
    /// Read connections (`KTSU_DB_POOL_SIZE`, 1–64).
    pub pool_size: u32,
    /// The lease owner id `open` takes the lease for; pass the same id to `renew_lease` and
    /// `release_lease`. [`SqliteOptions::new`] makes one unique to this store instance.
    pub lease_owner: String,
}

impl SqliteOptions {
    /// Defaults: 8 read connections, a fresh lease owner id.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            pool_size: 8,
            lease_owner: lease::default_owner(),
        }
    }
}

/// Why a SQLite store could not be opened (orchestrator.md §1.2 step 4: exit 1, except
/// [`OpenError::NewerSchema`]: exit 3; see [`OpenError::exit_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("invalid store option: {0}")]
    InvalidOption(String),
    /// The file or its connection could not be created, opened or configured.
    #[error("cannot open store {}: {cause}", .path.display())]
    Open { path: PathBuf, cause: String },
    #[error("cannot open store {}: journal_mode is {mode:?}, WAL is required (a local filesystem is needed)", .path.display())]
    NotWal { path: PathBuf, mode: String },
    /// Written by a newer ktsu: this build must not touch it.
    #[error("store schema version {found} is newer than this build ({supported})")]
    NewerSchema { found: u32, supported: u32 },
    /// A non-empty database without `schema_migrations`: some other program's file.
    #[error("cannot open store {}: unrecognised database (it has tables but no schema_migrations)", .path.display())]
    Unrecognised { path: PathBuf },
    /// Another live process holds the lease.
    #[error("store {} is in use by {host}:{pid}", .path.display())]
    InUse {
        path: PathBuf,
        host: String,
        pid: u32,
    },
    #[error("cannot open store {}: migration {version} ({name}) failed: {cause}", .path.display())]
    Migration {
        path: PathBuf,
        version: u32,
        name: &'static str,
        cause: String,
    },
}

impl OpenError {
    /// The process exit status for this failure: 3 for a schema newer than this build (a
    /// supervisor must not restart-loop on it), 2 for an invalid option, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            OpenError::NewerSchema { .. } => 3,
            OpenError::InvalidOption(_) => 2,
            _ => 1,
        }
    }
}

/// Runs `work` on the runtime's blocking pool (actix's runtime is tokio's). Outside any
/// runtime the call fails instead of panicking as `spawn_blocking` would.
pub(super) fn blocking<R, F>(work: F) -> Result<tokio::task::JoinHandle<R>, StoreError>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        StoreError::Unavailable("store calls must run inside the actix (tokio) runtime".into())
    })?;
    Ok(runtime.spawn_blocking(work))
}

/// SQLite failures become `Unavailable` with SQLite's own text as the cause (for the log).
pub(super) fn sql_error(err: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// The identity of the database file at open. Before every write the path must still name
/// that file: a deleted or replaced file would otherwise keep accepting commits into an
/// unlinked inode and lose them all at the next start.
struct FileIdentity {
    path: PathBuf,
    #[cfg(unix)]
    dev_ino: (u64, u64),
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let metadata = std::fs::metadata(path)?;
        #[cfg(unix)]
        let dev_ino = {
            use std::os::unix::fs::MetadataExt;
            (metadata.dev(), metadata.ino())
        };
        #[cfg(not(unix))]
        let _ = metadata;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            #[cfg(unix)]
            dev_ino,
        })
    }

    fn verify(&self) -> Result<(), StoreError> {
        let gone = || {
            StoreError::Unavailable(format!(
                "store file {} was deleted or replaced while open",
                self.path.display()
            ))
        };
        let current = FileIdentity::of(&self.path).map_err(|_| gone())?;
        #[cfg(unix)]
        if current.dev_ino != self.dev_ino {
            return Err(gone());
        }
        #[cfg(not(unix))]
        let _ = current;
        Ok(())
    }
}

/// The SQLite store. Cheap to share behind an `Arc`; every method is `async` and never blocks
/// the calling thread.
pub struct SqliteStore {
    /// As configured (messages).
    path: PathBuf,
    /// Canonical (lease bookkeeping inside this process).
    canonical: PathBuf,
    lease_owner: String,
    identity: Arc<FileIdentity>,
    writer: Writer,
    readers: r2d2::Pool<SqliteConnectionManager>,
    closed: AtomicBool,
}

/// How long a read waits for a free pooled connection before answering `Unavailable`.
const READ_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

impl SqliteStore {
    /// Opens (creating if needed) the store: file mode 0600, pragmas, schema check, lease,
    /// pending migrations, the read pool and the writer thread. Blocking: call it at startup,
    /// before serving, or from the blocking pool.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore, OpenError> {
        let SqliteOptions {
            path,
            pool_size,
            lease_owner,
        } = options;
        if !(1..=64).contains(&pool_size) {
            return Err(OpenError::InvalidOption(format!(
                "KTSU_DB_POOL_SIZE must be between 1 and 64, got {pool_size}"
            )));
        }
        let cannot_open = |cause: String| OpenError::Open {
            path: path.clone(),
            cause,
        };
        open::create_file(&path).map_err(|e| cannot_open(e.to_string()))?;
        let canonical = std::fs::canonicalize(&path).map_err(|e| cannot_open(e.to_string()))?;
        let identity = FileIdentity::of(&path).map_err(|e| cannot_open(e.to_string()))?;

        let mut conn = Connection::open_with_flags(&path, open::writer_flags())
            .map_err(|e| cannot_open(e.to_string()))?;
        let mode = open::configure(&conn).map_err(|e| cannot_open(e.to_string()))?;
        if !open::is_wal(&mode) {
            return Err(OpenError::NotWal { path, mode });
        }
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| cannot_open(e.to_string()))?
        {
            return Err(cannot_open("the database is read-only".into()));
        }
        conn.set_prepared_statement_cache_capacity(64);
        let schema = open::inspect(&conn).map_err(|e| cannot_open(e.to_string()))?;
        open::check_schema(&path, schema)?;

        // The lease comes before migrations so that a running older build is never migrated
        // under its feet; a new file has no lease table yet, and its first opener takes the
        // lease right after creating it.
        let mut lease = LeaseGuard {
            canonical: &canonical,
            owner: &lease_owner,
            armed: false,
        };
        let lease_table = open::has_lease_table(&conn).map_err(|e| cannot_open(e.to_string()))?;
        if lease_table {
            take_lease(&mut conn, &path, &canonical, &lease_owner)?;
            lease.armed = true;
        }
        open::migrate(&mut conn, &path)?;
        if !lease_table {
            take_lease(&mut conn, &path, &canonical, &lease_owner)?;
            lease.armed = true;
        }

        let readers = build_readers(&path, pool_size).map_err(cannot_open)?;
        let writer = Writer::start(conn).map_err(|e| cannot_open(e.to_string()))?;
        lease.armed = false;
        drop(lease);
        Ok(SqliteStore {
            path,
            canonical,
            lease_owner,
            identity: Arc::new(identity),
            writer,
            readers,
            closed: AtomicBool::new(false),
        })
    }

    /// The database file as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The owner id the lease was taken for at open.
    pub fn lease_owner(&self) -> &str {
        &self.lease_owner
    }

    /// Transactions committed and writes they carried so far (group commit at work when
    /// `writes / transactions > 1`); for diagnostics and benchmarks.
    pub fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    fn closed_error() -> StoreError {
        StoreError::Unavailable("the store is closed".into())
    }

    /// Runs a write on the writer thread after checking that the file is still the one opened.
    async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(Self::closed_error());
        }
        let identity = Arc::clone(&self.identity);
        self.writer
            .call(move |conn| {
                identity.verify()?;
                work(conn)
            })
            .await
    }

    /// Runs a read on a pooled read connection in the blocking pool.
    async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(Self::closed_error());
        }
        let pool = self.readers.clone();
        blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| StoreError::Unavailable(format!("no read connection: {e}")))?;
            work(&mut conn)
        })?
        .await
        .map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))?
    }

    pub async fn create_run(
        &self,
        new: NewRun,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<Created, StoreError> {
        rules::validate_new_run(&new)?;
        self.write(move |conn| write::create_run(conn, &new, idempotency.as_ref()))
            .await
    }

    pub async fn commit(
        &self,
        run_id: &str,
        expected_version: u64,
        changes: ChangeSet,
    ) -> Result<u64, StoreError> {
        rules::validate_change_set(run_id, &changes)?;
        let run_id = run_id.to_owned();
        self.write(move |conn| write::commit(conn, &run_id, expected_version, &changes))
            .await
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| read::get_run(conn, &id)).await
    }

    pub async fn get_run_full(&self, id: &str) -> Result<Option<RunFull>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| read::get_run_full(conn, &id)).await
    }

    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let filter = filter.clone();
        let cursor = cursor.cloned();
        self.read(move |conn| read::list_runs(conn, &filter, cursor.as_ref(), limit))
            .await
    }

    pub async fn list_active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.read(read::list_active_runs).await
    }

    pub async fn tree_spend(&self, root_run_id: &str) -> Result<f64, StoreError> {
        let root = root_run_id.to_owned();
        self.read(move |conn| read::tree_spend(conn, &root)).await
    }

    pub async fn get_approvals(
        &self,
        run_id: &str,
        step_address: Option<&str>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let run_id = run_id.to_owned();
        let step = step_address.map(str::to_owned);
        self.read(move |conn| read::get_approvals(conn, &run_id, step.as_deref()))
            .await
    }

    pub async fn list_approvals(
        &self,
        filter: &ApprovalFilter,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| read::list_approvals(conn, &filter))
            .await
    }

    pub async fn get_checkpoint(
        &self,
        run_id: &str,
        step_address: &str,
    ) -> Result<Option<Value>, StoreError> {
        let run_id = run_id.to_owned();
        let address = step_address.to_owned();
        self.read(move |conn| read::get_checkpoint(conn, &run_id, &address))
            .await
    }

    pub async fn get_checkpoints(
        &self,
        run_id: &str,
    ) -> Result<HashMap<String, Value>, StoreError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| read::get_checkpoints(conn, &run_id))
            .await
    }

    pub async fn events_after(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let run_id = run_id.to_owned();
        self.read(move |conn| read::events_after(conn, &run_id, after, limit))
            .await
    }

    pub async fn get_idempotency(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn| read::get_idempotency(conn, &key, now))
            .await
    }

    pub async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write(move |conn| write::purge_idempotency(conn, now))
            .await
    }

    pub async fn acquire_lease(&self, owner: &str) -> Result<(), StoreError> {
        let (path, canonical, owner) = self.lease_args(owner);
        self.write(move |conn| {
            lease::acquire(conn, &canonical, &owner).map_err(|e| lease_error(&path, e))
        })
        .await
    }

    pub async fn renew_lease(&self, owner: &str) -> Result<(), StoreError> {
        let (path, canonical, owner) = self.lease_args(owner);
        self.write(move |conn| {
            lease::renew(conn, &canonical, &owner).map_err(|e| lease_error(&path, e))
        })
        .await
    }

    pub async fn release_lease(&self, owner: &str) -> Result<(), StoreError> {
        let (_, canonical, owner) = self.lease_args(owner);
        self.write(move |conn| lease::release(conn, &canonical, &owner).map_err(sql_error))
            .await
    }

    fn lease_args(&self, owner: &str) -> (PathBuf, PathBuf, String) {
        (self.path.clone(), self.canonical.clone(), owner.to_owned())
    }

    /// Checkpoints the WAL into the database file (`TRUNCATE`) and stops the writer thread;
    /// later calls answer `Unavailable`.
    pub async fn close(&self) -> Result<(), StoreError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.writer.close().await
    }
}

/// `(journal_mode, synchronous, busy_timeout, foreign_keys)` of one connection.
#[cfg(test)]
pub(crate) type Pragmas = (String, i64, i64, i64);

#[cfg(test)]
impl SqliteStore {
    /// The pragmas of the writer connection and of a pooled read connection.
    pub(crate) async fn pragmas(&self) -> Result<[Pragmas; 2], StoreError> {
        fn of(conn: &Connection) -> Result<Pragmas, StoreError> {
            let get = |name: &str| -> rusqlite::Result<i64> {
                conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            };
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                .map_err(sql_error)?;
            Ok((
                mode,
                get("synchronous").map_err(sql_error)?,
                get("busy_timeout").map_err(sql_error)?,
                get("foreign_keys").map_err(sql_error)?,
            ))
        }
        Ok([self.write(of).await?, self.read(|conn| of(conn)).await?])
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        lease::forget(&self.canonical, &self.lease_owner);
    }
}

fn lease_error(path: &Path, err: lease::AcquireError) -> StoreError {
    match err {
        lease::AcquireError::Held { host, pid } => StoreError::LeaseHeld(format!(
            "store {} is in use by {host}:{pid}",
            path.display()
        )),
        lease::AcquireError::Sqlite(e) => sql_error(e),
    }
}

/// Takes the lease at open, in its own `BEGIN IMMEDIATE` transaction.
fn take_lease(
    conn: &mut Connection,
    path: &Path,
    canonical: &Path,
    owner: &str,
) -> Result<(), OpenError> {
    let failed = |e: rusqlite::Error| OpenError::Open {
        path: path.to_path_buf(),
        cause: format!("cannot take the store lease: {e}"),
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(failed)?;
    lease::acquire(&tx, canonical, owner).map_err(|err| match err {
        lease::AcquireError::Held { host, pid } => OpenError::InUse {
            path: path.to_path_buf(),
            host,
            pid,
        },
        lease::AcquireError::Sqlite(e) => failed(e),
    })?;
    tx.commit().map_err(failed)
}

/// Forgets, when `open` fails after taking the lease, that this process holds it: the row
/// left behind names this pid with an owner nobody here holds, so a retry in this process (or
/// a restart of it) takes it over at once instead of waiting for it to go stale.
struct LeaseGuard<'a> {
    canonical: &'a Path,
    owner: &'a str,
    armed: bool,
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lease::forget(self.canonical, self.owner);
        }
    }
}

/// The read pool. One connection is opened and checked first so that a failure is reported at
/// once with its cause (r2d2 would retry until its timeout).
fn build_readers(
    path: &Path,
    pool_size: u32,
) -> Result<r2d2::Pool<SqliteConnectionManager>, String> {
    let init = |conn: &mut Connection| -> rusqlite::Result<()> {
        let mode = open::configure(conn)?;
        // Room for every list_runs filter combination next to the fixed queries.
        conn.set_prepared_statement_cache_capacity(64);
        if open::is_wal(&mode) {
            Ok(())
        } else {
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(format!(
                    "read connection journal_mode is {mode:?}, WAL is required"
                )),
            ))
        }
    };
    let manager = SqliteConnectionManager::file(path)
        .with_flags(open::reader_flags())
        .with_init(init);
    let mut probe = Connection::open_with_flags(path, open::reader_flags())
        .map_err(|e| format!("read connection: {e}"))?;
    init(&mut probe).map_err(|e| format!("read connection: {e}"))?;
    drop(probe);
    Ok(r2d2::Pool::builder()
        .max_size(pool_size)
        .connection_timeout(READ_CONNECTION_TIMEOUT)
        .build_unchecked(manager))
}
