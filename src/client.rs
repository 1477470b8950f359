//! The orchestrator client of the CLI (cli-and-ops.md §1.1, §1.2): `User-Agent: ktsu/<version>`,
//! 5 s connect and 30 s request timeouts, percent-encoded path segments, `Authorization: Bearer
//! $KTSU_API_KEY` when set; and the mapping of every failure to its message and exit code.

use crate::exit;
use crate::output;
use awc::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use clap::Args as ClapArgs;
use ktsu_shared::http::{read_body, Bytes, ClientSettings, OutboundError};
use ktsu_shared::secret::Secret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

pub const DEFAULT_ORCHESTRATOR_URL: &str = "http://localhost:5050";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Run records with large outputs are still read whole.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// A non-JSON error body is shown trimmed to this many characters.
const MAX_TEXT_ERROR: usize = 500;

/// Flags of every client command.
#[derive(Debug, Clone, ClapArgs)]
pub struct Target {
    /// Orchestrator base URL (env KTSU_ORCHESTRATOR_URL; default http://localhost:5050).
    #[arg(long, value_name = "URL")]
    pub orchestrator: Option<String>,
    /// Print the server's JSON instead of the human view.
    #[arg(long)]
    pub json: bool,
}

impl Target {
    /// The flag, else `KTSU_ORCHESTRATOR_URL` when non-empty, else the default.
    pub fn base_url(&self) -> String {
        self.orchestrator
            .clone()
            .or_else(|| {
                std::env::var("KTSU_ORCHESTRATOR_URL")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_ORCHESTRATOR_URL.to_string())
    }
}

/// An error answer of the server: `{"error": code, "message": …}` plus list details.
#[derive(Debug, Clone)]
pub struct ServerError {
    pub status: u16,
    pub code: Option<String>,
    pub message: String,
    /// `violations` / `errors`, one line each.
    pub details: Vec<String>,
}

/// Why a client call did not produce what the command needs.
#[derive(Debug, Clone)]
pub enum Failure {
    /// A bad flag or URL (exit 2).
    Usage(String),
    /// Connect, DNS, TLS error or timeout (exit 7).
    Unreachable(String),
    /// A 4xx (exit 8) or 5xx (exit 7) answer.
    Server(ServerError),
    /// Anything else, e.g. a 2xx body that is not what the API promises (exit 1).
    Unexpected(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => exit::USAGE,
            Failure::Unreachable(_) => exit::UNREACHABLE,
            Failure::Server(e) if e.status >= 500 => exit::UNREACHABLE,
            Failure::Server(_) => exit::REFUSED,
            Failure::Unexpected(_) => exit::FAILURE,
        }
    }

    /// The `error: …` line and its indented details.
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(m) | Failure::Unreachable(m) | Failure::Unexpected(m) => m.clone(),
            Failure::Server(e) => {
                let mut text = match &e.code {
                    Some(code) => format!("{} ({code}, HTTP {})", e.message, e.status),
                    None => format!("{} (HTTP {})", e.message, e.status),
                };
                for detail in &e.details {
                    let _ = write!(text, "\n  {detail}");
                }
                text
            }
        }
    }

    /// Prints the error on stderr and returns its exit code.
    pub fn report(&self) -> u8 {
        output::error(self.message());
        self.exit_code()
    }

    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Failure::Server(e) => e.code.as_deref(),
            _ => None,
        }
    }
}

/// A summary for error codes whose details are listed line by line (the server's own message
/// repeats them joined on one line).
fn summary_for(code: &str) -> Option<&'static str> {
    match code {
        "params_invalid" => Some("input does not match params.schema"),
        "project_invalid" => Some("the project has errors"),
        _ => None,
    }
}

