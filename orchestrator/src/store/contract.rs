//! The store contract (orchestrator.md §8), written once and run against both stores: every
//! case below is an `async fn(&Fixture)` that the [`contract!`] macro instantiates for the
//! memory store and for a SQLite store on a fresh temp file. Behaviour only one store has is
//! tested in `memory_only` and `sqlite_only`.

mod memory_only;
mod sqlite_only;

use super::{
    ApprovalFilter, ChangeSet, Created, Cursor, MemoryStore, NewRun, RunFilter, SqliteOptions,
    SqliteStore, Store, StoreError,
};
use crate::model::{
    ApprovalRecord, ApprovalStatus, EventRecord, IdempotencyRecord, ItemRecord, NewEvent, RunFull,
    RunRecord, RunStatus, StepMetrics, StepRecord, StepStatus, StepType, Totals,
};
use ktsu_shared::time::Timestamp;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tempfile::TempDir;

// ---- fixtures ------------------------------------------------------------------------------

pub(super) struct Fixture {
    pub store: Store,
    /// The lease owner the store was opened for (any string for the memory store).
    pub owner: String,
    /// Keeps the SQLite file's directory alive for the test.
    pub _dir: Option<TempDir>,
}

impl Fixture {
    pub fn memory() -> Fixture {
        Fixture::memory_with(10_000)
    }

    pub fn memory_with(max_runs: usize) -> Fixture {
        Fixture {
            store: Store::Memory(Arc::new(MemoryStore::new(max_runs))),
            owner: "memory".into(),
            _dir: None,
        }
    }

    pub fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions::new(dir.path().join("ktsu.db"));
        let owner = options.lease_owner.clone();
        let store = SqliteStore::open(options).unwrap();
        Fixture {
            store: Store::Sqlite(Arc::new(store)),
            owner,
            _dir: Some(dir),
        }
    }
}

/// Instantiates each case for both stores: `store::contract::{memory,sqlite}::<case>`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[actix_rt::test]
                async fn $case() {
                    let fixture = super::Fixture::memory();
                    super::$case(&fixture).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[actix_rt::test]
                async fn $case() {
                    let fixture = super::Fixture::sqlite();
                    super::$case(&fixture).await;
                }
            )*
        }
    };
}

contract!(
    create_run_round_trips_every_field,
    steps_come_in_position_order_and_items_in_index_order,
    create_run_refuses_a_taken_id,
    create_run_refuses_inconsistent_records,
    idempotency_key_replays_the_first_run,
    idempotency_records_expire_and_are_purged,
    concurrent_first_uses_of_a_key_create_one_run,
    commit_applies_a_change_set_completely,
    failed_commits_change_nothing,
    commit_to_an_unknown_run_is_not_found,
    concurrent_commits_succeed_or_fail_each_on_their_own,
    versions_and_event_sequences_advance_per_commit,
    step_upserts_keep_items_and_checkpoints,
    checkpoints_are_written_overwritten_and_deleted,
    children_are_created_by_the_parent_commit,
    list_runs_pages_in_order_with_a_strict_cursor,
    list_runs_filters,
    active_runs_come_oldest_first_parents_before_children,
    tree_spend_sums_agent_steps_of_the_whole_tree,
    approvals_are_listed_oldest_first,
    lease_calls_succeed_for_the_owner,
);

// ---- record builders -----------------------------------------------------------------------

/// 2026-04-28T10:15:02Z plus `ms` milliseconds.
pub(super) fn at(ms: u64) -> Timestamp {
    Timestamp::from_unix_micros(1_777_371_302_000_000 + ms * 1_000)
}

pub(super) fn run(id: &str, workflow: &str, created_ms: u64) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow_name: workflow.into(),
        status: RunStatus::Pending,
        root_run_id: id.into(),
        parent_run_id: None,
        parent_step_id: None,
        created_at: at(created_ms),
        updated_at: at(created_ms),
        started_at: None,
        completed_at: None,
        deadline_at: None,
        timeout_s: None,
        budget_usd: None,
        payload: json!({"message": "hi"}),
        output: None,
        error: None,
        error_code: None,
        failed_step: None,
        cancel_reason: None,
        totals: Totals::default(),
        version: 0,
    }
}

pub(super) fn child_of(parent: &RunRecord, step_id: &str, created_ms: u64) -> RunRecord {
    RunRecord {
        root_run_id: parent.root_run_id.clone(),
        parent_run_id: Some(parent.id.clone()),
        parent_step_id: Some(step_id.into()),
        ..run(
            &format!("{}.{step_id}", parent.id),
            "child-flow",
            created_ms,
        )
    }
}

pub(super) fn with_status(mut run: RunRecord, status: RunStatus) -> RunRecord {
    run.status = status;
    run
}

pub(super) fn step(run_id: &str, id: &str, position: u32, step_type: StepType) -> StepRecord {
    StepRecord::pending(run_id, id, step_type, position, Vec::new(), at(0))
}

pub(super) fn agent_step_costing(run_id: &str, id: &str, position: u32, cost: f64) -> StepRecord {
    let mut s = step(run_id, id, position, StepType::Agent);
    s.metrics.cost_usd = cost;
    s
}

fn rich_metrics() -> StepMetrics {
    StepMetrics {
        duration_ms: 2301,
        tokens_in: 812,
        tokens_out: 96,
        // Values whose shortest decimal form needs all 17 digits must come back bit-exact.
        cost_usd: 0.1 + 0.2,
        llm_calls: 2,
        tool_calls: 1,
        reflect_calls: 1,
        cache_read_tokens: 10,
        cache_write_tokens: 5,
        model_resolved: Some("anthropic/claude-sonnet-4-5".into()),
    }
}

