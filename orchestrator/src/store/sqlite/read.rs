//! Read queries, run on pooled read-only connections inside the blocking pool.

use super::codec::{self, SELECT_RUN_COLUMNS};
use super::sql_error;
use crate::model::{
    ApprovalRecord, EventRecord, IdempotencyRecord, ItemRecord, RunFull, RunRecord, RunStatus,
    StepType,
};
use crate::store::rules::{self, StepAddress};
use crate::store::{ApprovalFilter, Cursor, RunFilter, StoreError};
use ktsu_shared::time::Timestamp;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;
use std::collections::HashMap;

/// SQLite's `LIMIT` takes a signed integer; anything above is "no limit" in practice.
fn sql_limit(limit: usize) -> SqlValue {
    SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX))
}

fn select_run(conn: &Connection, id: &str) -> Result<Option<RunRecord>, StoreError> {
    let sql = format!("SELECT {} FROM runs WHERE id = ?1", *SELECT_RUN_COLUMNS);
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_row([id], codec::decode_run).optional())
        .map_err(sql_error)
}

pub(super) fn get_run(conn: &mut Connection, id: &str) -> Result<Option<RunRecord>, StoreError> {
    select_run(conn, id)
}

pub(super) fn get_run_full(conn: &mut Connection, id: &str) -> Result<Option<RunFull>, StoreError> {
    // One read transaction: run, steps and items come from the same snapshot even while the
    // writer commits.
    let tx = conn.transaction().map_err(sql_error)?;
    let Some(run) = select_run(&tx, id)? else {
        return Ok(None);
    };
    let steps_sql = format!(
        "SELECT {} FROM steps WHERE run_id = ?1 ORDER BY position, id",
        codec::column_list(&codec::STEP_COLUMNS)
    );
    let mut steps = tx
        .prepare_cached(&steps_sql)
        .and_then(|mut stmt| {
            stmt.query_map([id], codec::decode_step)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql_error)?;
    let items_sql = format!(
        "SELECT {} FROM step_items WHERE run_id = ?1 ORDER BY step_id, idx",
        codec::column_list(&codec::ITEM_COLUMNS)
    );
    let items = tx
        .prepare_cached(&items_sql)
        .and_then(|mut stmt| {
            stmt.query_map([id], codec::decode_item)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql_error)?;
    let mut by_step: HashMap<String, Vec<ItemRecord>> = HashMap::new();
    for (step_id, item) in items {
        by_step.entry(step_id).or_default().push(item);
    }
    for step in &mut steps {
        step.items = by_step.remove(&step.id);
    }
    Ok(Some(RunFull { run, steps }))
}

pub(super) fn list_runs(
    conn: &mut Connection,
    filter: &RunFilter,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Vec<RunRecord>, StoreError> {
    // Anonymous placeholders are numbered in order, so each condition pushes its values.
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    match &filter.parent {
        Some(parent) => {
            conditions.push("parent_run_id = ?");
            values.push(SqlValue::Text(parent.clone()));
        }
        None if !filter.include_children => conditions.push("parent_run_id IS NULL"),
        None => {}
    }
    if let Some(workflow) = &filter.workflow {
        conditions.push("workflow_name = ?");
        values.push(SqlValue::Text(workflow.clone()));
    }
    if let Some(status) = filter.status {
        conditions.push("status = ?");
        values.push(SqlValue::Text(status.as_str().into()));
    }
    if let Some(cursor) = cursor {
        // Row-value comparison: strictly after the cursor in (created_at DESC, id DESC) order.
        conditions.push("(created_at, id) < (?, ?)");
        values.push(codec::time(&cursor.created_at));
        values.push(SqlValue::Text(cursor.id.clone()));
    }
    values.push(sql_limit(limit));
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM runs {where_clause} ORDER BY created_at DESC, id DESC LIMIT ?",
        *SELECT_RUN_COLUMNS
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(params_from_iter(values), codec::decode_run)?
                .collect()
        })
        .map_err(sql_error)
}

pub(super) fn list_active_runs(conn: &mut Connection) -> Result<Vec<RunRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM runs WHERE status IN (?1, ?2) ORDER BY created_at, id",
        *SELECT_RUN_COLUMNS
    );
    let runs = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![RunStatus::Pending.as_str(), RunStatus::Running.as_str()],
                codec::decode_run,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql_error)?;
    Ok(rules::parents_first(runs))
}

pub(super) fn tree_spend(conn: &mut Connection, root_run_id: &str) -> Result<f64, StoreError> {
    /// The one metrics field the sum needs.
    #[derive(serde::Deserialize)]
    struct Cost {
        cost_usd: f64,
    }
    // Parsed here, not with json_extract: SQLite's float parser is not correctly rounded, and
    // the sum must be exactly what the memory store computes from the same records.
    let costs = conn
        .prepare_cached(
            "SELECT steps.metrics FROM steps JOIN runs ON runs.id = steps.run_id \
             WHERE runs.root_run_id = ?1 AND steps.type = ?2 ORDER BY steps.run_id, steps.id",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![root_run_id, StepType::Agent.as_str()], |row| {
                codec::get_json::<Cost>(row, 0).map(|c| c.cost_usd)
            })?
            .collect::<rusqlite::Result<Vec<f64>>>()
        })
        .map_err(sql_error)?;
    Ok(rules::total_cost(costs))
}

