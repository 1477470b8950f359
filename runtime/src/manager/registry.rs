//! The invocation registry (runtime-gateway.md §2.4, §2.5) as a plain state machine: admission
//! with duplicates, stale and higher attempts, the bounded FIFO queue, the concurrency slots,
//! and cancellation. The actor around it carries out what it returns (start these legs, deliver
//! those callbacks); nothing here does I/O.
//!
//! `P` is what a leg needs to start; it waits in the queue while its entry is queued.

use crate::leg::StopCause;
use ktsu_shared::time::Timestamp;
use ktsu_shared::wire::heartbeat::ActiveEntry;
use ktsu_shared::wire::invoke::EntryState;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;
use tokio::sync::oneshot;

/// `(run_id, step_id)`: the registry key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepKey {
    pub run_id: String,
    pub step_id: String,
}

struct Entry {
    attempt: u32,
    state: EntryState,
    since: Timestamp,
    /// `None` once the leg was told to stop (a stop is sent at most once).
    stop: Option<oneshot::Sender<StopCause>>,
}

impl Entry {
    /// Tells the leg to stop, unless it was told already (the first cause wins).
    fn tell_stop(&mut self, cause: StopCause) {
        if let Some(stop) = self.stop.take() {
            // A leg that already ended dropped its receiver: nothing left to stop.
            let _ = stop.send(cause);
        }
    }
}

/// Why an invocation was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 409 `stale_attempt`.
    Stale { attempt: u32, active: u32 },
    /// 503 `overloaded`.
    Overloaded,
    /// 503 `shutting_down`.
    ShuttingDown,
}

/// An admission's effects.
pub struct Admission<P> {
    /// `Ok((queued, duplicate))` for a 202.
    pub outcome: Result<(bool, bool), Refusal>,
    /// The new leg, to start now.
    pub start: Option<P>,
    /// Queued lower attempts that were superseded: their legs deliver a `cancelled` callback.
    pub superseded: Vec<P>,
}

/// Limits of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrency: u32,
    pub max_queue: u32,
}

/// A leg waiting for a slot, in the queue rather than in its entry: an entry lives as long as
/// its invocation, and should not carry room for a leg once it runs.
struct Parked<P> {
    key: StepKey,
    attempt: u32,
    /// The step deadline: queue wait counts against it (§2.4 item 5).
    deadline: Instant,
    leg: P,
}

pub struct Registry<P> {
    /// Almost always one entry per key (a second only while an older attempt delivers).
    entries: HashMap<StepKey, Vec<Entry>>,
    queue: VecDeque<Parked<P>>,
    running: u32,
    limits: Limits,
    draining: bool,
}

impl<P> Registry<P> {
    pub fn new(limits: Limits) -> Self {
        Registry {
            entries: HashMap::new(),
            queue: VecDeque::new(),
            running: 0,
            limits,
            draining: false,
        }
    }

    pub fn running(&self) -> u32 {
        self.running
    }

