//! The RunManager (orchestrator.md §4.4, §9): run id → RunActor, the pending-run queue and the
//! active-run count, on-demand actors (recovery, or a callback for a run without one), sub-run
//! starts, waiters of `?wait=`, and routing of every message to its run.

use super::run::{Apply, ApplyError, RunActor};
use super::supervisor::StepSupervisor;
use crate::engine::{ChildOutcome, EngineConfig, Event, Reply, RunInputs, RunState};
use crate::model::{RunRecord, RunStatus};
use crate::snapshot::Snapshot;
use crate::steps::agent::BudgetInfo;
use crate::steps::Outbound;
use crate::store::{ChangeSet, Store};
use actix::prelude::*;
use ktsu_shared::secret::Scrubber;
use ktsu_shared::time::Timestamp;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const TARGET: &str = "ktsu_orchestrator::actors::manager";

/// The current project snapshot, swapped atomically on reload.
pub type SharedSnapshot = Arc<RwLock<Arc<Snapshot>>>;

/// Reads the current snapshot (a poisoned lock still holds a valid snapshot).
pub fn current(snapshot: &SharedSnapshot) -> Arc<Snapshot> {
    match snapshot.read() {
        Ok(g) => Arc::clone(&g),
        Err(p) => Arc::clone(&p.into_inner()),
    }
}

pub struct RunManager {
    store: Store,
    snapshot: SharedSnapshot,
    config: Arc<EngineConfig>,
    supervisor: Option<Addr<StepSupervisor>>,
    out: Option<Outbound>,
    /// Builds the outbound clients on this actor's arbiter (awc clients are thread-bound).
    make_out: Box<dyn Fn() -> Option<Outbound>>,
    runs: HashMap<String, Addr<RunActor>>,
    /// Root runs waiting for a slot, in creation order.
    queue: VecDeque<String>,
    active_roots: usize,
    max_active: usize,
    /// Recovered runs wait until the listener is bound (orchestrator.md §1.2 step 7–8).
    held: Vec<String>,
    releasing: bool,
    waiters: HashMap<String, Vec<futures_channel::oneshot::Sender<()>>>,
    draining: Arc<AtomicBool>,
}

impl RunManager {
    pub fn new(
        store: Store,
        snapshot: SharedSnapshot,
        config: Arc<EngineConfig>,
        max_active: usize,
        make_out: Box<dyn Fn() -> Option<Outbound>>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        RunManager {
            store,
            snapshot,
            config,
            supervisor: None,
            out: None,
            make_out,
            runs: HashMap::new(),
            queue: VecDeque::new(),
            active_roots: 0,
            max_active,
            held: Vec::new(),
            releasing: false,
            waiters: HashMap::new(),
            draining,
        }
    }

    fn spawn(
        &mut self,
        state: RunState,
        budget: Option<BudgetInfo>,
        ctx: &mut Context<Self>,
    ) -> Option<Addr<RunActor>> {
        let (out, supervisor) = (self.out.clone()?, self.supervisor.clone()?);
        let id = state.run.id.clone();
        let actor = RunActor::new(
            state,
            self.store.clone(),
            out,
            ctx.address(),
            supervisor,
            budget,
            Arc::clone(&self.draining),
        )
        .start();
        self.runs.insert(id, actor.clone());
        Some(actor)
    }

    /// Starts queued root runs while slots are free (`KTSU_MAX_ACTIVE_RUNS`, 0 = unlimited).
    fn admit(&mut self) {
        if self.draining.load(Ordering::Acquire) || !self.releasing {
            return;
        }
        while self.max_active == 0 || self.active_roots < self.max_active {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            if let Some(actor) = self.runs.get(&id) {
                self.active_roots += 1;
                actor.do_send(Apply(Event::Start));
            }
        }
    }

    fn budget_of(run: &RunRecord) -> Option<BudgetInfo> {
        run.budget_usd
            .filter(|b| *b > 0.0)
            .map(|limit_usd| BudgetInfo {
                root_run_id: run.root_run_id.clone(),
                limit_usd,
            })
    }

    /// The secret set of a run: the snapshot's secret env values plus the secret params.
    fn scrubber_for(snapshot: &Snapshot, secret_params: &[String], params: &Value) -> Scrubber {
        let mut values = snapshot.secrets.clone();
        for p in secret_params {
            if let Some(v) = params.get(p).and_then(Value::as_str) {
                values.push(v.to_string());
            }
        }
        Scrubber::new(values)
    }