/// `violations` entries as `pointer: message`; `errors` (diagnostics) as
/// `file:line:column: message`.
fn details_of(body: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for v in body
        .get("violations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pointer = v.get("pointer").and_then(Value::as_str).unwrap_or("");
        let message = v.get("message").and_then(Value::as_str).unwrap_or("");
        let pointer = if pointer.is_empty() {
            "(root)"
        } else {
            pointer
        };
        lines.push(format!("{pointer}: {message}"));
    }
    for e in body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        let mut place = e
            .get("file")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for key in ["line", "column"] {
            if let Some(n) = e.get(key).and_then(Value::as_u64) {
                let _ = write!(place, ":{n}");
            }
        }
        lines.push(if place.is_empty() {
            message.to_string()
        } else {
            format!("{place}: {message}")
        });
    }
    lines
}

/// Interprets a non-2xx answer.
pub fn server_error(status: u16, body: &[u8]) -> ServerError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let code = json
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let details = json.as_ref().map(details_of).unwrap_or_default();
    let server_message = json
        .as_ref()
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = match (&code, server_message) {
        (Some(code), _) if !details.is_empty() && summary_for(code).is_some() => {
            summary_for(code).unwrap_or_default().to_string()
        }
        (_, Some(m)) => m,
        (Some(code), None) => code.clone(),
        (None, None) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "the server answered without a body".to_string()
            } else {
                text.chars().take(MAX_TEXT_ERROR).collect()
            }
        }
    };
    ServerError {
        status,
        code,
        message,
        details,
    }
}

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Checks and normalises a base URL: absolute http(s), no trailing `/`.
pub fn normalise_base(url: &str) -> Result<String, Failure> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(trimmed.to_string())
        }
        _ => Err(Failure::Usage(format!(
            "invalid orchestrator URL \"{url}\" (expected http://host:port or https://…)"
        ))),
    }
}

/// A raw answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, or why not.
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::Unexpected(format!(
                "the server's answer (HTTP {}) is not JSON: {e}",
                self.status
            ))
        })
    }

    /// A 2xx body as JSON; any other status as a [`Failure::Server`].
    pub fn into_json(self) -> Result<Value, Failure> {
        if !self.is_success() {
            return Err(Failure::Server(server_error(self.status, &self.body)));
        }
        self.json()
    }
}

/// Decodes a JSON value into a view type.
pub fn view<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, Failure> {
    T::deserialize(value)
        .map_err(|e| Failure::Unexpected(format!("unexpected {what} from the server: {e}")))
}

/// A client bound to one orchestrator.
pub struct Client {
    base: String,
    http: awc::Client,
}

