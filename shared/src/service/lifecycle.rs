//! Starting → ready → draining: the state behind `/health`, `/health/live` and the 503
//! `starting`/`shutting_down` answers (cli-and-ops.md §3, §4). Cheap to clone and read from
//! every request.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
}

impl Phase {
    /// The `status` word of a 503 health body for this phase (`ok` when ready).
    pub fn status_word(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ok",
            Phase::Draining => "draining",
        }
    }
}

/// Shared lifecycle of one service.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle(Arc<AtomicU8>);

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    pub fn set_ready(&self) {
        // Never leaves draining: a late "ready" must not reopen a stopping service.
        let _ = self
            .0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    pub fn set_draining(&self) {
        self.0.store(2, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
    }

    pub fn is_draining(&self) -> bool {
        self.phase() == Phase::Draining
    }

    /// `/health/live`: 200 `{"status":"ok"}` once ready (draining included), else 503
    /// `{"status":"starting"}`.
    pub fn live_response(&self) -> actix_web::HttpResponse {
        use actix_web::http::header::CACHE_CONTROL;
        let mut builder = match self.phase() {
            Phase::Starting => actix_web::HttpResponse::ServiceUnavailable(),
            Phase::Ready | Phase::Draining => actix_web::HttpResponse::Ok(),
        };
        let status = match self.phase() {
            Phase::Starting => "starting",
            _ => "ok",
        };
        builder
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "status": status }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let l = Lifecycle::new();
        assert_eq!(l.phase(), Phase::Starting);
        l.set_ready();
        assert!(l.is_ready());
        l.set_draining();
        l.set_ready();
        assert!(l.is_draining());
        assert_eq!(l.phase().status_word(), "draining");
    }

    #[test]
    fn live_answers() {
        let l = Lifecycle::new();
        assert_eq!(l.live_response().status(), 503);
        l.set_ready();
        assert_eq!(l.live_response().status(), 200);
        l.set_draining();
        assert_eq!(l.live_response().status(), 200);
    }
}
