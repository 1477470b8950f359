//! Records ↔ SQLite rows (orchestrator.md §8.3 schema).
//!
//! Each table has one column list; the SQL text of inserts, upserts and selects is derived
//! from it and values are encoded and decoded in that same order, so a column cannot be
//! written in one place and forgotten in another. JSON columns hold compact JSON, `NULL` for
//! an absent optional value (so `Some(null)` and `None` stay distinct); times hold the
//! `Timestamp` text, whose fixed width makes text order time order.

use super::super::StoreError;
use crate::model::{
    ApprovalRecord, ApprovalStatus, EventRecord, IdempotencyRecord, ItemRecord, RunRecord,
    RunStatus, StepRecord, StepStatus, StepType,
};
use ktsu_shared::time::Timestamp;
use rusqlite::types::{Type, Value as SqlValue};
use rusqlite::Row;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::LazyLock;

/// Every column of `runs` a run record carries, except the counters a commit manages
/// (`version`, `next_seq`). Selects append `version`.
pub(super) const RUN_COLUMNS: &[&str] = &[
    "id",
    "workflow_name",
    "status",
    "root_run_id",
    "parent_run_id",
    "parent_step_id",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "deadline_at",
    "timeout_s",
    "budget_usd",
    "payload",
    "output",
    "error",
    "error_code",
    "failed_step",
    "cancel_reason",
    "totals",
];

/// The columns a step and an item share, in the same order in both tables: what an execution
/// produced.
const OUTCOME_COLUMNS: [&str; 12] = [
    "output",
    "skip_reason",
    "skip_message",
    "error",
    "error_code",
    "raw_output",
    "airlock",
    "flags",
    "rationale",
    "metrics",
    "reflected",
    "runtime_id",
];

/// The columns of `steps` before [`OUTCOME_COLUMNS`].
const STEP_HEAD: [&str; 12] = [
    "run_id",
    "id",
    "position",
    "type",
    "depends_on",
    "status",
    "attempt",
    "started_at",
    "ended_at",
    "updated_at",
    "deadline_at",
    "timeout_remaining_ms",
];
const STEP_OUTCOME_AT: usize = STEP_HEAD.len();

/// Every stored column of `steps` except `checkpoint`, which only checkpoint writes touch.
pub(super) static STEP_COLUMNS: LazyLock<Vec<&str>> =
    LazyLock::new(|| [&STEP_HEAD[..], &OUTCOME_COLUMNS, &["child_run_id"]].concat());

/// The columns of `step_items` before [`OUTCOME_COLUMNS`].
const ITEM_HEAD: [&str; 9] = [
    "run_id",
    "step_id",
    "idx",
    "item",
    "status",
    "attempt",
    "started_at",
    "ended_at",
    "updated_at",
];
const ITEM_OUTCOME_AT: usize = ITEM_HEAD.len();

/// Every stored column of `step_items` except `checkpoint`.
pub(super) static ITEM_COLUMNS: LazyLock<Vec<&str>> =
    LazyLock::new(|| [&ITEM_HEAD[..], &OUTCOME_COLUMNS].concat());

pub(super) const APPROVAL_COLUMNS: &[&str] = &[
    "run_id",
    "step_id",
    "tool_use_id",
    "tool_name",
    "arguments",
    "on_reject",
    "timeout_ms",
    "timeout_behavior",
    "status",
    "created_at",
    "expires_at",
    "decided_at",
    "decided_by",
    "comment",
    "partial_metrics",
];

pub(super) const EVENT_COLUMNS: &[&str] = &["run_id", "seq", "ts", "event", "data"];

pub(super) const IDEMPOTENCY_COLUMNS: &[&str] = &[
    "key",
    "workflow_name",
    "request_hash",
    "run_id",
    "created_at",
    "expires_at",
];

/// `a, b, c` — for `SELECT <list> FROM …`.
pub(super) fn column_list(columns: &[&str]) -> String {
    columns.join(", ")
}

/// `INSERT INTO table (…) VALUES (?1, …)` with `extra` columns appended to the list.
fn insert_sql(table: &str, columns: &[&str], extra: &[&str]) -> String {
    let all: Vec<&str> = columns.iter().chain(extra).copied().collect();
    let placeholders: Vec<String> = (1..=all.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        all.join(", "),
        placeholders.join(", ")
    )
}

