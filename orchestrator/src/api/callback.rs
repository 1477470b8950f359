//! `POST /runs/{run_id}/steps/{step_id}/complete` (orchestrator.md §2.11, §6.1–§6.2): the
//! runtime callback, committed before the answer; duplicates and late results never block.

use super::{internal, parse_body, read_body, route_error, run_not_found, State};
use crate::actors::manager::{Route, RouteError};
use crate::engine::{Event, Reply};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ktsu_shared::api_error::ApiError;
use ktsu_shared::ids::StepAddress;
use ktsu_shared::wire::callback::{CallbackAnswer, CallbackPayload, CallbackStatus, IgnoreReason};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    attempt: Option<String>,
}

fn step_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "step_not_found", "step not found")
}

pub async fn complete(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
    query: web::Query<CallbackQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    internal(&req, &state)?;
    let (run_id, address) = path.into_inner();
    let bytes = read_body(payload, state.settings.max_callback_bytes).await?;
    let value = parse_body(&bytes)?;
    let cb: CallbackPayload = serde_json::from_value(value)
        .map_err(|e| ApiError::invalid_request(format!("invalid request: {e}")))?;
    if !cb.run_id.is_empty() && cb.run_id != run_id {
        return Err(ApiError::invalid_request("run_id does not match the path"));
    }
    if !cb.step_id.is_empty() && cb.step_id != address {
        return Err(ApiError::invalid_request("step_id does not match the path"));
    }
    if cb.status == CallbackStatus::PendingApproval {
        let ok = cb
            .pending_approval
            .as_ref()
            .is_some_and(|p| !p.tool_name.is_empty() && !p.tool_use_id.is_empty());
        if !ok {
            return Err(ApiError::invalid_request(
                "pending_approval requires pending_approval.tool_name and tool_use_id",
            ));
        }
    }
    let attempt = match &query.attempt {
        None => None,
        Some(a) => Some(
            a.parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::invalid_request("attempt must be an integer ≥ 1"))?,
        ),
    };
    if StepAddress::parse(&address).is_err() {
        return Err(step_not_found());
    }
    let event = Event::Callback {
        address,
        attempt,
        payload: Box::new(cb),
    };
    let answer = match state
        .manager
        .send(Route {
            run_id: run_id.clone(),
            event,
        })
        .await
    {
        Ok(Ok(Some(Reply::Callback(a)))) => a,
        Ok(Ok(Some(Reply::UnknownStep))) => return Err(step_not_found()),
        Ok(Err(RouteError::Finished(_))) => CallbackAnswer::Ignored {
            reason: IgnoreReason::RunFinished,
        },
        Ok(Err(RouteError::NotFound)) => return Err(run_not_found()),
        Ok(Err(e)) => return Err(route_error(e)),
        Ok(Ok(_)) => return Err(ApiError::internal("unexpected reply to a callback")),
        Err(e) => return Err(ApiError::internal(e)),
    };
    if let CallbackAnswer::Ignored { reason } = &answer {
        let reason = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        log::info!(target: "ktsu_orchestrator::api", event = "callback.ignored", run_id = run_id.as_str(), reason = reason.as_str(); "callback ignored");
    }
    Ok(HttpResponse::Ok().json(answer))
}
