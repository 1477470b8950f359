//! `GET|HEAD /health` and `/health/live` (runtime-gateway.md §6.1, cli-and-ops.md §4): no
//! provider is ever called for a health check.

use crate::state::Gateway;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{web, HttpResponse};
use ktsu_shared::service::lifecycle::Phase;

/// 200 `{"status":"ok","service":"gateway","version"}`; 503 with `starting` or `draining`.
pub async fn health(gateway: web::Data<Gateway>) -> HttpResponse {
    let phase = gateway.lifecycle.phase();
    let mut builder = match phase {
        Phase::Ready => HttpResponse::Ok(),
        Phase::Starting | Phase::Draining => HttpResponse::ServiceUnavailable(),
    };
    builder
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "status": phase.status_word(),
            "service": "gateway",
            "version": ktsu_shared::VERSION,
        }))
}

/// 200 `{"status":"ok"}` once ready, draining included.
pub async fn live(gateway: web::Data<Gateway>) -> HttpResponse {
    gateway.lifecycle.live_response()
}
