//! The StepSupervisor (orchestrator.md §7.2): one watch per dispatched agent attempt, pushed
//! forward by every heartbeat that reports it, checked every second; an expired watch fails its
//! attempt with `heartbeat_timeout`. It also answers which reported entries the orchestrator no
//! longer expects (the heartbeat's `cancel` list).

use actix::prelude::*;
use ktsu_shared::wire::heartbeat::{ActiveEntry, CancelEntry};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Where expired watches are reported.
pub type LostSink = Recipient<super::manager::HeartbeatLost>;

struct Watch {
    attempt: u32,
    deadline: Instant,
}

pub struct StepSupervisor {
    /// `None`: supervision disabled (heartbeat timeout 0); watches are still kept so that the
    /// heartbeat answers stay correct.
    timeout: Option<Duration>,
    /// (run id, step address) → watch.
    watches: HashMap<(String, String), Watch>,
    lost: LostSink,
}

impl StepSupervisor {
    pub fn new(timeout: Option<Duration>, lost: LostSink) -> Self {
        StepSupervisor {
            timeout,
            watches: HashMap::new(),
            lost,
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout.unwrap_or(Duration::from_secs(86_400 * 365))
    }
}

impl Actor for StepSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.timeout.is_none() {
            return;
        }
        ctx.run_interval(Duration::from_secs(1), |this, _| {
            let now = Instant::now();
            let expired: Vec<((String, String), u32)> = this
                .watches
                .iter()
                .filter(|(_, w)| w.deadline <= now)
                .map(|(k, w)| (k.clone(), w.attempt))
                .collect();
            let timeout_s = this.timeout.map_or(0, |t| t.as_secs());
            for ((run_id, address), attempt) in expired {
                this.watches.remove(&(run_id.clone(), address.clone()));
                log::warn!(
                    target: "ktsu_orchestrator::actors::supervisor",
                    event = "heartbeat.timeout",
                    run_id = run_id.as_str(),
                    step_id = address.as_str(),
                    attempt = attempt,
                    timeout_s = timeout_s;
                    "no heartbeat for step {address} attempt {attempt} within {timeout_s}s"
                );
                this.lost.do_send(super::manager::HeartbeatLost {
                    run_id,
                    address,
                    attempt,
                    timeout_s,
                });
            }
        });
    }
}

/// Start (or refresh) the watch of an attempt.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchStep {
    pub run_id: String,
    pub address: String,
    pub attempt: u32,
}

impl Handler<WatchStep> for StepSupervisor {
    type Result = ();
    fn handle(&mut self, msg: WatchStep, _: &mut Context<Self>) {
        let deadline = self.deadline();
        self.watches.insert(
            (msg.run_id, msg.address),
            Watch {
                attempt: msg.attempt,
                deadline,
            },
        );
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct UnwatchStep {
    pub run_id: String,
    pub address: String,
}

impl Handler<UnwatchStep> for StepSupervisor {
    type Result = ();
    fn handle(&mut self, msg: UnwatchStep, _: &mut Context<Self>) {
        self.watches.remove(&(msg.run_id, msg.address));
    }
}

/// A heartbeat's `active` list: pushes the matching watches forward and returns the entries
/// the orchestrator no longer expects.
#[derive(Message)]
#[rtype(result = "Vec<CancelEntry>")]
pub struct Beat(pub Vec<ActiveEntry>);

impl Handler<Beat> for StepSupervisor {
    type Result = MessageResult<Beat>;
    fn handle(&mut self, msg: Beat, _: &mut Context<Self>) -> Self::Result {
        let deadline = self.deadline();
        let mut cancel = Vec::new();
        for entry in msg.0 {
            let key = (entry.run_id.clone(), entry.step_id.clone());
            match self.watches.get_mut(&key) {
                Some(w) if entry.attempt.is_none_or(|a| a == w.attempt) => w.deadline = deadline,
                Some(w) => cancel.push(CancelEntry {
                    run_id: entry.run_id,
                    step_id: entry.step_id,
                    attempt: entry.attempt.unwrap_or(w.attempt),
                }),
                None => cancel.push(CancelEntry {
                    run_id: entry.run_id,
                    step_id: entry.step_id,
                    attempt: entry.attempt.unwrap_or(1),
                }),
            }
        }
        MessageResult(cancel)
    }
}
