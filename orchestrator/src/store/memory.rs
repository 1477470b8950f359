//! The memory store (orchestrator.md §8.2): plain maps under one mutex.
//!
//! The lock is held only for map work, never across an `.await`, so every operation completes
//! without blocking. Records are cloned on the way in and out: a caller never shares a value
//! with the store. Change sets are checked completely before the first map is touched, so a
//! rejected commit leaves nothing behind. Beyond `max_runs` root runs, the oldest root run
//! whose whole tree is terminal is evicted with its sub-runs; active runs are never evicted.

use super::rules::{self, StepAddress};
use super::{ApprovalFilter, ChangeSet, Created, Cursor, NewRun, RunFilter, StoreError};
use crate::model::{
    ApprovalRecord, EventRecord, IdempotencyRecord, ItemRecord, NewEvent, RunFull, RunRecord,
    StepRecord, StepType,
};
use ktsu_shared::time::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Runs, steps, approvals, events and idempotency keys in memory; lost on exit.
pub struct MemoryStore {
    max_runs: usize,
    state: Mutex<State>,
}

/// `(created_at, id)`: the key that orders runs for listing and eviction.
type RunKey = (Timestamp, String);

#[derive(Default)]
struct State {
    runs: HashMap<String, StoredRun>,
    /// Every run, in list order (ascending; lists walk it backwards).
    by_created: BTreeSet<RunKey>,
    /// Root runs: their number is what `max_runs` bounds.
    roots: BTreeSet<RunKey>,
    /// Root runs in a terminal status, oldest first: the eviction candidates.
    terminal_roots: BTreeSet<RunKey>,
    /// Root run id → ids of every run of the tree (root included).
    trees: HashMap<String, BTreeSet<String>>,
    idempotency: HashMap<String, IdempotencyRecord>,
}

struct StoredRun {
    /// `version` is the stored version.
    run: RunRecord,
    steps: HashMap<String, StoredStep>,
    /// Keyed by (step address, tool_use_id).
    approvals: BTreeMap<(String, String), ApprovalRecord>,
    /// `events[i]` has `seq == i + 1`.
    events: Vec<StoredEvent>,
    /// The idempotency key created with this run, removed with it on eviction.
    idempotency_key: Option<String>,
}

/// An event as kept in memory: its data as compact JSON text, not a `serde_json::Value` tree.
/// Events are written on every transition and read rarely (the event stream, diagnosis); as
/// values they were the largest part of a finished run in memory, several times the size of
/// their text, and the memory store keeps up to `KTSU_MEMORY_MAX_RUNS` finished runs. The run
/// id and `seq` are implied by where the event is kept.
struct StoredEvent {
    ts: Timestamp,
    event: Box<str>,
    data: Box<str>,
}

impl StoredEvent {
    fn new(event: NewEvent) -> Self {
        StoredEvent {
            ts: event.ts,
            event: event.event.into_boxed_str(),
            // A `Value` always serialises (its map keys are strings).
            data: serde_json::to_string(&event.data)
                .unwrap_or_else(|_| "null".to_owned())
                .into_boxed_str(),
        }
    }

    fn record(&self, run_id: &str, seq: u64) -> Result<EventRecord, StoreError> {
        let data = serde_json::from_str(&self.data).map_err(|e| {
            StoreError::Unavailable(format!("event {seq} of {run_id} is unreadable: {e}"))
        })?;
        Ok(EventRecord {
            run_id: run_id.to_owned(),
            seq,
            ts: self.ts,
            event: self.event.to_string(),
            data,
        })
    }
}

struct StoredStep {
    /// `items` is always `None` here; items live in `items`.
    record: StepRecord,
    items: BTreeMap<u32, StoredItem>,
    checkpoint: Option<Value>,
}

struct StoredItem {
    record: ItemRecord,
    checkpoint: Option<Value>,
}