impl Client {
    /// A client for `base`, with the request timeout of cli-and-ops.md §1.1.
    pub fn new(base: &str) -> Result<Client, Failure> {
        Client::with_timeout(base, REQUEST_TIMEOUT)
    }

    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Client, Failure> {
        let base = normalise_base(base)?;
        let api_key = std::env::var("KTSU_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(Secret::new);
        let http = ClientSettings::new(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .bearer_token(api_key)
            .build()
            .map_err(|e| Failure::Usage(format!("KTSU_API_KEY: {e}")))?;
        Ok(Client { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base` + `/seg/seg…` (each segment encoded) + `?k=v&…` (values encoded).
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> String {
        let mut url = self.base.clone();
        for s in segments {
            url.push('/');
            url.push_str(&encode(s));
        }
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            let _ = write!(url, "{k}={}", encode(v));
        }
        url
    }

    fn unreachable(&self, err: awc::error::SendRequestError, timeout: Duration) -> Failure {
        let cause = match OutboundError::from(err) {
            OutboundError::Timeout => format!("no answer within {}s", timeout.as_secs_f64()),
            other => other.to_string(),
        };
        Failure::Unreachable(format!("cannot reach {}: {cause}", self.base))
    }

    async fn finish(
        &self,
        sent: Result<
            awc::ClientResponse<
                impl futures_core::Stream<Item = Result<Bytes, awc::error::PayloadError>>,
            >,
            awc::error::SendRequestError,
        >,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let mut response = sent.map_err(|e| self.unreachable(e, timeout))?;
        let status = response.status().as_u16();
        let body = read_body(&mut response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                OutboundError::Timeout => Failure::Unreachable(format!(
                    "cannot reach {}: the answer did not arrive within {}s",
                    self.base,
                    timeout.as_secs_f64()
                )),
                other => Failure::Unexpected(format!("reading the answer: {other}")),
            })?;
        Ok(Answer { status, body })
    }

    /// `GET url` with an optional timeout of its own.
    pub async fn get_raw(&self, url: &str, timeout: Option<Duration>) -> Result<Answer, Failure> {
        let mut request = self.http.get(url);
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let sent = request.send().await;
        self.finish(sent, timeout.unwrap_or(REQUEST_TIMEOUT)).await
    }

    /// `GET` a path of the API; a 2xx JSON body.
    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, Failure> {
        self.get_raw(&self.url(segments, query), None)
            .await?
            .into_json()
    }

    /// `POST` a JSON body with extra headers (later ones replace the defaults).
    pub async fn post_raw(
        &self,
        url: &str,
        body: &Value,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let mut request = self
            .http
            .post(url)
            .timeout(timeout)
            .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        for (name, value) in headers {
            request = request.insert_header((name.clone(), value.clone()));
        }
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let sent = request.send_body(bytes).await;
        self.finish(sent, timeout).await
    }

    /// `POST` a path of the API; a 2xx JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, Failure> {
        self.post_raw(&self.url(segments, &[]), body, &[], REQUEST_TIMEOUT)
            .await?
            .into_json()
    }
}

/// Runs a client command's future on a fresh single-threaded actix system.
pub fn block_on(future: impl std::future::Future<Output = u8>) -> u8 {
    actix_rt::System::new().block_on(future)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn path_segments_and_query_values_are_encoded() {
        assert_eq!(encode("run_1.enr"), "run_1.enr");
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode("é"), "%C3%A9");
        let client = Client::new("http://127.0.0.1:5050/").unwrap();
        assert_eq!(
            client.url(
                &["runs", "x/y"],
                &[("status", "a&b".into()), ("limit", "3".into())]
            ),
            "http://127.0.0.1:5050/runs/x%2Fy?status=a%26b&limit=3"
        );
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(normalise_base("localhost:5050").is_err());
        assert!(normalise_base("http://").is_err());
        assert_eq!(
            normalise_base("https://k.example/").unwrap(),
            "https://k.example"
        );
    }

    #[test]
    fn server_errors_map_to_messages_and_exit_codes() {
        let body = json!({"error": "params_invalid", "message": "params are invalid: /name: missing",
                          "violations": [{"pointer": "/name", "keyword": "required", "message": "missing required property \"name\""}]});
        let e = Failure::Server(server_error(422, body.to_string().as_bytes()));
        assert_eq!(
            e.message(),
            "input does not match params.schema (params_invalid, HTTP 422)\n  /name: missing required property \"name\""
        );
        assert_eq!(e.exit_code(), 8);
        let body = json!({"error": "workflow_not_found", "message": "workflow \"helo\" not found"});
        let e = Failure::Server(server_error(404, body.to_string().as_bytes()));
        assert_eq!(
            e.message(),
            "workflow \"helo\" not found (workflow_not_found, HTTP 404)"
        );
        let e = Failure::Server(server_error(502, b"  <html>Bad gateway</html>\n"));
        assert_eq!(e.message(), "<html>Bad gateway</html> (HTTP 502)");
        assert_eq!(e.exit_code(), 7);
        let body = json!({"error": "project_invalid", "message": "x",
                          "errors": [{"file": "workflows/a.workflow.yaml", "line": 3, "column": 5, "message": "bad"}]});
        let e = Failure::Server(server_error(422, body.to_string().as_bytes()));
        assert_eq!(
            e.message(),
            "the project has errors (project_invalid, HTTP 422)\n  workflows/a.workflow.yaml:3:5: bad"
        );
        assert_eq!(Failure::Unreachable("x".into()).exit_code(), 7);
        assert_eq!(Failure::Usage("x".into()).exit_code(), 2);
        assert_eq!(Failure::Unexpected("x".into()).exit_code(), 1);
    }
}
