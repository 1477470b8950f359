//! The run store (orchestrator.md §8): memory or SQLite behind one asynchronous API.
//!
//! Every state transition is committed here before it is acted on. A [`ChangeSet`] is applied
//! atomically with an optimistic version check per run, so a step completion, its dependents'
//! skips, the run status and their events land together or not at all. No operation blocks an
//! actor or HTTP worker thread: the memory store works under a short lock, the SQLite store
//! runs its writes on one dedicated writer thread and its reads on a blocking pool.

mod memory;
mod rules;
mod sqlite;

#[cfg(test)]
mod contract;

pub use memory::MemoryStore;
pub use sqlite::{
    OpenError, SqliteOptions, SqliteStore, WriteStats, LEASE_RENEW_INTERVAL, LEASE_STALE_AFTER,
};

use crate::model::{
    ApprovalRecord, ApprovalStatus, EventRecord, IdempotencyRecord, ItemRecord, NewEvent, RunFull,
    RunRecord, RunStatus, StepRecord,
};
use ktsu_shared::time::Timestamp;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Store failures (orchestrator.md §8.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The run's version moved: another writer committed first (the RunManager restarts the
    /// RunActor from the store).
    #[error("version conflict")]
    Conflict,
    /// The store failed or timed out (HTTP 503 `store_unavailable`). The cause goes to the log.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request contradicts itself or the stored state in a way no retry can fix — a bug in
    /// the caller, never caused by a client: a record of another run in a change set, an item
    /// of a step that does not exist, a checkpoint for an unknown step address, a sub-run whose
    /// parent is not the committing run. Nothing was written.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Another process holds the single-process lease (orchestrator.md §8.3); the message is
    /// `store <path> is in use by <host>:<pid>`. This process must stop serving the store.
    #[error("{0}")]
    LeaseHeld(String),
}

/// A run to create, with one record per pipeline step (approval hooks excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// `version` is ignored: a new run starts at version 1.
    pub run: RunRecord,
    /// Every `run_id` must equal `run.id`; `name` is stored as `id`. Items present in a step's
    /// `items` are created with it.
    pub steps: Vec<StepRecord>,
}

/// One atomic change to one run (orchestrator.md §8.1 `commit`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeSet {
    /// The run row, replaced whole (its `version` is ignored; the store sets it).
    pub run: Option<RunRecord>,
    /// Step rows, upserted whole; their `items` field is ignored (items go in `items`).
    pub steps: Vec<StepRecord>,
    /// Fan-out item rows `(step id, item)`, upserted whole.
    pub items: Vec<(String, ItemRecord)>,
    /// Approval rows, upserted whole (identity: run, step address, tool_use_id).
    pub approvals: Vec<ApprovalRecord>,
    /// Sub-runs created by this commit (run + steps), version 1 each.
    pub children: Vec<NewRun>,
    /// Conversation checkpoints `(step address, messages)`; `None` deletes.
    pub checkpoints: Vec<(String, Option<Value>)>,
    /// Events appended to the run's log; sequence numbers are assigned contiguously.
    pub events: Vec<NewEvent>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.run.is_none()
            && self.steps.is_empty()
            && self.items.is_empty()
            && self.approvals.is_empty()
            && self.children.is_empty()
            && self.checkpoints.is_empty()
            && self.events.is_empty()
    }
}

/// Outcome of [`Store::create_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    /// An unexpired record already holds the idempotency key: nothing was inserted.
    Existing(IdempotencyRecord),
}

/// `GET /runs` filters (orchestrator.md §2.6).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    /// Only direct sub-runs of this run.
    pub parent: Option<String>,
    /// Include sub-runs (default: root runs only).
    pub include_children: bool,
}

/// Position after the last run of a page: `(created_at, id)` of that run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: Timestamp,
    pub id: String,
}

/// `GET /approvals` filters (orchestrator.md §2.10).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApprovalFilter {
    pub run_id: Option<String>,
    /// `None`: every status.
    pub status: Option<ApprovalStatus>,
}

/// The configured store.
#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Sqlite(Arc<SqliteStore>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Memory($s) => $e,
            Store::Sqlite($s) => $e,
        }
    };
}

