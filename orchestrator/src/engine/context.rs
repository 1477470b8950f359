//! Evaluation contexts (orchestrator.md §5.1): `params`, `env` (root runs), `step.<id>` as
//! stored (scrubbed) so that evaluation is the same before and after a restart, plus `item`,
//! `item_index` and `approval` where they apply.

use super::RunState;
use crate::model::{StepRecord, StepStatus};
use ktsu_shared::template::Context;
use serde_json::{json, Map, Value};

/// The skip record of a skipped step or item (orchestrator.md §3.4).
pub(super) fn skip_record(reason: &str, message: Option<&str>) -> Value {
    let mut record = Map::new();
    record.insert("skipped".into(), Value::Bool(true));
    record.insert("reason".into(), Value::String(reason.to_string()));
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        record.insert("message".into(), Value::String(m.to_string()));
    }
    if reason == "suppressed" {
        record.insert("suppressed".into(), Value::Bool(true));
    }
    Value::Object(record)
}

/// `step.<id>` of a step: its output when complete, its skip record when skipped, else null.
pub(super) fn visible_output(step: &StepRecord) -> Value {
    match step.status {
        StepStatus::Complete => step.output.clone().unwrap_or(Value::Null),
        StepStatus::Skipped => skip_record(
            step.skip_reason.as_deref().unwrap_or(""),
            step.skip_message.as_deref(),
        ),
        _ => Value::Null,
    }
}

impl RunState {
    /// The `step` namespace: every finished step's visible output by id.
    pub(super) fn step_namespace(&self) -> Value {
        let mut map = Map::new();
        for step in &self.steps {
            if matches!(step.status, StepStatus::Complete | StepStatus::Skipped) {
                map.insert(step.id.clone(), visible_output(step));
            }
        }
        Value::Object(map)
    }

    fn env_namespace(&self) -> Option<Value> {
        self.inputs.env.as_ref().map(|env| {
            Value::Object(
                env.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )
        })
    }

    /// The step context: params, env (root runs) and step, plus `extra` namespaces.
    pub(super) fn context(&self, extra: Vec<(&str, Value)>) -> Context {
        let mut ns: Vec<(&str, Value)> = vec![
            ("params", self.inputs.params.clone()),
            ("step", self.step_namespace()),
        ];
        if let Some(env) = self.env_namespace() {
            ns.push(("env", env));
        }
        ns.extend(extra);
        Context::from_namespaces(ns)
    }

    /// The context of one fan-out item.
    pub(super) fn item_context(&self, base: &Context, item: &Value, index: u32) -> Context {
        base.with_namespace("item", item.clone())
            .with_namespace("item_index", json!(index))
    }
}