/// An insert that replaces every listed non-key column on a key collision and leaves the
/// other columns (the checkpoint) as they were.
fn upsert_sql(table: &str, columns: &[&str], key: &[&str]) -> String {
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "{} ON CONFLICT ({}) DO UPDATE SET {}",
        insert_sql(table, columns, &[]),
        key.join(", "),
        updates.join(", ")
    )
}

/// `SELECT` list of a run: [`RUN_COLUMNS`] then `version` (what [`decode_run`] reads).
pub(super) static SELECT_RUN_COLUMNS: LazyLock<String> =
    LazyLock::new(|| format!("{}, version", column_list(RUN_COLUMNS)));
/// A new run: its columns, then `version` and `next_seq`.
pub(super) static INSERT_RUN: LazyLock<String> =
    LazyLock::new(|| insert_sql("runs", RUN_COLUMNS, &["version", "next_seq"]));
/// The run row replaced whole, except its `id` and the counters the commit manages.
pub(super) static UPDATE_RUN: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = RUN_COLUMNS
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != "id")
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    format!("UPDATE runs SET {} WHERE id = ?1", sets.join(", "))
});
pub(super) static UPSERT_STEP: LazyLock<String> =
    LazyLock::new(|| upsert_sql("steps", &STEP_COLUMNS, &["run_id", "id"]));
pub(super) static UPSERT_ITEM: LazyLock<String> =
    LazyLock::new(|| upsert_sql("step_items", &ITEM_COLUMNS, &["run_id", "step_id", "idx"]));
pub(super) static UPSERT_APPROVAL: LazyLock<String> = LazyLock::new(|| {
    upsert_sql(
        "approvals",
        APPROVAL_COLUMNS,
        &["run_id", "step_id", "tool_use_id"],
    )
});
pub(super) static INSERT_EVENT: LazyLock<String> =
    LazyLock::new(|| insert_sql("events", EVENT_COLUMNS, &[]));
pub(super) static INSERT_IDEMPOTENCY: LazyLock<String> =
    LazyLock::new(|| insert_sql("idempotency_keys", IDEMPOTENCY_COLUMNS, &[]));

// ---- encoding --------------------------------------------------------------------------

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> SqlValue {
    s.map_or(SqlValue::Null, text)
}

pub(super) fn time(t: &Timestamp) -> SqlValue {
    SqlValue::Text(t.to_string())
}

fn opt_time(t: Option<&Timestamp>) -> SqlValue {
    t.map_or(SqlValue::Null, time)
}

/// SQLite integers are signed 64-bit; a larger value is a caller bug, refused before writing.
pub(super) fn int(n: u64, what: &str) -> Result<SqlValue, StoreError> {
    i64::try_from(n)
        .map(SqlValue::Integer)
        .map_err(|_| StoreError::Invalid(format!("{what} {n} exceeds the storable range")))
}

fn opt_int(n: Option<u64>, what: &str) -> Result<SqlValue, StoreError> {
    n.map_or(Ok(SqlValue::Null), |n| int(n, what))
}

fn opt_bool(b: Option<bool>) -> SqlValue {
    b.map_or(SqlValue::Null, |b| SqlValue::Integer(i64::from(b)))
}

fn opt_real(f: Option<f64>) -> SqlValue {
    f.map_or(SqlValue::Null, SqlValue::Real)
}

/// Compact JSON text.
pub(super) fn json<T: Serialize + ?Sized>(value: &T) -> Result<SqlValue, StoreError> {
    serde_json::to_string(value)
        .map(SqlValue::Text)
        .map_err(|e| StoreError::Invalid(format!("value cannot be written as JSON: {e}")))
}

fn opt_json(value: Option<&Value>) -> Result<SqlValue, StoreError> {
    value.map_or(Ok(SqlValue::Null), json)
}

/// `flags` is omitted on the wire when empty; stored as `NULL` then.
fn flags(flags: &[String]) -> Result<SqlValue, StoreError> {
    if flags.is_empty() {
        Ok(SqlValue::Null)
    } else {
        json(flags)
    }
}