    /// Rebuilds a stored run's state; `Err((code, text))` when it cannot resume.
    fn rebuild(
        &self,
        full: crate::model::RunFull,
        parent: Option<&RunInputs>,
    ) -> Result<(RunState, Option<BudgetInfo>), (String, String)> {
        let snapshot = current(&self.snapshot);
        let run = full.run;
        let (inputs, budget) = match (&run.parent_run_id, parent) {
            (None, _) => {
                let Some((file, plan)) = snapshot.root_plan_by_name(&run.workflow_name) else {
                    return Err(("recovery_failed".into(), format!("run cannot resume after restart: workflow \"{}\" is not in the project", run.workflow_name)));
                };
                if !plan.secret_params.is_empty() {
                    return Err((
                        "secret_params_lost".into(),
                        "run cannot resume after restart: its secret params were never stored"
                            .into(),
                    ));
                }
                let plan = Arc::clone(plan);
                let inputs = RunInputs {
                    root_policy: plan.workflow.model_policy.clone(),
                    params: run.payload.clone(),
                    env: snapshot.env.get(&file).cloned(),
                    root_deadline: run.deadline_at,
                    webhooks_enabled: true,
                    scrubber: Self::scrubber_for(&snapshot, &plan.secret_params, &run.payload),
                    config: Arc::clone(&self.config),
                    plan,
                };
                (inputs, Self::budget_of(&run))
            }
            (Some(_), Some(parent)) => {
                let step_id = run.parent_step_id.clone().unwrap_or_default();
                let Some(child) = parent
                    .plan
                    .dag_position(&step_id)
                    .and_then(|p| parent.plan.children.get(&parent.plan.dag[p]))
                    .cloned()
                else {
                    return Err(("recovery_failed".into(), format!("run cannot resume after restart: step \"{step_id}\" of its parent is not a sub-workflow step")));
                };
                if !child.secret_params.is_empty() {
                    return Err((
                        "secret_params_lost".into(),
                        "run cannot resume after restart: its secret params were never stored"
                            .into(),
                    ));
                }
                let inputs = RunInputs {
                    root_policy: parent.root_policy.clone(),
                    params: run.payload.clone(),
                    env: None,
                    root_deadline: parent.root_deadline,
                    webhooks_enabled: parent.webhooks_enabled
                        && parent.plan.workflow.step(&step_id).is_some_and(|s| matches!(&s.kind, ktsu_shared::project::StepKind::Workflow(w) if w.webhooks == ktsu_shared::project::WebhookMode::Execute))
                        && child.workflow.webhooks == ktsu_shared::project::WebhookMode::Execute,
                    scrubber: parent.scrubber.clone(),
                    config: Arc::clone(&self.config),
                    plan: child,
                };
                (inputs, None)
            }
            (Some(_), None) => {
                return Err((
                    "recovery_failed".into(),
                    "run cannot resume after restart: its parent run could not be recovered".into(),
                ));
            }
        };
        Ok((
            RunState::new(inputs, run, full.steps, Vec::new(), HashMap::new()),
            budget,
        ))
    }

    fn notify_waiters(&mut self, run_id: &str) {
        if let Some(list) = self.waiters.remove(run_id) {
            for w in list {
                let _ = w.send(());
            }
        }
    }
}

impl Actor for RunManager {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.out = (self.make_out)();
        if self.out.is_none() {
            log::error!(target: TARGET, event = "orchestrator.client_failed"; "cannot build the outbound HTTP clients");
        }
    }
}

/// Connects the supervisor (created after the manager, which it reports to).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetSupervisor(pub Addr<StepSupervisor>);

impl Handler<SetSupervisor> for RunManager {
    type Result = ();
    fn handle(&mut self, msg: SetSupervisor, _: &mut Context<Self>) {
        self.supervisor = Some(msg.0);
    }
}

/// A new root run (already created in the store): queue it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Admit {
    pub state: Box<RunState>,
}

impl Handler<Admit> for RunManager {
    type Result = ();
    fn handle(&mut self, msg: Admit, ctx: &mut Context<Self>) {
        let budget = Self::budget_of(&msg.state.run);
        let id = msg.state.run.id.clone();
        if self.spawn(*msg.state, budget, ctx).is_some() {
            self.queue.push_back(id);
            self.admit();
        }
    }
}

