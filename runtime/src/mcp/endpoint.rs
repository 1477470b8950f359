//! One MCP server as the client addresses it, and the HTTP rules every request to it follows
//! (runtime-gateway.md §4.2): the URL as given plus `persistentId`, the auth header on GET, POST
//! and DELETE alike, the JSON-RPC content headers, the protocol and session headers after
//! `initialize`, and explicit timeouts.

use super::error::{McpError, McpErrorKind};
use crate::units::seconds_text;
use awc::error::{ConnectError, SendRequestError};
use awc::http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use awc::ClientRequest;
use ktsu_shared::wire::invoke::ToolServerSpec;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// `MCP-Protocol-Version`.
pub(super) const PROTOCOL_VERSION_HEADER: HeaderName =
    HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Session-Id`.
pub(super) const SESSION_ID_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// Largest JSON-RPC message accepted (one JSON body or one SSE event).
pub(super) const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Bound of the session DELETE at close.
pub(super) const DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of a `notifications/cancelled` POST.
pub(super) const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the legacy `endpoint` event.
const MAX_ENDPOINT_WAIT: Duration = Duration::from_secs(10);

/// Where and how to reach one MCP server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's name (logs, errors).
    pub server: String,
    /// The URL as given, with `persistentId` added when set.
    pub url: Url,
    persistent_id: Option<String>,
    /// `<auth_header>: <auth_value>`, marked sensitive.
    auth: Option<(HeaderName, HeaderValue)>,
    /// Bound of each request (POST plus waiting for its response on any stream).
    pub timeout: Duration,
    /// Bound of a legacy SSE stream's whole life (the leg's step limit).
    pub stream_life: Duration,
    /// Sent in `initialize.params.config`.
    pub params: BTreeMap<String, String>,
}

impl Endpoint {
    /// The endpoint of `spec`; `default_timeout` applies when the spec has no usable
    /// `timeout_s`.
    pub fn new(
        spec: &ToolServerSpec,
        default_timeout: Duration,
        stream_life: Duration,
    ) -> Result<Endpoint, McpError> {
        let invalid = |detail: String| McpError::new(McpErrorKind::Transport, detail);
        let mut url = Url::parse(&spec.url)
            .map_err(|err| invalid(format!("invalid URL {:?}: {err}", spec.url)))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(invalid(format!(
                "invalid URL {:?}: expected an absolute http(s) URL",
                spec.url
            )));
        }
        let persistent_id = Some(spec.persistent_id.clone()).filter(|id| !id.is_empty());
        if let Some(id) = &persistent_id {
            url.query_pairs_mut().append_pair("persistentId", id);
        }
        let auth = if spec.auth_header.is_empty() {
            None
        } else {
            let name = HeaderName::from_bytes(spec.auth_header.as_bytes())
                .map_err(|_| invalid(format!("invalid auth header name {:?}", spec.auth_header)))?;
            let mut value = HeaderValue::from_str(&spec.auth_value)
                .map_err(|_| invalid(format!("invalid value for the {name} header")))?;
            value.set_sensitive(true);
            Some((name, value))
        };
        let timeout = spec
            .timeout_s
            .and_then(crate::units::positive_seconds)
            .unwrap_or(default_timeout);
        Ok(Endpoint {
            server: spec.name.clone(),
            url,
            persistent_id,
            auth,
            timeout,
            stream_life,
            params: spec.params.clone(),
        })
    }

    /// `url` with `persistentId` added (legacy stream and message URLs), unless present.
    pub(super) fn with_persistent_id(&self, mut url: Url) -> Url {
        if let Some(id) = &self.persistent_id {
            if !url.query_pairs().any(|(key, _)| key == "persistentId") {
                url.query_pairs_mut().append_pair("persistentId", id);
            }
        }
        url
    }

    /// The wait for the legacy `endpoint` event: min(10 s, timeout).
    pub(super) fn endpoint_wait(&self) -> Duration {
        self.timeout.min(MAX_ENDPOINT_WAIT)
    }

    fn authorize(&self, request: ClientRequest) -> ClientRequest {
        match &self.auth {
            Some((name, value)) => request.insert_header((name.clone(), value.clone())),
            None => request,
        }
    }

    /// A POST of one JSON-RPC message to `url`, with every header of §4.2.
    pub(super) fn post(
        &self,
        client: &awc::Client,
        url: &Url,
        session: &SessionHeaders,
        timeout: Duration,
    ) -> ClientRequest {
        let request = client
            .post(url.as_str())
            .timeout(timeout)
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header((ACCEPT, "application/json, text/event-stream"));
        session.apply(self.authorize(request))
    }

    /// A GET of an event stream (legacy transport).
    pub(super) fn get_stream(&self, client: &awc::Client, url: &Url) -> ClientRequest {
        let request = client
            .get(url.as_str())
            .timeout(self.stream_life)
            .insert_header((ACCEPT, "text/event-stream"));
        self.authorize(request)
    }

    /// The DELETE that ends a Streamable HTTP session.
    pub(super) fn delete(&self, client: &awc::Client, session: &SessionHeaders) -> ClientRequest {
        let request = client.delete(self.url.as_str()).timeout(DELETE_TIMEOUT);
        session.apply(self.authorize(request))
    }
}

/// The headers every request after `initialize` carries.
#[derive(Debug, Clone, Default)]
pub(super) struct SessionHeaders {
    pub protocol_version: Option<&'static str>,
    pub session_id: Option<HeaderValue>,
}

impl SessionHeaders {
    fn apply(&self, mut request: ClientRequest) -> ClientRequest {
        if let Some(version) = self.protocol_version {
            request = request.insert_header((PROTOCOL_VERSION_HEADER, version));
        }
        if let Some(id) = &self.session_id {
            request = request.insert_header((SESSION_ID_HEADER, id.clone()));
        }
        request
    }
}

/// A failed send → its MCP cause: the timeout, a connection failure naming the URL, or another
/// transport failure naming the method.
pub(super) fn send_error(
    method: &str,
    url: &Url,
    timeout: Duration,
    err: SendRequestError,
) -> McpError {
    match err {
        SendRequestError::Timeout => timeout_error(method, timeout),
        SendRequestError::Connect(ConnectError::Timeout) => McpError::new(
            McpErrorKind::Transport,
            format!("connect {url}: connection timed out"),
        ),
        SendRequestError::Connect(ConnectError::Io(io))
            if io.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            McpError::new(
                McpErrorKind::Transport,
                format!("connect {url}: connection refused"),
            )
        }
        SendRequestError::Connect(cause) => {
            McpError::new(McpErrorKind::Transport, format!("connect {url}: {cause}"))
        }
        other => McpError::new(McpErrorKind::Transport, format!("{method}: {other}")),
    }
}

/// `<method>: no response within <n> s`.
pub(super) fn timeout_error(method: &str, timeout: Duration) -> McpError {
    McpError::new(
        McpErrorKind::Timeout,
        format!("{method}: no response within {} s", seconds_text(timeout)),
    )
}

/// Whether a response's `Content-Type` starts with `prefix` (parameters ignored).
pub(super) fn content_type_is(headers: &awc::http::header::HeaderMap, prefix: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> ToolServerSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn urls_timeouts_and_auth() {
        let endpoint = Endpoint::new(
            &spec(
                json!({"name": "kv", "url": "http://kv:9200/mcp", "persistent_id": "p 1",
                         "auth_header": "X-Api-Key", "auth_value": "k", "timeout_s": 2.5}),
            ),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(endpoint.url.as_str(), "http://kv:9200/mcp?persistentId=p+1");
        assert_eq!(endpoint.timeout, Duration::from_millis(2500));
        let message =
            endpoint.with_persistent_id(Url::parse("http://kv:9200/messages/?s=1").unwrap());
        assert_eq!(
            message.as_str(),
            "http://kv:9200/messages/?s=1&persistentId=p+1"
        );
        assert_eq!(endpoint.with_persistent_id(message.clone()), message);
        let (name, value) = endpoint.auth.clone().unwrap();
        assert_eq!((name.as_str(), value.is_sensitive()), ("x-api-key", true));
        assert_eq!(endpoint.endpoint_wait(), Duration::from_millis(2500));

        let plain = Endpoint::new(
            &spec(json!({"name": "kv", "url": "https://kv/mcp", "timeout_s": 0})),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(plain.timeout, Duration::from_secs(60));
        assert_eq!(plain.endpoint_wait(), Duration::from_secs(10));
        assert!(plain.auth.is_none());
    }

    #[test]
    fn bad_servers_are_transport_errors() {
        for bad in [
            json!({"name": "a", "url": "kv:9200"}),
            json!({"name": "a", "url": "ftp://kv/mcp"}),
            json!({"name": "a", "url": "http://kv/mcp", "auth_header": "Bad Header", "auth_value": "x"}),
            json!({"name": "a", "url": "http://kv/mcp", "auth_header": "X", "auth_value": "line\nbreak"}),
        ] {
            let err = Endpoint::new(
                &spec(bad.clone()),
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .unwrap_err();
            assert_eq!(err.kind, McpErrorKind::Transport, "{bad}");
            assert!(!err.detail.contains("line\nbreak"));
        }
    }
}
