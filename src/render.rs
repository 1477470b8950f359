//! Human views of cli-and-ops.md §1.6 and §1.7: the run record of `runs get` (also printed by
//! `run` and `invoke --wait`), the run list and the approval list.

use crate::format::{self, Cell, MISSING};
use crate::output::Style;
use crate::records::{is_terminal, Approval, Item, Metrics, Outcome, Run, RunDoc, Step};
use serde_json::Value;
use std::fmt::Write as _;

/// Width of the header labels (`Run`, `Started`, …) and of the step block labels.
const HEADER_LABEL: usize = 10;
const BLOCK_LABEL: usize = 11;
/// Step block values start here: two spaces of indent, then the label.
const BLOCK_VALUE_COLUMN: usize = 2 + BLOCK_LABEL;
/// JSON in a step block stays on one line up to this length, else it is pretty-printed.
const COMPACT_JSON_MAX: usize = 100;
/// Pretty JSON in a step block is cut after this many lines.
const JSON_MAX_LINES: usize = 20;
/// Failed fan-out items listed one by one before the rest is summarised.
const FAILED_ITEMS_SHOWN: usize = 20;

/// The run record: header, step table in pipeline order, one block per step with something
/// to explain, and the run's output when it completed.
pub fn run_record(doc: &RunDoc, style: Style) -> String {
    let mut out = header(&doc.run, style);
    out.push('\n');
    out.push_str(&step_table(&doc.steps, style));
    // For a completed run the final output says it all; when it did not complete, every
    // step's output is evidence for the operator.
    let show_outputs = doc.run.status != "complete";
    let blocks: String = doc
        .steps
        .iter()
        .map(|s| step_block(s, show_outputs))
        .collect();
    if !blocks.is_empty() {
        out.push('\n');
        out.push_str(&blocks);
    }
    if doc.run.status == "complete" {
        if let Some(output) = &doc.run.output {
            out.push_str("\nOutput\n");
            out.push_str(&pretty(output));
            out.push('\n');
        }
    }
    out
}

fn label(name: &str) -> String {
    format!("{name:<HEADER_LABEL$}")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn header(run: &Run, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}{}  {}  {}",
        label("Run"),
        run.id,
        run.workflow_name,
        style.status(&run.status)
    );
    if let Some(parent) = &run.parent_run_id {
        let step = run
            .parent_step_id
            .as_deref()
            .map(|s| format!("  (step {s})"))
            .unwrap_or_default();
        let _ = writeln!(out, "{}{parent}{step}", label("Parent"));
    }
    let _ = writeln!(out, "{}", started_line(run));
    let _ = writeln!(
        out,
        "{}{}",
        label("Totals"),
        totals(&run.totals, run.budget_usd)
    );
    if let Some(error) = error_text(run.error_code.as_deref(), run.error.as_deref()) {
        let step = run
            .failed_step
            .as_deref()
            .map(|s| format!("  (step {s})"))
            .unwrap_or_default();
        let _ = writeln!(out, "{}{error}{step}", label("Error"));
    }
    out
}

fn started_line(run: &Run) -> String {
    let finished = is_terminal(&run.status);
    match &run.started_at {
        Some(started) => {
            let shown = format::local_time(started);
            let span = if finished {
                format::between(Some(started), run.completed_at.as_deref())
                    .map(|d| format!(" (took {})", format::duration(d)))
            } else {
                format::since(started).map(|d| format!(" (running for {})", format::duration(d)))
            };
            format!("{}{shown}{}", label("Started"), span.unwrap_or_default())
        }
        None => {
            let created = run
                .created_at
                .as_deref()
                .map_or_else(|| MISSING.to_string(), format::local_time);
            let note = if finished {
                "never started"
            } else {
                "waiting to start"
            };
            format!("{}{created} ({note})", label("Created"))
        }
    }
}