/// Values in [`RUN_COLUMNS`] order (the record's `version` is not among them).
pub(super) fn run_values(run: &RunRecord) -> Result<Vec<SqlValue>, StoreError> {
    Ok(vec![
        text(&run.id),
        text(&run.workflow_name),
        text(run.status.as_str()),
        text(&run.root_run_id),
        opt_text(run.parent_run_id.as_deref()),
        opt_text(run.parent_step_id.as_deref()),
        time(&run.created_at),
        time(&run.updated_at),
        opt_time(run.started_at.as_ref()),
        opt_time(run.completed_at.as_ref()),
        opt_time(run.deadline_at.as_ref()),
        opt_int(run.timeout_s, "timeout_s")?,
        opt_real(run.budget_usd),
        json(&run.payload)?,
        opt_json(run.output.as_ref())?,
        opt_text(run.error.as_deref()),
        opt_text(run.error_code.as_deref()),
        opt_text(run.failed_step.as_deref()),
        opt_text(run.cancel_reason.as_deref()),
        json(&run.totals)?,
    ])
}

/// The values of the outcome columns ([`OUTCOME_COLUMNS`]) of a step or item record; both
/// types name these fields alike.
macro_rules! outcome_values {
    ($record:expr) => {
        [
            opt_json($record.output.as_ref())?,
            opt_text($record.skip_reason.as_deref()),
            opt_text($record.skip_message.as_deref()),
            opt_text($record.error.as_deref()),
            opt_text($record.error_code.as_deref()),
            opt_json($record.raw_output.as_ref())?,
            opt_json($record.airlock.as_ref())?,
            flags(&$record.flags)?,
            opt_text($record.rationale.as_deref()),
            json(&$record.metrics)?,
            opt_bool($record.reflected),
            opt_text($record.runtime_id.as_deref()),
        ]
    };
}

/// Values in [`STEP_COLUMNS`] order (the record's `name` and `items` are not columns).
pub(super) fn step_values(step: &StepRecord) -> Result<Vec<SqlValue>, StoreError> {
    let mut values = vec![
        text(&step.run_id),
        text(&step.id),
        SqlValue::Integer(i64::from(step.position)),
        text(step.step_type.as_str()),
        json(&step.depends_on)?,
        text(step.status.as_str()),
        SqlValue::Integer(i64::from(step.attempt)),
        opt_time(step.started_at.as_ref()),
        opt_time(step.ended_at.as_ref()),
        time(&step.updated_at),
        opt_time(step.deadline_at.as_ref()),
        opt_int(step.timeout_remaining_ms, "timeout_remaining_ms")?,
    ];
    values.extend(outcome_values!(step));
    values.push(opt_text(step.child_run_id.as_deref()));
    Ok(values)
}

/// Values in [`ITEM_COLUMNS`] order.
pub(super) fn item_values(
    run_id: &str,
    step_id: &str,
    item: &ItemRecord,
) -> Result<Vec<SqlValue>, StoreError> {
    let mut values = vec![
        text(run_id),
        text(step_id),
        SqlValue::Integer(i64::from(item.index)),
        json(&item.item)?,
        text(item.status.as_str()),
        SqlValue::Integer(i64::from(item.attempt)),
        opt_time(item.started_at.as_ref()),
        opt_time(item.ended_at.as_ref()),
        time(&item.updated_at),
    ];
    values.extend(outcome_values!(item));
    Ok(values)
}

/// Values in [`APPROVAL_COLUMNS`] order.
pub(super) fn approval_values(approval: &ApprovalRecord) -> Result<Vec<SqlValue>, StoreError> {
    Ok(vec![
        text(&approval.run_id),
        text(&approval.step_id),
        text(&approval.tool_use_id),
        text(&approval.tool_name),
        json(&approval.arguments)?,
        text(&approval.on_reject),
        int(approval.timeout_ms, "timeout_ms")?,
        text(&approval.timeout_behavior),
        text(approval.status.as_str()),
        time(&approval.created_at),
        opt_time(approval.expires_at.as_ref()),
        opt_time(approval.decided_at.as_ref()),
        opt_text(approval.decided_by.as_deref()),
        opt_text(approval.comment.as_deref()),
        json(&approval.partial_metrics)?,
    ])
}

/// Values in [`IDEMPOTENCY_COLUMNS`] order.
pub(super) fn idempotency_values(record: &IdempotencyRecord) -> Vec<SqlValue> {
    vec![
        text(&record.key),
        text(&record.workflow_name),
        text(&record.request_hash),
        text(&record.run_id),
        time(&record.created_at),
        time(&record.expires_at),
    ]
}

// ---- decoding --------------------------------------------------------------------------

