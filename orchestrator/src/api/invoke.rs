//! `POST /invoke/{workflow}` (orchestrator.md §2.5): the checks in their documented order, the
//! run created atomically with its step records (and idempotency record) before the 202, and
//! the optional `?wait=`.

use super::{management, parse_body, read_body, ready, store_error, AppState, State};
use crate::actors::manager::{current, Admit, QueueStatus, Wait};
use crate::engine::{initial_records, RunInputs, RunState};
use crate::model::{IdempotencyRecord, RunRecord, RunStatus, StepRecord, Totals};
use crate::snapshot::{InvokeAuthPlan, Snapshot};
use crate::store::{Created, NewRun};
use actix_web::http::header::{HeaderValue, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ktsu_shared::api_error::ApiError;
use ktsu_shared::project::AuthScheme;
use ktsu_shared::schema::{apply_defaults, redact_secret_params};
use ktsu_shared::secret::{constant_time_eq, Scrubber};
use ktsu_shared::template::format_text;
use ktsu_shared::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct InvokeQuery {
    wait: Option<String>,
}

/// `[A-Za-z0-9_.-]+`
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// 1–255 visible ASCII characters.
fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The workflow's `invoke.auth` check (orchestrator.md §2.1).
fn check_invoke_auth(req: &HttpRequest, auth: &InvokeAuthPlan) -> Result<(), ApiError> {
    let value = req
        .headers()
        .get(auth.header.as_str())
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let given = match auth.scheme {
        AuthScheme::Bearer => value.strip_prefix("Bearer ").unwrap_or(""),
        AuthScheme::Raw => value,
    };
    if !given.is_empty() && constant_time_eq(given.as_bytes(), auth.secret.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// SHA-256 of the canonical JSON (keys sorted, no whitespace) of the body as received.
pub fn request_hash(body: &Value) -> String {
    let canonical = format_text(body);
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares the files with the snapshot at most once per second and reloads on change
/// (config.md §1.5); a failed reload keeps the last good snapshot.
pub(super) async fn refresh(
    state: &AppState,
    force: bool,
) -> Result<Option<Arc<Snapshot>>, Vec<ktsu_shared::diag::Diagnostic>> {
    let snap = current(&state.snapshot);
    let opts = state.settings.load.clone();
    {
        let mut rs = match state.reload.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !force && rs.last_check.elapsed() < Duration::from_secs(1) {
            return Ok(None);
        }
        rs.last_check = std::time::Instant::now();
    }
    let snap2 = Arc::clone(&snap);
    let opts2 = opts.clone();
    let fingerprint = web::block(move || crate::snapshot::Fingerprint::of(&snap2.project, &opts2))
        .await
        .ok();
    let Some(fingerprint) = fingerprint else {
        return Ok(None);
    };
    if !force && fingerprint == snap.fingerprint {
        return Ok(None);
    }
    if !force {
        let rs = match state.reload.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if rs.failed.as_ref() == Some(&fingerprint) {
            return Ok(None);
        }
    }
    let loaded =
        web::block(move || Snapshot::load(&opts, &ktsu_shared::validate::ProcessEnv)).await;
    match loaded {
        Ok(Ok(new)) => {
            let new = Arc::new(new);
            {
                let mut w = match state.snapshot.write() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                *w = Arc::clone(&new);
            }
            if let Ok(mut rs) = state.reload.lock() {
                rs.failed = None;
            }
            ktsu_shared::logging::extend_scrubber(new.secrets.iter().cloned());
            log::info!(target: "ktsu_orchestrator::api", event = "project.reloaded", digest = new.digest.as_str(); "project reloaded");
            Ok(Some(new))
        }
        Ok(Err(crate::snapshot::SnapshotError::Invalid(diags))) => {
            if let Ok(mut rs) = state.reload.lock() {
                rs.failed = Some(fingerprint);
            }
            let errors: Vec<String> = diags.iter().map(ToString::to_string).collect();
            log::error!(target: "ktsu_orchestrator::api", event = "project.reload_failed", errors:serde = errors; "project reload failed; the last good version stays active");
            Err(diags)
        }
        Ok(Err(e)) => {
            log::error!(target: "ktsu_orchestrator::api", event = "project.reload_failed", error = e.to_string().as_str(); "project reload failed");
            Err(Vec::new())
        }
        Err(_) => Ok(None),
    }
}

fn accepted(run_id: &str, status: &str, replayed: bool) -> HttpResponse {
    let mut res = HttpResponse::Accepted();
    res.insert_header((LOCATION, format!("/runs/{run_id}")));
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    res.json(json!({"run_id": run_id, "status": status}))
}

/// The 200 body of a run that ended within `wait`. Serialised straight from the records:
/// building a `json!` value first copied every step record once more before writing it.
#[derive(Serialize)]
struct Finished<'a> {
    run_id: &'a str,
    status: &'a str,
    run: &'a RunRecord,
    steps: &'a [StepRecord],
}

/// Waits up to `wait` for the run to end; answers 200 with the record when it did.
async fn respond(
    state: &AppState,
    run_id: &str,
    wait: Option<Duration>,
    replayed: bool,
) -> Result<HttpResponse, ApiError> {
    if let Some(wait) = wait.filter(|w| !w.is_zero()) {
        if let Ok(Some(rx)) = state.manager.send(Wait(run_id.to_string())).await {
            let _ = actix_rt::time::timeout(wait, rx).await;
        }
    }
    let full = state
        .store
        .get_run_full(run_id)
        .await
        .map_err(store_error)?;
    let Some(full) = full else {
        return Ok(accepted(run_id, "accepted", replayed));
    };
    if wait.is_some() && full.run.status.is_terminal() {
        let mut res = HttpResponse::Ok();
        res.insert_header((LOCATION, format!("/runs/{run_id}")));
        if replayed {
            res.insert_header(("Idempotent-Replayed", "true"));
        }
        return Ok(res.json(Finished {
            run_id,
            status: full.run.status.as_str(),
            run: &full.run,
            steps: &full.steps,
        }));
    }
    if replayed {
        let mut res = HttpResponse::Ok();
        res.insert_header((LOCATION, format!("/runs/{run_id}")));
        res.insert_header(("Idempotent-Replayed", "true"));
        return Ok(res.json(json!({"run_id": run_id, "status": full.run.status.as_str()})));
    }
    Ok(accepted(run_id, "accepted", false))
}

pub async fn invoke(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    query: web::Query<InvokeQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    ready(&state)?;
    let _ = refresh(&state, false).await;
    let snapshot = current(&state.snapshot);
    let name = path.into_inner();
    let found = if valid_name(&name) {
        snapshot.find_invocable(&name)
    } else {
        None
    };
    match found.and_then(|(id, _)| snapshot.invoke_auth.get(&id)) {
        Some(auth) => check_invoke_auth(&req, auth)?,
        None => management(&req, &state)?,
    }
    let Some((file, plan)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "workflow_not_found",
            format!("workflow \"{name}\" not found"),
        ));
    };
    let plan = Arc::clone(plan);
    let bytes = read_body(payload, state.settings.max_body_bytes).await?;
    let body = parse_body(&bytes)?;
    if !body.is_object() {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    }
    let wait = match &query.wait {
        None => None,
        Some(w) => match w.parse::<u64>() {
            Ok(s) => Some(Duration::from_secs(s).min(state.settings.max_wait)),
            Err(_) => {
                return Err(ApiError::invalid_request(
                    "wait must be a non-negative integer number of seconds",
                ))
            }
        },
    };
    let key = match req.headers().get("Idempotency-Key") {
        None => None,
        Some(v) => match v.to_str().ok().filter(|k| valid_key(k)) {
            Some(k) => Some(k.to_string()),
            None => {
                return Err(ApiError::invalid_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ))
            }
        },
    };
    let now = Timestamp::now();
    let hash = key.as_ref().map(|_| request_hash(&body));
    if let Some(k) = &key {
        if let Some(existing) = state
            .store
            .get_idempotency(k, now)
            .await
            .map_err(store_error)?
        {
            return replay(
                &state,
                &existing,
                plan.name(),
                hash.as_deref().unwrap_or(""),
                wait,
            )
            .await;
        }
    }
    let mut params = body;
    if let Some(schema) = &plan.workflow.params_schema {
        apply_defaults(&schema.value, &mut params);
        if let Some(compiled) = &schema.compiled {
            let violations = compiled.violations(&params);
            if !violations.is_empty() {
                let detail = violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "params_invalid",
                    format!("params are invalid: {detail}"),
                )
                .with_field("violations", json!(violations)));
            }
        }
    }
    let (queued, _) = state.manager.send(QueueStatus).await.unwrap_or((0, 0));
    if queued >= state.settings.max_queued_runs {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_runs",
            "too many runs are waiting; retry later",
        )
        .with_retry_after(5));
    }
    let mut secret_values: Vec<String> = snapshot.secrets.clone();
    for p in &plan.secret_params {
        if let Some(v) = params.get(p) {
            secret_values.push(format_text(v));
        }
    }
    let scrubber = Scrubber::new(secret_values);
    let mut payload = params.clone();
    if let Some(schema) = &plan.workflow.params_schema {
        redact_secret_params(&schema.value, &mut payload);
    }
    scrubber.scrub_value(&mut payload);
    let policy = plan.workflow.model_policy.clone();
    let run_id = ktsu_shared::ids::new_run_id();
    let record = RunRecord {
        id: run_id.clone(),
        workflow_name: plan.name().to_string(),
        status: RunStatus::Pending,
        root_run_id: run_id.clone(),
        parent_run_id: None,
        parent_step_id: None,
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        deadline_at: None,
        timeout_s: policy.as_ref().and_then(|p| p.timeout_s),
        budget_usd: policy.as_ref().and_then(|p| p.cost_budget_usd),
        payload,
        output: None,
        error: None,
        error_code: None,
        failed_step: None,
        cancel_reason: None,
        totals: Totals::default(),
        version: 1,
    };
    let (run, steps) = initial_records(&plan, record);
    let idem = key.map(|k| IdempotencyRecord {
        key: k,
        workflow_name: plan.name().to_string(),
        request_hash: hash.clone().unwrap_or_default(),
        run_id: run_id.clone(),
        created_at: now,
        expires_at: now.saturating_add(state.settings.idempotency_ttl),
    });
    let created = state
        .store
        .create_run(
            NewRun {
                run: run.clone(),
                steps: steps.clone(),
            },
            idem,
        )
        .await
        .map_err(store_error)?;
    if let Created::Existing(existing) = created {
        return replay(
            &state,
            &existing,
            plan.name(),
            hash.as_deref().unwrap_or(""),
            wait,
        )
        .await;
    }
    let inputs = RunInputs {
        root_policy: policy,
        params,
        env: snapshot.env.get(&file).cloned(),
        root_deadline: None,
        webhooks_enabled: true,
        scrubber,
        config: Arc::clone(&state.config),
        plan,
    };
    let run_state = RunState::new(inputs, run, steps, Vec::new(), HashMap::new());
    if state
        .manager
        .send(Admit {
            state: Box::new(run_state),
        })
        .await
        .is_err()
    {
        return Err(ApiError::internal("run manager stopped"));
    }
    log::info!(target: "ktsu_orchestrator::api", event = "run.pending", run_id = run_id.as_str(), root_run_id = run_id.as_str(), workflow = name.as_str(); "run accepted");
    if wait.is_some() {
        return respond(&state, &run_id, wait, false).await;
    }
    Ok(accepted(&run_id, "accepted", false))
}

/// An idempotent replay, or 409 when the key was used for another request.
async fn replay(
    state: &AppState,
    existing: &IdempotencyRecord,
    workflow: &str,
    hash: &str,
    wait: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    if existing.workflow_name != workflow || existing.request_hash != hash {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_mismatch",
            "Idempotency-Key was used with another workflow or body",
        )
        .with_field("run_id", json!(existing.run_id)));
    }
    let mut res = respond(state, &existing.run_id, wait, true).await?;
    let _ = res.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
        HeaderValue::from_static("true"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hash_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(
            request_hash(&a),
            request_hash(&json!({"a": [2, 1], "b": 1}))
        );
    }

    #[test]
    fn names_and_keys() {
        assert!(valid_name("support-triage") && valid_name("a.b_c"));
        assert!(!valid_name("a/b") && !valid_name(""));
        assert!(
            valid_key("abc-123")
                && !valid_key("")
                && !valid_key("a b")
                && !valid_key(&"x".repeat(256))
        );
    }
}