/// Queue length and active count (invoke's 429 check).
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
pub struct QueueStatus;

impl Handler<QueueStatus> for RunManager {
    type Result = MessageResult<QueueStatus>;
    fn handle(&mut self, _: QueueStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.queue.len(), self.active_roots))
    }
}

/// Why a message could not reach its run.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// No such run.
    NotFound,
    /// The run is terminal: its record.
    Finished(Box<RunRecord>),
    /// The RunActor did not answer within 10 s (503 `busy`).
    Busy,
    Store(String),
}

/// Delivers an event to a run's actor (starting one on demand for a non-terminal run).
#[derive(Message)]
#[rtype(result = "Result<Option<Reply>, RouteError>")]
pub struct Route {
    pub run_id: String,
    pub event: Event,
}

impl Handler<Route> for RunManager {
    type Result = ResponseActFuture<Self, Result<Option<Reply>, RouteError>>;

    fn handle(&mut self, msg: Route, _: &mut Context<Self>) -> Self::Result {
        let send = |actor: Addr<RunActor>, event: Event| async move {
            match actor
                .send(Apply(event))
                .timeout(Duration::from_secs(10))
                .await
            {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(ApplyError::Store(e))) => Err(RouteError::Store(e.to_string())),
                Err(MailboxError::Timeout) => Err(RouteError::Busy),
                Err(MailboxError::Closed) => Err(RouteError::Store("run actor stopped".into())),
            }
        };
        if let Some(actor) = self.runs.get(&msg.run_id).cloned() {
            return Box::pin(send(actor, msg.event).into_actor(self));
        }
        let store = self.store.clone();
        let run_id = msg.run_id.clone();
        Box::pin(
            async move { store.get_run_full(&run_id).await }
                .into_actor(self)
                .then(move |res, act, ctx| {
                    let result: Result<Option<Addr<RunActor>>, RouteError> = match res {
                        Err(e) => Err(RouteError::Store(e.to_string())),
                        Ok(None) => Err(RouteError::NotFound),
                        Ok(Some(full)) if full.run.status.is_terminal() => {
                            Err(RouteError::Finished(Box::new(full.run)))
                        }
                        Ok(Some(full)) => match act.runs.get(&msg.run_id) {
                            Some(a) => Ok(Some(a.clone())),
                            None => {
                                // A live run without an actor (its actor failed to commit):
                                // rebuild it from the store and resume in-flight work.
                                let parent = None;
                                match act.rebuild(full, parent) {
                                    Ok((state, budget)) => {
                                        let actor = act.spawn(state, budget, ctx);
                                        if let Some(a) = &actor {
                                            a.do_send(Apply(Event::Recover));
                                        }
                                        // The recovery above is the event a reload asked for.
                                        if matches!(msg.event, Event::Recover) {
                                            Ok(None)
                                        } else {
                                            Ok(actor)
                                        }
                                    }
                                    Err((_, text)) => Err(RouteError::Store(text)),
                                }
                            }
                        },
                    };
                    let event = msg.event;
                    async move {
                        match result {
                            Ok(Some(actor)) => send(actor, event).await,
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        }
                    }
                    .into_actor(act)
                }),
        )
    }
}

/// A RunActor ended its run.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunEnded {
    pub run: RunRecord,
    pub outcome: ChildOutcome,
}

impl Handler<RunEnded> for RunManager {
    type Result = ();
    fn handle(&mut self, msg: RunEnded, _: &mut Context<Self>) {
        let id = msg.run.id.clone();
        self.runs.remove(&id);
        self.queue.retain(|q| *q != id);
        if msg.run.is_root() {
            // A run cancelled while still queued never held a slot.
            if msg.run.started_at.is_some() {
                self.active_roots = self.active_roots.saturating_sub(1);
            }
        } else if let (Some(parent), Some(step_id)) =
            (&msg.run.parent_run_id, &msg.run.parent_step_id)
        {
            if let Some(actor) = self.runs.get(parent) {
                actor.do_send(Apply(Event::ChildFinished {
                    step_id: step_id.clone(),
                    outcome: msg.outcome,
                }));
            }
        }
        self.notify_waiters(&id);
        self.admit();
    }
}

