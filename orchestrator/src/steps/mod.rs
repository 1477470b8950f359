//! Effectful step executors: agent dispatch to runtimes (orchestrator.md §5.2.3–§5.2.5) and
//! webhook delivery (§5.5). Each returns the event the RunActor feeds back into the engine.

pub mod agent;
pub mod webhook;

use crate::actors::registry::RuntimeRegistry;
use crate::store::Store;
use actix::Addr;
use std::time::Duration;

/// What outbound work needs; cheap to clone (awc clients are reference counted and live on the
/// actors' arbiter thread).
#[derive(Clone)]
pub struct Outbound {
    /// Service-to-service client: internal token, dispatch timeout.
    pub internal: awc::Client,
    /// Webhook client: no credentials, per-request timeouts.
    pub web: awc::Client,
    pub registry: Addr<RuntimeRegistry>,
    pub store: Store,
    pub dispatch_timeout: Duration,
    pub dispatch_retry: Duration,
}

/// ±20 % jitter around `base` (randomness from the OS; a failure just means no jitter).
pub fn jitter(base: Duration) -> Duration {
    let r = ktsu_shared::ids::random_hex(2)
        .ok()
        .and_then(|h| u16::from_str_radix(&h, 16).ok())
        .unwrap_or(u16::MAX / 2);
    let factor = 0.8 + 0.4 * (f64::from(r) / f64::from(u16::MAX));
    base.mul_f64(factor)
}

/// URLs in error texts lose their query string (it may carry secrets).
pub fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}
