//! The gateway's HTTP API (runtime-gateway.md §6): one route table, used by the server and by
//! in-process tests. Every error answer is the JSON envelope with `retryable`.

mod health;
mod invoke;
mod validate;

use actix_web::http::Method;
use actix_web::{web, HttpResponse, ResponseError};
use ktsu_shared::api_error::ApiError;

/// The route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .route(web::head().to(health::health))
            .default_service(web::to(read_only_method)),
    )
    .service(
        web::resource("/health/live")
            .route(web::get().to(health::live))
            .route(web::head().to(health::live))
            .default_service(web::to(read_only_method)),
    )
    .service(
        web::resource("/invoke")
            .route(web::post().to(invoke::invoke))
            .default_service(web::to(invoke::wrong_method)),
    );
}

/// Unknown routes: 404 `not_found`.
pub async fn not_found() -> HttpResponse {
    ApiError::not_found()
        .with_field("retryable", false)
        .error_response()
}

/// 405 on the health routes.
async fn read_only_method() -> HttpResponse {
    ApiError::method_not_allowed(&[Method::GET, Method::HEAD])
        .with_field("retryable", false)
        .error_response()
}
