//! Run budgets, reserve → reconcile (runtime-gateway.md §10.3): before each attempt the
//! worst-case cost of the call is reserved in the run's ledger; after it the reservation is
//! released and, on success, the real cost committed. Concurrent calls of one run therefore
//! never spend more than the limit, give or take one call's difference between estimate and
//! actual cost.
//!
//! A call that would fit once other reservations of the run are released waits for them in a
//! FIFO queue; every decision (grant, skip, keep waiting) is made under the ledger's lock when
//! a reservation is released.

use crate::waitlist::WaitList;
use ktsu_shared::wire::gateway::BudgetState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Float noise allowance in the comparisons (sums of prices of a few thousand calls).
const EPSILON: f64 = 1e-12;

/// All ledgers, by budget key (the root run id).
#[derive(Debug)]
pub struct Ledgers {
    ttl: Duration,
    map: Mutex<LedgerMap>,
}

#[derive(Debug)]
struct LedgerMap {
    ledgers: HashMap<String, Arc<Ledger>>,
    last_sweep: Instant,
}

/// One run's ledger.
#[derive(Debug)]
pub struct Ledger {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    committed: f64,
    reserved: f64,
    reservations: usize,
    last_seen: Instant,
    waiters: WaitList<Want, Grant>,
}

/// What a waiting call needs.
#[derive(Debug, Clone, Copy)]
struct Want {
    limit: f64,
    reserve: f64,
}

/// The decision sent to a waiting call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Reserved,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Fit,
    Wait,
    Skip,
}

/// Why no reservation was made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReserveError {
    /// The call cannot fit in what is left of the limit (`skipped_budget`). The ledger as it
    /// was, for the `budget.rejected` record.
    Skip { committed: f64, reserved: f64 },
    /// The request deadline passed while waiting.
    Deadline,
}

/// A reserved amount; released on drop (failure, disconnect), or committed with the real cost.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<Ledger>,
    amount: f64,
    limit: f64,
    /// How long the call waited for other reservations of the run, if it did.
    pub waited: Option<Duration>,
    settled: bool,
}

