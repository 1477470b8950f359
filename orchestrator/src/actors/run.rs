//! The RunActor (orchestrator.md §9): one per non-terminal run, the only committer for its run.
//! It feeds events into the engine, commits the change set (waiting for it, so no later message
//! observes uncommitted state), logs the committed events, then carries out the effects.

use super::manager::{ChildStart, Reload, RunEnded, RunManager};
use super::supervisor::{StepSupervisor, UnwatchStep, WatchStep};
use crate::engine::{ChildOutcome, Effect, Event, Reply, RunState, Timer};
use crate::model::StepMetrics;
use crate::steps::agent::{cancel_notice, dispatch, BudgetInfo};
use crate::steps::webhook::deliver;
use crate::steps::Outbound;
use crate::store::{Store, StoreError};
use actix::prelude::*;
use ktsu_shared::time::Timestamp;
use ktsu_shared::wire::invoke::CancelRequest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const TARGET: &str = "ktsu_orchestrator::actors::run";

/// Why an event could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The commit failed; the actor stops and the run is reloaded from the store.
    Store(StoreError),
}

/// One event for the run.
#[derive(Message)]
#[rtype(result = "Result<Option<Reply>, ApplyError>")]
pub struct Apply(pub Event);

pub struct RunActor {
    state: RunState,
    store: Store,
    out: Outbound,
    manager: Addr<RunManager>,
    supervisor: Addr<StepSupervisor>,
    budget: Option<BudgetInfo>,
    timers: HashMap<Timer, SpawnHandle>,
    /// Runtime of each dispatched address (active-step bookkeeping).
    runtimes: HashMap<String, String>,
    /// Set while the orchestrator drains: no new outbound work is started.
    draining: Arc<AtomicBool>,
    finished: bool,
}

impl RunActor {
    pub fn new(
        state: RunState,
        store: Store,
        out: Outbound,
        manager: Addr<RunManager>,
        supervisor: Addr<StepSupervisor>,
        budget: Option<BudgetInfo>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        RunActor {
            state,
            store,
            out,
            manager,
            supervisor,
            budget,
            timers: HashMap::new(),
            runtimes: HashMap::new(),
            draining,
            finished: false,
        }
    }

