//! `POST /reload` (orchestrator.md §2.14): forces the project check; an invalid project keeps
//! the previous snapshot and answers 422 `project_invalid` with every diagnostic.

use super::invoke::refresh;
use super::{management, State};
use crate::actors::manager::current;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use ktsu_shared::api_error::ApiError;
use serde_json::json;

pub async fn reload(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    match refresh(&state, true).await {
        Ok(_) => {
            let snap = current(&state.snapshot);
            Ok(HttpResponse::Ok().json(json!({"status": "reloaded", "digest": snap.digest, "workflows": snap.workflow_count()})))
        }
        Err(errors) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "project_invalid",
            format!(
                "the project has {} error(s); the previous version stays active",
                errors.len()
            ),
        )
        .with_field("errors", json!(errors))),
    }
}