/// A sub-run created by its parent's commit: start its actor at once (never queued).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChildStart {
    pub parent: Addr<RunActor>,
    pub run_id: String,
    pub params: Value,
    pub webhooks_enabled: bool,
    pub budget: Option<BudgetInfo>,
    /// The parent's inputs (plan, policy, deadline, secret set).
    pub inputs: RunInputs,
}

impl Handler<ChildStart> for RunManager {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: ChildStart, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let id = msg.run_id.clone();
        Box::pin(async move { store.get_run_full(&id).await }.into_actor(self).map(move |res, act, ctx| {
            let Ok(Some(full)) = res else {
                log::error!(target: TARGET, event = "run.child_missing", run_id = msg.run_id.as_str(); "sub-run record not found");
                return;
            };
            let step_id = full.run.parent_step_id.clone().unwrap_or_default();
            let parent = &msg.inputs;
            let Some(plan) = parent
                .plan
                .dag_position(&step_id)
                .and_then(|p| parent.plan.children.get(&parent.plan.dag[p]))
                .cloned()
            else {
                return;
            };
            let inputs = RunInputs {
                root_policy: parent.root_policy.clone(),
                params: msg.params,
                env: None,
                root_deadline: parent.root_deadline,
                webhooks_enabled: msg.webhooks_enabled,
                scrubber: parent.scrubber.clone(),
                config: Arc::clone(&act.config),
                plan,
            };
            let state = RunState::new(inputs, full.run, full.steps, Vec::new(), HashMap::new());
            if let Some(actor) = act.spawn(state, msg.budget, ctx) {
                actor.do_send(Apply(Event::Start));
            }
        }))
    }
}

/// The supervisor saw no heartbeat for an attempt.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HeartbeatLost {
    pub run_id: String,
    pub address: String,
    pub attempt: u32,
    pub timeout_s: u64,
}

impl Handler<HeartbeatLost> for RunManager {
    type Result = ();
    fn handle(&mut self, msg: HeartbeatLost, _: &mut Context<Self>) {
        if let Some(actor) = self.runs.get(&msg.run_id) {
            actor.do_send(Apply(Event::HeartbeatLost {
                address: msg.address,
                attempt: msg.attempt,
            }));
        }
    }
}

/// Resolves when the run is no longer active (`?wait=`).
#[derive(Message)]
#[rtype(result = "Option<futures_channel::oneshot::Receiver<()>>")]
pub struct Wait(pub String);

impl Handler<Wait> for RunManager {
    type Result = Option<futures_channel::oneshot::Receiver<()>>;
    fn handle(&mut self, msg: Wait, _: &mut Context<Self>) -> Self::Result {
        if !self.runs.contains_key(&msg.0) {
            return None;
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        self.waiters.entry(msg.0).or_default().push(tx);
        Some(rx)
    }
}

/// A RunActor could not commit: rebuild it from the store and resume.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload {
    pub run_id: String,
}

impl Handler<Reload> for RunManager {
    type Result = ();
    fn handle(&mut self, msg: Reload, ctx: &mut Context<Self>) {
        self.runs.remove(&msg.run_id);
        // The next message for the run (callback, timer, decision) starts it on demand; a
        // quiet run is resumed now.
        ctx.notify(Route {
            run_id: msg.run_id,
            event: Event::Recover,
        });
    }
}

/// Startup recovery (orchestrator.md §1.2 step 6, §7.7): every pending/running run rebuilt and
/// held until [`Release`].
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct Recover;