    /// Applies an event and commits; the returned future resolves after the effects ran.
    fn process(
        &mut self,
        event: Event,
    ) -> ResponseActFuture<Self, Result<Option<Reply>, ApplyError>> {
        if let Event::Dispatched {
            address,
            runtime_id,
            ..
        } = &event
        {
            self.runtimes.insert(address.clone(), runtime_id.clone());
        }
        let outcome = self.state.apply(event, Timestamp::now());
        // Kept for the log records written once the commit landed, without the outputs the
        // records never carry (copying them was a large share of a step's cost).
        let events = crate::logs::loggable(&outcome.changes.events);
        let effects = outcome.effects;
        let reply = outcome.reply;
        if outcome.changes.is_empty() {
            return Box::pin(actix::fut::ready(()).map(move |(), act: &mut Self, ctx| {
                act.execute(effects, ctx);
                Ok(reply)
            }));
        }
        let store = self.store.clone();
        let run_id = self.state.run.id.clone();
        let version = self.state.run.version;
        let changes = outcome.changes;
        let fut = async move { store.commit(&run_id, version, changes).await };
        Box::pin(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(v) => {
                act.state.run.version = v;
                for e in &events {
                    crate::logs::log_event(&act.state.run, e);
                }
                act.execute(effects, ctx);
                Ok(reply)
            }
            Err(e) => {
                log::error!(
                    target: TARGET,
                    event = "store.commit_failed",
                    run_id = act.state.run.id.as_str(),
                    error = e.to_string().as_str();
                    "commit failed; the run is reloaded from the store"
                );
                act.finished = true;
                act.manager.do_send(Reload {
                    run_id: act.state.run.id.clone(),
                });
                ctx.stop();
                Err(ApplyError::Store(e))
            }
        }))
    }

    /// Feeds an internal event (a result of the actor's own futures) without a caller.
    fn feed(&mut self, event: Event, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        let fut = self.process(event).map(|_, _, _| ());
        ctx.wait(fut);
    }

    fn execute(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        let run_id = self.state.run.id.clone();
        let draining = self.draining.load(Ordering::Acquire);
        for effect in effects {
            match effect {
                Effect::Dispatch(d) => {
                    // The watch exists before the request leaves, so that a heartbeat
                    // reporting the attempt can never race ahead of it.
                    self.supervisor.do_send(WatchStep {
                        run_id: run_id.clone(),
                        address: d.address.clone(),
                        attempt: d.attempt,
                    });
                    if draining {
                        continue;
                    }
                    let fut = dispatch(self.out.clone(), run_id.clone(), self.budget.clone(), *d);
                    ctx.spawn(
                        fut.into_actor(self)
                            .map(|event, act, ctx| act.feed(event, ctx)),
                    );
                }
                Effect::Webhook(call) => {
                    if draining {
                        continue;
                    }
                    let hook = call.hook.clone();
                    let step_id = call.step_id.clone();
                    let attempt = call.attempt;
                    let address = hook
                        .as_ref()
                        .map_or_else(|| step_id.clone(), |h| h.address.clone());
                    let fut = deliver(self.out.clone(), run_id.clone(), address, *call);
                    match hook {
                        Some(h) => {
                            let rid = run_id.clone();
                            ctx.spawn(fut.into_actor(self).map(move |res, _, _| match res {
                                Ok(out) => log::info!(
                                    target: TARGET,
                                    event = "approval_hook.sent",
                                    run_id = rid.as_str(),
                                    step_id = h.address.as_str(),
                                    hook_id = h.hook_id.as_str(),
                                    tool_use_id = h.tool_use_id.as_str(),
                                    status_code = out["status_code"].as_u64().unwrap_or(0);
                                    "approval hook sent"
                                ),
                                Err(f) => log::warn!(
                                    target: TARGET,
                                    event = "approval_hook.failed",
                                    run_id = rid.as_str(),
                                    step_id = h.address.as_str(),
                                    hook_id = h.hook_id.as_str(),
                                    tool_use_id = h.tool_use_id.as_str(),
                                    cause = f.error.as_str();
                                    "approval hook failed"
                                ),
                            }));
                        }
                        None => {
                            ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
                                act.feed(
                                    Event::WebhookDone {
                                        step_id,
                                        attempt,
                                        result,
                                    },
                                    ctx,
                                )
                            }));
                        }
                    }
                }
                Effect::StartChild {
                    run_id: child,
                    params,
                    webhooks_enabled,
                } => {
                    if draining {
                        continue;
                    }
                    self.manager.do_send(ChildStart {
                        parent: ctx.address(),
                        run_id: child,
                        params,
                        webhooks_enabled,
                        budget: self.budget.clone(),
                        inputs: self.state.inputs().clone(),
                    });
                }
                Effect::CancelChild {
                    run_id: child,
                    reason,
                } => {
                    self.manager.do_send(super::manager::Route {
                        run_id: child,
                        event: Event::Cancel { reason },
                    });
                }
                Effect::CancelRuntime {
                    runtime_id,
                    address,
                    attempt,
                    reason,
                } => {
                    let body = CancelRequest {
                        run_id: run_id.clone(),
                        step_id: address,
                        attempt,
                        reason: Some(reason),
                    };
                    // Detached: the run usually stops right after a cancel, and the notice
                    // must still reach the runtime.
                    actix_rt::spawn(cancel_notice(self.out.clone(), runtime_id, body));
                }
                Effect::Watch { address, attempt } => self.supervisor.do_send(WatchStep {
                    run_id: run_id.clone(),
                    address,
                    attempt,
                }),
                Effect::Unwatch { address } => {
                    if let Some(runtime_id) = self.runtimes.remove(&address) {
                        self.out.registry.do_send(crate::actors::registry::Active {
                            runtime_id,
                            key: format!("{run_id}/{address}"),
                            add: false,
                        });
                    }
                    self.supervisor.do_send(UnwatchStep {
                        run_id: run_id.clone(),
                        address,
                    });
                }
                Effect::Arm { timer, at } => {
                    let delay = at.duration_since(Timestamp::now());
                    let t = timer.clone();
                    let handle = ctx.run_later(delay, move |act, ctx| {
                        act.timers.remove(&t);
                        act.feed(Event::TimerFired(t), ctx);
                    });
                    if let Some(old) = self.timers.insert(timer, handle) {
                        ctx.cancel_future(old);
                    }
                }
                Effect::Disarm(timer) => {
                    if let Some(h) = self.timers.remove(&timer) {
                        ctx.cancel_future(h);
                    }
                }
                Effect::Warn { address, message } => log::warn!(
                    target: TARGET,
                    event = "step.warning",
                    run_id = run_id.as_str(),
                    step_id = address.as_str();
                    "{message}"
                ),
                Effect::HookFailed { hook, cause } => log::warn!(
                    target: TARGET,
                    event = "approval_hook.failed",
                    run_id = run_id.as_str(),
                    step_id = hook.address.as_str(),
                    hook_id = hook.hook_id.as_str(),
                    tool_use_id = hook.tool_use_id.as_str(),
                    cause = cause.as_str();
                    "approval hook could not be rendered"
                ),
                Effect::Finished => {
                    self.finished = true;
                    let mut metrics = StepMetrics::default();
                    for s in &self.state.steps {
                        metrics.add_usage(&s.metrics);
                    }
                    let run = self.state.run.clone();
                    let outcome = ChildOutcome {
                        status: run.status,
                        output: run.output.clone(),
                        error: run.error.clone(),
                        error_code: run.error_code.clone(),
                        metrics,
                    };
                    self.manager.do_send(RunEnded { run, outcome });
                    ctx.stop();
                }
            }
        }
    }
}

impl Actor for RunActor {
    type Context = Context<Self>;
}

impl Handler<Apply> for RunActor {
    type Result = AtomicResponse<Self, Result<Option<Reply>, ApplyError>>;

    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.process(msg.0))
    }
}