/// `2 LLM calls · 1 tool call · 1840/210 tokens · $0.002130 (budget $0.500000)`.
fn totals(t: &Metrics, budget: Option<f64>) -> String {
    let mut parts = vec![plural(t.llm_calls, "LLM call", "LLM calls")];
    if t.tool_calls > 0 {
        parts.push(plural(t.tool_calls, "tool call", "tool calls"));
    }
    parts.push(format!(
        "{} tokens",
        format::tokens(t.tokens_in, t.tokens_out)
    ));
    let budget = budget
        .map(|b| format!(" (budget {})", format::cost(b)))
        .unwrap_or_default();
    parts.push(format!("{}{budget}", format::cost(t.cost_usd)));
    parts.join(" · ")
}

/// `code: text`, or whichever of the two exists (the text alone when it already starts
/// with the code, as `cancelled: …` does).
fn error_text(code: Option<&str>, text: Option<&str>) -> Option<String> {
    match (code, text) {
        (Some(code), Some(text)) if text.starts_with(&format!("{code}:")) => Some(text.into()),
        (Some(code), Some(text)) => Some(format!("{code}: {text}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (None, None) => None,
    }
}

fn step_duration(o: &Outcome) -> String {
    if o.started_at.is_none() || o.ended_at.is_none() {
        return MISSING.into();
    }
    format::duration_ms(o.metrics.duration_ms)
}

fn usage_cells(m: &Metrics) -> (String, String) {
    if m.has_llm_usage() {
        (
            format::tokens(m.tokens_in, m.tokens_out),
            format::cost(m.cost_usd),
        )
    } else {
        (MISSING.into(), MISSING.into())
    }
}

fn step_table(steps: &[Step], style: Style) -> String {
    let rows = steps
        .iter()
        .map(|s| {
            let (tokens, cost) = usage_cells(&s.outcome.metrics);
            vec![
                Cell::from(s.id.as_str()),
                Cell::from(s.step_type.as_str()),
                Cell::status(s.outcome.status.as_str()),
                Cell::from(step_duration(&s.outcome)),
                Cell::from(tokens),
                Cell::from(cost),
            ]
        })
        .collect();
    format::table(
        &["step", "type", "status", "duration", "tokens", "cost"],
        rows,
        style,
    )
}

/// One `  label      value` line; later lines of the value are indented under the first.
fn block_line(out: &mut String, name: &str, value: &str) {
    let indent = " ".repeat(BLOCK_VALUE_COLUMN);
    let mut lines = value.lines();
    let first = lines.next().unwrap_or_default();
    let gap = BLOCK_LABEL.saturating_sub(name.chars().count()).max(1);
    let _ = writeln!(out, "  {name}{}{first}", " ".repeat(gap));
    for line in lines {
        let _ = writeln!(out, "{indent}{line}");
    }
}

/// What a step needs explained, in a fixed order; empty when nothing.
fn step_block(step: &Step, show_output: bool) -> String {
    let mut body = String::new();
    outcome_lines(&mut body, &step.outcome, show_output);
    if let Some(child) = &step.child_run_id {
        block_line(&mut body, "child", child);
    }
    if let Some(items) = &step.items {
        if !items.is_empty() {
            block_line(&mut body, "items", &items_summary(items));
        }
    }
    if step.outcome.status == "complete" && show_output {
        if let Some(output) = &step.outcome.output {
            block_line(&mut body, "output", &block_json(output));
        }
    }
    if body.is_empty() {
        return body;
    }
    format!("{}\n{body}", step.id)
}

fn outcome_lines(out: &mut String, o: &Outcome, show_output: bool) {
    // A step cancelled before it started has nothing to explain beyond its status.
    let explain_error = o.status == "failed" || (o.status == "cancelled" && o.started_at.is_some());
    if explain_error {
        if let Some(error) = error_text(o.error_code.as_deref(), o.error.as_deref()) {
            block_line(out, "error", &error);
        }
    }
    // A step skipped because the run ended is explained by the run's own status and error.
    let run_ended = matches!(
        o.skip_reason.as_deref(),
        Some("run_failed" | "run_cancelled" | "run_needs_human_review")
    );
    if o.status == "skipped" && !run_ended {
        if let Some(reason) = &o.skip_reason {
            let text = match &o.skip_message {
                Some(message) if !message.is_empty() => format!("{reason}: {message}"),
                _ => reason.clone(),
            };
            block_line(out, "skipped", &text);
        }
    }
    if let Some(airlock) = &o.airlock {
        if !airlock.violations.is_empty() {
            let lines: Vec<String> = airlock
                .violations
                .iter()
                .map(|v| {
                    let pointer = if v.pointer.is_empty() {
                        "(root)"
                    } else {
                        v.pointer.as_str()
                    };
                    format!("{pointer}: {}", v.message)
                })
                .collect();
            block_line(out, "violations", &lines.join("\n"));
        }
    }
    if o.attempt > 1 {
        block_line(out, "attempts", &o.attempt.to_string());
    }
    if !o.flags.is_empty() {
        block_line(out, "flags", &o.flags.join(", "));
    }
    if let Some(rationale) = o.rationale.as_deref().filter(|r| !r.is_empty()) {
        block_line(out, "rationale", rationale);
    }
    // What the agent actually returned is the evidence behind an Air-Lock or reserved-field
    // failure.
    if show_output && o.status == "failed" {
        if let Some(raw) = &o.raw_output {
            block_line(out, "raw output", &block_json(raw));
        }
    }
}

/// `5 complete · 2 failed`, then each failed item's index and error.
fn items_summary(items: &[Item]) -> String {
    const ORDER: [&str; 7] = [
        "complete",
        "failed",
        "skipped",
        "cancelled",
        "running",
        "pending_approval",
        "pending",
    ];
    let mut counts: Vec<(String, usize)> = ORDER.iter().map(|s| (s.to_string(), 0)).collect();
    for item in items {
        match counts.iter_mut().find(|(s, _)| *s == item.outcome.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((item.outcome.status.clone(), 1)),
        }
    }
    let mut text = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(" · ");
    let failed: Vec<&Item> = items
        .iter()
        .filter(|i| i.outcome.status == "failed")
        .collect();
    for item in failed.iter().take(FAILED_ITEMS_SHOWN) {
        let error = error_text(
            item.outcome.error_code.as_deref(),
            item.outcome.error.as_deref(),
        )
        .unwrap_or_else(|| "failed".into());
        let _ = write!(text, "\nitem {}: {error}", item.index);
    }
    if failed.len() > FAILED_ITEMS_SHOWN {
        let _ = write!(
            text,
            "\n… {} more failed item(s) (use --json)",
            failed.len() - FAILED_ITEMS_SHOWN
        );
    }
    text
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
}

/// Compact JSON when it is short, else pretty-printed; cut at 20 lines. A string (an agent's
/// unparsed reply) is shown as its text.
fn block_json(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        _ => {
            let compact = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
            if compact.chars().count() <= COMPACT_JSON_MAX {
                return compact;
            }
            pretty(value)
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= JSON_MAX_LINES {
        return text;
    }
    let mut cut = lines[..JSON_MAX_LINES].join("\n");
    cut.push_str("\n… (truncated; use --json)");
    cut
}

/// `RUN ID  WORKFLOW  STATUS  STARTED  DURATION`, in server order.
pub fn run_list(runs: &[Run], style: Style) -> String {
    let rows = runs
        .iter()
        .map(|r| {
            let started = r
                .started_at
                .as_deref()
                .map_or_else(|| MISSING.to_string(), format::local_time);
            let duration = if is_terminal(&r.status) {
                format::between(
                    r.started_at.as_deref().or(r.created_at.as_deref()),
                    r.completed_at.as_deref(),
                )
                .map_or_else(|| MISSING.to_string(), format::duration)
            } else {
                MISSING.to_string()
            };
            vec![
                Cell::from(r.id.as_str()),
                Cell::from(r.workflow_name.as_str()),
                Cell::status(r.status.as_str()),
                Cell::from(started),
                Cell::from(duration),
            ]
        })
        .collect();
    format::table(
        &["run id", "workflow", "status", "started", "duration"],
        rows,
        style,
    )
}

/// `RUN ID  STEP  TOOL  TOOL USE ID  WAITING  EXPIRES` (plus `STATUS` when listing decided
/// approvals too).
pub fn approval_list(approvals: &[Approval], with_status: bool, style: Style) -> String {
    let rows = approvals
        .iter()
        .map(|a| {
            let pending = a.status == "pending";
            let waiting = if pending {
                a.created_at.as_deref().and_then(format::since)
            } else {
                format::between(a.created_at.as_deref(), a.decided_at.as_deref())
            };
            let expires = match (&a.expires_at, pending) {
                (Some(at), true) => format::until(at).map(|left| {
                    let behaviour = a.timeout_behavior.as_deref().unwrap_or("reject");
                    format!("{} → {behaviour}", format::duration(left))
                }),
                _ => None,
            };
            let mut row = vec![
                Cell::from(a.run_id.as_str()),
                Cell::from(a.step_id.as_str()),
                Cell::from(a.tool_name.as_str()),
                Cell::from(a.tool_use_id.as_str()),
            ];
            if with_status {
                row.push(Cell::status(a.status.as_str()));
            }
            row.push(Cell::from(
                waiting.map_or_else(|| MISSING.to_string(), format::duration),
            ));
            row.push(Cell::from(expires.unwrap_or_else(|| MISSING.to_string())));
            row
        })
        .collect();
    let mut header = vec!["run id", "step", "tool", "tool use id"];
    if with_status {
        header.push("status");
    }
    header.extend(["waiting", "expires"]);
    format::table(&header, rows, style)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const PLAIN: Style = Style { enabled: false };

    fn doc(value: Value) -> RunDoc {
        serde_json::from_value(value).unwrap()
    }

    fn metrics(ms: u64, tin: u64, tout: u64, cost: f64, calls: u64) -> Value {
        json!({"duration_ms": ms, "tokens_in": tin, "tokens_out": tout, "cost_usd": cost, "llm_calls": calls, "tool_calls": 0})
    }

    #[test]
    fn completed_run_shows_table_and_output() {
        let d = doc(json!({
            "run": {"id": "run_4f2a9c1e7b3d5a60", "workflow_name": "hello", "status": "complete",
                    "created_at": "2026-04-28T10:15:02.100000Z",
                    "started_at": "2026-04-28T10:15:02.100000Z",
                    "completed_at": "2026-04-28T10:15:02.148000Z",
                    "output": {"greet": {"greeting": "Hello, Ada!"}},
                    "totals": metrics(41, 52, 14, 0.0, 1)},
            "steps": [{"id": "greet", "type": "agent", "status": "complete", "attempt": 1,
                       "started_at": "2026-04-28T10:15:02.101000Z", "ended_at": "2026-04-28T10:15:02.142000Z",
                       "output": {"greeting": "Hello, Ada!"}, "metrics": metrics(41, 52, 14, 0.0, 1)}]
        }));
        let text = run_record(&d, PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Run       run_4f2a9c1e7b3d5a60  hello  complete");
        assert!(lines[1].starts_with("Started   2026-04-2"), "{}", lines[1]);
        assert!(lines[1].ends_with(" (took 48ms)"), "{}", lines[1]);
        assert_eq!(lines[2], "Totals    1 LLM call · 52/14 tokens · $0.000000");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "STEP   TYPE   STATUS    DURATION  TOKENS  COST");
        assert_eq!(
            lines[5],
            "greet  agent  complete  41ms      52/14   $0.000000"
        );
        assert_eq!(lines[6], "");
        assert_eq!(lines[7], "Output");
        assert_eq!(
            lines[8..].join("\n"),
            "{\n  \"greet\": {\n    \"greeting\": \"Hello, Ada!\"\n  }\n}"
        );
    }

    #[test]
    fn failed_run_explains_each_step() {
        let d = doc(json!({
            "run": {"id": "run_77d0e1c2b3a4f596", "workflow_name": "triage", "status": "failed",
                    "started_at": "2026-04-28T11:02:10.000000Z", "completed_at": "2026-04-28T11:02:12.400000Z",
                    "error_code": "webhook_failed", "error": "webhook POST https://h.example/t returned status 500 after 3 attempt(s)",
                    "failed_step": "notify", "totals": metrics(2403, 1840, 210, 0.00213, 2)},
            "steps": [
              {"id": "classify", "type": "agent", "status": "complete", "attempt": 1,
               "started_at": "2026-04-28T11:02:10.000000Z", "ended_at": "2026-04-28T11:02:11.900000Z",
               "output": {"category": "billing", "urgency": "low"}, "flags": ["low_risk", "billing"],
               "rationale": "Duplicate charge; no urgency words.", "metrics": metrics(1900, 1840, 210, 0.00213, 2)},
              {"id": "notify", "type": "webhook", "status": "failed", "attempt": 1,
               "started_at": "2026-04-28T11:02:11.900000Z", "ended_at": "2026-04-28T11:02:12.403000Z",
               "error_code": "webhook_failed", "error": "webhook POST https://h.example/t returned status 500 after 3 attempt(s)",
               "metrics": metrics(503, 0, 0, 0.0, 0)},
              {"id": "archive", "type": "agent", "status": "cancelled", "attempt": 0,
               "error_code": "cancelled", "error": "cancelled: run failed", "metrics": metrics(0, 0, 0, 0.0, 0)},
              {"id": "check", "type": "agent", "status": "failed", "attempt": 2,
               "started_at": "2026-04-28T11:02:10.000000Z", "ended_at": "2026-04-28T11:02:11.000000Z",
               "error_code": "airlock_violation", "error": "air-lock: output of step \"check\" failed",
               "raw_output": {"categry": "x"},
               "airlock": {"violations": [{"schema": "agent", "pointer": "/category", "keyword": "required", "message": "missing required property \"category\""},
                                          {"schema": "agent", "pointer": "", "keyword": "type", "message": "bad"}]},
               "metrics": metrics(1000, 10, 5, 0.0, 1)},
              {"id": "later", "type": "transform", "status": "skipped", "skip_reason": "dependency_skipped",
               "skip_message": "check", "metrics": metrics(0, 0, 0, 0.0, 0)}
            ]
        }));
        let text = run_record(&d, PLAIN);
        assert!(
            text.contains("Totals    2 LLM calls · 1840/210 tokens · $0.002130\n"),
            "{text}"
        );
        assert!(text.contains("Error     webhook_failed: webhook POST https://h.example/t returned status 500 after 3 attempt(s)  (step notify)\n"), "{text}");
        assert!(
            text.contains("STEP      TYPE       STATUS     DURATION  TOKENS    COST\n"),
            "{text}"
        );
        assert!(
            text.contains("classify  agent      complete   1.9s      1840/210  $0.002130\n"),
            "{text}"
        );
        assert!(
            text.contains("notify    webhook    failed     503ms     -         -\n"),
            "{text}"
        );
        assert!(
            text.contains("archive   agent      cancelled  -         -         -\n"),
            "{text}"
        );
        let blocks = text.split("\n\n").nth(2).unwrap();
        assert_eq!(
            blocks,
            "classify\n  flags      low_risk, billing\n  rationale  Duplicate charge; no urgency words.\n  output     {\"category\":\"billing\",\"urgency\":\"low\"}\n\
             notify\n  error      webhook_failed: webhook POST https://h.example/t returned status 500 after 3 attempt(s)\n\
             check\n  error      airlock_violation: air-lock: output of step \"check\" failed\n  violations /category: missing required property \"category\"\n             (root): bad\n  attempts   2\n  raw output {\"categry\":\"x\"}\n\
             later\n  skipped    dependency_skipped: check\n"
        );
        assert!(!text.contains("Output\n"), "{text}");
    }

    #[test]
    fn fanout_items_child_runs_and_long_outputs() {
        let big: Vec<Value> = (0..40)
            .map(|i| json!({"n": i, "text": "abcdefghij"}))
            .collect();
        let d = doc(json!({
            "run": {"id": "run_1", "workflow_name": "w", "status": "running",
                    "parent_run_id": "run_0", "parent_step_id": "sub", "totals": metrics(0, 0, 0, 0.0, 0)},
            "steps": [
              {"id": "score", "type": "agent", "status": "complete",
               "started_at": "2026-04-28T11:02:10.000000Z", "ended_at": "2026-04-28T11:02:11.000000Z",
               "output": {"results": big}, "metrics": metrics(1000, 0, 0, 0.0, 0),
               "items": [{"index": 0, "status": "complete"}, {"index": 1, "status": "failed", "error_code": "low_quality", "error": "low quality output"},
                         {"index": 2, "status": "complete"}]},
              {"id": "archive", "type": "workflow", "status": "running", "child_run_id": "run_1.archive",
               "started_at": "2026-04-28T11:02:11.000000Z"}
            ]
        }));
        let text = run_record(&d, PLAIN);
        assert!(text.contains("Parent    run_0  (step sub)\n"), "{text}");
        assert!(text.contains("Created   - (waiting to start)\n"), "{text}");
        assert!(
            text.contains("  items      2 complete · 1 failed\n             item 1: low_quality: low quality output\n"),
            "{text}"
        );
        assert!(
            text.contains("archive\n  child      run_1.archive\n"),
            "{text}"
        );
        assert!(
            text.contains("  output     {\n               \"results\": [\n"),
            "{text}"
        );
        assert!(
            text.contains("             … (truncated; use --json)\n"),
            "{text}"
        );
        let output_lines = text
            .lines()
            .skip_while(|l| !l.starts_with("  output"))
            .take_while(|l| !l.contains("truncated"))
            .count();
        assert_eq!(output_lines, 20);
    }

    #[test]
    fn run_and_approval_lists() {
        let runs: Vec<Run> = serde_json::from_value(json!([
            {"id": "run_a", "workflow_name": "hello", "status": "complete",
             "started_at": "2026-04-28T10:15:02.100000Z", "completed_at": "2026-04-28T10:15:14.400000Z"},
            {"id": "run_b.enr", "workflow_name": "enrich", "status": "running",
             "started_at": "2026-04-28T10:11:41.000000Z"},
            {"id": "run_c", "workflow_name": "x", "status": "pending"}
        ]))
        .unwrap();
        let text = run_list(&runs, PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "RUN ID     WORKFLOW  STATUS    STARTED              DURATION"
        );
        assert!(
            lines[1].starts_with("run_a      hello     complete  2026-04-2"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("  12.3s"), "{}", lines[1]);
        assert!(lines[2].ends_with("  -"), "{}", lines[2]);
        assert_eq!(
            lines[3],
            "run_c      x         pending   -                    -"
        );

        let now = jiff::Timestamp::now();
        let created = now - jiff::SignedDuration::from_secs(134);
        let expires = now + jiff::SignedDuration::from_secs(1666);
        let approvals: Vec<Approval> = serde_json::from_value(json!([
            {"run_id": "run_a", "step_id": "cleanup", "tool_name": "delete-user", "tool_use_id": "toolu_01A9",
             "status": "pending", "timeout_behavior": "reject", "created_at": created.to_string(),
             "expires_at": expires.to_string()},
            {"run_id": "run_b", "step_id": "x.2", "tool_name": "t", "tool_use_id": "toolu_2", "status": "pending"}
        ]))
        .unwrap();
        let text = approval_list(&approvals, false, PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "RUN ID  STEP     TOOL         TOOL USE ID  WAITING  EXPIRES"
        );
        assert!(
            lines[1].starts_with("run_a   cleanup  delete-user  toolu_01A9   "),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(" → reject"), "{}", lines[1]);
        assert!(lines[2].ends_with("-        -"), "{}", lines[2]);
        assert!(approval_list(&approvals, true, PLAIN)
            .starts_with("RUN ID  STEP     TOOL         TOOL USE ID  STATUS   WAITING"));
    }
}
