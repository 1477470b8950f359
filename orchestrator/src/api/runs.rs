//! Runs (orchestrator.md §2.6–§2.8, §3.7): list with filters and cursor, one run with its
//! steps, the envelope, cancel.

use super::{
    cursor, management, parse_body, read_body, route_error, run_full, run_not_found, store_error,
    State,
};
use crate::actors::manager::{Route, RouteError};
use crate::engine::{CancelError, Event, Reply};
use crate::model::{RunStatus, StepStatus, Totals};
use crate::store::{Cursor, RunFilter};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ktsu_shared::api_error::ApiError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    parent: Option<String>,
    include_children: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    state: State,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let status = match &q.status {
        None => None,
        Some(s) => Some(
            RunStatus::parse(s)
                .ok_or_else(|| ApiError::invalid_request(format!("unknown status \"{s}\"")))?,
        ),
    };
    let include_children = match q.include_children.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::invalid_request(
                "include_children must be true or false",
            ))
        }
    };
    let limit = match &q.limit {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(500),
            _ => return Err(ApiError::invalid_request("limit must be an integer ≥ 1")),
        },
    };
    let after: Option<Cursor> = match &q.cursor {
        None => None,
        Some(c) => {
            Some(cursor::decode(c).ok_or_else(|| ApiError::invalid_request("invalid cursor"))?)
        }
    };
    let filter = RunFilter {
        workflow: q.workflow.clone(),
        status,
        include_children: include_children || q.parent.is_some(),
        parent: q.parent.clone(),
    };
    let runs = state
        .store
        .list_runs(&filter, after.as_ref(), limit)
        .await
        .map_err(store_error)?;
    let next = (runs.len() == limit)
        .then(|| {
            runs.last().map(|r| {
                cursor::encode(&Cursor {
                    created_at: r.created_at,
                    id: r.id.clone(),
                })
            })
        })
        .flatten();
    Ok(HttpResponse::Ok().json(json!({"runs": runs, "next_cursor": next})))
}

pub async fn get(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let full = run_full(&state, &path).await?;
    // `RunFull` serialises as `{"run": …, "steps": […]}`, without an intermediate value.
    Ok(HttpResponse::Ok().json(&full))
}

/// The envelope (orchestrator.md §3.7): finished steps only, with outcome fields.
pub async fn envelope(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let full = run_full(&state, &path).await?;
    let run = &full.run;
    let mut entries = Vec::new();
    let mut included = Vec::new();
    for s in &full.steps {
        if matches!(s.status, StepStatus::Pending | StepStatus::Running) {
            continue;
        }
        let output = match s.status {
            StepStatus::Complete => s.output.clone().unwrap_or(Value::Null),
            StepStatus::Skipped => {
                let mut m = Map::new();
                m.insert("skipped".into(), json!(true));
                m.insert(
                    "reason".into(),
                    json!(s.skip_reason.clone().unwrap_or_default()),
                );
                if let Some(msg) = s.skip_message.clone().filter(|m| !m.is_empty()) {
                    m.insert("message".into(), json!(msg));
                }
                Value::Object(m)
            }
            _ => Value::Null,
        };
        let mut e = Map::new();
        e.insert("id".into(), json!(s.id));
        e.insert("status".into(), json!(s.status.as_str()));
        e.insert("attempt".into(), json!(s.attempt));
        e.insert(
            "timestamp".into(),
            json!(s.ended_at.unwrap_or(s.updated_at)),
        );
        e.insert("output".into(), output);
        let optional: [(&str, Option<Value>); 10] = [
            ("error", s.error.clone().map(Value::String)),
            ("error_code", s.error_code.clone().map(Value::String)),
            ("skip_reason", s.skip_reason.clone().map(Value::String)),
            ("skip_message", s.skip_message.clone().map(Value::String)),
            ("flags", (!s.flags.is_empty()).then(|| json!(s.flags))),
            ("rationale", s.rationale.clone().map(Value::String)),
            ("raw_output", s.raw_output.clone()),
            ("airlock", s.airlock.clone()),
            ("child_run_id", s.child_run_id.clone().map(Value::String)),
            ("items", s.items.as_ref().map(|i| json!(i))),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                e.insert(k.into(), v);
            }
        }
        e.insert("metrics".into(), json!(s.metrics));
        entries.push(Value::Object(e));
        included.push(&s.metrics);
    }
    let mut body = Map::new();
    body.insert("run_id".into(), json!(run.id));
    body.insert("workflow".into(), json!(run.workflow_name));
    body.insert("status".into(), json!(run.status.as_str()));
    if let Some(e) = &run.error {
        body.insert("error".into(), json!(e));
    }
    if let Some(c) = &run.error_code {
        body.insert("error_code".into(), json!(c));
    }
    body.insert("payload".into(), run.payload.clone());
    if let Some(limit) = run.budget_usd {
        let spent = state
            .store
            .tree_spend(&run.root_run_id)
            .await
            .map_err(store_error)?;
        body.insert("cost_budget_usd".into(), json!(limit));
        body.insert("spent_usd".into(), json!(spent));
    }
    body.insert("steps".into(), Value::Array(entries));
    body.insert("totals".into(), json!(Totals::of(included)));
    Ok(HttpResponse::Ok().json(Value::Object(body)))
}

/// `POST /runs/{id}/cancel` (orchestrator.md §2.8).
pub async fn cancel(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let run_id = path.into_inner();
    let body = parse_body(&read_body(payload, state.settings.max_body_bytes).await?)?;
    let reason = match body.get("reason") {
        None | Some(Value::Null) => "by request".to_string(),
        Some(Value::String(r)) if r.chars().count() <= 1024 => r.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid_request(
                "reason must be at most 1024 characters",
            ))
        }
        Some(_) => return Err(ApiError::invalid_request("reason must be a string")),
    };
    if !body.is_object() {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    }
    if run_id.contains('.') {
        if state
            .store
            .get_run(&run_id)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(run_not_found());
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_root_run",
            "a sub-run cannot be cancelled directly; cancel its root run",
        ));
    }
    let routed = state
        .manager
        .send(Route {
            run_id: run_id.clone(),
            event: Event::Cancel { reason },
        })
        .await;
    let finished = |run: crate::model::RunRecord| -> Result<HttpResponse, ApiError> {
        if run.status == RunStatus::Cancelled {
            Ok(HttpResponse::Ok().json(json!({"run": run})))
        } else {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "run_finished",
                format!("the run already ended: {}", run.status.as_str()),
            )
            .with_field("run", json!(run)))
        }
    };
    match routed {
        Ok(Ok(Some(Reply::Cancel(Ok(run))))) => {
            // The record as committed (the reply is the in-memory copy of the same commit).
            Ok(HttpResponse::Ok().json(json!({"run": run})))
        }
        Ok(Ok(Some(Reply::Cancel(Err(CancelError::Finished(run)))))) => finished(*run),
        Ok(Err(RouteError::Finished(run))) => finished(*run),
        Ok(Err(e)) => Err(route_error(e)),
        Ok(Ok(_)) => Err(ApiError::internal("unexpected reply to cancel")),
        Err(e) => Err(ApiError::internal(e)),
    }
}
