//! The invocation manager (runtime-gateway.md §2.4): one long-lived actor that owns the registry,
//! the queue and the slot count. Legs run on the leg arbiters and report their stages back; the
//! heartbeat actor and `/health` read what the manager publishes.

mod pool;
mod registry;

pub use pool::{LegArbiters, LegPool};
pub use registry::{Limits, Refusal, StepKey};

use crate::leg::{step_limit, LegIds, LegInput, LegReport, Stage};
use crate::settings::Settings;
use actix::{Actor, AsyncContext, Context, Handler, Message, SpawnHandle};
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::time::Timestamp;
use ktsu_shared::wire::gateway::Message as ChatMessage;
use ktsu_shared::wire::heartbeat::ActiveEntry;
use ktsu_shared::wire::invoke::{CancelRequest, CancelledEntry, InvokeRequest};
use registry::Registry;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{oneshot, watch};

/// Running and queued counts, readable without asking the actor (`/health`).
#[derive(Debug, Default)]
pub struct Counters {
    running: AtomicU32,
    queued: AtomicU32,
}

impl Counters {
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }
}

pub struct Manager {
    registry: Registry<Box<LegInput>>,
    pool: LegPool,
    settings: Arc<Settings>,
    runtime_id: Arc<str>,
    counters: Arc<Counters>,
    abandon: watch::Receiver<bool>,
    idle_waiters: Vec<oneshot::Sender<()>>,
    /// One timer, for the earliest step deadline in the queue: a timer per queued leg would
    /// outlive the wait of most of them (the step timeout defaults to an hour).
    queue_timer: Option<(Instant, SpawnHandle)>,
}

impl Manager {
    pub fn new(
        settings: Arc<Settings>,
        runtime_id: Arc<str>,
        pool: LegPool,
        counters: Arc<Counters>,
        abandon: watch::Receiver<bool>,
    ) -> Manager {
        Manager {
            registry: Registry::new(Limits {
                max_concurrency: settings.max_concurrency,
                max_queue: settings.max_queue,
            }),
            pool,
            settings,
            runtime_id,
            counters,
            abandon,
            idle_waiters: Vec::new(),
            queue_timer: None,
        }
    }

    /// Starts legs that only deliver their callback (stopped while queued).
    fn spawn_stopped(&self, legs: impl IntoIterator<Item = Box<LegInput>>) {
        for mut leg in legs {
            leg.never_started = true;
            self.pool.spawn(leg);
        }
    }

    fn spawn_started(&self, legs: impl IntoIterator<Item = Box<LegInput>>) {
        for leg in legs {
            self.pool.spawn(leg);
        }
    }

    /// Keeps the one queue timer on the earliest deadline of the queue (none when it is empty).
    fn arm_queue_timer(&mut self, ctx: &mut Context<Self>) {
        let next = self.registry.next_queue_deadline();
        if self.queue_timer.map(|(at, _)| at) == next {
            return;
        }
        if let Some((_, timer)) = self.queue_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some(at) = next {
            let wait = at.saturating_duration_since(Instant::now());
            let timer = ctx.run_later(wait, |manager, ctx| {
                manager.queue_timer = None;
                let expired = manager
                    .registry
                    .expire_queued(Instant::now(), Timestamp::now());
                manager.spawn_stopped(expired);
                manager.publish(ctx);
            });
            self.queue_timer = Some((at, timer));
        }
    }

