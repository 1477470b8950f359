//! The per-model circuit breaker (runtime-gateway.md §9.3), shared by every group that lists the
//! model: closed (counting consecutive transient/timeout failures) → open for `cooldown_s` →
//! half-open (one trial at a time) → closed on success, open again on failure.
//!
//! The state sits behind a `std` mutex that is only held for a few comparisons, never across an
//! await, so the breaker costs next to nothing on the hot path.

use ktsu_shared::project::BreakerPolicy;
use ktsu_shared::wire::gateway::ErrorClass;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `trial`: a trial request is in flight.
    HalfOpen {
        trial: bool,
    },
}

/// One model's breaker.
#[derive(Debug)]
pub struct Breaker {
    model: String,
    policy: BreakerPolicy,
    state: Mutex<State>,
}

/// What [`Breaker::admit`] decided.
#[derive(Debug)]
pub enum Admission<'a> {
    /// Go ahead; report the outcome through the permit.
    Pass(Permit<'a>),
    /// The circuit is open (or its half-open trial is taken): skip the model. `retry_after` is
    /// the time until it may admit again.
    Skip { retry_after: Duration },
}

/// Leave to make one attempt. Dropping it without [`Permit::record`] (the client went away)
/// frees a half-open trial slot without changing the state.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    settled: bool,
}

impl Breaker {
    pub fn new(model: impl Into<String>, policy: BreakerPolicy) -> Self {
        Breaker {
            model: model.into(),
            policy,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn cooldown(&self) -> Duration {
        Duration::from_secs(self.policy.cooldown_s)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn admit(&self) -> Admission<'_> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admission<'_> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Pass(self.permit(false)),
            State::Open { until } if now < until => Admission::Skip {
                retry_after: until - now,
            },
            State::Open { .. } | State::HalfOpen { trial: false } => {
                if matches!(*state, State::Open { .. }) {
                    log::info!(
                        event = "circuit.half_open",
                        model = self.model.as_str(),
                        cooldown_s = self.policy.cooldown_s;
                        "circuit of {} is half-open: one trial request", self.model
                    );
                }
                *state = State::HalfOpen { trial: true };
                Admission::Pass(self.permit(true))
            }
            // Another request holds the trial; it ends within one attempt timeout.
            State::HalfOpen { trial: true } => Admission::Skip {
                retry_after: Duration::from_secs(1),
            },
        }
    }

    fn permit(&self, trial: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            trial,
            settled: false,
        }
    }

    fn record_at(&self, trial: bool, outcome: Option<ErrorClass>, now: Instant) {
        let counts = matches!(outcome, Some(ErrorClass::Transient | ErrorClass::Timeout));
        let mut state = self.lock();
        match (*state, outcome) {
            (_, None) => {
                if trial || matches!(*state, State::HalfOpen { .. }) {
                    log::info!(
                        event = "circuit.closed",
                        model = self.model.as_str(),
                        failures = 0u32,
                        cooldown_s = self.policy.cooldown_s;
                        "circuit of {} closed", self.model
                    );
                }
                *state = State::Closed { failures: 0 };
            }
            (State::Closed { failures }, Some(_)) if counts => {
                let failures = failures.saturating_add(1);
                if failures >= self.policy.failure_threshold {
                    self.open(&mut state, failures, now);
                } else {
                    *state = State::Closed { failures };
                }
            }
            (State::HalfOpen { .. }, Some(_)) if counts && trial => {
                self.open(&mut state, self.policy.failure_threshold, now);
            }
            // auth, billing, not_found, invalid_request never change the state; a half-open
            // trial that ended that way frees the trial slot.
            (State::HalfOpen { .. }, _) if trial => *state = State::HalfOpen { trial: false },
            _ => {}
        }
    }

    fn open(&self, state: &mut State, failures: u32, now: Instant) {
        log::warn!(
            event = "circuit.opened",
            model = self.model.as_str(),
            failures = failures,
            cooldown_s = self.policy.cooldown_s;
            "circuit of {} opened after {failures} consecutive failures", self.model
        );
        *state = State::Open {
            until: now + self.cooldown(),
        };
    }
}

