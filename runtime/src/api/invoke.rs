//! `POST /invoke` (runtime-gateway.md §2.2–§2.4): synchronous validation, then admission by the
//! invocation manager; 202 with the result to come by callback.

use super::AppState;
use crate::manager::{Admit, Admittee, Refusal};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use ktsu_shared::api_error::{self, ApiError};
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::wire::gateway::Message;
use ktsu_shared::wire::invoke::{InvokeAccepted, InvokeRequest};
use ktsu_shared::wire::transcript;
use std::sync::Arc;
use std::time::Instant;

/// The `/invoke` body settings: the configured limit, errors in the envelope and logged as
/// `invoke.rejected`.
pub fn json_config(limit: usize) -> web::JsonConfig {
    api_error::json_config_with(limit, |error| {
        log_rejection(&error);
        error
    })
}

pub fn log_rejection(error: &ApiError) {
    log::warn!(event = "invoke.rejected", error_code = error.code(),
        http_status = error.status().as_u16(); "invocation rejected: {}", error.message());
}

pub async fn invoke(
    state: web::Data<AppState>,
    body: web::Json<InvokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let accepted_at = Instant::now();
    let mut request = body.into_inner();
    let (schema, transcript) = validate(&request).inspect_err(log_rejection)?;
    // Decoded into `transcript`; the JSON form is not needed again (never in `original_request`).
    request.messages = Vec::new();
    crate::secrets::register_for_logs(request.secret_values());
    let mut answer = InvokeAccepted::new(&request, &state.runtime_id, false, false);
    let (agent_name, is_resume) = (request.agent_name.clone(), request.is_resume);
    let admitted = state
        .manager
        .send(Admit(Box::new(Admittee {
            request,
            transcript,
            schema,
            accepted_at,
        })))
        .await
        .map_err(ApiError::internal)?;
    let accepted = admitted.map_err(|refusal| {
        let error = refusal_error(refusal);
        log_rejection(&error);
        error
    })?;
    answer.queued = accepted.queued;
    answer.duplicate = accepted.duplicate;
    log::info!(event = "invoke.accepted", run_id = answer.run_id.as_str(), step_id = answer.step_id.as_str(),
        attempt = answer.attempt, queued = answer.queued, duplicate = answer.duplicate,
        is_resume = is_resume, agent_name = agent_name.as_str(); "invocation accepted");
    Ok(HttpResponse::Accepted().json(answer))
}

fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Stale { attempt, active } => ApiError::new(
            StatusCode::CONFLICT,
            "stale_attempt",
            format!("attempt {attempt} is older than active attempt {active}"),
        ),
        Refusal::Overloaded => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the invocation queue is full",
        )
        .with_retry_after(1),
        Refusal::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the runtime is shutting down",
        ),
    }
}

type Validated = (Option<Arc<CompiledSchema>>, Option<Vec<Message>>);

/// §2.3, in order; the compiled schema and the decoded transcript are kept for the leg.
fn validate(request: &InvokeRequest) -> Result<Validated, ApiError> {
    if request.run_id.is_empty() || request.step_id.is_empty() || request.callback_url.is_empty() {
        return Err(ApiError::invalid_request(
            "run_id, step_id, and callback_url are required",
        ));
    }
    if !is_absolute_http_url(&request.callback_url) {
        return Err(ApiError::invalid_request(
            "callback_url must be an absolute http(s) URL",
        ));
    }
    if request.model.group.is_empty() {
        return Err(ApiError::invalid_request("model.group is required"));
    }
    if request.attempt == 0 {
        return Err(ApiError::invalid_request(
            "invalid request: attempt must be at least 1",
        ));
    }
    let schema = match &request.output_schema {
        Some(schema) => Some(
            crate::schema_cache::compile(schema)
                .map_err(|err| ApiError::invalid_request(format!("output_schema: {err}")))?,
        ),
        None => None,
    };
    let transcript = if request.messages.is_empty() {
        None
    } else {
        Some(
            transcript::decode(&request.messages)
                .map_err(|err| ApiError::invalid_request(format!("messages: {err}")))?,
        )
    };
    Ok((schema, transcript))
}

/// An absolute http(s) URL the HTTP client can also send to.
fn is_absolute_http_url(text: &str) -> bool {
    let parsed = url::Url::parse(text);
    ktsu_shared::project::decode::workflow::is_http_url(text)
        && parsed.is_ok_and(|url| url.has_host())
        && awc::http::Uri::try_from(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(value: serde_json::Value) -> InvokeRequest {
        serde_json::from_value(value).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({"run_id": "run_1", "step_id": "s", "callback_url": "http://o:5050/cb?attempt=1",
               "model": {"group": "g"}})
    }

    fn message_of(value: serde_json::Value) -> String {
        validate(&request(value)).unwrap_err().message().to_owned()
    }

    #[test]
    fn messages_of_the_spec() {
        assert!(validate(&request(base())).is_ok());
        for field in ["run_id", "step_id", "callback_url"] {
            let mut v = base();
            v[field] = json!("");
            assert_eq!(
                message_of(v),
                "run_id, step_id, and callback_url are required"
            );
        }
        for bad in [
            "/relative",
            "ftp://o/cb",
            "http://",
            "http:// o/cb",
            "o:5050/cb",
        ] {
            let mut v = base();
            v["callback_url"] = json!(bad);
            assert_eq!(
                message_of(v),
                "callback_url must be an absolute http(s) URL",
                "{bad}"
            );
        }
        let mut v = base();
        v["model"]["group"] = json!("");
        assert_eq!(message_of(v), "model.group is required");
        let mut v = base();
        v["output_schema"] = json!({"type": "nonsense"});
        assert!(message_of(v).starts_with("output_schema: "));
        let mut v = base();
        v["messages"] = json!([{"role": "robot", "content": "x"}]);
        assert!(message_of(v).starts_with("messages: "));
        let mut v = base();
        v["attempt"] = json!(0);
        assert_eq!(message_of(v), "invalid request: attempt must be at least 1");
    }

    #[test]
    fn schema_and_transcript_are_kept() {
        let mut v = base();
        v["output_schema"] = json!({"type": "object"});
        v["messages"] = json!([{"role": "user", "content": "hi"}]);
        let (schema, transcript) = validate(&request(v)).unwrap();
        assert!(schema.is_some());
        assert_eq!(transcript.unwrap(), vec![Message::user("hi")]);
    }
}
