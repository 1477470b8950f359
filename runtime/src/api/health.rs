//! `GET|HEAD /health` and `/health/live` (runtime-gateway.md §2.1, cli-and-ops.md §4).

use super::AppState;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{web, HttpResponse};
use ktsu_shared::service::lifecycle::Phase;
use serde_json::json;

/// 200 `ok` with the counters; 503 while starting or draining.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let phase = state.lifecycle.phase();
    let mut response = match phase {
        Phase::Ready => HttpResponse::Ok(),
        Phase::Starting | Phase::Draining => HttpResponse::ServiceUnavailable(),
    };
    response
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({
            "status": phase.status_word(),
            "service": "runtime",
            "runtime_id": &*state.runtime_id,
            "version": ktsu_shared::VERSION,
            "running": state.counters.running(),
            "queued": state.counters.queued(),
            "max_concurrency": state.settings.max_concurrency,
        }))
}

/// 200 `{"status":"ok"}` once ready, draining included.
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    state.lifecycle.live_response()
}