fn corrupt(idx: usize, err: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(err))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
struct UnknownName {
    kind: &'static str,
    value: String,
}

fn get_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    let text: String = row.get(idx)?;
    Timestamp::parse(&text).map_err(|e| corrupt(idx, e))
}

fn get_opt_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| Timestamp::parse(&t).map_err(|e| corrupt(idx, e)))
        .transpose()
}

pub(super) fn get_json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| corrupt(idx, e))
}

pub(super) fn get_opt_json<T: DeserializeOwned>(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(idx, e)))
        .transpose()
}

fn get_named<T>(
    row: &Row<'_>,
    idx: usize,
    kind: &'static str,
    parse: fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    parse(&text).ok_or_else(|| corrupt(idx, UnknownName { kind, value: text }))
}

/// A row selected with [`SELECT_RUN_COLUMNS`].
pub(super) fn decode_run(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        workflow_name: row.get(1)?,
        status: get_named(row, 2, "run status", RunStatus::parse)?,
        root_run_id: row.get(3)?,
        parent_run_id: row.get(4)?,
        parent_step_id: row.get(5)?,
        created_at: get_time(row, 6)?,
        updated_at: get_time(row, 7)?,
        started_at: get_opt_time(row, 8)?,
        completed_at: get_opt_time(row, 9)?,
        deadline_at: get_opt_time(row, 10)?,
        timeout_s: row.get(11)?,
        budget_usd: row.get(12)?,
        payload: get_json(row, 13)?,
        output: get_opt_json(row, 14)?,
        error: row.get(15)?,
        error_code: row.get(16)?,
        failed_step: row.get(17)?,
        cancel_reason: row.get(18)?,
        totals: get_json(row, 19)?,
        version: row.get(20)?,
    })
}

/// A step or item record literal whose outcome fields ([`OUTCOME_COLUMNS`]) are read from
/// the row starting at column `$at`; the other fields are given.
macro_rules! with_outcome {
    ($row:expr, $at:expr, $ty:ident { $($field:ident: $value:expr),* $(,)? }) => {
        $ty {
            $($field: $value,)*
            output: get_opt_json($row, $at)?,
            skip_reason: $row.get($at + 1)?,
            skip_message: $row.get($at + 2)?,
            error: $row.get($at + 3)?,
            error_code: $row.get($at + 4)?,
            raw_output: get_opt_json($row, $at + 5)?,
            airlock: get_opt_json($row, $at + 6)?,
            flags: get_opt_json($row, $at + 7)?.unwrap_or_default(),
            rationale: $row.get($at + 8)?,
            metrics: get_json($row, $at + 9)?,
            reflected: $row.get($at + 10)?,
            runtime_id: $row.get($at + 11)?,
        }
    };
}

/// A row selected with [`STEP_COLUMNS`]; `items` is filled by the caller.
pub(super) fn decode_step(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(with_outcome!(
        row,
        STEP_OUTCOME_AT,
        StepRecord {
            run_id: row.get(0)?,
            id: row.get(1)?,
            name: row.get(1)?,
            position: row.get(2)?,
            step_type: get_named(row, 3, "step type", StepType::parse)?,
            depends_on: get_json(row, 4)?,
            status: get_named(row, 5, "step status", StepStatus::parse)?,
            attempt: row.get(6)?,
            started_at: get_opt_time(row, 7)?,
            ended_at: get_opt_time(row, 8)?,
            updated_at: get_time(row, 9)?,
            deadline_at: get_opt_time(row, 10)?,
            timeout_remaining_ms: row.get(11)?,
            child_run_id: row.get(STEP_OUTCOME_AT + OUTCOME_COLUMNS.len())?,
            items: None,
        }
    ))
}

/// A row selected with [`ITEM_COLUMNS`]: `(step id, item)`.
pub(super) fn decode_item(row: &Row<'_>) -> rusqlite::Result<(String, ItemRecord)> {
    let step_id: String = row.get(1)?;
    let item = with_outcome!(
        row,
        ITEM_OUTCOME_AT,
        ItemRecord {
            index: row.get(2)?,
            item: get_json(row, 3)?,
            status: get_named(row, 4, "item status", StepStatus::parse)?,
            attempt: row.get(5)?,
            started_at: get_opt_time(row, 6)?,
            ended_at: get_opt_time(row, 7)?,
            updated_at: get_time(row, 8)?,
        }
    );
    Ok((step_id, item))
}

