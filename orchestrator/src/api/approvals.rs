//! Approval routes (orchestrator.md §2.10): listings, the approval of a step or item, and the
//! decision, committed before the answer.

use super::{
    management, parse_body, read_body, route_error, run_full, run_not_found, store_error, State,
};
use crate::actors::manager::{Route, RouteError};
use crate::engine::{DecideError, Event, Reply};
use crate::model::{ApprovalRecord, ApprovalStatus};
use crate::store::ApprovalFilter;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ktsu_shared::api_error::ApiError;
use ktsu_shared::ids::StepAddress;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    run_id: Option<String>,
    status: Option<String>,
}

fn approval_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "approval_not_found",
        "approval not found",
    )
}

fn step_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "step_not_found", "step not found")
}

/// `GET /approvals`: a top-level array, `created_at` ascending; default status `pending`.
pub async fn list(
    req: HttpRequest,
    state: State,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let status = match q.status.as_deref() {
        None => Some(ApprovalStatus::Pending),
        Some("all") => None,
        Some(s) => Some(ApprovalStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_request(format!("unknown approval status \"{s}\""))
        })?),
    };
    let filter = ApprovalFilter {
        run_id: q.run_id.clone(),
        status,
    };
    let list = state
        .store
        .list_approvals(&filter)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /runs/{id}/approvals`.
pub async fn of_run(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    if state
        .store
        .get_run(&path)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(run_not_found());
    }
    let list = state
        .store
        .get_approvals(&path, None)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(json!({"approvals": list})))
}

#[derive(Debug, Deserialize)]
pub struct StepQuery {
    tool_use_id: Option<String>,
}

/// Checks that the run and the step (or item) exist.
async fn check_step(state: &State, run_id: &str, address: &str) -> Result<(), ApiError> {
    let full = run_full(state, run_id).await?;
    let parsed = StepAddress::parse(address).map_err(|_| step_not_found())?;
    let step = full
        .steps
        .iter()
        .find(|s| s.id == parsed.step_id)
        .ok_or_else(step_not_found)?;
    if let Some(i) = parsed.index {
        let has = step
            .items
            .as_ref()
            .is_some_and(|items| items.iter().any(|it| it.index == i));
        if !has {
            return Err(step_not_found());
        }
    }
    Ok(())
}

/// The pending approval of a step (or the given one), else the most recent.
fn pick<'a>(list: &'a [ApprovalRecord], tool_use_id: Option<&str>) -> Option<&'a ApprovalRecord> {
    match tool_use_id {
        Some(id) => list.iter().find(|a| a.tool_use_id == id),
        None => list
            .iter()
            .find(|a| a.status == ApprovalStatus::Pending)
            .or_else(|| list.iter().max_by_key(|a| a.created_at)),
    }
}

/// `GET /runs/{id}/steps/{step}/approval`.
pub async fn of_step(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
    q: web::Query<StepQuery>,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let (run_id, address) = path.into_inner();
    check_step(&state, &run_id, &address).await?;
    let list = state
        .store
        .get_approvals(&run_id, Some(&address))
        .await
        .map_err(store_error)?;
    let a = pick(&list, q.tool_use_id.as_deref()).ok_or_else(approval_not_found)?;
    Ok(HttpResponse::Ok().json(a))
}

/// `POST /runs/{id}/steps/{step}/approval/decide`.
pub async fn decide(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let (run_id, address) = path.into_inner();
    let body = parse_body(&read_body(payload, state.settings.max_body_bytes).await?)?;
    let approved = match body.get("decision").and_then(Value::as_str) {
        Some("approved") => true,
        Some("rejected") => false,
        _ => {
            return Err(ApiError::invalid_request(
                "decision must be \"approved\" or \"rejected\"",
            ))
        }
    };
    let text = |key: &str, max: usize| -> Result<Option<String>, ApiError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(ApiError::invalid_request(format!(
                "{key} must be at most {max} characters"
            ))),
            Some(_) => Err(ApiError::invalid_request(format!("{key} must be a string"))),
        }
    };
    let tool_use_id = text("tool_use_id", 256)?;
    let comment = text("comment", 4096)?;
    let decided_by = text("decided_by", 256)?;
    check_step(&state, &run_id, &address).await?;
    let list = state
        .store
        .get_approvals(&run_id, Some(&address))
        .await
        .map_err(store_error)?;
    let target = pick(&list, tool_use_id.as_deref()).ok_or_else(approval_not_found)?;
    if target.status != ApprovalStatus::Pending {
        return Err(already_decided(target.clone()));
    }
    let event = Event::Decide {
        address,
        tool_use_id: Some(target.tool_use_id.clone()),
        approved,
        comment,
        decided_by,
    };
    match state.manager.send(Route { run_id, event }).await {
        Ok(Ok(Some(Reply::Decide(Ok(a))))) => Ok(HttpResponse::Ok().json(*a)),
        Ok(Ok(Some(Reply::Decide(Err(DecideError::AlreadyDecided(a)))))) => {
            Err(already_decided(*a))
        }
        Ok(Ok(Some(Reply::Decide(Err(DecideError::StepNotFound))))) => Err(step_not_found()),
        Ok(Ok(Some(Reply::Decide(Err(DecideError::ApprovalNotFound))))) => {
            Err(approval_not_found())
        }
        // The run ended meanwhile: its approvals were cancelled.
        Ok(Err(RouteError::Finished(_))) => Err(already_decided(target.clone())),
        Ok(Err(e)) => Err(route_error(e)),
        Ok(Ok(_)) => Err(ApiError::internal("unexpected reply to a decision")),
        Err(e) => Err(ApiError::internal(e)),
    }
}

fn already_decided(a: ApprovalRecord) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "approval_already_decided",
        format!("the approval is already {}", a.status.as_str()),
    )
    .with_field("approval", json!(a))
}