impl Permit<'_> {
    /// Reports the attempt: `None` for success, else its error class.
    pub fn record(mut self, outcome: Option<ErrorClass>) {
        self.settled = true;
        self.breaker.record_at(self.trial, outcome, Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.settled {
            let mut state = self.breaker.lock();
            if *state == (State::HalfOpen { trial: true }) {
                *state = State::HalfOpen { trial: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cooldown_s: u64) -> Breaker {
        Breaker::new(
            "p/m",
            BreakerPolicy {
                failure_threshold: threshold,
                cooldown_s,
            },
        )
    }

    fn pass(b: &Breaker, now: Instant) -> Permit<'_> {
        match b.admit_at(now) {
            Admission::Pass(p) => p,
            Admission::Skip { .. } => panic!("expected the breaker to admit"),
        }
    }

    fn fail(b: &Breaker, now: Instant, class: ErrorClass) {
        let p = pass(b, now);
        let trial = p.trial;
        std::mem::forget(p);
        b.record_at(trial, Some(class), now);
    }

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_trial() {
        let b = breaker(3, 30);
        let t0 = Instant::now();
        fail(&b, t0, ErrorClass::Transient);
        fail(&b, t0, ErrorClass::Timeout);
        // A success resets the count.
        pass(&b, t0).record(None);
        fail(&b, t0, ErrorClass::Transient);
        fail(&b, t0, ErrorClass::Transient);
        assert!(matches!(b.admit_at(t0), Admission::Pass(_)));
        fail(&b, t0, ErrorClass::Transient);
        match b.admit_at(t0 + Duration::from_secs(10)) {
            Admission::Skip { retry_after } => assert_eq!(retry_after, Duration::from_secs(20)),
            Admission::Pass(_) => panic!("open circuit admitted a request"),
        }
        // After the cooldown: one trial at a time.
        let later = t0 + Duration::from_secs(30);
        let trial = pass(&b, later);
        assert!(trial.trial);
        assert!(matches!(b.admit_at(later), Admission::Skip { .. }));
        trial.record(None);
        assert_eq!(*b.lock(), State::Closed { failures: 0 });
    }

    #[test]
    fn failed_trial_reopens() {
        let b = breaker(1, 5);
        let t0 = Instant::now();
        fail(&b, t0, ErrorClass::Transient);
        let later = t0 + Duration::from_secs(5);
        fail(&b, later, ErrorClass::Timeout);
        assert!(matches!(
            b.admit_at(later + Duration::from_secs(4)),
            Admission::Skip { .. }
        ));
        assert!(matches!(
            b.admit_at(later + Duration::from_secs(5)),
            Admission::Pass(_)
        ));
    }

    #[test]
    fn other_classes_never_change_the_state() {
        let b = breaker(1, 5);
        let t0 = Instant::now();
        for class in [
            ErrorClass::Auth,
            ErrorClass::Billing,
            ErrorClass::NotFound,
            ErrorClass::InvalidRequest,
        ] {
            fail(&b, t0, class);
            assert_eq!(*b.lock(), State::Closed { failures: 0 });
        }
        fail(&b, t0, ErrorClass::Transient);
        let later = t0 + Duration::from_secs(6);
        // A half-open trial ending in `auth` frees the trial without closing the circuit.
        fail(&b, later, ErrorClass::Auth);
        assert_eq!(*b.lock(), State::HalfOpen { trial: false });
    }

    #[test]
    fn abandoned_trial_frees_the_slot() {
        let b = breaker(1, 1);
        let t0 = Instant::now();
        fail(&b, t0, ErrorClass::Transient);
        let later = t0 + Duration::from_secs(1);
        drop(pass(&b, later));
        assert_eq!(*b.lock(), State::HalfOpen { trial: false });
        assert!(matches!(b.admit_at(later), Admission::Pass(_)));
    }
}
