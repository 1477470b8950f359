//! Streamable HTTP exchanges (runtime-gateway.md §4.5): each message is its own POST; the answer
//! comes as one JSON body (or a batch) or as an event stream read until the response with the
//! request's id, answering server requests met on the way (§4.7).

use super::endpoint::{
    content_type_is, send_error, Endpoint, SessionHeaders, MAX_MESSAGE_BYTES, SESSION_ID_HEADER,
};
use super::error::{McpError, McpErrorKind, RpcErrorObject};
use super::jsonrpc::{self, Incoming};
use super::sse_parser::SseParser;
use actix_web::web::Bytes;
use awc::error::PayloadError;
use awc::http::header::HeaderValue;
use futures_core::Stream;
use futures_util::StreamExt;
use ktsu_shared::http::{read_body, OutboundError};
use serde_json::Value;
use std::time::Duration;
use url::Url;

/// What one POST produced.
#[derive(Debug)]
pub(super) enum PostReply {
    /// The response to the request, and the `Mcp-Session-Id` header of the HTTP answer.
    Response {
        outcome: Result<Value, RpcErrorObject>,
        session_id: Option<HeaderValue>,
    },
    /// A 2xx without a body (the normal answer to a notification; 202 to a request).
    Accepted(u16),
    /// A 2xx whose body holds no JSON-RPC response to the request.
    NotJsonRpc(u16),
    /// Any non-2xx status.
    Status(u16),
}

/// POSTs one message. With `wait_for`, reads the answer until the response with that id.
pub(super) async fn post_message(
    client: &awc::Client,
    endpoint: &Endpoint,
    session: &SessionHeaders,
    body: Bytes,
    wait_for: Option<u64>,
    method: &str,
) -> Result<PostReply, McpError> {
    let url = &endpoint.url;
    let mut response = endpoint
        .post(client, url, session, endpoint.timeout)
        .send_body(body)
        .await
        .map_err(|err| send_error(method, url, endpoint.timeout, err))?;
    let status = response.status();
    if !status.is_success() {
        return Ok(PostReply::Status(status.as_u16()));
    }
    let Some(id) = wait_for else {
        return Ok(PostReply::Accepted(status.as_u16()));
    };
    let session_id = response.headers().get(SESSION_ID_HEADER).cloned();
    let answer = Answerer {
        client,
        endpoint,
        url,
        session,
    };
    let outcome = if content_type_is(response.headers(), "text/event-stream") {
        Some(read_event_stream(&mut response, id, method, &answer).await?)
    } else {
        let body = read_body(&mut response, MAX_MESSAGE_BYTES)
            .await
            .map_err(|err| body_error(method, endpoint.timeout, err))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(PostReply::Accepted(status.as_u16()));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => answer.find_response(value, id).await,
            Err(_) => None,
        }
    };
    Ok(match outcome {
        Some(outcome) => PostReply::Response {
            outcome,
            session_id,
        },
        None => PostReply::NotJsonRpc(status.as_u16()),
    })
}

/// Reads events until the response with `id`; the stream is dropped (closed) right after.
async fn read_event_stream<S>(
    response: &mut S,
    id: u64,
    method: &str,
    answer: &Answerer<'_>,
) -> Result<Result<Value, RpcErrorObject>, McpError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut parser = SseParser::new(MAX_MESSAGE_BYTES);
    let mut events = Vec::new();
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|err| {
            McpError::new(
                McpErrorKind::Transport,
                format!("{method}: reading the response stream: {err}"),
            )
        })?;
        parser
            .push(&chunk, &mut events)
            .map_err(|err| McpError::protocol(format!("{method}: {err}")))?;
        for event in events.drain(..) {
            if event.event != "message" {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                log::debug!(server = answer.endpoint.server.as_str(); "MCP event data is not JSON; skipped");
                continue;
            };
            if let Some(outcome) = answer.find_response(value, id).await {
                return Ok(outcome);
            }
        }
    }
    Err(McpError::new(
        McpErrorKind::StreamClosed,
        format!("{method}: stream closed before response"),
    ))
}

/// Handles the server messages of one body or event; returns the response with `id` if present.
struct Answerer<'a> {
    client: &'a awc::Client,
    endpoint: &'a Endpoint,
    url: &'a Url,
    session: &'a SessionHeaders,
}

impl Answerer<'_> {
    async fn find_response(&self, value: Value, id: u64) -> Option<Result<Value, RpcErrorObject>> {
        let mut found = None;
        for message in jsonrpc::messages_of(value) {
            match jsonrpc::classify(message) {
                Incoming::Response {
                    id: their_id,
                    outcome,
                } if found.is_none() && jsonrpc::id_is(&their_id, id) => found = Some(outcome),
                Incoming::Response { id: their_id, .. } => {
                    log::debug!(server = self.endpoint.server.as_str(), id:serde = their_id; "MCP response for no pending request ignored");
                }
                Incoming::Request { id, method } => self.answer(&id, &method).await,
                Incoming::Notification { method } => {
                    log::debug!(server = self.endpoint.server.as_str(), method = method.as_str(); "MCP notification ignored");
                }
                Incoming::Invalid => {
                    log::debug!(server = self.endpoint.server.as_str(); "MCP message that is not JSON-RPC ignored");
                }
            }
        }
        found
    }

    /// Answers a server request by POST to the MCP URL; failures are logged and otherwise
    /// ignored (the server's problem, not the pending request's).
    async fn answer(&self, id: &Value, method: &str) {
        let body = jsonrpc::answer_server_request(id, method).to_string();
        let result = self
            .endpoint
            .post(self.client, self.url, self.session, self.endpoint.timeout)
            .send_body(body)
            .await;
        if let Err(err) = result {
            log::debug!(server = self.endpoint.server.as_str(), method = method; "answering an MCP server request failed: {err}");
        }
    }
}

fn body_error(method: &str, timeout: Duration, err: OutboundError) -> McpError {
    match err {
        OutboundError::Timeout => super::endpoint::timeout_error(method, timeout),
        OutboundError::TooLarge { limit } => {
            McpError::protocol(format!("{method}: response larger than {limit} bytes"))
        }
        other => McpError::new(McpErrorKind::Transport, format!("{method}: {other}")),
    }
}
