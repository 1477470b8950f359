//! One MCP session (one leg, one server): transport negotiation (runtime-gateway.md §4.3), the
//! `initialize` handshake (§4.4), requests with their timeout and session-expiry handling
//! (§4.5, §4.10), `tools/list` pagination (§4.8), `tools/call` (§4.9), cancellation of in-flight
//! requests and close (§4.10).
//!
//! Every request id stays in the in-flight set from the moment it is sent until its exchange
//! ends. If the future driving a request is dropped (the leg was cancelled), the id remains, and
//! [`McpSession::close`] tells the server with `notifications/cancelled`.

use super::endpoint::{timeout_error, Endpoint, SessionHeaders, CANCEL_TIMEOUT};
use super::error::{McpError, McpErrorKind, RpcErrorObject};
use super::hints::{self, TransportHint};
use super::jsonrpc::{self, METHOD_NOT_FOUND};
use super::legacy_sse::{self, LegacyConn, OpenError, PostError};
use super::streamable::{post_message, PostReply};
use super::tools::{map_call_result, parse_tools_page, McpTool, ToolText};
use actix_web::web::Bytes;
use awc::http::header::HeaderValue;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

/// The version offered in `initialize`.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-06-18";
/// Versions this client speaks; the server's choice must be one of them.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];
/// The version assumed for a plain JSON-RPC tool server (no `initialize`).
const PLAIN_PROTOCOL_VERSION: &str = "2024-11-05";
/// `tools/list` pages read at most.
const MAX_PAGES: usize = 100;

/// Which transport a session uses (logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Streamable,
    Legacy,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Streamable => "streamable_http",
            TransportKind::Legacy => "sse",
        }
    }
}

/// The outcome of one `tools/call` that the model gets to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// A result (possibly `isError`).
    Result(ToolText),
    /// A JSON-RPC error response (the model can correct its arguments).
    RpcError(RpcErrorObject),
    /// No answer within the timeout; `notifications/cancelled` was sent.
    TimedOut(Duration),
}

enum Transport {
    Streamable {
        /// `None` for stateless servers and plain JSON-RPC servers.
        session_id: Option<HeaderValue>,
    },
    Legacy(LegacyConn),
}

/// A live MCP session.
pub struct McpSession {
    client: awc::Client,
    endpoint: Endpoint,
    transport: Transport,
    version: &'static str,
    /// Sends `notifications/initialized` after (re-)initializing; false for plain servers.
    handshake: bool,
    next_id: u64,
    in_flight: BTreeSet<u64>,
    /// Why negotiation fell back to the legacy transport (for the leg's log).
    fallback_reason: Option<String>,
    /// `tools/list` entries skipped for lacking a string name (for the leg's log).
    skipped_tools: usize,
}

/// What `initialize` settled.
enum Handshake {
    Negotiated(&'static str),
    /// `initialize` answered "method not found": a plain JSON-RPC tool server.
    Plain,
}

impl McpSession {
    /// Opens a session: through the cached transport hint when there is one (discarding it and
    /// negotiating again once if that fails), else by negotiation.
    pub async fn connect(client: &awc::Client, endpoint: Endpoint) -> Result<McpSession, McpError> {
        let mut session = McpSession {
            client: client.clone(),
            endpoint,
            transport: Transport::Streamable { session_id: None },
            version: LATEST_PROTOCOL_VERSION,
            handshake: true,
            next_id: 1,
            in_flight: BTreeSet::new(),
            fallback_reason: None,
            skipped_tools: 0,
        };
        if let Some(hint) = hints::get(&session.endpoint.url) {
            match session.open_with(&hint).await {
                Ok(()) => return Ok(session),
                Err(err) => {
                    log::debug!(server = session.endpoint.server.as_str(); "MCP transport hint failed ({err}); negotiating again");
                    hints::forget(&session.endpoint.url);
                }
            }
        }
        session.negotiate().await?;
        Ok(session)
    }

    pub fn transport(&self) -> TransportKind {
        match self.transport {
            Transport::Streamable { .. } => TransportKind::Streamable,
            Transport::Legacy(_) => TransportKind::Legacy,
        }
    }