    pub fn queued(&self) -> u32 {
        u32::try_from(self.queue.len()).unwrap_or(u32::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stops admitting new work (duplicates are still answered).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Admits attempt `attempt` of `key`: duplicate, stale, superseding, started or queued
    /// (then `deadline` ends its wait).
    pub fn admit(
        &mut self,
        key: StepKey,
        attempt: u32,
        deadline: Instant,
        stop: oneshot::Sender<StopCause>,
        leg: P,
        now: Timestamp,
    ) -> Admission<P> {
        let refuse = |refusal| Admission {
            outcome: Err(refusal),
            start: None,
            superseded: Vec::new(),
        };
        let existing = self
            .entries
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(same) = existing.iter().find(|e| e.attempt == attempt) {
            return Admission {
                outcome: Ok((same.state == EntryState::Queued, true)),
                start: None,
                superseded: Vec::new(),
            };
        }
        if let Some(active) = existing
            .iter()
            .map(|e| e.attempt)
            .max()
            .filter(|a| *a > attempt)
        {
            return refuse(Refusal::Stale { attempt, active });
        }
        if self.draining {
            return refuse(Refusal::ShuttingDown);
        }
        // A higher attempt cancels the lower one, whether or not the new one fits.
        let superseded = self.supersede(&key, attempt, now);
        let fits_slot = self.running < self.limits.max_concurrency;
        if !fits_slot && self.queue.len() >= self.limits.max_queue as usize {
            return Admission {
                outcome: Err(Refusal::Overloaded),
                start: None,
                superseded,
            };
        }
        let (state, start) = if fits_slot {
            self.running += 1;
            (EntryState::Running, Some(leg))
        } else {
            self.queue.push_back(Parked {
                key: key.clone(),
                attempt,
                deadline,
                leg,
            });
            (EntryState::Queued, None)
        };
        self.entries
            .entry(key)
            .or_insert_with(|| Vec::with_capacity(1))
            .push(Entry {
                attempt,
                state,
                since: now,
                stop: Some(stop),
            });
        Admission {
            outcome: Ok((state == EntryState::Queued, false)),
            start,
            superseded,
        }
    }

    /// Cancels every active (queued, or running and not yet told to stop) lower attempt of
    /// `key`; returns the parked legs of the queued ones.
    fn supersede(&mut self, key: &StepKey, attempt: u32, now: Timestamp) -> Vec<P> {
        let cause = StopCause::Cancelled(format!("superseded by attempt {attempt}"));
        let targets: Vec<u32> = self
            .entries
            .get(key)
            .map(|list| {
                list.iter()
                    .filter(|e| match e.state {
                        EntryState::Queued => true,
                        EntryState::Running => e.stop.is_some(),
                        EntryState::Delivering => false,
                    })
                    .map(|e| e.attempt)
                    .collect()
            })
            .unwrap_or_default();
        targets
            .into_iter()
            .filter_map(|old| self.stop_entry(key, old, cause.clone(), now).1)
            .collect()
    }

    /// Stops one entry: a queued one leaves the queue and its parked leg is returned (it only
    /// delivers its callback); a running one is told to stop; a delivering one is untouched.
    fn stop_entry(
        &mut self,
        key: &StepKey,
        attempt: u32,
        cause: StopCause,
        now: Timestamp,
    ) -> (Option<EntryState>, Option<P>) {
        let Some(entry) = self
            .entries
            .get_mut(key)
            .and_then(|list| list.iter_mut().find(|e| e.attempt == attempt))
        else {
            return (None, None);
        };
        let state = entry.state;
        match state {
            EntryState::Queued => {
                entry.tell_stop(cause);
                entry.state = EntryState::Delivering;
                entry.since = now;
                (Some(state), self.unpark(key, attempt))
            }
            EntryState::Running => {
                entry.tell_stop(cause);
                (Some(state), None)
            }
            EntryState::Delivering => (Some(state), None),
        }
    }

    /// Takes attempt `attempt` of `key` out of the queue.
    fn unpark(&mut self, key: &StepKey, attempt: u32) -> Option<P> {
        let at = self
            .queue
            .iter()
            .position(|parked| parked.attempt == attempt && &parked.key == key)?;
        self.queue.remove(at).map(|parked| parked.leg)
    }

    /// `POST /cancel` and heartbeat cancels: that attempt only. `None` when nothing matches.
    pub fn cancel(
        &mut self,
        key: &StepKey,
        attempt: u32,
        reason: &str,
        now: Timestamp,
    ) -> Option<(EntryState, Option<P>)> {
        let (state, parked) =
            self.stop_entry(key, attempt, StopCause::Cancelled(reason.to_owned()), now);
        state.map(|state| (state, parked))
    }

    /// The earliest step deadline among queued legs.
    pub fn next_queue_deadline(&self) -> Option<Instant> {
        self.queue.iter().map(|parked| parked.deadline).min()
    }

    /// Queued legs whose step deadline is at or before `at` leave the queue (returned, to
    /// report `step_timeout`). Running legs watch their own deadline.
    pub fn expire_queued(&mut self, at: Instant, now: Timestamp) -> Vec<P> {
        let due: Vec<(StepKey, u32)> = self
            .queue
            .iter()
            .filter(|parked| parked.deadline <= at)
            .map(|parked| (parked.key.clone(), parked.attempt))
            .collect();
        due.into_iter()
            .filter_map(|(key, attempt)| self.stop_entry(&key, attempt, StopCause::Deadline, now).1)
            .collect()
    }

    /// Shutdown after the grace period: every queued leg leaves the queue (returned, to report
    /// `runtime_shutdown`), every running leg is told to stop.
    pub fn stop_all(&mut self, now: Timestamp) -> Vec<P> {
        let targets: Vec<(StepKey, u32)> = self
            .entries
            .iter()
            .flat_map(|(key, list)| list.iter().map(move |e| (key.clone(), e.attempt)))
            .collect();
        targets
            .into_iter()
            .filter_map(|(key, attempt)| self.stop_entry(&key, attempt, StopCause::Shutdown, now).1)
            .collect()
    }

    /// A leg's loop ended: its slot frees and queued legs start (returned, FIFO).
    pub fn delivering(&mut self, key: &StepKey, attempt: u32, now: Timestamp) -> Vec<P> {
        if let Some(entry) = self
            .entries
            .get_mut(key)
            .and_then(|list| list.iter_mut().find(|e| e.attempt == attempt))
        {
            if entry.state == EntryState::Running {
                self.running -= 1;
            }
            entry.state = EntryState::Delivering;
            entry.since = now;
        }
        self.fill_slots(now)
    }

    /// A leg's callback was delivered or abandoned: the entry goes.
    pub fn done(&mut self, key: &StepKey, attempt: u32, now: Timestamp) -> Vec<P> {
        if let Some(list) = self.entries.get_mut(key) {
            if let Some(at) = list.iter().position(|e| e.attempt == attempt) {
                let entry = list.remove(at);
                if entry.state == EntryState::Running {
                    self.running -= 1;
                }
            }
            if list.is_empty() {
                self.entries.remove(key);
            }
        }
        self.fill_slots(now)
    }

    fn fill_slots(&mut self, now: Timestamp) -> Vec<P> {
        let mut started = Vec::new();
        while self.running < self.limits.max_concurrency {
            let Some(parked) = self.queue.pop_front() else {
                break;
            };
            // Every queued leg has its queued entry (both go together in `stop_entry`).
            let Some(entry) = self
                .entries
                .get_mut(&parked.key)
                .and_then(|list| list.iter_mut().find(|e| e.attempt == parked.attempt))
            else {
                continue;
            };
            entry.state = EntryState::Running;
            entry.since = now;
            self.running += 1;
            started.push(parked.leg);
        }
        started
    }

    /// Every entry, for heartbeats.
    pub fn active(&self) -> Vec<ActiveEntry> {
        let mut active: Vec<ActiveEntry> = self
            .entries
            .iter()
            .flat_map(|(key, list)| {
                list.iter().map(|e| ActiveEntry {
                    run_id: key.run_id.clone(),
                    step_id: key.step_id.clone(),
                    attempt: Some(e.attempt),
                    state: Some(e.state),
                    since: Some(e.since),
                })
            })
            .collect();
        active.sort_by(|a, b| {
            (&a.run_id, &a.step_id, a.attempt).cmp(&(&b.run_id, &b.step_id, b.attempt))
        });
        active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(step: &str) -> StepKey {
        StepKey {
            run_id: "run_1".into(),
            step_id: step.into(),
        }
    }

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// The stop a leg received, shared between the parked leg and the test.
    #[derive(Clone, Default)]
    struct Stop(Arc<Mutex<Option<oneshot::Receiver<StopCause>>>>);

    impl Stop {
        fn cause(&self) -> Option<StopCause> {
            self.0
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|rx| rx.try_recv().ok())
        }
    }

    struct Leg {
        name: &'static str,
        stop: Stop,
    }

    fn admit(
        registry: &mut Registry<Leg>,
        step: &str,
        attempt: u32,
        name: &'static str,
    ) -> (Admission<Leg>, Stop) {
        let deadline = Instant::now() + Duration::from_secs(3600);
        admit_until(registry, step, attempt, name, deadline)
    }

    fn admit_until(
        registry: &mut Registry<Leg>,
        step: &str,
        attempt: u32,
        name: &'static str,
        deadline: Instant,
    ) -> (Admission<Leg>, Stop) {
        let (tx, rx) = oneshot::channel();
        let stop = Stop(Arc::new(Mutex::new(Some(rx))));
        let leg = Leg {
            name,
            stop: stop.clone(),
        };
        (
            registry.admit(key(step), attempt, deadline, tx, leg, Timestamp::now()),
            stop,
        )
    }

    fn limits(max_concurrency: u32, max_queue: u32) -> Registry<Leg> {
        Registry::new(Limits {
            max_concurrency,
            max_queue,
        })
    }

    #[test]
    fn slots_then_fifo_queue_then_overloaded() {
        let mut r = limits(1, 2);
        let (a, _) = admit(&mut r, "a", 1, "a");
        assert_eq!(a.outcome, Ok((false, false)));
        assert_eq!(a.start.unwrap().name, "a");
        let (b, _) = admit(&mut r, "b", 1, "b");
        assert_eq!(b.outcome, Ok((true, false)));
        assert!(b.start.is_none());
        let (c, _) = admit(&mut r, "c", 1, "c");
        assert_eq!(c.outcome, Ok((true, false)));
        let (d, _) = admit(&mut r, "d", 1, "d");
        assert_eq!(d.outcome, Err(Refusal::Overloaded));
        assert_eq!((r.running(), r.queued()), (1, 2));
        let started = r.delivering(&key("a"), 1, Timestamp::now());
        assert_eq!(started.iter().map(|l| l.name).collect::<Vec<_>>(), ["b"]);
        assert_eq!((r.running(), r.queued()), (1, 1));
        let states: Vec<_> = r
            .active()
            .iter()
            .map(|e| (e.step_id.clone(), e.state.unwrap()))
            .collect();
        assert_eq!(
            states,
            [
                ("a".to_owned(), EntryState::Delivering),
                ("b".to_owned(), EntryState::Running),
                ("c".to_owned(), EntryState::Queued)
            ]
        );
        assert!(r.done(&key("a"), 1, Timestamp::now()).is_empty());
        let started = r.done(&key("b"), 1, Timestamp::now());
        assert_eq!(started.iter().map(|l| l.name).collect::<Vec<_>>(), ["c"]);
        r.done(&key("c"), 1, Timestamp::now());
        assert!(r.is_empty());
        assert_eq!((r.running(), r.queued()), (0, 0));
    }

    #[test]
    fn duplicates_and_stale_attempts() {
        let mut r = limits(4, 4);
        admit(&mut r, "a", 2, "a2");
        let (dup, _) = admit(&mut r, "a", 2, "again");
        assert_eq!(dup.outcome, Ok((false, true)));
        assert!(dup.start.is_none());
        let (stale, _) = admit(&mut r, "a", 1, "old");
        assert_eq!(
            stale.outcome,
            Err(Refusal::Stale {
                attempt: 1,
                active: 2
            })
        );
        // A delivering entry is still a duplicate of itself.
        r.delivering(&key("a"), 2, Timestamp::now());
        let (dup, _) = admit(&mut r, "a", 2, "again");
        assert_eq!(dup.outcome, Ok((false, true)));
    }

    #[test]
    fn higher_attempt_supersedes_running_and_queued() {
        let mut r = limits(1, 4);
        let (_, first_stop) = admit(&mut r, "a", 1, "a1");
        let (second, _) = admit(&mut r, "a", 2, "a2");
        // The running attempt 1 is told to stop; attempt 2 waits for its slot.
        assert_eq!(
            first_stop.cause(),
            Some(StopCause::Cancelled("superseded by attempt 2".into()))
        );
        assert!(second.superseded.is_empty());
        assert_eq!(second.outcome, Ok((true, false)));
        // Attempt 3 supersedes the queued attempt 2, whose parked leg comes back.
        let (third, _) = admit(&mut r, "a", 3, "a3");
        let superseded = third.superseded.into_iter().next().unwrap();
        assert_eq!(superseded.name, "a2");
        assert_eq!(
            superseded.stop.cause(),
            Some(StopCause::Cancelled("superseded by attempt 3".into()))
        );
        assert_eq!(third.outcome, Ok((true, false)));
        // Attempt 1 was told once, with its first reason (received above): nothing more.
        assert_eq!(first_stop.cause(), None);
        // Attempt 1 finishing its loop starts attempt 3.
        let started = r.delivering(&key("a"), 1, Timestamp::now());
        assert_eq!(started.iter().map(|l| l.name).collect::<Vec<_>>(), ["a3"]);
    }

    #[test]
    fn delivering_entries_never_block_new_attempts() {
        let mut r = limits(1, 0);
        admit(&mut r, "a", 1, "a1");
        r.delivering(&key("a"), 1, Timestamp::now());
        let (next, _) = admit(&mut r, "a", 2, "a2");
        assert_eq!(next.outcome, Ok((false, false)));
        assert!(next.superseded.is_empty());
        assert_eq!(r.active().len(), 2);
    }

    #[test]
    fn cancel_by_state() {
        let mut r = limits(1, 4);
        let (_, running_stop) = admit(&mut r, "a", 1, "a");
        admit(&mut r, "b", 1, "b");
        assert!(r.cancel(&key("a"), 2, "x", Timestamp::now()).is_none());
        assert!(r.cancel(&key("zzz"), 1, "x", Timestamp::now()).is_none());
        let (state, parked) = r
            .cancel(&key("b"), 1, "operator", Timestamp::now())
            .unwrap();
        assert_eq!(state, EntryState::Queued);
        let parked = parked.unwrap();
        assert_eq!(
            parked.stop.cause(),
            Some(StopCause::Cancelled("operator".into()))
        );
        assert_eq!(r.queued(), 0);
        // Repeating is harmless: the entry is now delivering and untouched.
        let (state, parked) = r
            .cancel(&key("b"), 1, "operator", Timestamp::now())
            .unwrap();
        assert_eq!((state, parked.is_none()), (EntryState::Delivering, true));
        let (state, parked) = r
            .cancel(&key("a"), 1, "operator", Timestamp::now())
            .unwrap();
        assert_eq!((state, parked.is_none()), (EntryState::Running, true));
        assert_eq!(
            running_stop.cause(),
            Some(StopCause::Cancelled("operator".into()))
        );
    }

    #[test]
    fn queued_deadline_drain_and_stop_all() {
        let mut r = limits(1, 4);
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        // The running leg watches its own deadline; only queued legs expire here.
        let (_, running_stop) = admit_until(&mut r, "a", 1, "a", t0);
        admit_until(&mut r, "b", 1, "b", t0 + secs(10));
        admit_until(&mut r, "c", 1, "c", t0 + secs(5));
        admit_until(&mut r, "e", 1, "e", t0 + secs(20));
        assert_eq!(r.next_queue_deadline(), Some(t0 + secs(5)));
        assert!(r.expire_queued(t0 + secs(4), Timestamp::now()).is_empty());
        let expired = r.expire_queued(t0 + secs(10), Timestamp::now());
        assert_eq!(
            expired.iter().map(|l| l.name).collect::<Vec<_>>(),
            ["b", "c"]
        );
        for leg in &expired {
            assert_eq!(leg.stop.cause(), Some(StopCause::Deadline));
        }
        assert_eq!((r.running(), r.queued()), (1, 1));
        assert_eq!(r.next_queue_deadline(), Some(t0 + secs(20)));
        assert_eq!(running_stop.cause(), None);
        r.drain();
        let (refused, _) = admit(&mut r, "d", 1, "d");
        assert_eq!(refused.outcome, Err(Refusal::ShuttingDown));
        let (dup, _) = admit(&mut r, "e", 1, "e");
        assert_eq!(dup.outcome, Ok((true, true)));
        let parked: Vec<_> = r
            .stop_all(Timestamp::now())
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(parked, ["e"]);
        assert_eq!(running_stop.cause(), Some(StopCause::Shutdown));
        assert_eq!(r.queued(), 0);
        assert_eq!(r.next_queue_deadline(), None);
    }
}