    /// Publishes the counts, wakes idle waiters when the registry is empty, and keeps the queue
    /// timer on the earliest deadline.
    fn publish(&mut self, ctx: &mut Context<Self>) {
        self.arm_queue_timer(ctx);
        self.counters
            .running
            .store(self.registry.running(), Ordering::Relaxed);
        self.counters
            .queued
            .store(self.registry.queued(), Ordering::Relaxed);
        if self.registry.is_empty() {
            for waiter in self.idle_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for Manager {
    type Context = Context<Self>;
}

/// An invocation that passed validation.
pub struct Admittee {
    pub request: InvokeRequest,
    pub transcript: Option<Vec<ChatMessage>>,
    pub schema: Option<Arc<CompiledSchema>>,
    pub accepted_at: Instant,
}

/// The 202 flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub queued: bool,
    pub duplicate: bool,
}

#[derive(Message)]
#[rtype(result = "Result<Accepted, Refusal>")]
pub struct Admit(pub Box<Admittee>);

impl Handler<Admit> for Manager {
    type Result = Result<Accepted, Refusal>;

    fn handle(&mut self, msg: Admit, ctx: &mut Context<Self>) -> Self::Result {
        let Admittee {
            request,
            transcript,
            schema,
            accepted_at,
        } = *msg.0;
        let key = StepKey {
            run_id: request.run_id.clone(),
            step_id: request.step_id.clone(),
        };
        let attempt = request.attempt;
        let deadline = accepted_at + step_limit(&request, &self.settings);
        let (stop_sender, stop) = oneshot::channel();
        let leg = Box::new(LegInput {
            request,
            transcript,
            schema,
            settings: Arc::clone(&self.settings),
            runtime_id: Arc::clone(&self.runtime_id),
            accepted_at,
            stop,
            abandon: self.abandon.clone(),
            manager: ctx.address().recipient(),
            never_started: false,
        });
        let admission =
            self.registry
                .admit(key, attempt, deadline, stop_sender, leg, Timestamp::now());
        self.spawn_stopped(admission.superseded);
        if let Some(leg) = admission.start {
            self.pool.spawn(leg);
        }
        self.publish(ctx);
        admission
            .outcome
            .map(|(queued, duplicate)| Accepted { queued, duplicate })
    }
}

/// Cancel one attempt (`POST /cancel`, heartbeat `cancel` entries).
#[derive(Message)]
#[rtype(result = "Option<CancelledEntry>")]
pub struct Cancel(pub CancelRequest);

impl Handler<Cancel> for Manager {
    type Result = Option<CancelledEntry>;

    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        let cancel = msg.0;
        let key = StepKey {
            run_id: cancel.run_id.clone(),
            step_id: cancel.step_id.clone(),
        };
        let reason = cancel.effective_reason().to_owned();
        let (state, parked) =
            self.registry
                .cancel(&key, cancel.attempt, &reason, Timestamp::now())?;
        self.spawn_stopped(parked);
        self.publish(ctx);
        let ids = LegIds {
            run_id: cancel.run_id.clone(),
            step_id: cancel.step_id.clone(),
            attempt: cancel.attempt,
        };
        leg_log!(log::Level::Info, ids, event = "invoke.cancelled", reason = reason.as_str(),
            state:serde = state; "invocation cancelled");
        Some(CancelledEntry {
            run_id: cancel.run_id,
            step_id: cancel.step_id,
            attempt: cancel.attempt,
            state,
        })
    }
}

impl Handler<LegReport> for Manager {
    type Result = ();

    fn handle(&mut self, msg: LegReport, ctx: &mut Context<Self>) {
        let key = StepKey {
            run_id: msg.ids.run_id,
            step_id: msg.ids.step_id,
        };
        let now = Timestamp::now();
        let started = match msg.stage {
            Stage::Delivering => self.registry.delivering(&key, msg.ids.attempt, now),
            Stage::Done => self.registry.done(&key, msg.ids.attempt, now),
        };
        self.spawn_started(started);
        self.publish(ctx);
    }
}

/// What a heartbeat reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub running: u32,
    pub queued: u32,
    pub active: Vec<ActiveEntry>,
}

#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct TakeSnapshot;

impl Handler<TakeSnapshot> for Manager {
    type Result = actix::MessageResult<TakeSnapshot>;

    fn handle(&mut self, _: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(Snapshot {
            running: self.registry.running(),
            queued: self.registry.queued(),
            active: self.registry.active(),
        })
    }
}

/// Shutdown, first step: admit nothing new.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Manager {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        self.registry.drain();
    }
}

/// Shutdown after the grace period: stop every leg (`runtime_shutdown`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

impl Handler<StopAll> for Manager {
    type Result = ();

    fn handle(&mut self, _: StopAll, ctx: &mut Context<Self>) {
        let parked = self.registry.stop_all(Timestamp::now());
        self.spawn_stopped(parked);
        self.publish(ctx);
    }
}

/// Resolves when no invocation is left (queued, running or delivering).
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct WaitIdle;

impl Handler<WaitIdle> for Manager {
    type Result = actix::MessageResult<WaitIdle>;

    fn handle(&mut self, _: WaitIdle, ctx: &mut Context<Self>) -> Self::Result {
        let (sender, receiver) = oneshot::channel();
        self.idle_waiters.push(sender);
        self.publish(ctx);
        actix::MessageResult(receiver)
    }
}

/// Stops the actor (after the drain).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

impl Handler<Halt> for Manager {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}
