//! Runtime liveness (orchestrator.md §2.12–§2.13): heartbeats, registration, the registry list.

use super::{internal, management, parse_body, read_body, State};
use crate::actors::registry::{List, Register, Seen};
use crate::actors::supervisor::Beat;
use actix_web::{web, HttpRequest, HttpResponse};
use ktsu_shared::api_error::ApiError;
use ktsu_shared::wire::heartbeat::{Heartbeat, RegisterRequest};
use serde_json::json;

fn valid_runtime_id(id: &str) -> bool {
    (1..=128).contains(&id.chars().count())
}

pub async fn heartbeat(
    req: HttpRequest,
    state: State,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    internal(&req, &state)?;
    let value = parse_body(&read_body(payload, state.settings.max_body_bytes).await?)?;
    let hb: Heartbeat = serde_json::from_value(value)
        .map_err(|e| ApiError::invalid_request(format!("invalid request: {e}")))?;
    if !valid_runtime_id(&hb.runtime_id) {
        return Err(ApiError::invalid_request(
            "runtime_id must be 1 to 128 characters",
        ));
    }
    if let Some(url) = &hb.url {
        if !ktsu_shared::project::decode::workflow::is_http_url(url) {
            return Err(ApiError::invalid_request(
                "url must be an absolute http(s) URL",
            ));
        }
    }
    let active = hb.active.len();
    let new = state
        .registry
        .send(Seen {
            runtime_id: hb.runtime_id.clone(),
            url: hb.url.clone(),
            version: Some(hb.version.clone()).filter(|v| !v.is_empty()),
            max_concurrency: hb.max_concurrency.map(u64::from),
            draining: hb.draining,
        })
        .await
        .unwrap_or(false);
    if new && hb.url.is_some() {
        log::info!(target: "ktsu_orchestrator::api", event = "runtime.registered", runtime_id = hb.runtime_id.as_str(), url = hb.url.as_deref().unwrap_or(""), source = "heartbeat"; "runtime registered");
    }
    let cancel = state
        .supervisor
        .send(Beat(hb.active))
        .await
        .unwrap_or_default();
    log::debug!(target: "ktsu_orchestrator::api", event = "heartbeat.received", runtime_id = hb.runtime_id.as_str(), active = active, cancel = cancel.len(); "heartbeat");
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "cancel": cancel})))
}

pub async fn register(
    req: HttpRequest,
    state: State,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    internal(&req, &state)?;
    let value = parse_body(&read_body(payload, state.settings.max_body_bytes).await?)?;
    let r: RegisterRequest = serde_json::from_value(value)
        .map_err(|e| ApiError::invalid_request(format!("invalid request: {e}")))?;
    if !valid_runtime_id(&r.runtime_id) {
        return Err(ApiError::invalid_request(
            "runtime_id must be 1 to 128 characters",
        ));
    }
    if !ktsu_shared::project::decode::workflow::is_http_url(&r.url) {
        return Err(ApiError::invalid_request(
            "url must be an absolute http(s) URL",
        ));
    }
    state
        .registry
        .send(Register {
            runtime_id: r.runtime_id.clone(),
            url: r.url.clone(),
            version: Some(r.version.clone()).filter(|v| !v.is_empty()),
            max_concurrency: r.max_concurrency.map(u64::from),
        })
        .await
        .map_err(ApiError::internal)?;
    log::info!(target: "ktsu_orchestrator::api", event = "runtime.registered", runtime_id = r.runtime_id.as_str(), url = r.url.as_str(), source = "register"; "runtime registered");
    let timeout = state.settings.heartbeat_timeout.map_or(0, |t| t.as_secs());
    Ok(HttpResponse::Ok().json(
        json!({"status": "registered", "heartbeat_interval_s": 5, "heartbeat_timeout_s": timeout}),
    ))
}

pub async fn list(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    management(&req, &state)?;
    let runtimes = state
        .registry
        .send(List)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({"runtimes": runtimes})))
}