/// A row selected with [`APPROVAL_COLUMNS`].
pub(super) fn decode_approval(row: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    Ok(ApprovalRecord {
        run_id: row.get(0)?,
        step_id: row.get(1)?,
        tool_use_id: row.get(2)?,
        tool_name: row.get(3)?,
        arguments: get_opt_json(row, 4)?.unwrap_or(Value::Null),
        on_reject: row.get(5)?,
        timeout_ms: row.get(6)?,
        timeout_behavior: row.get(7)?,
        status: get_named(row, 8, "approval status", ApprovalStatus::parse)?,
        created_at: get_time(row, 9)?,
        expires_at: get_opt_time(row, 10)?,
        decided_at: get_opt_time(row, 11)?,
        decided_by: row.get(12)?,
        comment: row.get(13)?,
        partial_metrics: get_json(row, 14)?,
    })
}

/// A row selected with [`EVENT_COLUMNS`].
pub(super) fn decode_event(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        run_id: row.get(0)?,
        seq: row.get(1)?,
        ts: get_time(row, 2)?,
        event: row.get(3)?,
        data: get_json(row, 4)?,
    })
}

/// A row selected with [`IDEMPOTENCY_COLUMNS`].
pub(super) fn decode_idempotency(row: &Row<'_>) -> rusqlite::Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        key: row.get(0)?,
        workflow_name: row.get(1)?,
        request_hash: row.get(2)?,
        run_id: row.get(3)?,
        created_at: get_time(row, 4)?,
        expires_at: get_time(row, 5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_cover_every_column_once() {
        assert_eq!(
            *INSERT_RUN,
            "INSERT INTO runs (id, workflow_name, status, root_run_id, parent_run_id, \
             parent_step_id, created_at, updated_at, started_at, completed_at, deadline_at, \
             timeout_s, budget_usd, payload, output, error, error_code, failed_step, \
             cancel_reason, totals, version, next_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
             ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
        );
        assert!(UPDATE_RUN.starts_with("UPDATE runs SET workflow_name = ?2, status = ?3,"));
        assert!(UPDATE_RUN.ends_with("totals = ?20 WHERE id = ?1"));
        assert!(!UPDATE_RUN.contains("version"));
        assert!(UPSERT_STEP
            .contains("ON CONFLICT (run_id, id) DO UPDATE SET position = excluded.position"));
        assert!(!UPSERT_STEP.contains("checkpoint"));
        assert!(!UPSERT_ITEM.contains("checkpoint"));
        assert!(UPSERT_APPROVAL.ends_with("partial_metrics = excluded.partial_metrics"));
    }

    #[test]
    fn column_lists_cover_the_schema() {
        let schema = include_str!("../migrations/0001_init.sql");
        let table = |name: &str| -> Vec<String> {
            let start = schema.find(&format!("CREATE TABLE {name} (")).unwrap();
            let body = &schema[start..];
            let body = &body[body.find('(').unwrap() + 1..body.find(");").unwrap()];
            // Column definitions come first; table constraints (in capitals) end them.
            body.split(',')
                .map(|part| part.split_whitespace().next().unwrap_or_default())
                .take_while(|word| !matches!(*word, "PRIMARY" | "FOREIGN"))
                .filter(|column| *column != "checkpoint")
                .map(str::to_string)
                .collect()
        };
        // Every schema column (but `checkpoint`) exactly once, in whatever order.
        let same = |name: &str, columns: &[&str]| {
            let mut expected: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            let mut found = table(name);
            expected.sort();
            found.sort();
            assert_eq!(found, expected, "{name}");
        };
        same("steps", &STEP_COLUMNS);
        same("step_items", &ITEM_COLUMNS);
        same("approvals", APPROVAL_COLUMNS);
        same("events", EVENT_COLUMNS);
        same("idempotency_keys", IDEMPOTENCY_COLUMNS);
        same("runs", &[RUN_COLUMNS, &["version", "next_seq"]].concat());
    }

    #[test]
    fn oversized_integers_are_refused_not_wrapped() {
        assert_eq!(int(7, "x"), Ok(SqlValue::Integer(7)));
        assert!(
            matches!(int(u64::MAX, "timeout_ms"), Err(StoreError::Invalid(m)) if m.contains("timeout_ms"))
        );
    }
}
