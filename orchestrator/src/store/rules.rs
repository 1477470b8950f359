//! Rules both stores apply identically, kept in one place so that the memory and SQLite stores
//! cannot drift apart: step addresses, request validation, list orders.

use super::{ChangeSet, Cursor, NewRun, StoreError};
use crate::model::{ApprovalRecord, RunRecord};
use ktsu_shared::time::Timestamp;
use std::collections::HashSet;

/// Where a step address (orchestrator.md §0) points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StepAddress<'a> {
    Step(&'a str),
    Item { step_id: &'a str, index: u32 },
}

impl<'a> StepAddress<'a> {
    /// `<step id>` or `<step id>.<index>` (decimal, no leading zeros). Step ids never contain
    /// `.`, so any other suffix cannot name a record and is kept whole as a (missing) step id.
    pub(super) fn parse(address: &'a str) -> StepAddress<'a> {
        if let Some((step_id, suffix)) = address.split_once('.') {
            if let Ok(index) = suffix.parse::<u32>() {
                if index.to_string() == suffix {
                    return StepAddress::Item { step_id, index };
                }
            }
        }
        StepAddress::Step(address)
    }
}

/// The item address of `(step_id, index)`.
pub(super) fn item_address(step_id: &str, index: u32) -> String {
    format!("{step_id}.{index}")
}

/// Checks a run to create against itself: its steps belong to it, once each.
pub(super) fn validate_new_run(new: &NewRun) -> Result<(), StoreError> {
    let run_id = &new.run.id;
    let mut seen = HashSet::new();
    for step in &new.steps {
        if &step.run_id != run_id {
            return Err(StoreError::Invalid(format!(
                "step \"{}\" of run {} is listed under run {run_id}",
                step.id, step.run_id
            )));
        }
        if !seen.insert(step.id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "step \"{}\" appears twice in run {run_id}",
                step.id
            )));
        }
    }
    Ok(())
}

/// Checks a change set against itself before any stored state is looked at: every record
/// belongs to `run_id`, and every sub-run is a well-formed child of it, created once.
pub(super) fn validate_change_set(run_id: &str, changes: &ChangeSet) -> Result<(), StoreError> {
    if let Some(run) = &changes.run {
        if run.id != run_id {
            return Err(StoreError::Invalid(format!(
                "run record {} in a change set of run {run_id}",
                run.id
            )));
        }
    }
    for step in &changes.steps {
        if step.run_id != run_id {
            return Err(StoreError::Invalid(format!(
                "step \"{}\" of run {} in a change set of run {run_id}",
                step.id, step.run_id
            )));
        }
    }
    for approval in &changes.approvals {
        if approval.run_id != run_id {
            return Err(StoreError::Invalid(format!(
                "approval {} of run {} in a change set of run {run_id}",
                approval.tool_use_id, approval.run_id
            )));
        }
    }
    let mut child_ids = HashSet::new();
    for child in &changes.children {
        if child.run.parent_run_id.as_deref() != Some(run_id) {
            return Err(StoreError::Invalid(format!(
                "sub-run {} is not a child of run {run_id}",
                child.run.id
            )));
        }
        if !child_ids.insert(child.run.id.as_str()) {
            return Err(StoreError::Invalid(format!(
                "sub-run {} is created twice",
                child.run.id
            )));
        }
        validate_new_run(child)?;
    }
    Ok(())
}

/// The error for an item written to a step the run does not have.
pub(super) fn unknown_item_step(run_id: &str, step_id: &str, index: u32) -> StoreError {
    StoreError::Invalid(format!(
        "item {index} of unknown step \"{step_id}\" in run {run_id}"
    ))
}

/// The error for a checkpoint whose address names no step or item of the run.
pub(super) fn unknown_checkpoint_address(run_id: &str, address: &str) -> StoreError {
    StoreError::Invalid(format!(
        "checkpoint for unknown step address \"{address}\" in run {run_id}"
    ))
}

/// The error for a run created under a parent that does not exist.
pub(super) fn unknown_parent(run: &RunRecord) -> StoreError {
    StoreError::Invalid(format!(
        "run {} names parent run {} which does not exist",
        run.id,
        run.parent_run_id.as_deref().unwrap_or_default()
    ))
}

/// `(created_at, id)` of `run` is strictly after the cursor in list order (descending).
pub(super) fn is_after_cursor(created_at: &Timestamp, id: &str, cursor: &Cursor) -> bool {
    (created_at, id) < (&cursor.created_at, cursor.id.as_str())
}