impl MemoryStore {
    /// A store that keeps at most `max_runs` root runs once older terminal ones can be evicted
    /// (`KTSU_MEMORY_MAX_RUNS`).
    pub fn new(max_runs: usize) -> MemoryStore {
        MemoryStore {
            max_runs,
            state: Mutex::new(State::default()),
        }
    }

    /// The state, also after a panic elsewhere poisoned the mutex: every mutation below is
    /// checked before it starts and cannot fail halfway, so the maps are always consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub async fn create_run(
        &self,
        new: NewRun,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<Created, StoreError> {
        rules::validate_new_run(&new)?;
        let mut state = self.lock();
        if let Some(key) = &idempotency {
            if let Some(existing) = state.idempotency.get(&key.key) {
                if existing.expires_at > key.created_at {
                    return Ok(Created::Existing(existing.clone()));
                }
            }
        }
        if state.runs.contains_key(&new.run.id) {
            return Err(StoreError::Conflict);
        }
        if let Some(parent) = &new.run.parent_run_id {
            if !state.runs.contains_key(parent) {
                return Err(rules::unknown_parent(&new.run));
            }
        }
        let run_id = new.run.id.clone();
        state.insert_run(new);
        if let Some(key) = idempotency {
            if let Some(stored) = state.runs.get_mut(&run_id) {
                stored.idempotency_key = Some(key.key.clone());
            }
            state.idempotency.insert(key.key.clone(), key);
        }
        state.evict(self.max_runs);
        Ok(Created::Created)
    }

