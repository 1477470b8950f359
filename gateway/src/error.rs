//! The gateway's two error vocabularies: [`StartError`] (why the process could not start, with
//! its exit code) and [`InvokeError`] (one `/invoke` answer of runtime-gateway.md §6.4, with its
//! status, code, `retryable` and `x-should-retry`).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use ktsu_shared::api_error::ApiError;
use ktsu_shared::diag::Diagnostic;
use ktsu_shared::wire::gateway::Attempt;

/// Process exit codes of cli-and-ops.md §1.2 that the gateway can cause.
pub mod exit {
    /// A runtime failure: cannot bind, the server failed.
    pub const FAILURE: u8 = 1;
    /// Usage: a malformed setting, a missing or unreadable gateway or env file.
    pub const USAGE: u8 = 2;
    /// The gateway file (or a declared env var, or a mock script) is invalid.
    pub const CONFIG: u8 = 3;
}

/// Why the gateway did not start (or stopped with a failure).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Exit 2 (runtime-gateway.md §5.1: `gateway config <path>: <error>`).
    #[error("gateway config {path}: {cause}")]
    ConfigUnreadable { path: String, cause: String },
    /// Exit 2.
    #[error("env file {path}: {cause}")]
    EnvFileUnreadable { path: String, cause: String },
    /// Exit 3. Every error is listed; each was logged as a `config.error` record by
    /// [`crate::Application::build`].
    #[error("invalid gateway configuration: {} error(s)", .0.len())]
    InvalidConfig(Vec<Diagnostic>),
    /// Exit 1 (`cannot bind <addr>: <cause>`).
    #[error("cannot bind {addr}: {cause}")]
    Bind { addr: String, cause: String },
    /// Exit 1: the HTTP server failed while running.
    #[error("gateway failed: {0}")]
    Runtime(String),
}

impl StartError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::ConfigUnreadable { .. } | StartError::EnvFileUnreadable { .. } => {
                exit::USAGE
            }
            StartError::InvalidConfig(_) => exit::CONFIG,
            StartError::Bind { .. } | StartError::Runtime(_) => exit::FAILURE,
        }
    }
}

/// `x-should-retry` on every `/invoke` error (runtime-gateway.md §6.4).
pub const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
/// `x-ktsu-call-id` on every `/invoke` response (runtime-gateway.md §6.1).
pub const CALL_ID: HeaderName = HeaderName::from_static("x-ktsu-call-id");

/// One failed `/invoke` (runtime-gateway.md §6.4).
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeError {
    InvalidJson(String),
    InvalidRequest(String),
    Unauthorized,
    MethodNotAllowed,
    PayloadTooLarge(usize),
    UnknownGroup(String),
    /// No attempt was made because of the run budget, or the provider reported billing
    /// exhaustion on the last attempt.
    BudgetExceeded(String),
    /// The last upstream attempt failed; `retryable` when its class was transient.
    Provider {
        message: String,
        retryable: bool,
    },
    /// The last upstream attempt timed out.
    ProviderTimeout(String),
    /// The request deadline passed before an answer.
    DeadlineExceeded(String),
    /// No attempt was made: a candidate's provider queue was full.
    Overloaded(String),
    /// No attempt was made: every candidate's circuit is open.
    CircuitOpen {
        message: String,
        retry_after_s: u64,
    },
    MockUnsatisfiableSchema(String),
    /// The cause is logged, never sent.
    Internal(String),
}