pub(super) fn get_approvals(
    conn: &mut Connection,
    run_id: &str,
    step_address: Option<&str>,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let mut conditions = vec![("run_id", run_id.to_owned())];
    if let Some(step) = step_address {
        conditions.push(("step_id", step.to_owned()));
    }
    select_approvals(conn, conditions)
}

pub(super) fn list_approvals(
    conn: &mut Connection,
    filter: &ApprovalFilter,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let mut conditions = Vec::new();
    if let Some(run_id) = &filter.run_id {
        conditions.push(("run_id", run_id.clone()));
    }
    if let Some(status) = filter.status {
        conditions.push(("status", status.as_str().to_owned()));
    }
    select_approvals(conn, conditions)
}

/// Approvals whose `column = value` for every condition, `created_at` ascending, then by
/// identity (the memory store's order too).
fn select_approvals(
    conn: &Connection,
    conditions: Vec<(&'static str, String)>,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let (columns, values): (Vec<&str>, Vec<String>) = conditions.into_iter().unzip();
    let where_clause = if columns.is_empty() {
        String::new()
    } else {
        let tests: Vec<String> = columns.iter().map(|c| format!("{c} = ?")).collect();
        format!("WHERE {}", tests.join(" AND "))
    };
    let sql = format!(
        "SELECT {} FROM approvals {where_clause} ORDER BY created_at, run_id, step_id, tool_use_id",
        codec::column_list(codec::APPROVAL_COLUMNS)
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(params_from_iter(values), codec::decode_approval)?
                .collect()
        })
        .map_err(sql_error)
}

pub(super) fn get_checkpoint(
    conn: &mut Connection,
    run_id: &str,
    step_address: &str,
) -> Result<Option<Value>, StoreError> {
    let decode = |row: &rusqlite::Row<'_>| codec::get_opt_json::<Value>(row, 0);
    let stored = match StepAddress::parse(step_address) {
        StepAddress::Step(step_id) => conn
            .prepare_cached("SELECT checkpoint FROM steps WHERE run_id = ?1 AND id = ?2")
            .and_then(|mut stmt| stmt.query_row(params![run_id, step_id], decode).optional()),
        StepAddress::Item { step_id, index } => conn
            .prepare_cached(
                "SELECT checkpoint FROM step_items WHERE run_id = ?1 AND step_id = ?2 AND idx = ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run_id, step_id, index], decode)
                    .optional()
            }),
    }
    .map_err(sql_error)?;
    Ok(stored.flatten())
}

pub(super) fn get_checkpoints(
    conn: &mut Connection,
    run_id: &str,
) -> Result<HashMap<String, Value>, StoreError> {
    let tx = conn.transaction().map_err(sql_error)?;
    let mut checkpoints = HashMap::new();
    let steps: Vec<(String, Value)> = tx
        .prepare_cached(
            "SELECT id, checkpoint FROM steps WHERE run_id = ?1 AND checkpoint IS NOT NULL",
        )
        .and_then(|mut stmt| {
            stmt.query_map([run_id], |row| Ok((row.get(0)?, codec::get_json(row, 1)?)))?
                .collect()
        })
        .map_err(sql_error)?;
    checkpoints.extend(steps);
    let items: Vec<(String, Value)> = tx
        .prepare_cached(
            "SELECT step_id, idx, checkpoint FROM step_items \
             WHERE run_id = ?1 AND checkpoint IS NOT NULL",
        )
        .and_then(|mut stmt| {
            stmt.query_map([run_id], |row| {
                let step_id: String = row.get(0)?;
                let index: u32 = row.get(1)?;
                Ok((
                    rules::item_address(&step_id, index),
                    codec::get_json(row, 2)?,
                ))
            })?
            .collect()
        })
        .map_err(sql_error)?;
    checkpoints.extend(items);
    Ok(checkpoints)
}

pub(super) fn events_after(
    conn: &mut Connection,
    run_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        codec::column_list(codec::EVENT_COLUMNS)
    );
    // Sequence numbers never exceed i64::MAX, so a larger `after` matches nothing.
    let after = SqlValue::Integer(i64::try_from(after).unwrap_or(i64::MAX));
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![run_id, after, sql_limit(limit)],
                codec::decode_event,
            )?
            .collect()
        })
        .map_err(sql_error)
}

pub(super) fn get_idempotency(
    conn: &mut Connection,
    key: &str,
    now: Timestamp,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM idempotency_keys WHERE key = ?1 AND expires_at > ?2",
        codec::column_list(codec::IDEMPOTENCY_COLUMNS)
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row(params![key, now.to_string()], codec::decode_idempotency)
                .optional()
        })
        .map_err(sql_error)
}