    pub async fn commit(
        &self,
        run_id: &str,
        expected_version: u64,
        changes: ChangeSet,
    ) -> Result<u64, StoreError> {
        rules::validate_change_set(run_id, &changes)?;
        let mut state = self.lock();
        let stored = state.runs.get(run_id).ok_or(StoreError::NotFound)?;
        if stored.run.version != expected_version {
            return Err(StoreError::Conflict);
        }
        state.check_against_state(run_id, &changes)?;
        let version = state.apply(run_id, changes);
        state.evict(self.max_runs);
        Ok(version)
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.lock().runs.get(id).map(|s| s.run.clone()))
    }

    pub async fn get_run_full(&self, id: &str) -> Result<Option<RunFull>, StoreError> {
        let state = self.lock();
        let Some(stored) = state.runs.get(id) else {
            return Ok(None);
        };
        let mut steps: Vec<StepRecord> = stored
            .steps
            .values()
            .map(|step| {
                let mut record = step.record.clone();
                if !step.items.is_empty() {
                    record.items = Some(step.items.values().map(|i| i.record.clone()).collect());
                }
                record
            })
            .collect();
        steps.sort_by(|a, b| (a.position, &a.id).cmp(&(b.position, &b.id)));
        Ok(Some(RunFull {
            run: stored.run.clone(),
            steps,
        }))
    }

    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.lock();
        let candidates = state.by_created.iter().rev().filter(|(created_at, id)| {
            cursor.is_none_or(|c| rules::is_after_cursor(created_at, id, c))
        });
        Ok(candidates
            .filter_map(|(_, id)| state.runs.get(id).map(|s| &s.run))
            .filter(|run| matches_filter(run, filter))
            .take(limit)
            .cloned()
            .collect())
    }

    pub async fn list_active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let state = self.lock();
        let active: Vec<RunRecord> = state
            .by_created
            .iter()
            .filter_map(|(_, id)| state.runs.get(id).map(|s| &s.run))
            .filter(|run| !run.status.is_terminal())
            .cloned()
            .collect();
        Ok(rules::parents_first(active))
    }

    pub async fn tree_spend(&self, root_run_id: &str) -> Result<f64, StoreError> {
        let state = self.lock();
        let Some(members) = state.trees.get(root_run_id) else {
            return Ok(0.0);
        };
        // Members iterate in run id order; steps are put in id order (the order of the sum).
        let costs = members
            .iter()
            .filter_map(|id| state.runs.get(id))
            .flat_map(|run| {
                let mut agent_steps: Vec<&StepRecord> = run
                    .steps
                    .values()
                    .map(|s| &s.record)
                    .filter(|s| s.step_type == StepType::Agent)
                    .collect();
                agent_steps.sort_by(|a, b| a.id.cmp(&b.id));
                agent_steps.into_iter().map(|s| s.metrics.cost_usd)
            });
        Ok(rules::total_cost(costs))
    }

    pub async fn get_approvals(
        &self,
        run_id: &str,
        step_address: Option<&str>,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let state = self.lock();
        let Some(stored) = state.runs.get(run_id) else {
            return Ok(Vec::new());
        };
        let mut approvals: Vec<ApprovalRecord> = stored
            .approvals
            .values()
            .filter(|a| step_address.is_none_or(|s| a.step_id == s))
            .cloned()
            .collect();
        approvals.sort_by(rules::approval_order);
        Ok(approvals)
    }

    pub async fn list_approvals(
        &self,
        filter: &ApprovalFilter,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let state = self.lock();
        let runs: Box<dyn Iterator<Item = &StoredRun>> = match &filter.run_id {
            Some(id) => Box::new(state.runs.get(id).into_iter()),
            None => Box::new(state.runs.values()),
        };
        let mut approvals: Vec<ApprovalRecord> = runs
            .flat_map(|run| run.approvals.values())
            .filter(|a| filter.status.is_none_or(|s| a.status == s))
            .cloned()
            .collect();
        approvals.sort_by(rules::approval_order);
        Ok(approvals)
    }

    pub async fn get_checkpoint(
        &self,
        run_id: &str,
        step_address: &str,
    ) -> Result<Option<Value>, StoreError> {
        let state = self.lock();
        let Some(stored) = state.runs.get(run_id) else {
            return Ok(None);
        };
        Ok(match StepAddress::parse(step_address) {
            StepAddress::Step(step_id) => {
                stored.steps.get(step_id).and_then(|s| s.checkpoint.clone())
            }
            StepAddress::Item { step_id, index } => stored
                .steps
                .get(step_id)
                .and_then(|s| s.items.get(&index))
                .and_then(|i| i.checkpoint.clone()),
        })
    }

    pub async fn get_checkpoints(
        &self,
        run_id: &str,
    ) -> Result<HashMap<String, Value>, StoreError> {
        let state = self.lock();
        let mut checkpoints = HashMap::new();
        let Some(stored) = state.runs.get(run_id) else {
            return Ok(checkpoints);
        };
        for (step_id, step) in &stored.steps {
            if let Some(messages) = &step.checkpoint {
                checkpoints.insert(step_id.clone(), messages.clone());
            }
            for (index, item) in &step.items {
                if let Some(messages) = &item.checkpoint {
                    checkpoints.insert(rules::item_address(step_id, *index), messages.clone());
                }
            }
        }
        Ok(checkpoints)
    }

    pub async fn events_after(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let state = self.lock();
        let Some(stored) = state.runs.get(run_id) else {
            return Ok(Vec::new());
        };
        // Sequence numbers are contiguous from 1, so `seq > after` starts at index `after`.
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        stored
            .events
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, event)| event.record(run_id, i as u64 + 1))
            .collect()
    }

    pub async fn get_idempotency(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self
            .lock()
            .idempotency
            .get(key)
            .filter(|record| record.expires_at > now)
            .cloned())
    }

    pub async fn purge_idempotency(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let before = state.idempotency.len();
        state
            .idempotency
            .retain(|_, record| record.expires_at > now);
        Ok(u64::try_from(before - state.idempotency.len()).unwrap_or(u64::MAX))
    }

    /// One process per memory store by construction: nothing to lease.
    pub async fn acquire_lease(&self, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    pub async fn renew_lease(&self, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    pub async fn release_lease(&self, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    pub async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Number of runs held (roots and sub-runs); for tests and diagnostics.
    pub fn run_count(&self) -> usize {
        self.lock().runs.len()
    }

    /// Poisons the mutex the way a panicking caller would.
    #[cfg(test)]
    pub(super) fn panic_while_locked(&self) {
        let _guard = self.lock();
        panic!("poisoning the memory store lock on purpose");
    }
}

fn matches_filter(run: &RunRecord, filter: &RunFilter) -> bool {
    let family = match &filter.parent {
        Some(parent) => run.parent_run_id.as_ref() == Some(parent),
        None => filter.include_children || run.is_root(),
    };
    family
        && filter
            .workflow
            .as_ref()
            .is_none_or(|w| &run.workflow_name == w)
        && filter.status.is_none_or(|s| run.status == s)
}

fn run_key(run: &RunRecord) -> RunKey {
    (run.created_at, run.id.clone())
}

impl StoredStep {
    fn new(mut record: StepRecord) -> StoredStep {
        let items = record
            .items
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|item| {
                let stored = StoredItem {
                    record: item,
                    checkpoint: None,
                };
                (stored.record.index, stored)
            })
            .collect();
        StoredStep {
            record: normalise_step(record),
            items,
            checkpoint: None,
        }
    }
}

/// What the SQLite schema keeps of a step record: `name` is its `id`, items live apart.
fn normalise_step(mut record: StepRecord) -> StepRecord {
    record.name.clone_from(&record.id);
    record.items = None;
    record
}

impl State {
    /// Adds a run (version 1, no events) with its steps and their items. The caller checked
    /// that the id is free.
    fn insert_run(&mut self, new: NewRun) {
        let NewRun { mut run, steps } = new;
        run.version = 1;
        let steps = steps
            .into_iter()
            .map(|step| (step.id.clone(), StoredStep::new(step)))
            .collect();
        self.index(&run);
        self.runs.insert(
            run.id.clone(),
            StoredRun {
                run,
                steps,
                approvals: BTreeMap::new(),
                events: Vec::new(),
                idempotency_key: None,
            },
        );
    }

    /// Adds `run` to the list, root and tree indexes.
    fn index(&mut self, run: &RunRecord) {
        let key = run_key(run);
        self.by_created.insert(key.clone());
        if run.is_root() {
            self.roots.insert(key.clone());
            if run.status.is_terminal() {
                self.terminal_roots.insert(key);
            }
        }
        self.trees
            .entry(run.root_run_id.clone())
            .or_default()
            .insert(run.id.clone());
    }

    /// Removes `run` from every index (before its record changes or disappears).
    fn unindex(&mut self, run: &RunRecord) {
        let key = run_key(run);
        self.by_created.remove(&key);
        self.roots.remove(&key);
        self.terminal_roots.remove(&key);
        if let Some(members) = self.trees.get_mut(&run.root_run_id) {
            members.remove(&run.id);
            if members.is_empty() {
                self.trees.remove(&run.root_run_id);
            }
        }
    }

    /// The checks that need stored state, in the order the SQLite store meets them while
    /// applying, so both stores reject the same change set with the same error.
    fn check_against_state(&self, run_id: &str, changes: &ChangeSet) -> Result<(), StoreError> {
        let Some(stored) = self.runs.get(run_id) else {
            return Err(StoreError::NotFound);
        };
        let step_exists = |step_id: &str| {
            stored.steps.contains_key(step_id) || changes.steps.iter().any(|s| s.id == step_id)
        };
        for (step_id, item) in &changes.items {
            if !step_exists(step_id) {
                return Err(rules::unknown_item_step(run_id, step_id, item.index));
            }
        }
        if changes
            .children
            .iter()
            .any(|child| self.runs.contains_key(&child.run.id))
        {
            return Err(StoreError::Conflict);
        }
        for (address, _) in &changes.checkpoints {
            let exists = match StepAddress::parse(address) {
                StepAddress::Step(step_id) => step_exists(step_id),
                StepAddress::Item { step_id, index } => {
                    stored
                        .steps
                        .get(step_id)
                        .is_some_and(|s| s.items.contains_key(&index))
                        || changes
                            .items
                            .iter()
                            .any(|(s, item)| s == step_id && item.index == index)
                }
            };
            if !exists {
                return Err(rules::unknown_checkpoint_address(run_id, address));
            }
        }
        Ok(())
    }

    /// Applies a checked change set; cannot fail. Returns the new version.
    fn apply(&mut self, run_id: &str, changes: ChangeSet) -> u64 {
        let ChangeSet {
            run,
            steps,
            items,
            approvals,
            children,
            checkpoints,
            events,
        } = changes;
        if let Some(mut record) = run {
            if let Some(old) = self.runs.get(run_id).map(|s| s.run.clone()) {
                self.unindex(&old);
                record.version = old.version;
                self.index(&record);
                if let Some(stored) = self.runs.get_mut(run_id) {
                    stored.run = record;
                }
            }
        }
        let Some(stored) = self.runs.get_mut(run_id) else {
            return 0;
        };
        for step in steps {
            match stored.steps.get_mut(&step.id) {
                // An upsert replaces the record; its items and checkpoint stay.
                Some(existing) => existing.record = normalise_step(step),
                None => {
                    stored.steps.insert(
                        step.id.clone(),
                        StoredStep::new(StepRecord {
                            items: None,
                            ..step
                        }),
                    );
                }
            }
        }
        for (step_id, item) in items {
            if let Some(step) = stored.steps.get_mut(&step_id) {
                match step.items.get_mut(&item.index) {
                    Some(existing) => existing.record = item,
                    None => {
                        step.items.insert(
                            item.index,
                            StoredItem {
                                record: item,
                                checkpoint: None,
                            },
                        );
                    }
                }
            }
        }
        for approval in approvals {
            let key = (approval.step_id.clone(), approval.tool_use_id.clone());
            stored.approvals.insert(key, approval);
        }
        for (address, messages) in checkpoints {
            let slot = match StepAddress::parse(&address) {
                StepAddress::Step(step_id) => {
                    stored.steps.get_mut(step_id).map(|s| &mut s.checkpoint)
                }
                StepAddress::Item { step_id, index } => stored
                    .steps
                    .get_mut(step_id)
                    .and_then(|s| s.items.get_mut(&index))
                    .map(|i| &mut i.checkpoint),
            };
            if let Some(slot) = slot {
                *slot = messages;
            }
        }
        stored
            .events
            .extend(events.into_iter().map(StoredEvent::new));
        stored.run.version += 1;
        let version = stored.run.version;
        for child in children {
            self.insert_run(child);
        }
        version
    }

    /// Evicts the oldest root runs whose whole tree is terminal until at most `max_runs` root
    /// runs remain or no such tree is left.
    fn evict(&mut self, max_runs: usize) {
        let excess = self.roots.len().saturating_sub(max_runs);
        if excess == 0 {
            return;
        }
        let victims: Vec<String> = self
            .terminal_roots
            .iter()
            .filter(|(_, id)| self.tree_is_terminal(id))
            .take(excess)
            .map(|(_, id)| id.clone())
            .collect();
        for root in victims {
            self.remove_tree(&root);
        }
    }

    fn tree_is_terminal(&self, root: &str) -> bool {
        self.trees.get(root).is_none_or(|members| {
            members
                .iter()
                .filter_map(|id| self.runs.get(id))
                .all(|r| r.run.status.is_terminal())
        })
    }

    fn remove_tree(&mut self, root: &str) {
        let members: Vec<String> = self
            .trees
            .get(root)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        for id in members {
            let Some(stored) = self.runs.remove(&id) else {
                continue;
            };
            self.unindex(&stored.run);
            // The key goes with its run: a replay must not answer with a run that is gone.
            if let Some(key) = stored.idempotency_key {
                if self.idempotency.get(&key).is_some_and(|r| r.run_id == id) {
                    self.idempotency.remove(&key);
                }
            }
        }
    }
}