impl Store {
    /// `memory` or `sqlite` (health and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Inserts a run, its step records and the optional idempotency record atomically.
    ///
    /// An unexpired record already holding the key (as of `idempotency.created_at`) wins:
    /// nothing is inserted and [`Created::Existing`] carries it. An expired one is replaced.
    /// A run id that already exists → `Conflict` (the caller draws a new id, orchestrator.md §0).
    pub async fn create_run(
        &self,
        run: NewRun,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<Created, StoreError> {
        dispatch!(self, s => s.create_run(run, idempotency).await)
    }

    /// Applies a change set if the run is still at `expected_version`; returns the new version.
    ///
    /// Errors: `Invalid` (the change set contradicts itself or the stored state; checked before
    /// anything else), `NotFound` (unknown run), `Conflict` (version moved, or a sub-run id
    /// already exists). On any error nothing of the change set is written.
    pub async fn commit(
        &self,
        run_id: &str,
        expected_version: u64,
        changes: ChangeSet,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.commit(run_id, expected_version, changes).await)
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        dispatch!(self, s => s.get_run(id).await)
    }

    /// The run with its steps in pipeline order and fan-out items in index order.
    pub async fn get_run_full(&self, id: &str) -> Result<Option<RunFull>, StoreError> {
        dispatch!(self, s => s.get_run_full(id).await)
    }

    /// `created_at` descending, then `id` descending; at most `limit` runs after `cursor`.
    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        dispatch!(self, s => s.list_runs(filter, cursor, limit).await)
    }

    /// Runs in `pending`/`running`, `created_at` order (parents before children).
    pub async fn list_active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        dispatch!(self, s => s.list_active_runs().await)
    }

    /// Sum of `metrics.cost_usd` over the agent step records of every run of the tree.
    pub async fn tree_spend(&self, root_run_id: &str) -> Result<f64, StoreError> {
        dispatch!(self, s => s.tree_spend(root_run_id).await)
    }

    /// Approvals of a run (optionally of one step address), `created_at` ascending.
    pub async fn get_approvals(
        &self,
        run_id: &str,
        step_address: Option<&str>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        dispatch!(self, s => s.get_approvals(run_id, step_address).await)
    }

    /// Approvals across runs, `created_at` ascending.
    pub async fn list_approvals(
        &self,
        filter: &ApprovalFilter,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        dispatch!(self, s => s.list_approvals(filter).await)
    }

    pub async fn get_checkpoint(
        &self,
        run_id: &str,
        step_address: &str,
    ) -> Result<Option<Value>, StoreError> {
        dispatch!(self, s => s.get_checkpoint(run_id, step_address).await)
    }

    /// Every stored checkpoint of a run by step address (recovery, orchestrator.md §7.7);
    /// empty for an unknown run.
    pub async fn get_checkpoints(
        &self,
        run_id: &str,
    ) -> Result<HashMap<String, Value>, StoreError> {
        dispatch!(self, s => s.get_checkpoints(run_id).await)
    }

    /// Events with `seq > after`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        dispatch!(self, s => s.events_after(run_id, after, limit).await)
    }

    /// The unexpired record holding `key`, if any.
    pub async fn get_idempotency(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        dispatch!(self, s => s.get_idempotency(key, now).await)
    }

    /// Deletes expired idempotency records; returns how many.
    pub async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge_idempotency(now).await)
    }

    /// Takes the single-writer lease (SQLite; no-op in memory). [`SqliteStore::open`] already
    /// took it for [`SqliteOptions::lease_owner`]; pass that same owner here and to
    /// `renew_lease` (every [`LEASE_RENEW_INTERVAL`]) and `release_lease`. Another live owner
    /// → [`StoreError::LeaseHeld`].
    pub async fn acquire_lease(&self, owner: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.acquire_lease(owner).await)
    }

    /// Refreshes `renewed_at`; [`StoreError::LeaseHeld`] when another process took the lease
    /// over (this process must stop serving the store).
    pub async fn renew_lease(&self, owner: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.renew_lease(owner).await)
    }

    /// Deletes the lease row if `owner` holds it.
    pub async fn release_lease(&self, owner: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.release_lease(owner).await)
    }

    /// Flushes and closes. SQLite: WAL checkpoint `TRUNCATE`, writer thread stopped, every later
    /// call answers `Unavailable`. Memory: nothing to do.
    pub async fn close(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.close().await)
    }
}
