//! The writes, run on the writer thread. Each function gets the connection inside a
//! transaction and savepoint the writer opened for it (see `writer`): on error the writer
//! rolls the savepoint back, so a failed write leaves nothing behind.

use super::codec::{self, time};
use super::sql_error;
use crate::model::{IdempotencyRecord, ItemRecord, NewEvent, StepRecord};
use crate::store::rules::{self, StepAddress};
use crate::store::{ChangeSet, Created, NewRun, StoreError};
use ktsu_shared::time::Timestamp;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

fn run_exists(tx: &Connection, id: &str) -> Result<bool, StoreError> {
    tx.prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
        .and_then(|mut stmt| stmt.exists([id]))
        .map_err(sql_error)
}

pub(super) fn create_run(
    tx: &Connection,
    new: &NewRun,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<Created, StoreError> {
    if let Some(key) = idempotency {
        let sql = format!(
            "SELECT {} FROM idempotency_keys WHERE key = ?1",
            codec::column_list(codec::IDEMPOTENCY_COLUMNS)
        );
        let existing = tx
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_row([&key.key], codec::decode_idempotency)
                    .optional()
            })
            .map_err(sql_error)?;
        if let Some(existing) = existing {
            if existing.expires_at > key.created_at {
                return Ok(Created::Existing(existing));
            }
            // Expired but not purged yet: the key is free again.
            tx.execute("DELETE FROM idempotency_keys WHERE key = ?1", [&key.key])
                .map_err(sql_error)?;
        }
    }
    if run_exists(tx, &new.run.id)? {
        return Err(StoreError::Conflict);
    }
    if let Some(parent) = &new.run.parent_run_id {
        if !run_exists(tx, parent)? {
            return Err(rules::unknown_parent(&new.run));
        }
    }
    insert_run(tx, new)?;
    if let Some(key) = idempotency {
        tx.prepare_cached(&codec::INSERT_IDEMPOTENCY)
            .and_then(|mut stmt| stmt.execute(params_from_iter(codec::idempotency_values(key))))
            .map_err(sql_error)?;
    }
    Ok(Created::Created)
}

/// Inserts a run at version 1 with no events, its steps and their items.
fn insert_run(tx: &Connection, new: &NewRun) -> Result<(), StoreError> {
    let mut values = codec::run_values(&new.run)?;
    values.push(SqlValue::Integer(1)); // version
    values.push(SqlValue::Integer(1)); // next_seq
    tx.prepare_cached(&codec::INSERT_RUN)
        .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
        .map_err(sql_error)?;
    for step in &new.steps {
        upsert_step(tx, step)?;
        for item in step.items.iter().flatten() {
            upsert_item(tx, &new.run.id, &step.id, item)?;
        }
    }
    Ok(())
}

fn upsert_step(tx: &Connection, step: &StepRecord) -> Result<(), StoreError> {
    let values = codec::step_values(step)?;
    tx.prepare_cached(&codec::UPSERT_STEP)
        .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
        .map_err(sql_error)?;
    Ok(())
}

fn upsert_item(
    tx: &Connection,
    run_id: &str,
    step_id: &str,
    item: &ItemRecord,
) -> Result<(), StoreError> {
    let values = codec::item_values(run_id, step_id, item)?;
    tx.prepare_cached(&codec::UPSERT_ITEM)
        .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
        .map_err(|err| {
            if is_foreign_key_violation(&err) {
                rules::unknown_item_step(run_id, step_id, item.index)
            } else {
                sql_error(err)
            }
        })?;
    Ok(())
}

fn is_foreign_key_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _)
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

pub(super) fn commit(
    tx: &Connection,
    run_id: &str,
    expected_version: u64,
    changes: &ChangeSet,
) -> Result<u64, StoreError> {
    let counters: Option<(u64, u64)> = tx
        .prepare_cached("SELECT version, next_seq FROM runs WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(sql_error)?;
    let Some((version, next_seq)) = counters else {
        return Err(StoreError::NotFound);
    };
    if version != expected_version {
        return Err(StoreError::Conflict);
    }
    if let Some(run) = &changes.run {
        let values = codec::run_values(run)?;
        tx.prepare_cached(&codec::UPDATE_RUN)
            .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
            .map_err(sql_error)?;
    }
    for step in &changes.steps {
        upsert_step(tx, step)?;
    }
    for (step_id, item) in &changes.items {
        upsert_item(tx, run_id, step_id, item)?;
    }
    for approval in &changes.approvals {
        let values = codec::approval_values(approval)?;
        tx.prepare_cached(&codec::UPSERT_APPROVAL)
            .and_then(|mut stmt| stmt.execute(params_from_iter(values)))
            .map_err(sql_error)?;
    }
    for child in &changes.children {
        if run_exists(tx, &child.run.id)? {
            return Err(StoreError::Conflict);
        }
        insert_run(tx, child)?;
    }
    for (address, messages) in &changes.checkpoints {
        write_checkpoint(tx, run_id, address, messages.as_ref())?;
    }
    let next_seq = append_events(tx, run_id, next_seq, &changes.events)?;
    let new_version = version + 1;
    let counters = [
        codec::int(new_version, "version")?,
        codec::int(next_seq, "next_seq")?,
        SqlValue::Text(run_id.to_owned()),
    ];
    tx.prepare_cached("UPDATE runs SET version = ?1, next_seq = ?2 WHERE id = ?3")
        .and_then(|mut stmt| stmt.execute(params_from_iter(counters)))
        .map_err(sql_error)?;
    Ok(new_version)
}

fn write_checkpoint(
    tx: &Connection,
    run_id: &str,
    address: &str,
    messages: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    let messages = match messages {
        Some(value) => codec::json(value)?,
        None => SqlValue::Null,
    };
    let changed = match StepAddress::parse(address) {
        StepAddress::Step(step_id) => tx
            .prepare_cached("UPDATE steps SET checkpoint = ?1 WHERE run_id = ?2 AND id = ?3")
            .and_then(|mut stmt| stmt.execute(params![messages, run_id, step_id])),
        StepAddress::Item { step_id, index } => tx
            .prepare_cached(
                "UPDATE step_items SET checkpoint = ?1 WHERE run_id = ?2 AND step_id = ?3 AND idx = ?4",
            )
            .and_then(|mut stmt| stmt.execute(params![messages, run_id, step_id, index])),
    }
    .map_err(sql_error)?;
    if changed == 0 {
        return Err(rules::unknown_checkpoint_address(run_id, address));
    }
    Ok(())
}

/// Appends events with contiguous sequence numbers from `next_seq`; returns the next free one.
fn append_events(
    tx: &Connection,
    run_id: &str,
    mut next_seq: u64,
    events: &[NewEvent],
) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(next_seq);
    }
    let mut stmt = tx.prepare_cached(&codec::INSERT_EVENT).map_err(sql_error)?;
    for event in events {
        stmt.execute(params![
            run_id,
            codec::int(next_seq, "seq")?,
            time(&event.ts),
            event.event,
            codec::json(&event.data)?
        ])
        .map_err(sql_error)?;
        next_seq += 1;
    }
    Ok(next_seq)
}

pub(super) fn purge_idempotency(tx: &Connection, now: Timestamp) -> Result<u64, StoreError> {
    let deleted = tx
        .execute(
            "DELETE FROM idempotency_keys WHERE expires_at <= ?1",
            [now.to_string()],
        )
        .map_err(sql_error)?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}