/// A step with every optional field set.
fn rich_step(run_id: &str) -> StepRecord {
    StepRecord {
        depends_on: vec!["fetch".into(), "normalise".into()],
        status: StepStatus::Failed,
        attempt: 3,
        started_at: Some(at(1)),
        ended_at: Some(at(2_301)),
        updated_at: at(2_301),
        deadline_at: Some(at(60_000)),
        timeout_remaining_ms: Some(12_345),
        output: Some(json!({"category": "billing", "nested": {"list": [1, 2.5, null, "x"]}})),
        skip_reason: Some("agent_skipped".into()),
        skip_message: Some("nothing to do".into()),
        error: Some("air-lock: output of step \"classify\" failed".into()),
        error_code: Some("airlock_violation".into()),
        raw_output: Some(json!("the runtime's unparsed text: ünïcødé ✓ \"quoted\"")),
        airlock: Some(
            json!({"schemas": {"agent": {"type": "object"}}, "violations": [
                {"schema": "agent", "pointer": "/priority", "keyword": "required", "message": "missing"}
            ]}),
        ),
        flags: vec!["vip".into(), "pii_detected".into()],
        rationale: Some("Invoice keywords and account tier".into()),
        metrics: rich_metrics(),
        reflected: Some(false),
        runtime_id: Some("rt-9c41e2".into()),
        child_run_id: Some(format!("{run_id}.classify")),
        ..step(run_id, "classify", 0, StepType::Agent)
    }
}

pub(super) fn item(index: u32) -> ItemRecord {
    ItemRecord::pending(index, json!({"n": index}), at(0))
}

/// An item with every optional field set.
fn rich_item(index: u32) -> ItemRecord {
    ItemRecord {
        item: json!(["a", {"b": [true, false]}]),
        status: StepStatus::Complete,
        attempt: 2,
        started_at: Some(at(10)),
        ended_at: Some(at(20)),
        updated_at: at(20),
        output: Some(json!({"answer": 42})),
        skip_reason: Some("step_failed".into()),
        skip_message: Some("m".into()),
        error: Some("e".into()),
        error_code: Some("agent_failed".into()),
        raw_output: Some(json!({"answer": "42"})),
        airlock: Some(json!({"violations": []})),
        flags: vec!["f1".into()],
        rationale: Some("r".into()),
        metrics: rich_metrics(),
        reflected: Some(true),
        runtime_id: Some("rt-2".into()),
        ..item(index)
    }
}

pub(super) fn approval(
    run_id: &str,
    step_id: &str,
    tool_use_id: &str,
    created_ms: u64,
) -> ApprovalRecord {
    ApprovalRecord {
        run_id: run_id.into(),
        step_id: step_id.into(),
        tool_name: "delete-record".into(),
        tool_use_id: tool_use_id.into(),
        arguments: json!({"id": 7}),
        on_reject: "recover".into(),
        timeout_ms: 1_800_000,
        timeout_behavior: "reject".into(),
        status: ApprovalStatus::Pending,
        created_at: at(created_ms),
        expires_at: Some(at(created_ms + 1_800_000)),
        decided_at: None,
        decided_by: None,
        comment: None,
        partial_metrics: StepMetrics {
            tokens_in: 100,
            tokens_out: 20,
            cost_usd: 0.001,
            llm_calls: 1,
            ..StepMetrics::default()
        },
    }
}

pub(super) fn event(name: &str, n: u64) -> NewEvent {
    NewEvent {
        ts: at(n),
        event: name.into(),
        data: json!({"n": n, "step_id": "classify"}),
    }
}

pub(super) fn new_run(run: RunRecord, steps: Vec<StepRecord>) -> NewRun {
    NewRun { run, steps }
}

pub(super) fn idempotency(
    key: &str,
    run_id: &str,
    created_ms: u64,
    ttl_ms: u64,
) -> IdempotencyRecord {
    IdempotencyRecord {
        key: key.into(),
        workflow_name: "support-triage".into(),
        request_hash: format!("sha256-of-{run_id}"),
        run_id: run_id.into(),
        created_at: at(created_ms),
        expires_at: at(created_ms + ttl_ms),
    }
}

/// Creates a run with one agent step `a` and asserts it was created.
pub(super) async fn create(store: &Store, run: RunRecord) {
    let steps = vec![step(&run.id, "a", 0, StepType::Agent)];
    assert_eq!(
        store.create_run(new_run(run, steps), None).await,
        Ok(Created::Created)
    );
}

/// Commits, at the parent's `version`, a change set that only creates `child` with `steps`.
pub(super) async fn add_child(
    store: &Store,
    version: u64,
    child: &RunRecord,
    steps: Vec<StepRecord>,
) {
    let parent = child.parent_run_id.clone().unwrap();
    let changes = ChangeSet {
        children: vec![new_run(child.clone(), steps)],
        ..ChangeSet::default()
    };
    assert_eq!(
        store.commit(&parent, version, changes).await,
        Ok(version + 1)
    );
}

/// Everything a store holds about one run, for before/after comparisons.
#[derive(Debug, PartialEq)]
pub(super) struct Snapshot {
    full: Option<RunFull>,
    events: Vec<EventRecord>,
    approvals: Vec<ApprovalRecord>,
    checkpoints: HashMap<String, Value>,
    all_runs: Vec<RunRecord>,
}

pub(super) async fn snapshot(store: &Store, run_id: &str) -> Snapshot {
    let everything = RunFilter {
        include_children: true,
        ..RunFilter::default()
    };
    Snapshot {
        full: store.get_run_full(run_id).await.unwrap(),
        events: store.events_after(run_id, 0, 10_000).await.unwrap(),
        approvals: store.get_approvals(run_id, None).await.unwrap(),
        checkpoints: store.get_checkpoints(run_id).await.unwrap(),
        all_runs: store.list_runs(&everything, None, 10_000).await.unwrap(),
    }
}

fn ids(runs: &[RunRecord]) -> Vec<&str> {
    runs.iter().map(|r| r.id.as_str()).collect()
}

// ---- cases ---------------------------------------------------------------------------------

