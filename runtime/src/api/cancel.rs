//! `POST /cancel` (runtime-gateway.md §2.5): that attempt of that step address only.

use super::AppState;
use crate::manager::Cancel;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use ktsu_shared::api_error::ApiError;
use ktsu_shared::wire::invoke::{CancelAnswer, CancelRequest};

pub async fn cancel(
    state: web::Data<AppState>,
    body: web::Json<CancelRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    if request.run_id.is_empty() || request.step_id.is_empty() || request.attempt == 0 {
        return Err(ApiError::invalid_request(
            "invalid request: run_id, step_id and attempt (at least 1) are required",
        ));
    }
    let (run_id, step_id, attempt) = (
        request.run_id.clone(),
        request.step_id.clone(),
        request.attempt,
    );
    let cancelled = state
        .manager
        .send(Cancel(request))
        .await
        .map_err(ApiError::internal)?;
    match cancelled {
        Some(entry) => Ok(HttpResponse::Ok().json(CancelAnswer {
            cancelled: vec![entry],
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no invocation of {run_id} step {step_id} attempt {attempt}"),
        )),
    }
}