    pub fn protocol_version(&self) -> &'static str {
        self.version
    }

    /// Whether the server issued a session (a `Mcp-Session-Id`, or a legacy stream).
    pub fn has_session(&self) -> bool {
        match &self.transport {
            Transport::Streamable { session_id } => session_id.is_some(),
            Transport::Legacy(_) => true,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Why this session fell back to the legacy transport, when it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// `tools/list` entries skipped so far because they had no string `name`.
    pub fn skipped_tools(&self) -> usize {
        self.skipped_tools
    }

    /// §4.3: POST `initialize`; a JSON-RPC answer means Streamable HTTP; 401/403 fail; 5xx and
    /// transport errors fail without fallback; anything else probes the legacy transport.
    async fn negotiate(&mut self) -> Result<(), McpError> {
        let id = self.take_id();
        let body = self.initialize_body(id);
        let reply = post_message(
            &self.client,
            &self.endpoint,
            &SessionHeaders::default(),
            body,
            Some(id),
            "initialize",
        )
        .await?;
        let post_status = match reply {
            PostReply::Response {
                outcome,
                session_id,
            } => {
                self.finish_streamable(outcome, session_id).await?;
                hints::remember(&self.endpoint.url, TransportHint::Streamable);
                return Ok(());
            }
            PostReply::Status(status) if status == 401 || status == 403 || status >= 500 => {
                return Err(McpError::status("initialize", status))
            }
            PostReply::Status(status)
            | PostReply::Accepted(status)
            | PostReply::NotJsonRpc(status) => status,
        };
        self.fallback_reason = Some(format!("POST initialize answered {post_status}"));
        let conn = self.probe_legacy(post_status).await?;
        self.finish_legacy(conn).await?;
        Ok(())
    }

    /// GET the URL as an event stream, then `<url>/sse` unless the path already ends in `/sse`.
    async fn probe_legacy(&self, post_status: u16) -> Result<LegacyConn, McpError> {
        let url = self.endpoint.url.clone();
        let mut candidates = vec![url.clone()];
        if !url.path().trim_end_matches('/').ends_with("/sse") {
            let mut sse = url.clone();
            let path = format!("{}/sse", url.path().trim_end_matches('/'));
            sse.set_path(&path);
            // The `persistentId` is re-added by the transport.
            sse.set_query(None);
            candidates.push(sse);
        }
        let mut last = String::from("error");
        for candidate in candidates {
            let candidate = strip_persistent_id(candidate);
            match legacy_sse::open(&self.client, &self.endpoint, candidate).await {
                Ok(conn) => return Ok(conn),
                Err(OpenError::Fatal(err)) => return Err(err),
                Err(OpenError::NotLegacy(status)) => last = status,
            }
        }
        Err(McpError::new(
            McpErrorKind::NoTransport,
            format!(
                "server speaks neither Streamable HTTP (POST {post_status}) nor HTTP+SSE (GET {last})"
            ),
        ))
    }

    /// Opens the session the way `hint` says, with no fallback.
    async fn open_with(&mut self, hint: &TransportHint) -> Result<(), McpError> {
        match hint {
            TransportHint::Streamable => self.initialize_streamable().await,
            TransportHint::Legacy(stream_url) => {
                let conn = legacy_sse::open(&self.client, &self.endpoint, stream_url.clone())
                    .await
                    .map_err(|err| match err {
                        OpenError::Fatal(err) => err,
                        OpenError::NotLegacy(status) => McpError::new(
                            McpErrorKind::NoTransport,
                            format!("legacy stream answered {status}"),
                        ),
                    })?;
                self.finish_legacy(conn).await
            }
        }
    }

    /// `initialize` over Streamable HTTP, where a non-answer is an error (hint, session expiry).
    async fn initialize_streamable(&mut self) -> Result<(), McpError> {
        let id = self.take_id();
        let body = self.initialize_body(id);
        let reply = post_message(
            &self.client,
            &self.endpoint,
            &SessionHeaders::default(),
            body,
            Some(id),
            "initialize",
        )
        .await?;
        match reply {
            PostReply::Response {
                outcome,
                session_id,
            } => self.finish_streamable(outcome, session_id).await,
            other => Err(unexpected_reply("initialize", other)),
        }
    }

    async fn finish_streamable(
        &mut self,
        outcome: Result<Value, RpcErrorObject>,
        session_id: Option<HeaderValue>,
    ) -> Result<(), McpError> {
        let session_id = match session_id {
            Some(id)
                if id.as_bytes().iter().all(|b| (0x21..=0x7E).contains(b)) && !id.is_empty() =>
            {
                Some(id)
            }
            Some(_) => {
                return Err(McpError::protocol(
                    "initialize: Mcp-Session-Id has characters outside 0x21-0x7E",
                ))
            }
            None => None,
        };
        match handshake(outcome) {
            Ok(Handshake::Negotiated(version)) => {
                self.transport = Transport::Streamable { session_id };
                self.version = version;
                self.handshake = true;
                self.notify("notifications/initialized", None).await
            }
            Ok(Handshake::Plain) => {
                self.transport = Transport::Streamable { session_id: None };
                self.version = PLAIN_PROTOCOL_VERSION;
                self.handshake = false;
                Ok(())
            }
            Err(err) => {
                // A session the server may have opened is closed before failing.
                self.transport = Transport::Streamable { session_id };
                self.delete_session().await;
                self.transport = Transport::Streamable { session_id: None };
                Err(err)
            }
        }
    }

    /// `initialize` and `notifications/initialized` over a freshly opened legacy stream.
    async fn finish_legacy(&mut self, conn: LegacyConn) -> Result<(), McpError> {
        let stream_url = conn.stream_url.clone();
        let id = self.take_id();
        let body = self.initialize_body(id);
        let outcome = conn
            .request(&self.client, &self.endpoint, body, id, "initialize")
            .await
            .map_err(|err| legacy_error("initialize", err))?;
        let handshake = handshake(outcome)?;
        self.transport = Transport::Legacy(conn);
        match handshake {
            Handshake::Negotiated(version) => {
                self.version = version;
                self.handshake = true;
                if let Transport::Legacy(conn) = &self.transport {
                    conn.set_protocol_version(version);
                }
                self.notify("notifications/initialized", None).await?;
            }
            Handshake::Plain => {
                self.version = PLAIN_PROTOCOL_VERSION;
                self.handshake = false;
            }
        }
        hints::remember(
            &self.endpoint.url,
            TransportHint::Legacy(strip_persistent_id(stream_url)),
        );
        Ok(())
    }

    fn initialize_body(&self, id: u64) -> Bytes {
        let mut params = Map::new();
        params.insert("protocolVersion".into(), LATEST_PROTOCOL_VERSION.into());
        params.insert("capabilities".into(), json!({}));
        params.insert(
            "clientInfo".into(),
            json!({"name": "ktsu", "version": ktsu_shared::VERSION}),
        );
        if !self.endpoint.params.is_empty() {
            // ktsu extension: standard servers ignore it.
            params.insert("config".into(), json!(self.endpoint.params));
        }
        let message = jsonrpc::request(id, "initialize", Some(Value::Object(params)));
        Bytes::from(message.to_string())
    }

    fn session_headers(&self) -> SessionHeaders {
        SessionHeaders {
            protocol_version: Some(self.version),
            session_id: match &self.transport {
                Transport::Streamable { session_id } => session_id.clone(),
                Transport::Legacy(_) => None,
            },
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Every tool, following `nextCursor` (at most 100 pages, no cursor twice).
    pub async fn list_tools(&mut self) -> Result<Vec<McpTool>, McpError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map(|cursor| json!({ "cursor": cursor }));
            let result = self.request("tools/list", params).await?;
            let (page, next, skipped) = parse_tools_page(&result)?;
            self.skipped_tools += skipped;
            tools.extend(page);
            match next {
                None => return Ok(tools),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(McpError::protocol(format!(
                        "tools/list: cursor {next:?} repeated"
                    )))
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(McpError::protocol(format!(
            "tools/list: more than {MAX_PAGES} pages"
        )))
    }

    /// One tool call. `Err` is a failure the leg cannot continue from (transport, status,
    /// malformed response, stream closed); JSON-RPC errors and timeouts are outcomes the model
    /// sees.
    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: &Value,
        max_result_bytes: usize,
    ) -> Result<CallOutcome, McpError> {
        let arguments = if arguments.is_null() {
            json!({})
        } else {
            arguments.clone()
        };
        let params = json!({"name": name, "arguments": arguments});
        match self.request("tools/call", Some(params)).await {
            Ok(result) => map_call_result(&result, max_result_bytes).map(CallOutcome::Result),
            Err(McpError {
                kind: McpErrorKind::RpcError,
                rpc: Some(rpc),
                ..
            }) => Ok(CallOutcome::RpcError(rpc)),
            Err(err) if err.kind == McpErrorKind::Timeout => {
                Ok(CallOutcome::TimedOut(self.endpoint.timeout))
            }
            Err(err) => Err(err),
        }
    }

    /// One request, bounded by the server's timeout. On timeout the server gets
    /// `notifications/cancelled` for it.
    async fn request(&mut self, method: &str, params: Option<Value>) -> Result<Value, McpError> {
        let id = self.take_id();
        let body = Bytes::from(jsonrpc::request(id, method, params).to_string());
        let timeout = self.endpoint.timeout;
        self.in_flight.insert(id);
        let result = actix_rt::time::timeout(timeout, self.exchange(id, method, body))
            .await
            .unwrap_or_else(|_| Err(timeout_error(method, timeout)));
        self.in_flight.remove(&id);
        // Whichever clock fired (this one, or the HTTP client's own bound on the exchange).
        if matches!(&result, Err(err) if err.kind == McpErrorKind::Timeout) {
            self.send_cancelled(id, "request timed out").await;
        }
        result
    }

    async fn exchange(&mut self, id: u64, method: &str, body: Bytes) -> Result<Value, McpError> {
        for first in [true, false] {
            match &self.transport {
                Transport::Streamable { session_id } => {
                    let had_session = session_id.is_some();
                    let reply = post_message(
                        &self.client,
                        &self.endpoint,
                        &self.session_headers(),
                        body.clone(),
                        Some(id),
                        method,
                    )
                    .await?;
                    match reply {
                        PostReply::Response { outcome, .. } => {
                            return outcome.map_err(|err| McpError::rpc(method, err))
                        }
                        // The session expired: a new one, and the request once more (the server
                        // did not run it).
                        PostReply::Status(404) if had_session && first => {
                            self.initialize_streamable().await?;
                        }
                        PostReply::Status(404) if had_session => {
                            return Err(McpError::new(
                                McpErrorKind::SessionExpired,
                                format!("{method}: session expired twice"),
                            ))
                        }
                        other => return Err(unexpected_reply(method, other)),
                    }
                }
                Transport::Legacy(conn) => {
                    // A stream that ended while nothing was pending is re-opened once.
                    if conn.is_closed() && first {
                        self.reopen_legacy().await?;
                    }
                    let Transport::Legacy(conn) = &self.transport else {
                        return Err(McpError::protocol("legacy session lost"));
                    };
                    match conn
                        .request(&self.client, &self.endpoint, body.clone(), id, method)
                        .await
                    {
                        Ok(outcome) => return outcome.map_err(|err| McpError::rpc(method, err)),
                        Err(PostError::Rejected(_)) if first => self.reopen_legacy().await?,
                        Err(err) => return Err(legacy_error(method, err)),
                    }
                }
            }
        }
        Err(McpError::new(
            McpErrorKind::SessionExpired,
            format!("{method}: session expired twice"),
        ))
    }

    async fn reopen_legacy(&mut self) -> Result<(), McpError> {
        let Transport::Legacy(conn) = &self.transport else {
            return Ok(());
        };
        let stream_url = strip_persistent_id(conn.stream_url.clone());
        let conn = legacy_sse::open(&self.client, &self.endpoint, stream_url)
            .await
            .map_err(|err| match err {
                OpenError::Fatal(err) => err,
                OpenError::NotLegacy(status) => McpError::new(
                    McpErrorKind::StreamClosed,
                    format!("re-opening the event stream failed: GET {status}"),
                ),
            })?;
        self.finish_legacy(conn).await
    }

    /// A notification; any 2xx is accepted.
    async fn notify(&mut self, method: &str, params: Option<Value>) -> Result<(), McpError> {
        let body = Bytes::from(jsonrpc::notification(method, params).to_string());
        match &self.transport {
            Transport::Streamable { .. } => {
                let reply = post_message(
                    &self.client,
                    &self.endpoint,
                    &self.session_headers(),
                    body,
                    None,
                    method,
                )
                .await?;
                match reply {
                    PostReply::Status(status) => Err(McpError::status(method, status)),
                    _ => Ok(()),
                }
            }
            Transport::Legacy(conn) => conn
                .notify(&self.client, &self.endpoint, body, method)
                .await
                .map_err(|err| legacy_error(method, err)),
        }
    }

    /// `notifications/cancelled` for request `id` (2 s bound, outcome ignored).
    async fn send_cancelled(&mut self, id: u64, reason: &str) {
        let params = json!({"requestId": id, "reason": reason});
        let sent = actix_rt::time::timeout(
            CANCEL_TIMEOUT,
            self.notify("notifications/cancelled", Some(params)),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            log::debug!(server = self.endpoint.server.as_str(), request_id = id; "notifications/cancelled not delivered");
        }
    }

    /// Ids of requests sent and not answered (their exchange was abandoned).
    pub fn in_flight(&self) -> Vec<u64> {
        self.in_flight.iter().copied().collect()
    }

    /// Cancels in-flight requests with `reason`, then ends the session: DELETE for a
    /// Streamable HTTP session id (5 s, failures ignored), dropping the stream for legacy.
    pub async fn close(mut self, reason: &str) {
        for id in std::mem::take(&mut self.in_flight) {
            self.send_cancelled(id, reason).await;
        }
        self.delete_session().await;
    }

    async fn delete_session(&mut self) {
        if let Transport::Streamable {
            session_id: Some(_),
        } = &self.transport
        {
            let result = self
                .endpoint
                .delete(&self.client, &self.session_headers())
                .send()
                .await;
            match result {
                Ok(response) => {
                    log::debug!(server = self.endpoint.server.as_str(), http_status = response.status().as_u16(); "MCP session closed")
                }
                Err(err) => {
                    log::debug!(server = self.endpoint.server.as_str(); "MCP session DELETE failed: {err}")
                }
            }
        }
    }
}

/// The `initialize` answer → the negotiated version.
fn handshake(outcome: Result<Value, RpcErrorObject>) -> Result<Handshake, McpError> {
    match outcome {
        Ok(result) => {
            let chosen = result.get("protocolVersion").and_then(Value::as_str);
            match chosen.and_then(|v| SUPPORTED_PROTOCOL_VERSIONS.into_iter().find(|s| *s == v)) {
                Some(version) => Ok(Handshake::Negotiated(version)),
                None => Err(McpError::new(
                    McpErrorKind::UnsupportedVersion,
                    format!(
                        "server chose protocol {}",
                        chosen.map_or_else(|| "(none)".to_owned(), str::to_owned)
                    ),
                )),
            }
        }
        Err(error) if error.code == METHOD_NOT_FOUND => Ok(Handshake::Plain),
        Err(error) => Err(McpError::rpc("initialize", error)),
    }
}

fn unexpected_reply(method: &str, reply: PostReply) -> McpError {
    match reply {
        PostReply::Status(status) => McpError::status(method, status),
        PostReply::Accepted(202) => McpError::protocol(format!("{method}: 202 without a response")),
        PostReply::Accepted(status) => {
            McpError::protocol(format!("{method}: {status} without a response"))
        }
        PostReply::NotJsonRpc(_) => McpError::protocol(format!(
            "parse {method} response: no JSON-RPC response in the body"
        )),
        PostReply::Response { .. } => McpError::protocol(format!("{method}: unexpected response")),
    }
}

fn legacy_error(method: &str, err: PostError) -> McpError {
    match err {
        PostError::Rejected(status) => McpError::status(method, status),
        PostError::Failed(err) => err,
    }
}

/// The URL without the `persistentId` the transport adds itself.
fn strip_persistent_id(mut url: url::Url) -> url::Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "persistentId")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url
}
