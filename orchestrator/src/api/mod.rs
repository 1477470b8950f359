//! The orchestrator's HTTP API (orchestrator.md §2): one `configure()` route table used by
//! the server and the in-process tests. Handlers are thin: extract, call the store or an actor,
//! map the error. Every error is the JSON envelope; reads are served from the store.

mod approvals;
mod callback;
mod cursor;
mod health;
mod heartbeat;
mod invoke;
mod reload;
mod runs;

use crate::actors::manager::{RouteError, RunManager, SharedSnapshot};
use crate::actors::registry::RuntimeRegistry;
use crate::actors::supervisor::StepSupervisor;
use crate::engine::EngineConfig;
use crate::settings::Settings;
use crate::snapshot::Fingerprint;
use crate::store::{Store, StoreError};
use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ktsu_shared::api_error::ApiError;
use ktsu_shared::service::auth::check_bearer;
use ktsu_shared::service::lifecycle::{Lifecycle, Phase};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// When the snapshot was last compared with the disk, and a fingerprint that failed to load
/// (not validated again).
#[derive(Debug)]
pub struct ReloadState {
    pub last_check: Instant,
    pub failed: Option<Fingerprint>,
}

/// Everything handlers need.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub snapshot: SharedSnapshot,
    pub manager: Addr<RunManager>,
    pub registry: Addr<RuntimeRegistry>,
    pub supervisor: Addr<StepSupervisor>,
    pub lifecycle: Lifecycle,
    pub config: Arc<EngineConfig>,
    pub reload: Mutex<ReloadState>,
}

pub type State = web::Data<AppState>;

/// Route table (orchestrator.md §2.2). `GET` routes also answer `HEAD`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .route(web::head().to(health::health)),
    )
    .service(
        web::resource("/health/live")
            .route(web::get().to(health::live))
            .route(web::head().to(health::live)),
    )
    .service(web::resource("/invoke/{workflow}").route(web::post().to(invoke::invoke)))
    .service(
        web::resource("/runs")
            .route(web::get().to(runs::list))
            .route(web::head().to(runs::list)),
    )
    .service(
        web::resource("/runs/{run_id}")
            .route(web::get().to(runs::get))
            .route(web::head().to(runs::get)),
    )
    .service(
        web::resource("/runs/{run_id}/envelope")
            .route(web::get().to(runs::envelope))
            .route(web::head().to(runs::envelope)),
    )
    .service(web::resource("/runs/{run_id}/cancel").route(web::post().to(runs::cancel)))
    .service(
        web::resource("/runs/{run_id}/approvals")
            .route(web::get().to(approvals::of_run))
            .route(web::head().to(approvals::of_run)),
    )
    .service(
        web::resource("/runs/{run_id}/steps/{step_id}/approval")
            .route(web::get().to(approvals::of_step))
            .route(web::head().to(approvals::of_step)),
    )
    .service(
        web::resource("/runs/{run_id}/steps/{step_id}/approval/decide")
            .route(web::post().to(approvals::decide)),
    )
    .service(
        web::resource("/approvals")
            .route(web::get().to(approvals::list))
            .route(web::head().to(approvals::list)),
    )
    .service(
        web::resource("/runs/{run_id}/steps/{step_id}/complete")
            .route(web::post().to(callback::complete)),
    )
    .service(web::resource("/heartbeat").route(web::post().to(heartbeat::heartbeat)))
    .service(web::resource("/runtimes/register").route(web::post().to(heartbeat::register)))
    .service(
        web::resource("/runtimes")
            .route(web::get().to(heartbeat::list))
            .route(web::head().to(heartbeat::list)),
    )
    .service(web::resource("/reload").route(web::post().to(reload::reload)));
}

/// Management routes: `Authorization: Bearer <KTSU_API_KEY>` when the key is set.
pub fn management(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    check_bearer(req.headers(), state.settings.api_key.as_ref())
}

/// Service-to-service routes: `Authorization: Bearer <KTSU_INTERNAL_TOKEN>` when set.
pub fn internal(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    check_bearer(req.headers(), state.settings.internal_token.as_ref())
}

/// 503 `starting` / `shutting_down` unless ready.
pub fn ready(state: &AppState) -> Result<(), ApiError> {
    match state.lifecycle.phase() {
        Phase::Ready => Ok(()),
        Phase::Starting => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the orchestrator is starting",
        )),
        Phase::Draining => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the orchestrator is shutting down",
        )),
    }
}

/// 503 `store_unavailable` (the cause goes to the log, not the body).
pub fn store_error(e: StoreError) -> ApiError {
    log::error!(target: "ktsu_orchestrator::api", event = "store.error", error = e.to_string().as_str(); "store failure");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the run store is unavailable",
    )
    .with_retry_after(1)
    .with_cause(e)
}

/// Maps a routing failure.
pub fn route_error(e: RouteError) -> ApiError {
    match e {
        RouteError::NotFound => run_not_found(),
        RouteError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the run did not answer in time; retry",
        )
        .with_retry_after(1),
        RouteError::Store(cause) => store_error(StoreError::Unavailable(cause)),
        RouteError::Finished(_) => {
            ApiError::new(StatusCode::CONFLICT, "run_finished", "the run has ended")
        }
    }
}

pub fn run_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "run_not_found", "run not found")
}

/// The run with its steps, or 404 `run_not_found` / 503 `store_unavailable`.
pub async fn run_full(state: &AppState, run_id: &str) -> Result<crate::model::RunFull, ApiError> {
    state
        .store
        .get_run_full(run_id)
        .await
        .map_err(store_error)?
        .ok_or_else(run_not_found)
}

/// A JSON 200 answer.
pub fn ok_json(value: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

/// Reads a request body up to `limit` bytes (413 `payload_too_large` beyond it).
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    use futures_core::Stream;
    use std::pin::Pin;
    let mut body = web::BytesMut::new();
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await;
        match next {
            None => return Ok(body.freeze()),
            Some(Ok(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::payload_too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                return Err(ApiError::invalid_json(format!(
                    "invalid JSON: request body could not be read: {e}"
                )))
            }
        }
    }
}

/// Parses a request body as JSON whatever its content type; an empty body is `{}`.
pub fn parse_body(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid_json(format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests;
