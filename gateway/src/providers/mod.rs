//! Provider adapters (runtime-gateway.md §7, §8): one normalised call in, one [`Reply`] or one
//! classified [`Failure`] out. `anthropic` and `openai` speak their vendors' wire formats over
//! HTTPS; `mock` answers offline.

pub mod anthropic;
pub mod mock;
pub mod openai;
pub mod upstream;

use crate::config::ProviderSpec;
use ktsu_shared::diag::Diagnostic;
use ktsu_shared::project::ProviderType;
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::wire::gateway::{CallMetadata, ErrorClass, GatewayRequest, StopReason, ToolCall};
use std::time::Duration;

/// Token counts of one answer (`tokens_in` includes the cached ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
}

/// One successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub stop_reason: StopReason,
    /// The upstream status (`None` for the mock).
    pub http_status: Option<u16>,
}

/// One failed upstream attempt, classified (§7.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: ErrorClass,
    pub http_status: Option<u16>,
    /// `upstream returned <status>: <provider message>`, `http request failed: <cause>`, …
    pub message: String,
    /// `retry-after-ms` / `retry-after` of the answer.
    pub retry_after: Option<Duration>,
    /// `false` when the upstream said `x-should-retry: false`: no retry on this model.
    pub retry_same_model: bool,
}

impl Failure {
    pub fn new(class: ErrorClass, http_status: Option<u16>, message: impl Into<String>) -> Self {
        Failure {
            class,
            http_status,
            message: message.into(),
            retry_after: None,
            retry_same_model: true,
        }
    }
}

/// Why an attempt produced no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptError {
    Upstream(Failure),
    /// The mock cannot build a value valid against the schema (§8.4): the call fails at once.
    MockUnsatisfiable(String),
}

impl From<Failure> for AttemptError {
    fn from(failure: Failure) -> Self {
        AttemptError::Upstream(failure)
    }
}

/// What an adapter sees of one call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub call_id: &'a str,
    pub request: &'a GatewayRequest,
    pub metadata: &'a CallMetadata,
    /// The requested group name.
    pub group: &'a str,
    /// The bare model id (after `provider/`).
    pub model: &'a str,
    /// Resolved `max_tokens` (§6.2).
    pub max_tokens: u64,
    /// Resolved temperature; `None` = not sent.
    pub temperature: Option<f64>,
    /// The request's `output_schema`, compiled once.
    pub output_schema: Option<&'a CompiledSchema>,
}

/// A provider's adapter, built once at startup from its resolved config.
#[derive(Debug)]
pub enum Adapter {
    Anthropic(anthropic::Anthropic),
    OpenAi(openai::OpenAi),
    Mock(mock::Mock),
}

impl Adapter {
    /// Checks the resolved config values a placeholder made unknowable before startup.
    pub fn build(spec: &ProviderSpec) -> Result<Adapter, Vec<Diagnostic>> {
        match spec.kind {
            ProviderType::Anthropic => {
                anthropic::Anthropic::from_spec(spec).map(Adapter::Anthropic)
            }
            ProviderType::OpenAi => openai::OpenAi::from_spec(spec).map(Adapter::OpenAi),
            ProviderType::Mock => mock::Mock::from_spec(spec).map(Adapter::Mock),
        }
    }

    /// Whether the adapter calls out over HTTP (and needs a client on each worker).
    pub fn needs_client(&self) -> bool {
        !matches!(self, Adapter::Mock(_))
    }

    /// One attempt. The caller bounds it with the attempt timeout as a whole; `timeout` is also
    /// given to the HTTP client so that the connection is torn down with it.
    pub async fn call(
        &self,
        client: Option<&awc::Client>,
        call: &Call<'_>,
        timeout: Duration,
    ) -> Result<Reply, AttemptError> {
        match self {
            Adapter::Mock(mock) => mock.call(call).await,
            Adapter::Anthropic(a) => Ok(a.call(require(client)?, call, timeout).await?),
            Adapter::OpenAi(o) => Ok(o.call(require(client)?, call, timeout).await?),
        }
    }
}

/// The worker's client for an HTTP provider (always built at worker start; a missing one is a
/// transient failure, never a panic).
fn require(client: Option<&awc::Client>) -> Result<&awc::Client, Failure> {
    client.ok_or_else(|| {
        Failure::new(
            ErrorClass::Transient,
            None,
            "http request failed: no HTTP client on this worker",
        )
    })
}

/// A `"true"`/`"false"` config value (checked here because a placeholder may have produced it).
// Startup-only path whose error goes straight into the config error list; boxing buys nothing.
#[allow(clippy::result_large_err)]
pub fn flag(spec: &ProviderSpec, key: &str, default: bool) -> Result<bool, Diagnostic> {
    match spec.value(key) {
        None => Ok(default),
        Some(v) => match v.value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(spec.error_at(
                v,
                format!("`{key}` must be `true` or `false`, found `{other}`"),
            )),
        },
    }
}
