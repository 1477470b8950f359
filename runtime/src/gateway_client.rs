//! One runtime → gateway call (`POST <gateway>/invoke`, runtime-gateway.md §3.10) with the
//! retry rules of the spec: only a 503 that says `x-should-retry: true` (after `Retry-After`,
//! capped at 30 s), an older gateway's `"retryable":true` body (1 s, then 2 s), or a connection
//! that failed before any response byte (1 s, then 2 s); at most 3 attempts, never past the step
//! deadline; read timeouts are never retried.

use crate::leg::LegIds;
use crate::units::seconds_text;
use actix_web::web::Bytes;
use awc::error::SendRequestError;
use awc::http::header::CONTENT_TYPE;
use ktsu_shared::http::{read_body, OutboundError};
use ktsu_shared::wire::gateway::{CallPurpose, GatewayErrorBody, GatewayResponse};
use std::time::{Duration, Instant};

/// Largest gateway answer read.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
const MAX_ATTEMPTS: u32 = 3;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The HTTP client waits this much longer than the `timeout_s` the gateway is given, so that
/// the gateway's own deadline answer arrives first.
const CLIENT_MARGIN: Duration = Duration::from_secs(5);

/// Why a call produced no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayFailure {
    /// A non-200 answer with the gateway's JSON error body.
    Error { status: u16, body: GatewayErrorBody },
    /// A non-200 answer without that body.
    Status(u16),
    /// No connection, or it broke.
    Transport(String),
    /// No answer within the client timeout.
    Timeout(Duration),
    /// A 200 whose body is not a gateway response.
    Decode(String),
    /// The request could not be serialised.
    Encode(String),
}

impl GatewayFailure {
    /// The code logged in `llm.call_failed`.
    fn log_code(&self) -> &str {
        match self {
            GatewayFailure::Error { body, .. } => &body.error,
            GatewayFailure::Status(_) => "http_status",
            GatewayFailure::Transport(_) => "gateway_unreachable",
            GatewayFailure::Timeout(_) => "llm_timeout",
            GatewayFailure::Decode(_) | GatewayFailure::Encode(_) => "internal_error",
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            GatewayFailure::Error { status, .. } | GatewayFailure::Status(status) => *status,
            _ => 0,
        }
    }
}

/// The gateway of one leg.
pub struct GatewayClient<'a> {
    pub client: &'a awc::Client,
    /// `<gateway>/invoke`.
    pub invoke_url: &'a str,
}

/// What to do after a failed attempt.
enum Next {
    /// After the server's `Retry-After`.
    RetryAfter(Duration),
    /// After 1 s, then 2 s.
    Backoff,
    Fail,
}

impl GatewayClient<'_> {
    /// Sends the body `encode` produces (a serialised `GatewayRequest` carrying
    /// `timeout_s = timeout`). The body is encoded again for a retry rather than kept while the
    /// call waits: a waiting leg holds as little as possible (`encode` is borrowed for the same
    /// reason: an async fn keeps its arguments twice).
    pub async fn call(
        &self,
        encode: &mut impl FnMut() -> Result<Bytes, GatewayFailure>,
        timeout: Duration,
        deadline: Instant,
        purpose: CallPurpose,
        ids: &LegIds,
    ) -> Result<GatewayResponse, GatewayFailure> {
        let client_timeout = timeout + CLIENT_MARGIN;
        let mut attempt = 1;
        loop {
            // Encoded in its own statement: a temporary of the awaited expression would be kept
            // in this future for the whole wait.
            let body = encode()?;
            let (failure, next) = match self.attempt(body, client_timeout).await {
                Ok(response) => return Ok(response),
                Err(outcome) => outcome,
            };
            let delay = match next {
                Next::RetryAfter(delay) => Some(delay),
                Next::Backoff => Some(Duration::from_secs(1 << (attempt - 1))),
                Next::Fail => None,
            }
            .filter(|delay| attempt < MAX_ATTEMPTS && Instant::now() + *delay < deadline);
            leg_log!(log::Level::Warn, ids, event = "llm.call_failed",
                purpose:serde = purpose, error_code = failure.log_code(),
                http_status = failure.http_status(), will_retry = delay.is_some();
                "gateway call failed");
            let Some(delay) = delay else {
                return Err(failure);
            };
            actix_rt::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        body: Bytes,
        client_timeout: Duration,
    ) -> Result<GatewayResponse, (GatewayFailure, Next)> {
        let sending = self
            .client
            .post(self.invoke_url)
            .timeout(client_timeout)
            .insert_header((CONTENT_TYPE, "application/json"))
            .send_body(body);
        let response = match sending.await {
            Ok(response) => response,
            Err(SendRequestError::Timeout) => {
                return Err((GatewayFailure::Timeout(client_timeout), Next::Fail))
            }
            // Refused or reset before any response byte: the gateway did not see the call.
            Err(err @ (SendRequestError::Connect(_) | SendRequestError::Send(_))) => {
                return Err((GatewayFailure::Transport(err.to_string()), Next::Backoff))
            }
            Err(err) => return Err((GatewayFailure::Transport(err.to_string()), Next::Fail)),
        };
        // Boxed: reading and decoding the answer takes several times the room that waiting for
        // it does, and a leg waits far longer than it reads.
        let reading = Box::pin(read_answer(response, client_timeout));
        reading.await
    }
}

/// The answer of one attempt: a decoded 200, or the failure and whether to retry.
async fn read_answer<S>(
    mut response: awc::ClientResponse<S>,
    client_timeout: Duration,
) -> Result<GatewayResponse, (GatewayFailure, Next)>
where
    S: futures_core::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = response.status().as_u16();
    let should_retry = response
        .headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().eq_ignore_ascii_case("true"));
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(crate::units::positive_seconds)
        .unwrap_or(Duration::from_secs(1))
        .min(MAX_RETRY_AFTER);
    let bytes = read_body(&mut response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|err| match err {
            OutboundError::Timeout => (GatewayFailure::Timeout(client_timeout), Next::Fail),
            other => (GatewayFailure::Transport(other.to_string()), Next::Fail),
        })?;
    if status == 200 {
        return serde_json::from_slice::<GatewayResponse>(&bytes)
            .map_err(|err| (GatewayFailure::Decode(err.to_string()), Next::Fail));
    }
    let error_body = serde_json::from_slice::<GatewayErrorBody>(&bytes).ok();
    let next = match (should_retry, &error_body) {
        (Some(true), _) if status == 503 => Next::RetryAfter(retry_after),
        (None, Some(body)) if body.retryable => Next::Backoff,
        _ => Next::Fail,
    };
    let failure = match error_body {
        Some(body) => GatewayFailure::Error { status, body },
        None => GatewayFailure::Status(status),
    };
    Err((failure, next))
}

/// `gateway call: timed out after <n> s`.
pub fn timeout_text(timeout: Duration) -> String {
    format!("gateway call: timed out after {} s", seconds_text(timeout))
}
