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
use ktsu_shared::wire::gateway::{Attempt, CallMetadata, GatewayResponse, StopReason};
use log::kv::{ToValue, Value};
use log::Level;
use std::time::Instant;

pub async fn invoke(
    req: HttpRequest,
    payload: web::Payload,
    gateway: web::Data<Gateway>,
    upstreams: web::Data<Upstreams>,
) -> HttpResponse {
    let _in_flight = gateway.in_flight.enter();
    let mut record = CallRecord::new(new_call_id(), Instant::now());
    let result = handle(&req, payload, &gateway, &upstreams, &mut record).await;
    let response = match result {
        Ok(answered) => {
            record.answered(&answered);
            ok_response(answered, &record.log.call_id)
        }
        Err(unanswered) => {
            record.unanswered(&unanswered);
            unanswered
                .error
                .to_api_error(&record.log.call_id, &unanswered.attempts)
                .error_response()
        }
    };
    record.finish(response.status().as_u16());
    response
}

/// The `gateway.request` record of one call (runtime-gateway.md §11), filled in as the call
/// goes. Written by [`CallRecord::finish`], or on drop when actix drops the handler because the
/// client went away (a runtime that cancels a leg): such a call is recorded too, with
/// `http_status` 499 and `error_code` `client_disconnected`, so that every call leaves one record.
struct CallRecord {
    log: CallLog,
    started: Instant,
    finished: bool,
    group: Option<String>,
    /// `model_resolved` of an answer, or the last model tried by a call that failed.
    model: Option<String>,
    error_code: Option<&'static str>,
    error_text: Option<String>,
    usage: Option<crate::providers::Usage>,
    cost_usd: Option<f64>,
    stop_reason: Option<StopReason>,
    attempts: usize,
    queue_ms: u64,
}

/// `http_status` of the record of a call whose client went away (nginx's "client closed
/// request"); no answer was sent.
const CLIENT_CLOSED: u16 = 499;

impl CallRecord {
    fn new(call_id: String, started: Instant) -> Self {
        CallRecord {
            log: CallLog::new(call_id),
            started,
            finished: false,
            group: None,
            model: None,
            error_code: None,
            error_text: None,
            usage: None,
            cost_usd: None,
            stop_reason: None,
            attempts: 0,
            queue_ms: 0,
        }
    }

    fn answered(&mut self, a: &Answered) {
        self.model = Some(a.model.clone());
        self.usage = Some(a.reply.usage);
        self.cost_usd = Some(a.cost_usd);
        self.stop_reason = Some(a.reply.stop_reason);
        self.attempts = a.attempts.len();
        self.queue_ms = a.queue_ms;
    }

    fn unanswered(&mut self, u: &Unanswered) {
        self.model = u.attempts.last().map(|a| a.model.clone());
        self.error_code = Some(u.error.code());
        self.error_text = Some(match &u.error {
            // The client sees "internal error"; the log gets the cause (scrubbed).
            InvokeError::Internal(cause) => cause.clone(),
            other => other.message(),
        });
        self.attempts = u.attempts.len();
        self.queue_ms = u.queue_ms;
    }

    fn finish(&mut self, http_status: u16) {
        self.finished = true;
        self.emit(http_status);
    }

    fn emit(&self, http_status: u16) {
        let level = if self.error_code.is_some() {
            Level::Warn
        } else {
            Level::Info
        };
        if !log::log_enabled!(level) {
            return;
        }
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut fields: Vec<(&str, Value<'_>)> = Vec::with_capacity(16);
        if let Some(group) = &self.group {
            fields.push(("group", group.as_str().to_value()));
        }
        if let Some(model) = &self.model {
            // Only an answer has usage.
            let key = if self.usage.is_some() {
                "model_resolved"
            } else {
                "model"
            };
            fields.push((key, model.as_str().to_value()));
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
        if let Some(stop) = self.stop_reason {
            fields.push(("stop_reason", stop_reason_name(stop).to_value()));
        }
        fields.push(("attempts", Value::from(self.attempts)));
        fields.push(("duration_ms", Value::from(duration_ms)));
        fields.push(("queue_ms", Value::from(self.queue_ms)));
        self.log.emit(
            level,
            module_path!(),
            "gateway.request",
            &fields,
            format_args!("invoke {http_status}"),
        );
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.finished {
            self.error_code = Some("client_disconnected");
            self.error_text = Some("the client closed the connection before the answer".into());
            self.emit(CLIENT_CLOSED);
        }
    }
}

/// The wire name of a stop reason (`end_turn`, …), without going through serde.
fn stop_reason_name(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ContentFilter => "content_filter",
        StopReason::Refusal => "refusal",
        StopReason::Other => "other",
    }
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    gateway: &Gateway,
    upstreams: &Upstreams,
    record: &mut CallRecord,
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
    let metadata = CallMetadata::from_map(&request.metadata);
    let log = &mut record.log;
    log.run_id = Some(request.run_id.clone()).filter(|s| !s.is_empty());
    log.step_id = Some(request.step_id.clone()).filter(|s| !s.is_empty());
    log.attempt = metadata.attempt;
    record.group = Some(request.group.clone()).filter(|g| !g.is_empty());
    let plan = validate::plan(gateway, &request, metadata, record.started).map_err(early)?;
    router::route(gateway, upstreams, &plan, &record.log).await
}

fn ok_response(answered: Answered, call_id: &str) -> HttpResponse {
    let Answered {
        model,
        reply,
        cost_usd,
        attempts,
        budget,
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
