//! `POST /invoke` (runtime-gateway.md §6): auth, bounded body, validation, routing, the answer
//! or the error of §6.4, `x-ktsu-call-id` on every response, one `gateway.request` record.

use super::validate;
use crate::error::{InvokeError, CALL_ID};
use crate::logs::CallLog;
use crate::router::{self, Answered, Unanswered};
use crate::state::{Gateway, Upstreams};
use actix_web::http::header::{ContentType, HeaderValue, CONTENT_LENGTH};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use ktsu_shared::ids::new_call_id;
use ktsu_shared::service::auth::check_bearer;
use ktsu_shared::wire::gateway::{Attempt, GatewayResponse, StopReason};
use log::kv::{ToValue, Value};
use log::Level;
use std::time::Instant;

pub async fn invoke(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
    upstreams: web::Data<Upstreams>,
) -> HttpResponse {
    let started = Instant::now();
    let _in_flight = gateway.in_flight.enter();
    let mut log = CallLog::new(new_call_id());
    let mut record = Record::default();
    let result = handle(
        &req,
        payload,
        &gateway,
        &upstreams,
        &mut log,
        &mut record,
        started,
    )
    .await;
    let response = match result {
        Ok(answered) => {
            record.answered(&answered);
            ok_response(answered, &log.call_id, record.budget.take())
        }
        Err(unanswered) => {
            record.unanswered(&unanswered);
            let error = unanswered
                .error
                .to_api_error(&log.call_id, &unanswered.attempts);
            record.error_text = Some(match &unanswered.error {
                InvokeError::Internal(cause) => cause.clone(),
                other => other.message(),
            });
            error.error_response()
        }
    };
    record.emit(&log, response.status().as_u16(), started);
    response
}

/// What the `gateway.request` record says.
#[derive(Default)]
struct Record {
    group: Option<String>,
    model: Option<String>,
    error_code: Option<&'static str>,
    error_text: Option<String>,
    usage: Option<crate::providers::Usage>,
    cost_usd: Option<f64>,
    stop_reason: Option<StopReason>,
    attempts: usize,
    queue_ms: u64,
    budget: Option<ktsu_shared::wire::gateway::BudgetState>,
}

impl Record {
    fn answered(&mut self, a: &Answered) {
        self.model = Some(a.model.clone());
        self.usage = Some(a.reply.usage);
        self.cost_usd = Some(a.cost_usd);
        self.stop_reason = Some(a.reply.stop_reason);
        self.attempts = a.attempts.len();
        self.queue_ms = a.queue_ms;
        self.budget = a.budget.clone();
    }

    fn unanswered(&mut self, u: &Unanswered) {
        self.error_code = Some(u.error.code());
        self.attempts = u.attempts.len();
        self.queue_ms = u.queue_ms;
    }

    fn emit(&self, log: &CallLog, http_status: u16, started: Instant) {
        let level = if self.error_code.is_some() {
            Level::Warn
        } else {
            Level::Info
        };
        if !log::log_enabled!(level) {
            return;
        }
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let stop = self
            .stop_reason
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        let mut fields: Vec<(&str, Value<'_>)> = Vec::with_capacity(14);
        if let Some(group) = &self.group {
            fields.push(("group", group.as_str().to_value()));
        }
        if let Some(model) = &self.model {
            fields.push(("model_resolved", model.as_str().to_value()));
        }
        fields.push(("http_status", Value::from(http_status)));
        if let Some(code) = self.error_code {
            fields.push(("error_code", code.to_value()));
        }
        if let Some(error) = &self.error_text {
            fields.push(("error", error.as_str().to_value()));
        }
        if let Some(u) = &self.usage {
            fields.push(("tokens_in", Value::from(u.tokens_in)));
            fields.push(("tokens_out", Value::from(u.tokens_out)));
            fields.push(("cache_read_tokens", Value::from(u.cache_read_tokens)));
            fields.push(("cache_write_tokens", Value::from(u.cache_write_tokens)));
        }
        if let Some(cost) = self.cost_usd {
            fields.push(("cost_usd", Value::from(cost)));
        }
        if let Some(stop) = &stop {
            fields.push(("stop_reason", stop.as_str().to_value()));
        }
        fields.push(("attempts", Value::from(self.attempts)));
        fields.push(("duration_ms", Value::from(duration_ms)));
        fields.push(("queue_ms", Value::from(self.queue_ms)));
        log.emit(
            level,
            module_path!(),
            "gateway.request",
            &fields,
            format_args!("invoke {http_status}"),
        );
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    gateway: &Gateway,
    upstreams: &Upstreams,
    log: &mut CallLog,
    record: &mut Record,
    started: Instant,
) -> Result<Answered, Unanswered> {
    let early = |error: InvokeError| Unanswered {
        error,
        attempts: Vec::new(),
        queue_ms: 0,
    };
    check_bearer(req.headers(), gateway.internal_token.as_ref())
        .map_err(|_| early(InvokeError::Unauthorized))?;
    let limit = gateway.body_limit();
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(early(InvokeError::PayloadTooLarge(limit)));
    }
    let body = match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return Err(early(InvokeError::InvalidJson(format!(
                "invalid JSON: request body could not be read: {e}"
            ))))
        }
        Err(_) => return Err(early(InvokeError::PayloadTooLarge(limit))),
    };
    let request = validate::decode(&body, limit).map_err(early)?;
    log.run_id = Some(request.run_id.clone()).filter(|s| !s.is_empty());
    log.step_id = Some(request.step_id.clone()).filter(|s| !s.is_empty());
    log.attempt = ktsu_shared::wire::gateway::CallMetadata::from_map(&request.metadata).attempt;
    record.group = Some(request.group.clone()).filter(|g| !g.is_empty());
    let plan = validate::plan(gateway, &request, started).map_err(early)?;
    router::route(gateway, upstreams, &plan, log).await
}

fn ok_response(
    answered: Answered,
    call_id: &str,
    budget: Option<ktsu_shared::wire::gateway::BudgetState>,
) -> HttpResponse {
    let Answered {
        model,
        reply,
        cost_usd,
        attempts,
        ..
    } = answered;
    let response = GatewayResponse {
        content: reply.content,
        model_resolved: model,
        tokens_in: reply.usage.tokens_in,
        tokens_out: reply.usage.tokens_out,
        cost_usd,
        tool_calls: reply.tool_calls,
        stop_reason: Some(reply.stop_reason),
        cache_read_tokens: reply.usage.cache_read_tokens,
        cache_write_tokens: reply.usage.cache_write_tokens,
        attempts,
        budget,
        call_id: call_id.to_string(),
    };
    match serde_json::to_vec(&response) {
        Ok(body) => {
            let mut builder = HttpResponse::Ok();
            builder.insert_header(ContentType::json());
            if let Ok(value) = HeaderValue::from_str(call_id) {
                builder.insert_header((CALL_ID, value));
            }
            builder.body(body)
        }
        Err(e) => InvokeError::Internal(format!("encode response: {e}"))
            .to_api_error(call_id, &Vec::<Attempt>::new())
            .error_response(),
    }
}

/// Any method but POST on `/invoke`: 405 with the gateway's error headers.
pub async fn wrong_method() -> HttpResponse {
    InvokeError::MethodNotAllowed
        .to_api_error(&new_call_id(), &[])
        .error_response()
}