async fn create_run_round_trips_every_field(fx: &Fixture) {
    let store = &fx.store;
    let mut record = run("run_0000000000000001", "support-triage", 0);
    record.status = RunStatus::Running;
    record.started_at = Some(at(1));
    record.completed_at = Some(at(5_000));
    record.deadline_at = Some(at(60_000));
    record.timeout_s = Some(60);
    record.budget_usd = Some(0.5);
    record.payload =
        json!({"message": "my invoice is wrong ✓", "user": {"id": "u-7", "tags": []}, "n": 1e-9});
    record.output = Some(json!({"notify": {"sent": true, "status_code": 200}}));
    record.error = Some("cancelled: operator request".into());
    record.error_code = Some("cancelled".into());
    record.failed_step = Some("classify".into());
    record.cancel_reason = Some("operator request".into());
    record.totals = Totals {
        duration_ms: 2_519,
        tokens_in: 812,
        tokens_out: 96,
        cost_usd: 0.0039,
        llm_calls: 2,
        tool_calls: 1,
    };
    record.version = 99; // ignored: a new run starts at version 1
    let mut fan_out = step(&record.id, "analyze", 1, StepType::Agent);
    fan_out.items = Some(vec![rich_item(0), item(1)]);
    let mut null_output = step(&record.id, "notify", 2, StepType::Webhook);
    null_output.output = Some(Value::Null); // `Some(null)` is not `None`
    let steps = vec![rich_step(&record.id), fan_out, null_output];

    let created = store
        .create_run(new_run(record.clone(), steps.clone()), None)
        .await;
    assert_eq!(created, Ok(Created::Created));

    let expected_run = RunRecord {
        version: 1,
        ..record.clone()
    };
    assert_eq!(
        store.get_run(&record.id).await,
        Ok(Some(expected_run.clone()))
    );
    let full = store.get_run_full(&record.id).await.unwrap().unwrap();
    assert_eq!(full.run, expected_run);
    assert_eq!(
        full.steps, steps,
        "every step and item field comes back as written"
    );
    assert_eq!(
        full.steps[0].metrics.cost_usd.to_bits(),
        (0.1f64 + 0.2).to_bits()
    );

    assert_eq!(store.get_run("run_ffffffffffffffff").await, Ok(None));
    assert_eq!(store.get_run_full("run_ffffffffffffffff").await, Ok(None));
}

async fn steps_come_in_position_order_and_items_in_index_order(fx: &Fixture) {
    let store = &fx.store;
    let r = run("run_0000000000000002", "w", 0);
    let steps = vec![
        step(&r.id, "c", 2, StepType::Transform),
        step(&r.id, "a", 0, StepType::Agent),
        step(&r.id, "b", 1, StepType::Agent),
    ];
    store
        .create_run(new_run(r.clone(), steps), None)
        .await
        .unwrap();
    let changes = ChangeSet {
        items: vec![
            ("b".into(), item(2)),
            ("b".into(), item(0)),
            ("b".into(), item(10)),
            ("b".into(), item(1)),
        ],
        ..ChangeSet::default()
    };
    store.commit(&r.id, 1, changes).await.unwrap();
    let full = store.get_run_full(&r.id).await.unwrap().unwrap();
    let order: Vec<&str> = full.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);
    assert_eq!(full.steps[0].items, None, "no item rows: no items");
    let indexes: Vec<u32> = full.steps[1]
        .items
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| i.index)
        .collect();
    assert_eq!(indexes, [0, 1, 2, 10]);
}

async fn create_run_refuses_a_taken_id(fx: &Fixture) {
    let store = &fx.store;
    let first = run("run_0000000000000003", "first", 0);
    create(store, first.clone()).await;
    let before = snapshot(store, &first.id).await;
    let again = new_run(run(&first.id, "second", 5), Vec::new());
    let key = idempotency("k-taken", &first.id, 5, 1_000);
    assert_eq!(
        store.create_run(again, Some(key)).await,
        Err(StoreError::Conflict)
    );
    assert_eq!(snapshot(store, &first.id).await, before);
    assert_eq!(
        store.get_idempotency("k-taken", at(5)).await,
        Ok(None),
        "the key of a refused create is not stored"
    );
}