impl Handler<Recover> for RunManager {
    type Result = ResponseActFuture<Self, Result<usize, String>>;
    fn handle(&mut self, _: Recover, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(
            async move {
                let runs = store.list_active_runs().await.map_err(|e| e.to_string())?;
                let mut full = Vec::with_capacity(runs.len());
                for r in runs {
                    if let Ok(Some(f)) = store.get_run_full(&r.id).await {
                        let approvals = store.get_approvals(&r.id, None).await.unwrap_or_default();
                        let mut checkpoints = HashMap::new();
                        for s in &f.steps {
                            let mut addresses = vec![s.id.clone()];
                            for i in s.items.iter().flatten() {
                                addresses.push(format!("{}.{}", s.id, i.index));
                            }
                            for a in addresses {
                                if let Ok(Some(c)) = store.get_checkpoint(&r.id, &a).await {
                                    checkpoints.insert(a, c);
                                }
                            }
                        }
                        full.push((f, approvals, checkpoints));
                    }
                }
                Ok(full)
            }
            .into_actor(self)
            .then(|res, act, ctx| {
                let mut failures: Vec<(RunRecord, Vec<crate::model::StepRecord>, String, String)> =
                    Vec::new();
                let count = match res {
                    Err(e) => return actix::fut::ready(Err(e)).into_actor(act).boxed_local(),
                    Ok(list) => {
                        let mut inputs_by_run: HashMap<String, RunInputs> = HashMap::new();
                        let n = list.len();
                        for (full, approvals, checkpoints) in list {
                            let parent = full
                                .run
                                .parent_run_id
                                .as_ref()
                                .and_then(|p| inputs_by_run.get(p));
                            let record = full.run.clone();
                            let steps = full.steps.clone();
                            match act.rebuild(full, parent) {
                                Ok((mut state, budget)) => {
                                    state.approvals = approvals;
                                    state.checkpoints = checkpoints;
                                    inputs_by_run.insert(record.id.clone(), state.inputs().clone());
                                    let id = record.id.clone();
                                    if act.spawn(state, budget, ctx).is_some() {
                                        if record.status == RunStatus::Pending && record.is_root() {
                                            act.queue.push_back(id);
                                        } else {
                                            if record.is_root() {
                                                act.active_roots += 1;
                                            }
                                            act.held.push(id);
                                        }
                                    }
                                }
                                Err((code, text)) => failures.push((record, steps, code, text)),
                            }
                        }
                        n
                    }
                };
                let store = act.store.clone();
                async move {
                    for (run, steps, code, text) in failures {
                        fail_unrecoverable(&store, run, steps, &code, &text).await;
                    }
                    Ok(count)
                }
                .into_actor(act)
                .boxed_local()
            }),
        )
    }
}

/// Fails a run that cannot be rebuilt: unfinished steps cancelled or skipped, one commit.
async fn fail_unrecoverable(
    store: &Store,
    mut run: RunRecord,
    steps: Vec<crate::model::StepRecord>,
    code: &str,
    text: &str,
) {
    use crate::model::StepStatus;
    let now = Timestamp::now();
    let mut changes = ChangeSet::default();
    for mut s in steps {
        match s.status {
            StepStatus::Running | StepStatus::PendingApproval => {
                s.status = StepStatus::Cancelled;
                s.error = Some(format!("cancelled: {text}"));
                s.error_code = Some("cancelled".into());
            }
            StepStatus::Pending => {
                s.status = StepStatus::Skipped;
                s.skip_reason = Some("run_failed".into());
            }
            _ => continue,
        }
        s.ended_at = Some(now);
        s.updated_at = now;
        changes.steps.push(s);
    }
    let version = run.version;
    run.status = RunStatus::Failed;
    run.error = Some(text.to_string());
    run.error_code = Some(code.to_string());
    run.completed_at = Some(now);
    run.updated_at = now;
    changes.events.push(crate::model::NewEvent {
        ts: now,
        event: "run.failed".into(),
        data: serde_json::json!({"workflow": run.workflow_name, "status": "failed", "error": text, "error_code": code}),
    });
    let id = run.id.clone();
    changes.run = Some(run);
    if let Err(e) = store.commit(&id, version, changes).await {
        log::error!(target: TARGET, event = "run.recovery_failed", run_id = id.as_str(), error = e.to_string().as_str(); "cannot record the failed recovery");
    } else {
        log::error!(target: TARGET, event = "run.failed", run_id = id.as_str(), error_code = code, error = text; "run cannot resume after restart");
    }
}

/// Releases held runs (they re-dispatch, re-send, re-arm timers) and starts the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

impl Handler<Release> for RunManager {
    type Result = ();
    fn handle(&mut self, _: Release, _: &mut Context<Self>) {
        self.releasing = true;
        for id in std::mem::take(&mut self.held) {
            if let Some(actor) = self.runs.get(&id) {
                actor.do_send(Apply(Event::Recover));
            }
        }
        self.admit();
    }
}

/// Shutdown: no new run starts; RunActors start no new outbound work.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

impl Handler<Drain> for RunManager {
    type Result = usize;
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> usize {
        self.draining.store(true, Ordering::Release);
        self.runs.len()
    }
}