impl InvokeError {
    pub fn status(&self) -> StatusCode {
        match self {
            InvokeError::InvalidJson(_)
            | InvokeError::InvalidRequest(_)
            | InvokeError::UnknownGroup(_) => StatusCode::BAD_REQUEST,
            InvokeError::Unauthorized => StatusCode::UNAUTHORIZED,
            InvokeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            InvokeError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            InvokeError::BudgetExceeded(_) => StatusCode::PAYMENT_REQUIRED,
            InvokeError::Provider { .. } => StatusCode::BAD_GATEWAY,
            InvokeError::ProviderTimeout(_) | InvokeError::DeadlineExceeded(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            InvokeError::Overloaded(_) | InvokeError::CircuitOpen { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            InvokeError::MockUnsatisfiableSchema(_) | InvokeError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            InvokeError::InvalidJson(_) => "invalid_json",
            InvokeError::InvalidRequest(_) => "invalid_request",
            InvokeError::Unauthorized => "unauthorized",
            InvokeError::MethodNotAllowed => "method_not_allowed",
            InvokeError::PayloadTooLarge(_) => "payload_too_large",
            InvokeError::UnknownGroup(_) => "unknown_group",
            InvokeError::BudgetExceeded(_) => "budget_exceeded",
            InvokeError::Provider { .. } => "provider_error",
            InvokeError::ProviderTimeout(_) => "provider_timeout",
            InvokeError::DeadlineExceeded(_) => "deadline_exceeded",
            InvokeError::Overloaded(_) => "overloaded",
            InvokeError::CircuitOpen { .. } => "circuit_open",
            InvokeError::MockUnsatisfiableSchema(_) => "mock_unsatisfiable_schema",
            InvokeError::Internal(_) => "internal_error",
        }
    }

    /// The body's `retryable`.
    pub fn retryable(&self) -> bool {
        match self {
            InvokeError::Provider { retryable, .. } => *retryable,
            InvokeError::ProviderTimeout(_)
            | InvokeError::DeadlineExceeded(_)
            | InvokeError::Overloaded(_)
            | InvokeError::CircuitOpen { .. } => true,
            _ => false,
        }
    }

    /// `x-should-retry: true` only where waiting and retrying the same call is the right move.
    pub fn should_retry(&self) -> bool {
        matches!(
            self,
            InvokeError::Overloaded(_) | InvokeError::CircuitOpen { .. }
        )
    }

    /// `Retry-After` seconds, where the spec asks for one.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            InvokeError::Overloaded(_) => Some(1),
            InvokeError::CircuitOpen { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            InvokeError::Unauthorized => "missing or invalid credentials".into(),
            InvokeError::MethodNotAllowed => "method not allowed".into(),
            InvokeError::PayloadTooLarge(limit) => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            InvokeError::UnknownGroup(group) => format!("model group \"{group}\" not found"),
            InvokeError::Internal(_) => "internal error".into(),
            InvokeError::InvalidJson(m)
            | InvokeError::InvalidRequest(m)
            | InvokeError::BudgetExceeded(m)
            | InvokeError::Provider { message: m, .. }
            | InvokeError::ProviderTimeout(m)
            | InvokeError::DeadlineExceeded(m)
            | InvokeError::Overloaded(m)
            | InvokeError::CircuitOpen { message: m, .. }
            | InvokeError::MockUnsatisfiableSchema(m) => m.clone(),
        }
    }

    /// The answer: the shared envelope plus `retryable`, `call_id`, `attempts` (when any) and
    /// the gateway headers. The body is scrubbed when sent.
    pub fn to_api_error(&self, call_id: &str, attempts: &[Attempt]) -> ApiError {
        let mut error = ApiError::new(self.status(), self.code(), self.message())
            .with_field("retryable", self.retryable())
            .with_field("call_id", call_id);
        if !attempts.is_empty() {
            if let Ok(list) = serde_json::to_value(attempts) {
                error = error.with_field("attempts", list);
            }
        }
        error = error.with_header(
            SHOULD_RETRY,
            HeaderValue::from_static(if self.should_retry() { "true" } else { "false" }),
        );
        if let Ok(value) = HeaderValue::from_str(call_id) {
            error = error.with_header(CALL_ID, value);
        }
        match self {
            InvokeError::Unauthorized => error.with_header(
                actix_web::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            ),
            InvokeError::MethodNotAllowed => error.with_header(
                actix_web::http::header::ALLOW,
                HeaderValue::from_static("POST"),
            ),
            InvokeError::Internal(cause) => error.with_cause(cause),
            _ => match self.retry_after_s() {
                Some(s) => error.with_retry_after(s),
                None => error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktsu_shared::wire::gateway::{AttemptOutcome, ErrorClass};
    use serde_json::json;

    /// The error table of runtime-gateway.md §6.4, row by row.
    #[test]
    fn error_table() {
        let rows: Vec<(InvokeError, u16, &str, bool, bool)> = vec![
            (
                InvokeError::InvalidJson("x".into()),
                400,
                "invalid_json",
                false,
                false,
            ),
            (
                InvokeError::InvalidRequest("x".into()),
                400,
                "invalid_request",
                false,
                false,
            ),
            (InvokeError::Unauthorized, 401, "unauthorized", false, false),
            (
                InvokeError::PayloadTooLarge(10),
                413,
                "payload_too_large",
                false,
                false,
            ),
            (
                InvokeError::UnknownGroup("g".into()),
                400,
                "unknown_group",
                false,
                false,
            ),
            (
                InvokeError::BudgetExceeded("x".into()),
                402,
                "budget_exceeded",
                false,
                false,
            ),
            (
                InvokeError::Provider {
                    message: "x".into(),
                    retryable: true,
                },
                502,
                "provider_error",
                true,
                false,
            ),
            (
                InvokeError::Provider {
                    message: "x".into(),
                    retryable: false,
                },
                502,
                "provider_error",
                false,
                false,
            ),
            (
                InvokeError::ProviderTimeout("x".into()),
                504,
                "provider_timeout",
                true,
                false,
            ),
            (
                InvokeError::DeadlineExceeded("x".into()),
                504,
                "deadline_exceeded",
                true,
                false,
            ),
            (
                InvokeError::Overloaded("x".into()),
                503,
                "overloaded",
                true,
                true,
            ),
            (
                InvokeError::CircuitOpen {
                    message: "x".into(),
                    retry_after_s: 7,
                },
                503,
                "circuit_open",
                true,
                true,
            ),
            (
                InvokeError::MockUnsatisfiableSchema("x".into()),
                500,
                "mock_unsatisfiable_schema",
                false,
                false,
            ),
            (
                InvokeError::Internal("disk".into()),
                500,
                "internal_error",
                false,
                false,
            ),
        ];
        for (error, status, code, retryable, should_retry) in rows {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code);
            assert_eq!(error.retryable(), retryable, "{error:?}");
            assert_eq!(error.should_retry(), should_retry, "{error:?}");
            let api = error.to_api_error("gw_0123456789abcdef", &[]);
            assert_eq!(api.body()["retryable"], json!(retryable));
            assert_eq!(api.body()["call_id"], "gw_0123456789abcdef");
            assert!(api.body().get("attempts").is_none());
            let header = |name: &HeaderName| {
                api.headers()
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_str().unwrap().to_string())
            };
            assert_eq!(
                header(&SHOULD_RETRY).as_deref(),
                Some(if should_retry { "true" } else { "false" })
            );
            assert_eq!(header(&CALL_ID).as_deref(), Some("gw_0123456789abcdef"));
        }
    }

    #[test]
    fn details_of_the_envelope() {
        let circuit = InvokeError::CircuitOpen {
            message: "open".into(),
            retry_after_s: 12,
        };
        let api = circuit.to_api_error("gw_1", &[]);
        assert!(api
            .headers()
            .iter()
            .any(|(n, v)| n == actix_web::http::header::RETRY_AFTER && v == "12"));
        let attempts = vec![Attempt {
            model: "anthropic/claude-haiku-4-5".into(),
            attempt: 1,
            outcome: AttemptOutcome::Error,
            http_status: Some(529),
            duration_ms: 4,
            error: Some(ErrorClass::Transient),
            retry_after_ms: None,
        }];
        let api = InvokeError::Provider {
            message: "m".into(),
            retryable: true,
        }
        .to_api_error("gw_1", &attempts);
        assert_eq!(api.body()["attempts"][0]["http_status"], 529);
        let api = InvokeError::Internal("secret path /var/x".into()).to_api_error("gw_1", &[]);
        assert_eq!(api.body()["message"], "internal error");
        assert_eq!(api.cause(), Some("secret path /var/x"));
        assert_eq!(
            InvokeError::UnknownGroup("premium".into()).message(),
            "model group \"premium\" not found"
        );
        assert_eq!(
            StartError::Bind {
                addr: "a".into(),
                cause: "b".into()
            }
            .exit_code(),
            1
        );
        assert_eq!(StartError::Runtime("x".into()).exit_code(), 1);
    }
}
