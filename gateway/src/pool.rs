//! The provider pool (runtime-gateway.md §9.4): at most `max_concurrency` upstream attempts of
//! one provider in flight; further callers wait in a FIFO queue of at most `max_queue`; a full
//! queue refuses (`overloaded`); a caller whose deadline passes while queued leaves the queue
//! (`deadline_exceeded`). A slot is returned when its [`Slot`] is dropped, so it comes back on
//! every exit path: success, error, timeout and a client that disconnects (actix drops the
//! handler future, and with it the slot or the queue ticket).
//!
//! Why not an actor: an actor would serialise every acquire and release through one mailbox and
//! cost each call two cross-thread hops. The pool is instead one small state machine behind a
//! `std` mutex held only for a few instructions (never across an await); waiters are parked on
//! one-shot channels. The semantics of §9.4 (bounded in-flight count, bounded FIFO queue,
//! hand-over to the head of the queue, deadline while queued) are the same.

use crate::waitlist::WaitList;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Why no slot was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_queue` callers are already waiting.
    QueueFull,
    /// The request deadline passed while waiting.
    Deadline,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    queue: WaitList<(), ()>,
}

#[derive(Debug)]
pub struct Pool {
    max_concurrency: usize,
    max_queue: usize,
    state: Mutex<State>,
}

/// One upstream attempt's right to run; returned to the pool on drop.
#[derive(Debug)]
pub struct Slot<'a> {
    pool: &'a Pool,
}

/// A place in the queue; on drop it leaves the queue, or passes on a slot that was handed to
/// it but never taken (the caller gave up at the same moment).
struct Ticket<'a> {
    pool: &'a Pool,
    id: u64,
    rx: tokio::sync::oneshot::Receiver<()>,
}

impl Pool {
    pub fn new(max_concurrency: u64, max_queue: u64) -> Self {
        Pool {
            max_concurrency: usize::try_from(max_concurrency.max(1)).unwrap_or(usize::MAX),
            max_queue: usize::try_from(max_queue).unwrap_or(usize::MAX),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attempts in flight and callers queued.
    #[cfg(test)]
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.in_flight, state.queue.len())
    }

    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// A slot now, or after waiting in line until `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<Slot<'_>, Refusal> {
        let (id, rx) = {
            let mut state = self.lock();
            if state.in_flight < self.max_concurrency {
                state.in_flight += 1;
                return Ok(Slot { pool: self });
            }
            if state.queue.len() >= self.max_queue {
                return Err(Refusal::QueueFull);
            }
            state.queue.push(())
        };
        let mut ticket = Ticket { pool: self, id, rx };
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, &mut ticket.rx).await {
            // The slot now belongs to the caller (the ticket's receiver is empty).
            Ok(Ok(())) => Ok(Slot { pool: self }),
            // The pool never drops a sender without sending; treat it like a passed deadline.
            Ok(Err(_)) | Err(_) => Err(Refusal::Deadline),
        }
    }

    /// Hands the slot to the first waiter still there, else frees it. Called with the lock.
    fn release(&self, state: &mut State) {
        while let Some(waiter) = state.queue.pop_front() {
            if waiter.send(()).is_ok() {
                return;
            }
        }
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        self.pool.release(&mut state);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        // Still queued: just leave. Served but not taken: pass the slot on. Grants are sent
        // under the lock held here, so none can arrive after this check.
        if !state.queue.remove(self.id) && self.rx.try_recv().is_ok() {
            self.pool.release(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};
    use std::time::Duration;

    fn later(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// Polls a future once (so that it queues) without a runtime waking it.
    fn poll_once<F: Future + Unpin>(f: &mut F) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        std::pin::Pin::new(f).poll(&mut cx).is_ready()
    }

    #[actix_rt::test]
    async fn grants_up_to_max_then_queues_fifo() {
        let pool = Pool::new(2, 2);
        let a = pool.acquire(later(1000)).await.unwrap();
        let b = pool.acquire(later(1000)).await.unwrap();
        assert_eq!(pool.load(), (2, 0));
        let mut c = Box::pin(pool.acquire(later(2000)));
        let mut d = Box::pin(pool.acquire(later(2000)));
        assert!(!poll_once(&mut c) && !poll_once(&mut d));
        assert_eq!(pool.load(), (2, 2));
        assert_eq!(
            pool.acquire(later(1000)).await.unwrap_err(),
            Refusal::QueueFull
        );
        drop(a);
        assert_eq!(
            pool.load(),
            (2, 1),
            "a's slot went to c, the head of the queue"
        );
        assert!(!poll_once(&mut d), "d still waits");
        let c = c.await.unwrap();
        drop(b);
        let d = d.await.unwrap();
        assert_eq!(pool.load(), (2, 0));
        drop((c, d));
        assert_eq!(pool.load(), (0, 0));
    }

    #[actix_rt::test]
    async fn deadline_while_queued_leaves_the_queue() {
        let pool = Pool::new(1, 4);
        let held = pool.acquire(later(1000)).await.unwrap();
        let started = Instant::now();
        assert_eq!(
            pool.acquire(later(50)).await.unwrap_err(),
            Refusal::Deadline
        );
        assert!(started.elapsed() >= Duration::from_millis(45));
        assert_eq!(pool.load(), (1, 0));
        drop(held);
        assert_eq!(pool.load(), (0, 0));
    }

    #[actix_rt::test]
    async fn an_abandoned_waiter_never_leaks_a_slot() {
        let pool = Pool::new(1, 4);
        let held = pool.acquire(later(1000)).await.unwrap();
        let mut waiting = Box::pin(pool.acquire(later(1000)));
        assert!(!poll_once(&mut waiting));
        assert_eq!(pool.load(), (1, 1));
        drop(waiting);
        assert_eq!(
            pool.load(),
            (1, 0),
            "a client that disconnects leaves the queue"
        );
        drop(held);
        assert_eq!(pool.load(), (0, 0));

        // Granted but dropped before it ran: the slot is passed on, not lost.
        let held = pool.acquire(later(1000)).await.unwrap();
        let mut first = Box::pin(pool.acquire(later(1000)));
        let mut second = Box::pin(pool.acquire(later(1000)));
        assert!(!poll_once(&mut first) && !poll_once(&mut second));
        drop(held);
        assert_eq!(pool.load(), (1, 1), "the slot went to the first waiter");
        drop(first);
        assert_eq!(
            pool.load(),
            (1, 0),
            "and on to the second when the first gave up"
        );
        assert!(poll_once(&mut second));
        drop(second);
        assert_eq!(pool.load(), (0, 0));
    }
}
