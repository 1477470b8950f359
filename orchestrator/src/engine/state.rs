//! The run state machine: the records of one run in memory, the change tracking that turns a
//! transition into one [`ChangeSet`], and the event dispatch.

use super::{EngineConfig, Event, Outcome, Reply};
use crate::model::{
    ApprovalRecord, ItemRecord, NewEvent, RunRecord, RunStatus, StepRecord, StepStatus, StepType,
    Totals,
};
use crate::snapshot::WorkflowPlan;
use crate::store::{ChangeSet, NewRun};
use ktsu_shared::project::{ModelPolicy, StepKind};
use ktsu_shared::secret::Scrubber;
use ktsu_shared::time::Timestamp;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What a run needs besides its records: the plan and the in-memory (unredacted) inputs.
#[derive(Debug, Clone)]
pub struct RunInputs {
    pub plan: Arc<WorkflowPlan>,
    /// The root workflow's `model_policy` (it governs the whole tree).
    pub root_policy: Option<ModelPolicy>,
    /// The run's params with real secret values (never stored).
    pub params: Value,
    /// Declared env values (root runs only).
    pub env: Option<Arc<HashMap<String, String>>>,
    /// The root run's deadline (a sub-run's dispatches are bounded by it too).
    pub root_deadline: Option<Timestamp>,
    /// Whether webhook steps of this run execute (the dual opt-in at every boundary).
    pub webhooks_enabled: bool,
    /// The run's secret set; resolved secret agent/server params are added at dispatch.
    pub scrubber: Scrubber,
    pub config: Arc<EngineConfig>,
}

/// Records touched by the current event.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    pub run: bool,
    pub steps: BTreeSet<usize>,
    pub items: BTreeSet<(usize, u32)>,
    pub approvals: BTreeSet<usize>,
    pub checkpoints: Vec<(String, Option<Value>)>,
    pub children: Vec<NewRun>,
    pub events: Vec<NewEvent>,
}

/// One run's state.
#[derive(Debug)]
pub struct RunState {
    pub(super) inputs: RunInputs,
    pub run: RunRecord,
    /// Step records aligned with `plan.dag` (pipeline order).
    pub steps: Vec<StepRecord>,
    pub approvals: Vec<ApprovalRecord>,
    /// Conversation checkpoints by step address.
    pub checkpoints: HashMap<String, Value>,
    pub(super) now: Timestamp,
    pub(super) dirty: Dirty,
    pub(super) effects: Vec<super::Effect>,
}

/// The step type of a pipeline step.
pub(super) fn step_type(kind: &StepKind) -> StepType {
    match kind {
        StepKind::Agent(_) => StepType::Agent,
        StepKind::Transform(_) => StepType::Transform,
        StepKind::Webhook(_) => StepType::Webhook,
        StepKind::Workflow(_) => StepType::Workflow,
    }
}

/// The records of a new run: the run (`pending`) and one `pending` record per DAG step, with
/// the effective dependencies (orchestrator.md §2.5 step 10, §5.6 step 3).
pub fn initial_records(plan: &WorkflowPlan, run: RunRecord) -> (RunRecord, Vec<StepRecord>) {
    let now = run.created_at;
    let steps = plan
        .dag
        .iter()
        .enumerate()
        .map(|(pos, pipeline_index)| {
            let step = &plan.workflow.pipeline[*pipeline_index];
            StepRecord::pending(
                &run.id,
                &step.id.value,
                step_type(&step.kind),
                u32::try_from(pos).unwrap_or(u32::MAX),
                plan.deps[pos]
                    .iter()
                    .map(|d| plan.dag_step(*d).id.value.clone())
                    .collect(),
                now,
            )
        })
        .collect();
    (run, steps)
}

impl RunState {
    /// A run from its stored records (new or recovered).
    pub fn new(
        inputs: RunInputs,
        run: RunRecord,
        steps: Vec<StepRecord>,
        approvals: Vec<ApprovalRecord>,
        checkpoints: HashMap<String, Value>,
    ) -> RunState {
        let now = run.updated_at;
        RunState {
            inputs,
            run,
            steps,
            approvals,
            checkpoints,
            now,
            dirty: Dirty::default(),
            effects: Vec::new(),
        }
    }

    pub fn plan(&self) -> &Arc<WorkflowPlan> {
        &self.inputs.plan
    }

    pub fn inputs(&self) -> &RunInputs {
        &self.inputs
    }

    /// The run's secret set (grows as dispatches resolve secret agent and server params).
    pub fn scrubber(&self) -> &Scrubber {
        &self.inputs.scrubber
    }

    pub fn is_finished(&self) -> bool {
        self.run.status.is_terminal()
    }

