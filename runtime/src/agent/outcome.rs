//! How a leg ends, and the callback error catalogue (runtime-gateway.md §3.14).

use crate::gateway_client::{timeout_text, GatewayFailure};
use ktsu_shared::wire::callback::PendingApproval;
use ktsu_shared::wire::invoke::Budget;
use serde_json::{Map, Value};

/// The stable `error_code` values of failed and cancelled legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ToolDiscoveryFailed,
    ToolNotPermitted,
    ToolCallFailed,
    LlmError,
    BudgetExceeded,
    GatewayUnreachable,
    LlmTimeout,
    OutputInvalid,
    MaxTurnsExceeded,
    ReflectOutputInvalid,
    StepTimeout,
    RuntimeShutdown,
    Cancelled,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ToolDiscoveryFailed => "tool_discovery_failed",
            ErrorCode::ToolNotPermitted => "tool_not_permitted",
            ErrorCode::ToolCallFailed => "tool_call_failed",
            ErrorCode::LlmError => "llm_error",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::GatewayUnreachable => "gateway_unreachable",
            ErrorCode::LlmTimeout => "llm_timeout",
            ErrorCode::OutputInvalid => "output_invalid",
            ErrorCode::MaxTurnsExceeded => "max_turns_exceeded",
            ErrorCode::ReflectOutputInvalid => "reflect_output_invalid",
            ErrorCode::StepTimeout => "step_timeout",
            ErrorCode::RuntimeShutdown => "runtime_shutdown",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

/// A failed (or cancelled) leg: code, error text, detail and the last invalid model text.
#[derive(Debug, Clone, PartialEq)]
pub struct LegFailure {
    pub code: ErrorCode,
    pub error: String,
    pub detail: Map<String, Value>,
    pub raw_output: String,
}

impl LegFailure {
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        LegFailure {
            code,
            error: error.into(),
            detail: Map::new(),
            raw_output: String::new(),
        }
    }

    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_raw_output(mut self, raw_output: Option<&str>) -> Self {
        self.raw_output = raw_output.unwrap_or_default().to_owned();
        self
    }

    /// `internal error: <detail>`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InternalError,
            format!("internal error: {detail}"),
        )
    }

    /// `cancelled: <reason>`.
    pub fn cancelled(reason: &str) -> Self {
        Self::new(ErrorCode::Cancelled, format!("cancelled: {reason}"))
    }

    /// A gateway call that failed (§3.10); `budget` and `spent` add the budget figures to a
    /// `budget_exceeded` answer.
    pub fn from_gateway(failure: GatewayFailure, budget: Option<&Budget>, spent: f64) -> Self {
        match failure {
            GatewayFailure::Error { status, body } => {
                let code = if body.error == "budget_exceeded" {
                    ErrorCode::BudgetExceeded
                } else {
                    ErrorCode::LlmError
                };
                let mut failure = Self::new(
                    code,
                    format!("gateway error {}: {}", body.error, body.message),
                )
                .with_detail("gateway_error", body.error.as_str())
                .with_detail("http_status", status)
                .with_detail("retryable", body.retryable);
                if let (ErrorCode::BudgetExceeded, Some(budget)) = (code, budget) {
                    failure = failure
                        .with_detail("limit_usd", budget.limit_usd)
                        .with_detail("spent_usd", spent);
                }
                failure
            }
            GatewayFailure::Status(status) => {
                Self::new(ErrorCode::LlmError, format!("gateway returned {status}"))
                    .with_detail("http_status", status)
            }
            GatewayFailure::Transport(cause) => Self::new(
                ErrorCode::GatewayUnreachable,
                format!("gateway call: {cause}"),
            ),
            GatewayFailure::Timeout(after) => Self::new(ErrorCode::LlmTimeout, timeout_text(after)),
            GatewayFailure::Decode(detail) => {
                Self::internal(format!("decode gateway response: {detail}"))
            }
            GatewayFailure::Encode(detail) => {
                Self::internal(format!("encode gateway request: {detail}"))
            }
        }
    }
}

