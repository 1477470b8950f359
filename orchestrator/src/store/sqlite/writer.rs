//! The writer: one SQLite connection owned by one dedicated OS thread.
//!
//! Every write is a job sent over a channel and answered through a oneshot channel, so
//! awaiting a write parks the calling task only: no async worker thread ever waits for SQLite
//! or for `fsync`. Jobs run one at a time, which serialises all commits.
//!
//! Group commit: the jobs that queued up while the previous transaction was syncing run
//! together in one `BEGIN IMMEDIATE … COMMIT`, each inside its own savepoint. A job that fails
//! is rolled back to its savepoint alone; the others go on. Nobody is answered before the
//! `COMMIT` returned (with `synchronous=FULL`, before the data is on disk); if the `COMMIT`
//! fails, every job of the batch gets that error and none of them was written. Under load one
//! `fsync` then serves many commits, without weakening any guarantee of a single commit.

use super::super::StoreError;
use super::sql_error;
use futures_channel::oneshot;
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// Upper bound of jobs per transaction, so one batch never holds the write lock for long.
const MAX_BATCH: usize = 64;

/// A write waiting for its turn and then for the batch's `COMMIT`.
trait Job: Send {
    /// Runs the write (inside its savepoint); `true` when it succeeded and must be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: the write's own result, or `failure` in place of a success when
    /// the batch was not committed (or the write never ran).
    fn finish(self: Box<Self>, failure: Option<StoreError>);
}

struct Pending<R, F> {
    work: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for Pending<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panic must not take every later write down with it; the writer rolls this
        // job's savepoint back like any other failure.
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            log::error!(target: "ktsu::store", event = "store.write_panicked"; "a store write panicked; it was rolled back");
            Err(StoreError::Unavailable("a store write failed unexpectedly (see log)".into()))
        });
        let succeeded = result.is_ok();
        self.result = Some(result);
        succeeded
    }

    fn finish(self: Box<Self>, failure: Option<StoreError>) {
        let answer = match (self.result, failure) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(_)), Some(failure)) | (None, Some(failure)) => Err(failure),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(StoreError::Unavailable("a store write was not run".into())),
        };
        // The receiver is gone only when the caller stopped waiting: nothing to tell.
        let _ = self.reply.send(answer);
    }
}

enum Command {
    Write(Box<dyn Job>),
    /// Checkpoint the WAL, answer, and end the thread.
    Close(oneshot::Sender<Result<(), StoreError>>),
}

pub(super) struct Writer {
    commands: mpsc::Sender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

/// How the writer grouped its work since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions the writer committed (one `fsync` of the WAL each).
    pub transactions: u64,
    /// Writes those transactions carried, failed ones included.
    pub writes: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    writes: AtomicU64,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store is closed (writer thread stopped)".into())
}

impl Writer {
    /// Moves `conn` onto a new thread named `ktsu-store-writer`.
    pub(super) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("ktsu-store-writer".into())
            .spawn(move || serve(&conn, &inbox, &thread_counters))?;
        Ok(Writer {
            commands,
            thread: std::sync::Mutex::new(Some(thread)),
            counters,
        })
    }

    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Runs `work` on the writer thread inside a transaction and awaits its committed result.
    pub(super) async fn call<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Pending {
            work: Some(work),
            result: None,
            reply,
        };
        self.commands
            .send(Command::Write(Box::new(job)))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Checkpoints the WAL into the database file (`TRUNCATE`) and stops the thread after the
    /// jobs already queued.
    pub(super) async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Close(reply))
            .map_err(|_| stopped())?;
        let result = answer.await.map_err(|_| stopped())?;
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // The thread answered and is returning, closing its connection; joining cannot
            // wait on SQLite. Still, do it on the blocking pool so that not even that short
            // wait lands on a worker.
            if let Ok(joined) = super::blocking(move || handle.join()) {
                let _ = joined.await;
            }
        }
        result
    }
}

fn serve(conn: &Connection, inbox: &mpsc::Receiver<Command>, counters: &Counters) {
    // Ends when every sender is gone (the store was dropped without `close`); the connection
    // then closes and SQLite checkpoints on its own when it is the last one.
    while let Ok(first) = inbox.recv() {
        let mut batch = Vec::new();
        let mut close = None;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(job) => batch.push(job),
                Command::Close(reply) => {
                    close = Some(reply);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = inbox.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            run_batch(conn, batch, counters);
        }
        if let Some(reply) = close {
            let _ = reply.send(checkpoint_truncate(conn));
            return;
        }
    }
}

/// Runs the jobs in one transaction, each in its own savepoint, then commits and answers.
fn run_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>, counters: &Counters) {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        let failure = sql_error(err);
        for job in batch {
            job.finish(Some(failure.clone()));
        }
        return;
    }
    for job in &mut batch {
        if let Err(failure) = run_in_savepoint(conn, job.as_mut()) {
            // The transaction is gone or in an unknown state: nothing of it may be kept.
            abandon(conn, batch, &failure);
            return;
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            // Counted before anyone is answered, so a caller sees its own write counted.
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            counters
                .writes
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for job in batch {
                job.finish(None);
            }
        }
        Err(err) => abandon(conn, batch, &sql_error(err)),
    }
}

/// Runs one job inside `SAVEPOINT`; on its failure rolls back to it. An error here means the
/// surrounding transaction cannot be trusted any more.
fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) -> Result<(), StoreError> {
    conn.execute_batch("SAVEPOINT job").map_err(sql_error)?;
    if job.run(conn) {
        return conn.execute_batch("RELEASE job").map_err(sql_error);
    }
    // Some errors (I/O, disk full) make SQLite roll the whole transaction back by itself,
    // taking the earlier jobs of the batch with it.
    if conn.is_autocommit() {
        return Err(StoreError::Unavailable(
            "the transaction was rolled back after a write error".into(),
        ));
    }
    conn.execute_batch("ROLLBACK TO job; RELEASE job")
        .map_err(sql_error)
}

/// Rolls the whole transaction back and answers every job of the batch with `failure` (a
/// job that failed by itself keeps its own error).
fn abandon(conn: &Connection, batch: Vec<Box<dyn Job>>, failure: &StoreError) {
    if !conn.is_autocommit() {
        if let Err(err) = conn.execute_batch("ROLLBACK") {
            log::error!(target: "ktsu::store", event = "store.rollback_failed"; "rollback failed: {err}");
        }
    }
    for job in batch {
        job.finish(Some(failure.clone()));
    }
}

fn checkpoint_truncate(conn: &Connection) -> Result<(), StoreError> {
    // Row: (busy, log frames, checkpointed frames). TRUNCATE waits for readers through the
    // busy handler (busy_timeout), so busy = 1 means a reader held on for that long.
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .map_err(|e| StoreError::Unavailable(format!("WAL checkpoint failed: {e}")))?;
    if busy != 0 {
        return Err(StoreError::Unavailable(
            "WAL checkpoint could not complete: readers are still active (every commit is safe \
             in the -wal file; it is checkpointed on the next open)"
                .into(),
        ));
    }
    Ok(())
}
