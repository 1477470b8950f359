//! The runtime's HTTP API (runtime-gateway.md §2.1): one route table, used by the server and by
//! in-process tests. Internal routes check `KTSU_INTERNAL_TOKEN` before anything else (the body
//! is not even read without it).

mod cancel;
mod health;
mod invoke;

use crate::manager::{Counters, Manager};
use crate::settings::Settings;
use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse, ResponseError};
use ktsu_shared::api_error::ApiError;
use ktsu_shared::service::auth::check_bearer;
use ktsu_shared::service::lifecycle::Lifecycle;
use std::sync::Arc;

/// What the handlers share.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub runtime_id: Arc<str>,
    pub lifecycle: Lifecycle,
    pub manager: Addr<Manager>,
    pub counters: Arc<Counters>,
}

/// The route table; `max_body_bytes` limits `/invoke` and `/cancel` bodies.
pub fn configure(max_body_bytes: usize) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg| routes(cfg, max_body_bytes)
}

fn routes(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .route(web::head().to(health::health))
            .default_service(web::to(|| not_allowed(&[Method::GET, Method::HEAD]))),
    )
    .service(
        web::resource("/health/live")
            .route(web::get().to(health::live))
            .route(web::head().to(health::live))
            .default_service(web::to(|| not_allowed(&[Method::GET, Method::HEAD]))),
    )
    .service(
        web::resource("/invoke")
            .app_data(invoke::json_config(max_body_bytes))
            .wrap(from_fn(require_internal_token))
            .route(web::post().to(invoke::invoke))
            .default_service(web::to(|| not_allowed(&[Method::POST]))),
    )
    .service(
        web::resource("/cancel")
            .app_data(ktsu_shared::api_error::json_config(max_body_bytes))
            .wrap(from_fn(require_internal_token))
            .route(web::post().to(cancel::cancel))
            .default_service(web::to(|| not_allowed(&[Method::POST]))),
    );
}

async fn not_allowed(allowed: &[Method]) -> HttpResponse {
    ApiError::method_not_allowed(allowed).error_response()
}

/// 401 `unauthorized` unless `Authorization: Bearer <KTSU_INTERNAL_TOKEN>` (when it is set).
async fn require_internal_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let token = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.settings.internal_token.clone());
    if let Err(err) = check_bearer(req.headers(), token.as_ref()) {
        if req.path() == "/invoke" {
            invoke::log_rejection(&err);
        }
        return Ok(req
            .into_response(err.error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