/// How a leg ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LegEnd {
    /// The validated (possibly reflected) output.
    Ok(Value),
    /// Gated tool calls, in reply order.
    PendingApproval(Vec<PendingApproval>),
    /// Failed, or cancelled (code [`ErrorCode::Cancelled`]).
    Failed(LegFailure),
}

/// Why the loop stopped before producing a draft.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    PendingApproval(Vec<PendingApproval>),
    /// Boxed: the happy path should not carry a failure's size.
    Failed(Box<LegFailure>),
}

impl From<LegFailure> for Stop {
    fn from(failure: LegFailure) -> Self {
        Stop::Failed(Box::new(failure))
    }
}

impl From<Stop> for LegEnd {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::PendingApproval(calls) => LegEnd::PendingApproval(calls),
            Stop::Failed(failure) => LegEnd::Failed(*failure),
        }
    }
}

/// US dollars in texts: at most six decimals, no trailing zeros (`0.5`, `0.031`).
pub fn usd_text(amount: f64) -> String {
    let text = format!("{amount:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktsu_shared::wire::gateway::GatewayErrorBody;

    fn body(error: &str, retryable: bool) -> GatewayErrorBody {
        GatewayErrorBody {
            error: error.into(),
            message: "upstream returned 529: Overloaded".into(),
            retryable,
            call_id: "gw_1".into(),
            attempts: vec![],
        }
    }

    #[test]
    fn gateway_failures_map_to_codes() {
        let llm = LegFailure::from_gateway(
            GatewayFailure::Error {
                status: 502,
                body: body("provider_error", true),
            },
            None,
            0.0,
        );
        assert_eq!(llm.code, ErrorCode::LlmError);
        assert_eq!(
            llm.error,
            "gateway error provider_error: upstream returned 529: Overloaded"
        );
        assert_eq!(llm.detail["gateway_error"], "provider_error");
        assert_eq!(llm.detail["http_status"], 502);
        assert_eq!(llm.detail["retryable"], true);

        let budget = Budget {
            run_id: "run_1".into(),
            limit_usd: 0.5,
            spent_usd: 0.1,
        };
        let spent = LegFailure::from_gateway(
            GatewayFailure::Error {
                status: 402,
                body: body("budget_exceeded", false),
            },
            Some(&budget),
            0.4,
        );
        assert_eq!(spent.code, ErrorCode::BudgetExceeded);
        assert_eq!(spent.detail["limit_usd"], 0.5);
        assert_eq!(spent.detail["spent_usd"], 0.4);

        let status = LegFailure::from_gateway(GatewayFailure::Status(418), None, 0.0);
        assert_eq!(
            (status.code, status.error.as_str()),
            (ErrorCode::LlmError, "gateway returned 418")
        );
        let down = LegFailure::from_gateway(GatewayFailure::Transport("refused".into()), None, 0.0);
        assert_eq!(
            (down.code, down.error.as_str()),
            (ErrorCode::GatewayUnreachable, "gateway call: refused")
        );
        let slow = LegFailure::from_gateway(
            GatewayFailure::Timeout(std::time::Duration::from_secs(335)),
            None,
            0.0,
        );
        assert_eq!(
            (slow.code, slow.error.as_str()),
            (ErrorCode::LlmTimeout, "gateway call: timed out after 335 s")
        );
        let garbage = LegFailure::from_gateway(GatewayFailure::Decode("EOF".into()), None, 0.0);
        assert_eq!(garbage.code, ErrorCode::InternalError);
        assert_eq!(
            garbage.error,
            "internal error: decode gateway response: EOF"
        );
    }

    #[test]
    fn dollars() {
        assert_eq!(usd_text(0.5), "0.5");
        assert_eq!(usd_text(0.1 + 0.2), "0.3");
        assert_eq!(usd_text(1.0), "1");
        assert_eq!(usd_text(0.0000004), "0");
    }
}