/// Reorders runs already sorted by `created_at` so that every parent comes before its
/// children even when a child's `created_at` is not later than its parent's (a clock that
/// stepped back): recovery starts parents first (orchestrator.md §7.7).
pub(super) fn parents_first(runs: Vec<RunRecord>) -> Vec<RunRecord> {
    let position: std::collections::HashMap<&str, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let mut emitted = vec![false; runs.len()];
    let mut order = Vec::with_capacity(runs.len());
    for start in 0..runs.len() {
        // Walk up to the oldest ancestor in the set that is not emitted yet, then emit the
        // chain top-down.
        let mut chain = Vec::new();
        let mut current = Some(start);
        while let Some(i) = current {
            if emitted[i] || chain.contains(&i) {
                break;
            }
            chain.push(i);
            current = runs[i]
                .parent_run_id
                .as_deref()
                .and_then(|p| position.get(p).copied());
        }
        for &i in chain.iter().rev() {
            emitted[i] = true;
            order.push(i);
        }
    }
    let mut slots: Vec<Option<RunRecord>> = runs.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Tree spend (orchestrator.md §7.4) from the costs of the tree's agent steps, given in
/// (run id, step id) order so that both stores add the same numbers in the same order and
/// answer the identical `f64`. Starts from +0.0 (`Iterator::sum` starts from -0.0).
pub(super) fn total_cost(costs: impl IntoIterator<Item = f64>) -> f64 {
    costs.into_iter().fold(0.0, |total, cost| total + cost)
}

/// Approval list order: `created_at` ascending, then identity (a total order, so both stores
/// answer alike when approvals share a creation time).
pub(super) fn approval_order(a: &ApprovalRecord, b: &ApprovalRecord) -> std::cmp::Ordering {
    (&a.created_at, &a.run_id, &a.step_id, &a.tool_use_id).cmp(&(
        &b.created_at,
        &b.run_id,
        &b.step_id,
        &b.tool_use_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, parent: Option<&str>, micros: u64) -> RunRecord {
        RunRecord {
            parent_run_id: parent.map(Into::into),
            created_at: Timestamp::from_unix_micros(micros),
            ..crate::store::contract::run(id, "w", 0)
        }
    }

    #[test]
    fn addresses_parse_steps_and_canonical_items_only() {
        assert_eq!(StepAddress::parse("draft"), StepAddress::Step("draft"));
        assert_eq!(
            StepAddress::parse("analyze.2"),
            StepAddress::Item {
                step_id: "analyze",
                index: 2
            }
        );
        assert_eq!(
            StepAddress::parse("analyze.0"),
            StepAddress::Item {
                step_id: "analyze",
                index: 0
            }
        );
        for odd in ["analyze.02", "analyze.x", "analyze.", "analyze.-1", "a.1.2"] {
            assert_eq!(StepAddress::parse(odd), StepAddress::Step(odd), "{odd}");
        }
        assert_eq!(item_address("analyze", 7), "analyze.7");
    }

    #[test]
    fn parents_come_first_even_when_created_later() {
        // The child's clock reading is earlier than its parent's, and a grandchild sits first.
        let runs = vec![
            run("run_a.s.t", Some("run_a.s"), 1),
            run("run_a.s", Some("run_a"), 2),
            run("run_b", None, 3),
            run("run_a", None, 4),
            run("run_c.x", Some("run_gone"), 5),
        ];
        let ids: Vec<String> = parents_first(runs).into_iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            ["run_a", "run_a.s", "run_a.s.t", "run_b", "run_c.x"],
            "ancestors are pulled forward, order otherwise kept"
        );
    }

    #[test]
    fn cursor_is_strict_and_breaks_ties_by_id() {
        let cursor = Cursor {
            created_at: Timestamp::from_unix_micros(10),
            id: "run_m".into(),
        };
        let at = Timestamp::from_unix_micros(10);
        assert!(is_after_cursor(&at, "run_l", &cursor));
        assert!(!is_after_cursor(&at, "run_m", &cursor));
        assert!(!is_after_cursor(&at, "run_n", &cursor));
        assert!(is_after_cursor(
            &Timestamp::from_unix_micros(9),
            "run_z",
            &cursor
        ));
        assert!(!is_after_cursor(
            &Timestamp::from_unix_micros(11),
            "run_a",
            &cursor
        ));
    }
}