    /// Processes one event at time `now`.
    pub fn apply(&mut self, event: Event, now: Timestamp) -> Outcome {
        self.now = now;
        let reply = match event {
            Event::Start => {
                self.start_run();
                None
            }
            Event::Recover => {
                self.recover();
                None
            }
            Event::Callback {
                address,
                attempt,
                payload,
            } => Some(match self.locate(&address) {
                Some((pos, Some(index)))
                    if self.item(pos, index).is_none() && self.steps[pos].items.is_some() =>
                {
                    Reply::UnknownStep
                }
                Some(_) => Reply::Callback(self.on_callback(&address, attempt, *payload)),
                None => Reply::UnknownStep,
            }),
            Event::Dispatched {
                address,
                attempt,
                runtime_id,
                runtime_url,
            } => {
                self.on_dispatched(&address, attempt, runtime_id, &runtime_url);
                None
            }
            Event::DispatchFailed {
                address,
                attempt,
                code,
                error,
            } => {
                self.on_attempt_failed(&address, attempt, &code, error);
                None
            }
            Event::HeartbeatLost { address, attempt } => {
                self.on_heartbeat_lost(&address, attempt);
                None
            }
            Event::WebhookDone {
                step_id,
                attempt,
                result,
            } => {
                self.on_webhook_done(&step_id, attempt, result);
                None
            }
            Event::ChildFinished { step_id, outcome } => {
                self.on_child_finished(&step_id, outcome);
                None
            }
            Event::TimerFired(timer) => {
                self.on_timer(timer);
                None
            }
            Event::Decide {
                address,
                tool_use_id,
                approved,
                comment,
                decided_by,
            } => Some(Reply::Decide(self.on_decide(
                &address,
                tool_use_id.as_deref(),
                approved,
                comment,
                decided_by,
            ))),
            Event::Cancel { reason } => Some(Reply::Cancel(self.on_cancel(reason))),
        };
        if self.run.status == RunStatus::Running {
            self.schedule();
        }
        self.take_outcome(reply)
    }

    /// Builds the change set of everything marked dirty.
    fn take_outcome(&mut self, reply: Option<Reply>) -> Outcome {
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = ChangeSet::default();
        if !dirty.steps.is_empty() || !dirty.items.is_empty() {
            self.run.totals = Totals::of(self.steps.iter().map(|s| &s.metrics));
        }
        let touched = dirty.run
            || !dirty.steps.is_empty()
            || !dirty.items.is_empty()
            || !dirty.approvals.is_empty()
            || !dirty.children.is_empty()
            || !dirty.checkpoints.is_empty()
            || !dirty.events.is_empty();
        if touched {
            self.run.updated_at = self.now;
            changes.run = Some(self.run.clone());
        }
        changes.steps = dirty
            .steps
            .iter()
            .map(|pos| StepRecord {
                items: None,
                ..self.steps[*pos].clone()
            })
            .collect();
        changes.items = dirty
            .items
            .iter()
            .filter_map(|(pos, index)| {
                let step = &self.steps[*pos];
                let item = step.items.as_ref()?.get(*index as usize)?;
                Some((step.id.clone(), item.clone()))
            })
            .collect();
        changes.approvals = dirty
            .approvals
            .iter()
            .filter_map(|i| self.approvals.get(*i).cloned())
            .collect();
        changes.children = dirty.children;
        changes.checkpoints = dirty.checkpoints;
        changes.events = dirty.events;
        Outcome {
            changes,
            effects: std::mem::take(&mut self.effects),
            reply,
        }
    }

    // ---- small helpers shared by the transition modules --------------------------------

    pub(super) fn touch_run(&mut self) {
        self.dirty.run = true;
    }

    /// Marks a step record as changed and returns it.
    pub(super) fn step_mut(&mut self, pos: usize) -> &mut StepRecord {
        self.dirty.steps.insert(pos);
        let now = self.now;
        let step = &mut self.steps[pos];
        step.updated_at = now;
        step
    }

    /// Marks an item record as changed and returns it.
    pub(super) fn item_mut(&mut self, pos: usize, index: u32) -> Option<&mut ItemRecord> {
        self.dirty.items.insert((pos, index));
        self.dirty.steps.insert(pos);
        let now = self.now;
        let item = self.steps[pos].items.as_mut()?.get_mut(index as usize)?;
        item.updated_at = now;
        Some(item)
    }

    pub(super) fn item(&self, pos: usize, index: u32) -> Option<&ItemRecord> {
        self.steps[pos].items.as_ref()?.get(index as usize)
    }

    pub(super) fn emit(&mut self, event: impl Into<String>, data: Value) {
        let mut data = data;
        self.inputs.scrubber.scrub_value(&mut data);
        self.dirty.events.push(NewEvent {
            ts: self.now,
            event: event.into(),
            data,
        });
    }

    pub(super) fn effect(&mut self, effect: super::Effect) {
        self.effects.push(effect);
    }

    /// Position in the DAG of a step id.
    pub(super) fn position(&self, step_id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == step_id)
    }

    /// Parses a step address into (DAG position, item index).
    pub(super) fn locate(&self, address: &str) -> Option<(usize, Option<u32>)> {
        let parsed = ktsu_shared::ids::StepAddress::parse(address).ok()?;
        let pos = self.position(&parsed.step_id)?;
        Some((pos, parsed.index))
    }

    /// The pipeline step of a DAG position.
    pub(super) fn def(&self, pos: usize) -> &ktsu_shared::project::Step {
        self.inputs.plan.dag_step(pos)
    }

    /// Scrubs a value with the run's secret set.
    pub(super) fn scrub(&self, mut value: Value) -> Value {
        self.inputs.scrubber.scrub_value(&mut value);
        value
    }

    pub(super) fn scrub_text(&self, text: &str) -> String {
        self.inputs.scrubber.scrub_str(text).into_owned()
    }

    /// Number of steps of the run in `running` (the parallelism limit's count).
    pub(super) fn running_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Running)
            .count()
    }

    /// `step_id` and its item suffix as one address string.
    pub(super) fn address(&self, pos: usize, index: Option<u32>) -> String {
        match index {
            Some(i) => format!("{}.{i}", self.steps[pos].id),
            None => self.steps[pos].id.clone(),
        }
    }

    /// `ended_at − started_at` in milliseconds.
    pub(super) fn elapsed_ms(&self, started: Option<Timestamp>) -> u64 {
        started.map_or(0, |s| {
            u64::try_from(self.now.duration_since(s).as_millis()).unwrap_or(u64::MAX)
        })
    }
}