impl Ledgers {
    pub fn new(ttl: Duration) -> Self {
        Ledgers {
            ttl,
            map: Mutex::new(LedgerMap {
                ledgers: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// The ledger of `key`, created when missing; `None` (a request with neither a budget run
    /// id nor a run id) gets a private ledger.
    pub fn ledger(&self, key: Option<&str>) -> Arc<Ledger> {
        let Some(key) = key else {
            return Arc::new(Ledger::new());
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(map.last_sweep) >= self.ttl.min(Duration::from_secs(60)) {
            map.last_sweep = now;
            let ttl = self.ttl;
            map.ledgers
                .retain(|_, ledger| Arc::strong_count(ledger) > 1 || !ledger.expired(now, ttl));
        }
        if let Some(ledger) = map.ledgers.get(key) {
            return Arc::clone(ledger);
        }
        let ledger = Arc::new(Ledger::new());
        map.ledgers.insert(key.to_string(), Arc::clone(&ledger));
        ledger
    }

    /// Ledgers currently kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ledgers
            .len()
    }
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            state: Mutex::new(State {
                committed: 0.0,
                reserved: 0.0,
                reservations: 0,
                last_seen: Instant::now(),
                waiters: WaitList::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expired(&self, now: Instant, ttl: Duration) -> bool {
        let state = self.lock();
        state.reservations == 0
            && state.waiters.is_empty()
            && now.duration_since(state.last_seen) >= ttl
    }

    /// Committed and reserved amounts.
    pub fn snapshot(&self) -> (f64, f64) {
        let state = self.lock();
        (state.committed, state.reserved)
    }

    /// Reserves `reserve` USD of a run whose limit is `limit` and whose spend known to the
    /// caller is `spent` (steps 1–5 of §10.3), waiting in line until `deadline` when only other
    /// reservations of the run are in the way.
    pub async fn reserve(
        self: &Arc<Self>,
        limit: f64,
        spent: f64,
        reserve: f64,
        deadline: Instant,
    ) -> Result<Reservation, ReserveError> {
        let want = Want { limit, reserve };
        let (id, rx) = {
            let mut state = self.lock();
            state.last_seen = Instant::now();
            state.committed = state.committed.max(spent);
            match decide(&state, want) {
                Decision::Fit => {
                    state.take(reserve);
                    return Ok(self.reservation(want, None));
                }
                Decision::Skip => {
                    return Err(ReserveError::Skip {
                        committed: state.committed,
                        reserved: state.reserved,
                    })
                }
                Decision::Wait => state.waiters.push(want),
            }
        };
        let started = Instant::now();
        let mut ticket = Ticket {
            ledger: self,
            id,
            want,
            rx,
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, &mut ticket.rx).await {
            Ok(Ok(Grant::Reserved)) => Ok(self.reservation(want, Some(started.elapsed()))),
            Ok(Ok(Grant::Skip)) => {
                let (committed, reserved) = self.snapshot();
                Err(ReserveError::Skip {
                    committed,
                    reserved,
                })
            }
            Ok(Err(_)) | Err(_) => Err(ReserveError::Deadline),
        }
    }

    fn reservation(self: &Arc<Self>, want: Want, waited: Option<Duration>) -> Reservation {
        Reservation {
            ledger: Arc::clone(self),
            amount: want.reserve,
            limit: want.limit,
            waited,
            settled: false,
        }
    }

    /// Step 6: gives back `amount` (and commits `cost`), then serves the queue in order.
    fn settle(&self, amount: f64, cost: f64) -> f64 {
        let mut state = self.lock();
        state.committed += cost;
        state.last_seen = Instant::now();
        state.give_back(amount);
        state.serve_waiters();
        state.committed
    }
}

impl State {
    fn take(&mut self, amount: f64) {
        self.reserved += amount;
        self.reservations += 1;
    }

    fn give_back(&mut self, amount: f64) {
        self.reservations = self.reservations.saturating_sub(1);
        // Exactly zero when nothing is reserved, so rounding residue never accumulates.
        self.reserved = if self.reservations == 0 {
            0.0
        } else {
            (self.reserved - amount).max(0.0)
        };
    }

    /// Grants, skips or keeps waiting the head of the queue, in order, until one must wait.
    fn serve_waiters(&mut self) {
        while let Some(front) = self.waiters.front() {
            let want = front.data;
            match decide(self, want) {
                Decision::Wait => break,
                Decision::Skip => {
                    if let Some(w) = self.waiters.pop_front() {
                        let _ = w.send(Grant::Skip);
                    }
                }
                Decision::Fit => {
                    if let Some(w) = self.waiters.pop_front() {
                        self.take(want.reserve);
                        if w.send(Grant::Reserved).is_err() {
                            self.give_back(want.reserve);
                        }
                    }
                }
            }
        }
    }
}

/// Steps 2–5 of §10.3.
fn decide(state: &State, want: Want) -> Decision {
    let head_room = want.limit - state.committed;
    let available = head_room - state.reserved;
    if available > 0.0 && want.reserve <= available + EPSILON {
        Decision::Fit
    } else if head_room > 0.0 && head_room + EPSILON >= want.reserve {
        Decision::Wait
    } else {
        Decision::Skip
    }
}

/// A call waiting in a ledger's queue; on drop it leaves the queue or hands back a reservation
/// granted at the moment it gave up.
struct Ticket<'a> {
    ledger: &'a Arc<Ledger>,
    id: u64,
    want: Want,
    rx: tokio::sync::oneshot::Receiver<Grant>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        if !state.waiters.remove(self.id) && self.rx.try_recv() == Ok(Grant::Reserved) {
            state.give_back(self.want.reserve);
            state.serve_waiters();
        }
    }
}

impl Reservation {
    /// Reconciles a successful call: the reservation is released, `cost` committed; returns the
    /// response's `budget` (step 7).
    pub fn commit(mut self, cost: f64) -> BudgetState {
        self.settled = true;
        let committed = self.ledger.settle(self.amount, cost);
        BudgetState {
            limit_usd: self.limit,
            spent_usd: committed,
            remaining_usd: self.limit - committed,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.ledger.settle(self.amount, 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn poll_once<F: Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        std::pin::Pin::new(f).poll(&mut cx)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// B1: accepted, reconciled at the actual cost.
    #[actix_rt::test]
    async fn b1_accept_and_reconcile() {
        let ledger = Ledgers::new(Duration::from_secs(3600)).ledger(Some("run_1"));
        let r = ledger.reserve(0.50, 0.47, 0.02286, soon()).await.unwrap();
        let state = r.commit(0.0102);
        assert!(close(state.spent_usd, 0.4802) && close(state.remaining_usd, 0.0198));
        assert_eq!(ledger.snapshot().1, 0.0);
    }

    /// B2: the second call waits for the first and proceeds after it reconciles.
    #[actix_rt::test]
    async fn b2_wait_for_a_reservation_of_the_same_run() {
        let ledger = Ledgers::new(Duration::from_secs(3600)).ledger(Some("run_2"));
        let a = ledger.reserve(0.10, 0.05, 0.03, soon()).await.unwrap();
        let mut b = Box::pin(ledger.reserve(0.10, 0.05, 0.03, soon()));
        assert!(poll_once(&mut b).is_pending());
        a.commit(0.012);
        let b = b.await.unwrap();
        assert!(b.waited.is_some());
        assert!(close(ledger.snapshot().0, 0.062) && close(ledger.snapshot().1, 0.03));
    }

    /// B3, B4, B5.
    #[actix_rt::test]
    async fn b3_b4_b5() {
        let ledgers = Ledgers::new(Duration::from_secs(3600));
        let exhausted = ledgers.ledger(Some("run_3"));
        assert!(matches!(
            exhausted.reserve(0.50, 0.50, 0.01, soon()).await,
            Err(ReserveError::Skip { .. })
        ));
        let parallel = ledgers.ledger(Some("run_4"));
        parallel
            .reserve(1.0, 0.26, 0.0, soon())
            .await
            .unwrap()
            .commit(0.0);
        assert!(matches!(
            parallel.reserve(0.30, 0.20, 0.05, soon()).await,
            Err(ReserveError::Skip { committed, .. }) if close(committed, 0.26)
        ));
        let unpriced = ledgers.ledger(Some("run_5"));
        let r = unpriced.reserve(0.30, 0.10, 0.0, soon()).await.unwrap();
        assert!(close(r.commit(0.0).spent_usd, 0.10));
    }

    #[actix_rt::test]
    async fn waiters_are_served_in_order_and_skipped_when_hopeless() {
        let ledger = Ledgers::new(Duration::from_secs(3600)).ledger(Some("run_6"));
        let a = ledger.reserve(1.0, 0.0, 0.6, soon()).await.unwrap();
        let mut b = Box::pin(ledger.reserve(1.0, 0.0, 0.5, soon()));
        let mut c = Box::pin(ledger.reserve(1.0, 0.0, 0.45, soon()));
        assert!(poll_once(&mut b).is_pending() && poll_once(&mut c).is_pending());
        // a spends 0.6: 0.4 is left, so neither b (0.5) nor c (0.45) can ever fit.
        a.commit(0.6);
        assert!(matches!(b.await, Err(ReserveError::Skip { .. })));
        assert!(matches!(c.await, Err(ReserveError::Skip { .. })));
    }

    #[actix_rt::test]
    async fn deadline_and_disconnect_release_everything() {
        let ledger = Ledgers::new(Duration::from_secs(3600)).ledger(Some("run_7"));
        let a = ledger.reserve(1.0, 0.0, 0.8, soon()).await.unwrap();
        let short = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            ledger.reserve(1.0, 0.0, 0.5, short).await.unwrap_err(),
            ReserveError::Deadline
        );
        // A waiter granted a reservation at the moment it is dropped gives it back.
        let mut b = Box::pin(ledger.reserve(1.0, 0.0, 0.5, soon()));
        assert!(poll_once(&mut b).is_pending());
        drop(a);
        assert!(close(ledger.snapshot().1, 0.5), "granted to b");
        drop(b);
        assert_eq!(ledger.snapshot(), (0.0, 0.0));
    }

    #[test]
    fn private_ledgers_and_ttl() {
        let ledgers = Ledgers::new(Duration::from_millis(0));
        let private = ledgers.ledger(None);
        assert_eq!(ledgers.len(), 0);
        drop(private);
        let kept = ledgers.ledger(Some("run_8"));
        assert_eq!(ledgers.len(), 1);
        // In use: kept by the sweep even though the ttl has passed.
        let _other = ledgers.ledger(Some("run_9"));
        assert_eq!(ledgers.len(), 2);
        drop(kept);
        std::thread::sleep(Duration::from_millis(2));
        let _third = ledgers.ledger(Some("run_10"));
        assert_eq!(ledgers.len(), 2, "run_8 expired; run_9 is held");
    }
}