async fn create_run_refuses_inconsistent_records(fx: &Fixture) {
    let store = &fx.store;
    let r = run("run_0000000000000004", "w", 0);
    let foreign_step = new_run(r.clone(), vec![step("run_other", "a", 0, StepType::Agent)]);
    assert!(matches!(
        store.create_run(foreign_step, None).await,
        Err(StoreError::Invalid(_))
    ));
    let twice = new_run(
        r.clone(),
        vec![
            step(&r.id, "a", 0, StepType::Agent),
            step(&r.id, "a", 1, StepType::Agent),
        ],
    );
    assert!(matches!(
        store.create_run(twice, None).await,
        Err(StoreError::Invalid(_))
    ));
    let orphan = child_of(&run("run_missing", "w", 0), "s", 0);
    assert!(matches!(
        store
            .create_run(new_run(orphan.clone(), Vec::new()), None)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get_run(&r.id).await, Ok(None));
    assert_eq!(store.get_run(&orphan.id).await, Ok(None));
}

async fn idempotency_key_replays_the_first_run(fx: &Fixture) {
    let store = &fx.store;
    let first = run("run_0000000000000005", "support-triage", 0);
    let key = idempotency("key-1", &first.id, 0, 86_400_000);
    let created = store
        .create_run(new_run(first.clone(), Vec::new()), Some(key.clone()))
        .await;
    assert_eq!(created, Ok(Created::Created));
    assert_eq!(
        store.get_idempotency("key-1", at(1)).await,
        Ok(Some(key.clone()))
    );

    // A retry with the same key (and another would-be run id) gets the first record back.
    let retry = run("run_0000000000000006", "support-triage", 10);
    let retry_key = idempotency("key-1", &retry.id, 10, 86_400_000);
    let replay = store
        .create_run(new_run(retry.clone(), Vec::new()), Some(retry_key))
        .await;
    assert_eq!(replay, Ok(Created::Existing(key)));
    assert_eq!(store.get_run(&retry.id).await, Ok(None), "nothing inserted");
    assert_eq!(store.get_idempotency("key-2", at(1)).await, Ok(None));
}

async fn idempotency_records_expire_and_are_purged(fx: &Fixture) {
    let store = &fx.store;
    let first = run("run_0000000000000007", "w", 0);
    let short = idempotency("short", &first.id, 0, 1_000);
    store
        .create_run(new_run(first.clone(), Vec::new()), Some(short.clone()))
        .await
        .unwrap();
    for (i, ttl) in [(8u64, 2_000u64), (9, 5_000)] {
        let r = run(&format!("run_000000000000000{i}"), "w", 0);
        let key = idempotency(&format!("k{i}"), &r.id, 0, ttl);
        store
            .create_run(new_run(r, Vec::new()), Some(key))
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_idempotency("short", at(999)).await,
        Ok(Some(short))
    );
    assert_eq!(
        store.get_idempotency("short", at(1_000)).await,
        Ok(None),
        "expires_at is exclusive"
    );

    // The expired key is free again: the new create wins and replaces the record.
    let second = run("run_000000000000000a", "w", 1_500);
    let fresh = idempotency("short", &second.id, 1_500, 1_000);
    assert_eq!(
        store
            .create_run(new_run(second.clone(), Vec::new()), Some(fresh.clone()))
            .await,
        Ok(Created::Created)
    );
    assert_eq!(
        store.get_idempotency("short", at(1_600)).await,
        Ok(Some(fresh))
    );

    // At 2.5 s: k8 (expired at 2 s) goes; "short" (2.5 s) goes too, since expires_at <= now.
    assert_eq!(store.purge_idempotency(at(2_500)).await, Ok(2));
    assert_eq!(store.get_idempotency("k8", at(0)).await, Ok(None));
    assert_eq!(store.get_idempotency("short", at(0)).await, Ok(None));
    assert!(store.get_idempotency("k9", at(0)).await.unwrap().is_some());
    assert_eq!(store.purge_idempotency(at(2_500)).await, Ok(0));
    assert_eq!(store.purge_idempotency(at(5_000)).await, Ok(1));
    assert!(
        store.get_run(&first.id).await.unwrap().is_some(),
        "purging keys never touches runs"
    );
}

async fn concurrent_first_uses_of_a_key_create_one_run(fx: &Fixture) {
    const TASKS: usize = 24;
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let store = fx.store.clone();
        tasks.push(actix_rt::spawn(async move {
            let r = run(&format!("run_c{i:015}"), "w", 0);
            let key = idempotency("shared-key", &r.id, 0, 60_000);
            store.create_run(new_run(r, Vec::new()), Some(key)).await
        }));
    }
    let mut created = 0;
    let mut replayed_ids = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(Created::Created) => created += 1,
            Ok(Created::Existing(record)) => {
                replayed_ids.insert(record.run_id);
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(created, 1, "exactly one first use wins");
    let all = RunFilter {
        include_children: true,
        ..RunFilter::default()
    };
    let runs = fx.store.list_runs(&all, None, 100).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(replayed_ids.len(), 1, "every replay names the same run");
    assert!(replayed_ids.contains(&runs[0].id));
}

async fn commit_applies_a_change_set_completely(fx: &Fixture) {
    let store = &fx.store;
    let r = run("run_0000000000000010", "w", 0);
    let steps = vec![
        step(&r.id, "fetch", 0, StepType::Agent),
        step(&r.id, "analyze", 1, StepType::Agent),
        step(&r.id, "sub", 2, StepType::Workflow),
    ];
    store
        .create_run(new_run(r.clone(), steps), None)
        .await
        .unwrap();

    let mut updated = with_status(r.clone(), RunStatus::Running);
    updated.started_at = Some(at(5));
    updated.updated_at = at(5);
    updated.totals.tokens_in = 3;
    let mut fetch = rich_step(&r.id);
    fetch.id = "fetch".into();
    fetch.name = "fetch".into();
    let mut analyze = step(&r.id, "analyze", 1, StepType::Agent);
    analyze.status = StepStatus::Running;
    let mut sub = step(&r.id, "sub", 2, StepType::Workflow);
    sub.child_run_id = Some(format!("{}.sub", r.id));
    let child = child_of(&r, "sub", 5);
    let child_steps = vec![step(&child.id, "inner", 0, StepType::Agent)];
    let changes = ChangeSet {
        run: Some(updated.clone()),
        steps: vec![fetch.clone(), analyze.clone(), sub.clone()],
        items: vec![
            ("analyze".into(), rich_item(0)),
            ("analyze".into(), item(1)),
        ],
        approvals: vec![approval(&r.id, "analyze.0", "toolu_1", 5)],
        children: vec![new_run(child.clone(), child_steps.clone())],
        checkpoints: vec![(
            "analyze.0".into(),
            Some(json!([{"role": "user", "content": "hi"}])),
        )],
        events: vec![event("run.running", 5), event("step.running", 6)],
    };
    assert_eq!(store.commit(&r.id, 1, changes).await, Ok(2));

    let full = store.get_run_full(&r.id).await.unwrap().unwrap();
    assert_eq!(
        full.run,
        RunRecord {
            version: 2,
            ..updated
        }
    );
    let mut expected_analyze = analyze;
    expected_analyze.items = Some(vec![rich_item(0), item(1)]);
    assert_eq!(full.steps, vec![fetch, expected_analyze, sub]);
    assert_eq!(
        store.get_approvals(&r.id, None).await.unwrap(),
        vec![approval(&r.id, "analyze.0", "toolu_1", 5)]
    );
    assert_eq!(
        store.get_checkpoint(&r.id, "analyze.0").await,
        Ok(Some(json!([{"role": "user", "content": "hi"}])))
    );
    let events = store.events_after(&r.id, 0, 10).await.unwrap();
    let names: Vec<(u64, &str)> = events.iter().map(|e| (e.seq, e.event.as_str())).collect();
    assert_eq!(names, [(1, "run.running"), (2, "step.running")]);
    assert_eq!(events[1].run_id, r.id);
    assert_eq!(events[1].ts, at(6));
    assert_eq!(events[1].data, json!({"n": 6, "step_id": "classify"}));
    let child_full = store.get_run_full(&child.id).await.unwrap().unwrap();
    assert_eq!(
        child_full.run,
        RunRecord {
            version: 1,
            ..child
        }
    );
    assert_eq!(child_full.steps, child_steps);
}

async fn failed_commits_change_nothing(fx: &Fixture) {
    let store = &fx.store;
    let r = run("run_0000000000000011", "w", 0);
    create(store, r.clone()).await;
    // Some state first, so that "nothing changed" is not trivially true.
    let seed = ChangeSet {
        items: vec![("a".into(), item(0))],
        checkpoints: vec![("a".into(), Some(json!(["seed"])))],
        approvals: vec![approval(&r.id, "a", "t0", 1)],
        events: vec![event("step.running", 1)],
        ..ChangeSet::default()
    };
    store.commit(&r.id, 1, seed).await.unwrap();
    let taken = child_of(&r, "taken", 1);
    add_child(store, 2, &taken, Vec::new()).await;
    let before = snapshot(store, &r.id).await;

    // Every change set below writes a lot before the part that fails.
    let busy = || ChangeSet {
        run: Some(with_status(r.clone(), RunStatus::Failed)),
        steps: vec![StepRecord {
            status: StepStatus::Complete,
            ..step(&r.id, "a", 0, StepType::Agent)
        }],
        items: vec![("a".into(), rich_item(0))],
        approvals: vec![approval(&r.id, "a", "t1", 2)],
        checkpoints: vec![("a".into(), None)],
        events: vec![event("run.failed", 2), event("step.failed", 3)],
        ..ChangeSet::default()
    };
    let cases: Vec<(ChangeSet, u64, StoreError)> = vec![
        (busy(), 2, StoreError::Conflict),
        (busy(), 4, StoreError::Conflict),
        (
            ChangeSet {
                children: vec![
                    new_run(child_of(&r, "fresh", 2), Vec::new()),
                    new_run(taken.clone(), Vec::new()),
                ],
                ..busy()
            },
            3,
            StoreError::Conflict,
        ),
        (
            ChangeSet {
                items: vec![("a".into(), item(1)), ("nope".into(), item(0))],
                ..busy()
            },
            3,
            StoreError::Invalid(String::new()),
        ),
        (
            ChangeSet {
                checkpoints: vec![("a".into(), None), ("a.7".into(), Some(json!([])))],
                ..busy()
            },
            3,
            StoreError::Invalid(String::new()),
        ),
        (
            ChangeSet {
                approvals: vec![approval("run_other", "a", "t9", 2)],
                ..busy()
            },
            3,
            StoreError::Invalid(String::new()),
        ),
    ];
    for (i, (changes, version, expected)) in cases.into_iter().enumerate() {
        let result = store.commit(&r.id, version, changes).await;
        match (&result, &expected) {
            (Err(StoreError::Invalid(_)), StoreError::Invalid(_)) => {}
            _ => assert_eq!(result, Err(expected), "case {i}"),
        }
        assert_eq!(
            snapshot(store, &r.id).await,
            before,
            "case {i} left a trace"
        );
    }
    // The run still accepts a good commit at its real version.
    assert_eq!(store.commit(&r.id, 3, busy()).await, Ok(4));
}

async fn concurrent_commits_succeed_or_fail_each_on_their_own(fx: &Fixture) {
    let store = &fx.store;
    let runs: Vec<RunRecord> = (0..12)
        .map(|i| run(&format!("run_{i:016x}"), "w", i))
        .collect();
    for r in &runs {
        create(store, r.clone()).await;
    }
    // Sent together, so that the SQLite writer runs them in the same transaction.
    let tasks: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let store = store.clone();
            let run_id = r.id.clone();
            let mut changes = ChangeSet {
                run: Some(with_status(r.clone(), RunStatus::Running)),
                events: vec![event("run.running", 1), event("step.running", 2)],
                ..ChangeSet::default()
            };
            let version = match i % 3 {
                0 => 7, // stale
                1 => {
                    // Fails halfway through applying.
                    changes.items = vec![("a".into(), item(0)), ("nope".into(), item(0))];
                    1
                }
                _ => 1,
            };
            actix_rt::spawn(async move { store.commit(&run_id, version, changes).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    for (i, (outcome, r)) in outcomes.iter().zip(&runs).enumerate() {
        let stored = store.get_run_full(&r.id).await.unwrap().unwrap();
        let events = store.events_after(&r.id, 0, 10).await.unwrap();
        match i % 3 {
            0 => assert_eq!(outcome, &Err(StoreError::Conflict), "run {i}"),
            1 => assert!(
                matches!(outcome, Err(StoreError::Invalid(_))),
                "run {i}: {outcome:?}"
            ),
            _ => assert_eq!(outcome, &Ok(2), "run {i}"),
        }
        if i % 3 == 2 {
            assert_eq!(
                (stored.run.version, stored.run.status),
                (2, RunStatus::Running)
            );
            assert_eq!(events.len(), 2);
        } else {
            assert_eq!(
                (stored.run.version, stored.run.status),
                (1, RunStatus::Pending),
                "run {i}"
            );
            assert!(events.is_empty(), "run {i}");
            assert_eq!(stored.steps[0].items, None, "run {i}");
        }
    }

    // Racing writers of one run: the version check lets exactly one through.
    let contested = &runs[0];
    let racers: Vec<_> = (0..8u64)
        .map(|n| {
            let store = store.clone();
            let run_id = contested.id.clone();
            let changes = ChangeSet {
                events: vec![event(&format!("racer.{n}"), n)],
                ..ChangeSet::default()
            };
            actix_rt::spawn(async move { store.commit(&run_id, 1, changes).await })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(2) => winners += 1,
            Err(StoreError::Conflict) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    let events = store.events_after(&contested.id, 0, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
}

async fn commit_to_an_unknown_run_is_not_found(fx: &Fixture) {
    let changes = ChangeSet {
        events: vec![event("run.running", 1)],
        ..ChangeSet::default()
    };
    assert_eq!(
        fx.store.commit("run_nope", 1, changes).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        fx.store.events_after("run_nope", 0, 10).await,
        Ok(Vec::new())
    );
}

async fn versions_and_event_sequences_advance_per_commit(fx: &Fixture) {
    let store = &fx.store;
    let r = run("run_0000000000000012", "w", 0);
    create(store, r.clone()).await;
    let with_events = |names: &[&str]| ChangeSet {
        events: names
            .iter()
            .enumerate()
            .map(|(i, n)| event(n, i as u64))
            .collect(),
        ..ChangeSet::default()
    };
    assert_eq!(
        store.commit(&r.id, 1, with_events(&["a", "b"])).await,
        Ok(2)
    );
    assert_eq!(
        store.commit(&r.id, 2, ChangeSet::default()).await,
        Ok(3),
        "an empty commit still bumps"
    );
    assert_eq!(
        store.commit(&r.id, 3, with_events(&["c", "d", "e"])).await,
        Ok(4)
    );
    assert_eq!(
        store.commit(&r.id, 3, with_events(&["stale"])).await,
        Err(StoreError::Conflict),
        "a stale version is refused after the fact"
    );
    assert_eq!(store.get_run(&r.id).await.unwrap().unwrap().version, 4);

    let all = store.events_after(&r.id, 0, 100).await.unwrap();
    let seqs: Vec<(u64, &str)> = all.iter().map(|e| (e.seq, e.event.as_str())).collect();
    assert_eq!(seqs, [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]);
    let page: Vec<u64> = store
        .events_after(&r.id, 2, 2)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, [3, 4]);
    assert_eq!(store.events_after(&r.id, 5, 10).await, Ok(Vec::new()));
    assert_eq!(
        store.events_after(&r.id, u64::MAX, 10).await,
        Ok(Vec::new())
    );
    assert_eq!(store.events_after(&r.id, 0, 0).await, Ok(Vec::new()));
}

async fn step_upserts_keep_items_and_checkpoints(fx: &Fixture) {
    let store = &fx.store;
    let r = run("run_0000000000000013", "w", 0);
    create(store, r.clone()).await;
    let first = ChangeSet {
        items: vec![("a".into(), item(0))],
        checkpoints: vec![
            ("a".into(), Some(json!(["step messages"]))),
            ("a.0".into(), Some(json!(["item messages"]))),
        ],
        ..ChangeSet::default()
    };
    store.commit(&r.id, 1, first).await.unwrap();
    let mut running = step(&r.id, "a", 0, StepType::Agent);
    running.status = StepStatus::Running;
    running.attempt = 1;
    // The step record sent with stray items: they are ignored, stored items stay.
    running.items = Some(vec![item(5)]);
    let mut item_done = item(0);
    item_done.status = StepStatus::Complete;
    let second = ChangeSet {
        steps: vec![running.clone()],
        items: vec![("a".into(), item_done.clone())],
        ..ChangeSet::default()
    };
    store.commit(&r.id, 2, second).await.unwrap();
    let full = store.get_run_full(&r.id).await.unwrap().unwrap();
    assert_eq!(full.steps[0].status, StepStatus::Running);
    assert_eq!(full.steps[0].items, Some(vec![item_done]));
    assert_eq!(
        store.get_checkpoint(&r.id, "a").await,
        Ok(Some(json!(["step messages"])))
    );
    assert_eq!(
        store.get_checkpoint(&r.id, "a.0").await,
        Ok(Some(json!(["item messages"])))
    );
}

async fn checkpoints_are_written_overwritten_and_deleted(fx: &Fixture) {
    let store = &fx.store;
    let r = run("run_0000000000000014", "w", 0);
    let steps = vec![
        step(&r.id, "a", 0, StepType::Agent),
        step(&r.id, "fan", 1, StepType::Agent),
    ];
    store
        .create_run(new_run(r.clone(), steps), None)
        .await
        .unwrap();
    let commit = |version: u64, checkpoints: Vec<(&str, Option<Value>)>, items: Vec<ItemRecord>| {
        let changes = ChangeSet {
            items: items.into_iter().map(|i| ("fan".to_string(), i)).collect(),
            checkpoints: checkpoints
                .into_iter()
                .map(|(a, m)| (a.to_string(), m))
                .collect(),
            ..ChangeSet::default()
        };
        let store = store.clone();
        let run_id = r.id.clone();
        async move { store.commit(&run_id, version, changes).await }
    };
    assert_eq!(store.get_checkpoint(&r.id, "a").await, Ok(None));
    // An item and its checkpoint may arrive in the same commit.
    commit(
        1,
        vec![("a", Some(json!([1]))), ("fan.2", Some(json!({"m": 2})))],
        vec![item(2)],
    )
    .await
    .unwrap();
    assert_eq!(store.get_checkpoint(&r.id, "a").await, Ok(Some(json!([1]))));
    assert_eq!(
        store.get_checkpoint(&r.id, "fan.2").await,
        Ok(Some(json!({"m": 2})))
    );
    commit(2, vec![("a", Some(json!([1, 2])))], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        store.get_checkpoint(&r.id, "a").await,
        Ok(Some(json!([1, 2])))
    );
    assert_eq!(
        store.get_checkpoints(&r.id).await,
        Ok(HashMap::from([
            ("a".to_string(), json!([1, 2])),
            ("fan.2".to_string(), json!({"m": 2})),
        ]))
    );
    commit(3, vec![("a", None)], Vec::new()).await.unwrap();
    assert_eq!(store.get_checkpoint(&r.id, "a").await, Ok(None));
    assert_eq!(
        store.get_checkpoint(&r.id, "fan.2").await,
        Ok(Some(json!({"m": 2})))
    );
    assert_eq!(store.get_checkpoint(&r.id, "fan").await, Ok(None));
    assert_eq!(store.get_checkpoint(&r.id, "fan.3").await, Ok(None));
    assert_eq!(store.get_checkpoint(&r.id, "zzz").await, Ok(None));
    assert_eq!(store.get_checkpoint("run_nope", "a").await, Ok(None));
    assert_eq!(store.get_checkpoints("run_nope").await, Ok(HashMap::new()));
}

async fn children_are_created_by_the_parent_commit(fx: &Fixture) {
    let store = &fx.store;
    let parent = with_status(run("run_0000000000000015", "parent", 0), RunStatus::Running);
    create(store, parent.clone()).await;
    let child = child_of(&parent, "enrich", 10);
    let grandchild = child_of(&child, "lookup", 20);
    let child_steps = vec![
        step(&child.id, "x", 0, StepType::Agent),
        step(&child.id, "lookup", 1, StepType::Workflow),
    ];
    let created = ChangeSet {
        children: vec![new_run(child.clone(), child_steps.clone())],
        ..ChangeSet::default()
    };
    assert_eq!(store.commit(&parent.id, 1, created).await, Ok(2));
    assert_eq!(
        store.get_run(&child.id).await.unwrap().map(|r| r.version),
        Some(1)
    );
    // The child's own actor commits from version 1; its events start at 1.
    let grand = ChangeSet {
        children: vec![new_run(grandchild.clone(), Vec::new())],
        events: vec![event("run.running", 0)],
        ..ChangeSet::default()
    };
    assert_eq!(store.commit(&child.id, 1, grand).await, Ok(2));
    assert_eq!(
        store.events_after(&child.id, 0, 10).await.unwrap()[0].seq,
        1
    );
    assert_eq!(store.events_after(&parent.id, 0, 10).await, Ok(Vec::new()));
    // A sub-run must be a child of the committing run.
    let stray = ChangeSet {
        children: vec![new_run(child_of(&child, "stray", 30), Vec::new())],
        ..ChangeSet::default()
    };
    assert!(matches!(
        store.commit(&parent.id, 2, stray).await,
        Err(StoreError::Invalid(_))
    ));
    let children = store
        .list_runs(
            &RunFilter {
                parent: Some(parent.id.clone()),
                ..RunFilter::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(&children), [child.id.as_str()]);
}

async fn list_runs_pages_in_order_with_a_strict_cursor(fx: &Fixture) {
    let store = &fx.store;
    // 30 roots in 6 creation instants (5 share each), created in a scrambled order.
    let mut expected = Vec::new();
    for i in (0..30u64).map(|i| (i * 7) % 30) {
        let r = run(
            &format!("run_{:016x}", (i * 2_654_435_761) % 1_000_003),
            "w",
            (i / 5) * 10,
        );
        expected.push((r.created_at, r.id.clone()));
        create(store, r).await;
    }
    // Sub-runs are not listed by default.
    let parent = run(&expected[0].1, "w", 0);
    add_child(store, 1, &child_of(&parent, "s", 1_000), Vec::new()).await;
    expected.sort();
    expected.reverse();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();

    let filter = RunFilter::default();
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for pages in 1.. {
        assert!(pages <= 6, "paging does not end: 30 runs need 5 pages of 7");
        let page = store.list_runs(&filter, cursor.as_ref(), 7).await.unwrap();
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        if seen.is_empty() {
            // A run created after the first page only shows up on a new first page.
            create(store, run("run_ffffffffffffff00", "w", 999_999)).await;
        }
        let last = page.last().unwrap();
        cursor = Some(Cursor {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        seen.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(
        seen, expected,
        "pages concatenate to the full order, no gaps or repeats"
    );
    let first = store.list_runs(&filter, None, 1).await.unwrap();
    assert_eq!(ids(&first), ["run_ffffffffffffff00"]);
    assert_eq!(store.list_runs(&filter, None, 0).await, Ok(Vec::new()));
}

async fn list_runs_filters(fx: &Fixture) {
    let store = &fx.store;
    let a = with_status(run("run_a000000000000000", "alpha", 0), RunStatus::Complete);
    let b = with_status(run("run_b000000000000000", "beta", 1), RunStatus::Running);
    let c = with_status(run("run_c000000000000000", "alpha", 2), RunStatus::Running);
    for r in [&a, &b, &c] {
        create(store, r.clone()).await;
    }
    let a_child = with_status(child_of(&a, "s1", 3), RunStatus::Complete);
    let a_grandchild = child_of(&a_child, "s2", 4);
    add_child(store, 1, &a_child, Vec::new()).await;
    add_child(store, 1, &a_grandchild, Vec::new()).await;
    let list = |filter: RunFilter| {
        let store = store.clone();
        async move {
            let runs = store.list_runs(&filter, None, 100).await.unwrap();
            runs.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(RunFilter::default()).await,
        [c.id.as_str(), b.id.as_str(), a.id.as_str()]
    );
    assert_eq!(
        list(RunFilter {
            include_children: true,
            ..RunFilter::default()
        })
        .await,
        [
            a_grandchild.id.as_str(),
            a_child.id.as_str(),
            c.id.as_str(),
            b.id.as_str(),
            a.id.as_str()
        ]
    );
    assert_eq!(
        list(RunFilter {
            workflow: Some("alpha".into()),
            ..RunFilter::default()
        })
        .await,
        [c.id.as_str(), a.id.as_str()]
    );
    assert_eq!(
        list(RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })
        .await,
        [c.id.as_str(), b.id.as_str()]
    );
    assert_eq!(
        list(RunFilter {
            workflow: Some("alpha".into()),
            status: Some(RunStatus::Complete),
            ..RunFilter::default()
        })
        .await,
        [a.id.as_str()]
    );
    assert_eq!(
        list(RunFilter {
            parent: Some(a.id.clone()),
            ..RunFilter::default()
        })
        .await,
        [a_child.id.as_str()],
        "direct children only, and parent implies include_children"
    );
    assert_eq!(
        list(RunFilter {
            parent: Some(a.id.clone()),
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(RunFilter {
            include_children: true,
            workflow: Some("child-flow".into()),
            status: Some(RunStatus::Pending),
            ..RunFilter::default()
        })
        .await,
        [a_grandchild.id.as_str()]
    );
    assert!(list(RunFilter {
        workflow: Some("gamma".into()),
        ..RunFilter::default()
    })
    .await
    .is_empty());
}

async fn active_runs_come_oldest_first_parents_before_children(fx: &Fixture) {
    let store = &fx.store;
    let done = with_status(run("run_0000000000000020", "w", 0), RunStatus::Failed);
    let old = with_status(run("run_0000000000000021", "w", 10), RunStatus::Running);
    let young = run("run_0000000000000022", "w", 30);
    for r in [&done, &old, &young] {
        create(store, r.clone()).await;
    }
    // The child's clock read earlier than its parent's creation (a clock step back).
    let child = with_status(child_of(&old, "s", 5), RunStatus::Running);
    let finished_child = with_status(child_of(&old, "t", 20), RunStatus::Complete);
    store
        .commit(
            &old.id,
            1,
            ChangeSet {
                children: vec![
                    new_run(child.clone(), Vec::new()),
                    new_run(finished_child, Vec::new()),
                ],
                ..ChangeSet::default()
            },
        )
        .await
        .unwrap();
    let active = store.list_active_runs().await.unwrap();
    assert_eq!(
        ids(&active),
        [old.id.as_str(), child.id.as_str(), young.id.as_str()]
    );
    // Finishing a run removes it.
    store
        .commit(
            &young.id,
            1,
            ChangeSet {
                run: Some(with_status(young.clone(), RunStatus::Cancelled)),
                ..ChangeSet::default()
            },
        )
        .await
        .unwrap();
    let active = store.list_active_runs().await.unwrap();
    assert_eq!(ids(&active), [old.id.as_str(), child.id.as_str()]);
}

async fn tree_spend_sums_agent_steps_of_the_whole_tree(fx: &Fixture) {
    let store = &fx.store;
    let root = run("run_0000000000000030", "w", 0);
    let mut webhook = step(&root.id, "hook", 2, StepType::Webhook);
    webhook.metrics.cost_usd = 100.0; // not an agent step: never counted
    let steps = vec![
        agent_step_costing(&root.id, "a", 0, 0.25),
        agent_step_costing(&root.id, "b", 1, 0.5),
        webhook,
    ];
    store
        .create_run(new_run(root.clone(), steps), None)
        .await
        .unwrap();
    let child = child_of(&root, "sub", 1);
    let grandchild = child_of(&child, "deeper", 2);
    let mut workflow_step = step(&child.id, "deeper", 1, StepType::Workflow);
    workflow_step.metrics.cost_usd = 1.0; // mirrors the grandchild's spend: not counted twice
    let child_steps = vec![agent_step_costing(&child.id, "x", 0, 0.125), workflow_step];
    add_child(store, 1, &child, child_steps).await;
    let grandchild_steps = vec![agent_step_costing(&grandchild.id, "y", 0, 1.0)];
    add_child(store, 1, &grandchild, grandchild_steps).await;
    let other = run("run_0000000000000031", "w", 0);
    store
        .create_run(
            new_run(
                other.clone(),
                vec![agent_step_costing(&other.id, "a", 0, 7.0)],
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.tree_spend(&root.id).await, Ok(1.875));
    assert_eq!(store.tree_spend(&other.id).await, Ok(7.0));
    // A cost SQLite's own JSON float parser reads back one ulp off: the sum stays exact.
    let exact = run("run_0000000000000032", "w", 0);
    let odd_cost = 3.595_833_006_987_714e-192;
    store
        .create_run(
            new_run(
                exact.clone(),
                vec![agent_step_costing(&exact.id, "a", 0, odd_cost)],
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store.tree_spend(&exact.id).await.unwrap().to_bits(),
        odd_cost.to_bits()
    );
    assert_eq!(store.tree_spend("run_nope").await, Ok(0.0));
    // Spend follows every committed leg.
    store
        .commit(
            &grandchild.id,
            1,
            ChangeSet {
                steps: vec![agent_step_costing(&grandchild.id, "y", 0, 2.0)],
                ..ChangeSet::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(store.tree_spend(&root.id).await, Ok(2.875));
}

async fn approvals_are_listed_oldest_first(fx: &Fixture) {
    let store = &fx.store;
    let r1 = run("run_0000000000000040", "w", 0);
    let r2 = run("run_0000000000000041", "w", 0);
    create(store, r1.clone()).await;
    create(store, r2.clone()).await;
    let mut decided = approval(&r1.id, "act", "t1", 10);
    let late = approval(&r1.id, "fan.2", "t3", 30);
    let early_other_run = approval(&r2.id, "act", "t2", 5);
    let same_time = approval(&r1.id, "act", "t0", 10);
    store
        .commit(
            &r1.id,
            1,
            ChangeSet {
                approvals: vec![late.clone(), decided.clone(), same_time.clone()],
                ..ChangeSet::default()
            },
        )
        .await
        .unwrap();
    store
        .commit(
            &r2.id,
            1,
            ChangeSet {
                approvals: vec![early_other_run.clone()],
                ..ChangeSet::default()
            },
        )
        .await
        .unwrap();
    // Deciding updates the same record (identity run, step, tool_use_id), no duplicate.
    decided.status = ApprovalStatus::Approved;
    decided.decided_at = Some(at(40));
    decided.decided_by = Some("ops@example.com".into());
    decided.comment = Some("fine".into());
    store
        .commit(
            &r1.id,
            2,
            ChangeSet {
                approvals: vec![decided.clone()],
                ..ChangeSet::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(
        store.get_approvals(&r1.id, None).await.unwrap(),
        vec![same_time.clone(), decided.clone(), late.clone()],
        "created_at ascending, ties by identity"
    );
    assert_eq!(
        store.get_approvals(&r1.id, Some("act")).await.unwrap(),
        vec![same_time.clone(), decided.clone()]
    );
    assert_eq!(
        store.get_approvals(&r1.id, Some("fan.2")).await.unwrap(),
        vec![late.clone()]
    );
    assert_eq!(store.get_approvals("run_nope", None).await, Ok(Vec::new()));

    let all = ApprovalFilter::default();
    assert_eq!(
        store.list_approvals(&all).await.unwrap(),
        vec![
            early_other_run.clone(),
            same_time.clone(),
            decided.clone(),
            late.clone()
        ]
    );
    let pending = ApprovalFilter {
        status: Some(ApprovalStatus::Pending),
        ..ApprovalFilter::default()
    };
    assert_eq!(
        store.list_approvals(&pending).await.unwrap(),
        vec![early_other_run.clone(), same_time.clone(), late.clone()]
    );
    let r1_pending = ApprovalFilter {
        run_id: Some(r1.id.clone()),
        status: Some(ApprovalStatus::Pending),
    };
    assert_eq!(
        store.list_approvals(&r1_pending).await.unwrap(),
        vec![same_time, late]
    );
    let r2_approved = ApprovalFilter {
        run_id: Some(r2.id.clone()),
        status: Some(ApprovalStatus::Approved),
    };
    assert_eq!(store.list_approvals(&r2_approved).await, Ok(Vec::new()));
}

async fn lease_calls_succeed_for_the_owner(fx: &Fixture) {
    let store = &fx.store;
    assert_eq!(store.acquire_lease(&fx.owner).await, Ok(()));
    assert_eq!(store.renew_lease(&fx.owner).await, Ok(()));
    assert_eq!(store.release_lease(&fx.owner).await, Ok(()));
    assert_eq!(
        store.acquire_lease(&fx.owner).await,
        Ok(()),
        "re-taken after release"
    );
    assert_eq!(store.renew_lease(&fx.owner).await, Ok(()));
    // The store still works with its lease renewed.
    create(store, run("run_0000000000000050", "w", 0)).await;
}
