//! The arbiters legs run on: a few threads, each with its own event loop, so that agent loops
//! use every core while the invocation manager stays a single actor. Legs are spread round
//! robin.

use crate::clients::Clients;
use crate::leg::{self, LegInput};
use crate::settings::Settings;
use actix_rt::{Arbiter, ArbiterHandle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Handles to the leg arbiters (cheap to clone).
#[derive(Clone)]
pub struct LegPool {
    arbiters: Arc<[ArbiterHandle]>,
    next: Arc<AtomicUsize>,
}

/// The arbiters themselves, kept to stop them at the end.
pub struct LegArbiters(Vec<Arbiter>);

impl LegArbiters {
    pub fn stop(self) {
        for arbiter in self.0 {
            arbiter.stop();
        }
    }
}

impl LegPool {
    /// Starts `threads` arbiters (at least one), each with its HTTP clients. Must run inside an
    /// actix system.
    pub fn start(threads: usize, settings: &Arc<Settings>) -> (LegPool, LegArbiters) {
        let arbiters: Vec<Arbiter> = (0..threads.max(1)).map(|_| Arbiter::new()).collect();
        for arbiter in &arbiters {
            let settings = Arc::clone(settings);
            arbiter.spawn_fn(move || {
                if let Err(err) = Clients::install(&settings) {
                    log::error!(event = "runtime.client_failed", error = err.to_string().as_str();
                        "no shared HTTP clients on a leg arbiter; legs there build their own");
                }
            });
        }
        let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
        (
            LegPool {
                arbiters: handles.into(),
                next: Arc::new(AtomicUsize::new(0)),
            },
            LegArbiters(arbiters),
        )
    }

    /// Starts `input` on the next arbiter; on the current one when that arbiter is gone
    /// (shutdown), so that every admitted leg still reports and delivers its callback.
    pub fn spawn(&self, input: Box<LegInput>) {
        let slot = Arc::new(Mutex::new(Some(input)));
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        let remote = Arc::clone(&slot);
        let sent = self.arbiters[index].spawn_fn(move || {
            if let Some(input) = take(&remote) {
                actix_rt::spawn(leg::run(input));
            }
        });
        if !sent {
            if let Some(input) = take(&slot) {
                actix_rt::spawn(leg::run(input));
            }
        }
    }
}

fn take(slot: &Mutex<Option<Box<LegInput>>>) -> Option<Box<LegInput>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}
