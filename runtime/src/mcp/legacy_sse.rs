//! The legacy HTTP+SSE transport (protocol 2024-11-05; runtime-gateway.md §4.10): one event
//! stream kept open for the session, whose first `endpoint` event names the URL every message is
//! POSTed to; responses come back on the stream and a reader task hands them to their waiters.

use super::endpoint::{content_type_is, send_error, Endpoint, SessionHeaders, MAX_MESSAGE_BYTES};
use super::error::{McpError, McpErrorKind, RpcErrorObject};
use super::jsonrpc::{self, Incoming};
use super::sse_parser::{SseEvent, SseParser};
use actix_web::web::Bytes;
use awc::error::PayloadError;
use futures_core::Stream;
use futures_util::StreamExt;
use ktsu_shared::http::read_body;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::sync::oneshot;
use url::Url;

type Outcome = Result<Value, RpcErrorObject>;

/// Why a stream could not become a legacy session.
#[derive(Debug)]
pub(super) enum OpenError {
    /// Not a legacy server at this URL: the GET's status (for the `mcp_no_transport` text).
    NotLegacy(String),
    /// A legacy server that breaks the rules (for example an endpoint on another origin).
    Fatal(McpError),
}

/// Why a POST on the legacy transport failed.
#[derive(Debug)]
pub(super) enum PostError {
    /// 400 or 404: the server rejected the message without running it; the session is re-opened
    /// once and the message resent once.
    Rejected(u16),
    Failed(McpError),
}

/// State shared by the session and its stream reader (same thread, never borrowed across an
/// await).
#[derive(Default)]
struct Shared {
    waiters: HashMap<u64, oneshot::Sender<Outcome>>,
    closed: bool,
    /// Set after `initialize`; sent on answers to server requests.
    protocol_version: Option<&'static str>,
}

/// An open legacy session: the stream (read by a background task) and the message URL.
pub(super) struct LegacyConn {
    /// The stream URL this connection was opened at (the transport hint).
    pub stream_url: Url,
    message_url: Url,
    shared: Rc<RefCell<Shared>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for LegacyConn {
    /// Closing a legacy session is dropping its stream connection.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// GETs `stream_url` and waits (at most [`Endpoint::endpoint_wait`]) for the `endpoint` event.
pub(super) async fn open(
    client: &awc::Client,
    endpoint: &Endpoint,
    stream_url: Url,
) -> Result<LegacyConn, OpenError> {
    let stream_url = endpoint.with_persistent_id(stream_url);
    let wait = endpoint.endpoint_wait();
    let opened = actix_rt::time::timeout(wait, async {
        let mut response = endpoint
            .get_stream(client, &stream_url)
            .send()
            .await
            .map_err(|err| {
                let cause = send_error("GET", &stream_url, wait, err);
                OpenError::NotLegacy(format!("error: {}", cause.detail))
            })?;
        let status = response.status();
        if status != 200 || !content_type_is(response.headers(), "text/event-stream") {
            return Err(OpenError::NotLegacy(status.as_u16().to_string()));
        }
        let mut parser = SseParser::new(MAX_MESSAGE_BYTES);
        let mut events = Vec::new();
        while let Some(chunk) = response.next().await {
            let Ok(chunk) = chunk else { break };
            if parser.push(&chunk, &mut events).is_err() {
                break;
            }
            if let Some(at) = events.iter().position(|e| e.event == "endpoint") {
                let message_url = message_url(endpoint, &stream_url, &events[at].data)?;
                // Messages that came with the endpoint event are the reader's to dispatch.
                let early: Vec<SseEvent> = events.drain(at + 1..).collect();
                return Ok((response, parser, early, message_url));
            }
        }
        Err(OpenError::NotLegacy(
            "200 without an endpoint event".to_owned(),
        ))
    })
    .await
    .unwrap_or_else(|_| {
        Err(OpenError::NotLegacy(
            "200 without an endpoint event in time".to_owned(),
        ))
    });
    let (response, parser, early, message_url) = opened?;
    let shared = Rc::new(RefCell::new(Shared::default()));
    let reader = actix_rt::spawn(read_stream(
        response,
        parser,
        early,
        Rc::clone(&shared),
        client.clone(),
        endpoint.clone(),
        message_url.clone(),
    ));
    Ok(LegacyConn {
        stream_url,
        message_url,
        shared,
        reader,
    })
}

/// The `endpoint` event's data resolved against the stream URL (RFC 3986), on the same origin.
fn message_url(endpoint: &Endpoint, stream_url: &Url, data: &str) -> Result<Url, OpenError> {
    let resolved = stream_url.join(data.trim()).map_err(|err| {
        OpenError::Fatal(McpError::protocol(format!(
            "endpoint event {:?} is not a URL: {err}",
            data.trim()
        )))
    })?;
    let same_origin = resolved.scheme() == stream_url.scheme()
        && resolved.host() == stream_url.host()
        && resolved.port_or_known_default() == stream_url.port_or_known_default();
    if !same_origin {
        // Credentials are never sent to another origin.
        return Err(OpenError::Fatal(McpError::protocol(format!(
            "endpoint {} is not on the origin of the stream {}",
            resolved.origin().ascii_serialization(),
            stream_url.origin().ascii_serialization()
        ))));
    }
    Ok(endpoint.with_persistent_id(resolved))
}

impl LegacyConn {
    /// The stream ended (the server closed it or it broke).
    pub fn is_closed(&self) -> bool {
        self.shared.borrow().closed
    }

    pub fn set_protocol_version(&self, version: &'static str) {
        self.shared.borrow_mut().protocol_version = Some(version);
    }

    /// POSTs request `id` and waits for its response (on the stream, or in a 200 JSON body).
    /// The caller bounds the whole exchange with the request timeout.
    pub async fn request(
        &self,
        client: &awc::Client,
        endpoint: &Endpoint,
        body: Bytes,
        id: u64,
        method: &str,
    ) -> Result<Outcome, PostError> {
        if self.is_closed() {
            return Err(PostError::Failed(stream_closed(method)));
        }
        let (sender, receiver) = oneshot::channel();
        self.shared.borrow_mut().waiters.insert(id, sender);
        // Removes the waiter however this future ends (answer, error, timeout, cancellation).
        let _waiter = WaiterGuard {
            shared: &self.shared,
            id,
        };
        let mut response = self.post(client, endpoint, body, method).await?;
        if response.status() == 200 && content_type_is(response.headers(), "application/json") {
            if let Ok(bytes) = read_body(&mut response, MAX_MESSAGE_BYTES).await {
                if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                    for message in jsonrpc::messages_of(value) {
                        if let Incoming::Response {
                            id: theirs,
                            outcome,
                        } = jsonrpc::classify(message)
                        {
                            if jsonrpc::id_is(&theirs, id) {
                                return Ok(outcome);
                            }
                        }
                    }
                }
            }
        }
        drop(response);
        receiver
            .await
            .map_err(|_| PostError::Failed(stream_closed(method)))
    }

    /// POSTs a notification; any 2xx is accepted.
    pub async fn notify(
        &self,
        client: &awc::Client,
        endpoint: &Endpoint,
        body: Bytes,
        method: &str,
    ) -> Result<(), PostError> {
        self.post(client, endpoint, body, method).await.map(drop)
    }

    async fn post(
        &self,
        client: &awc::Client,
        endpoint: &Endpoint,
        body: Bytes,
        method: &str,
    ) -> Result<awc::ClientResponse<impl Stream<Item = Result<Bytes, PayloadError>>>, PostError>
    {
        let session = SessionHeaders {
            protocol_version: self.shared.borrow().protocol_version,
            session_id: None,
        };
        let response = endpoint
            .post(client, &self.message_url, &session, endpoint.timeout)
            .send_body(body)
            .await
            .map_err(|err| {
                PostError::Failed(send_error(method, &self.message_url, endpoint.timeout, err))
            })?;
        match response.status().as_u16() {
            200 | 202 | 204 => Ok(response),
            status @ (400 | 404) => Err(PostError::Rejected(status)),
            status => Err(PostError::Failed(McpError::status(method, status))),
        }
    }
}

fn stream_closed(method: &str) -> McpError {
    McpError::new(
        McpErrorKind::StreamClosed,
        format!("{method}: stream closed before response"),
    )
}

struct WaiterGuard<'a> {
    shared: &'a RefCell<Shared>,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.borrow_mut().waiters.remove(&self.id);
    }
}

/// The reader task: dispatches responses to waiters, answers server requests, and marks the
/// session closed when the stream ends (which fails every pending waiter).
async fn read_stream<S>(
    mut response: S,
    mut parser: SseParser,
    early: Vec<SseEvent>,
    shared: Rc<RefCell<Shared>>,
    client: awc::Client,
    endpoint: Endpoint,
    message_url: Url,
) where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut events = early;
    loop {
        for event in events.drain(..) {
            if event.event != "message" {
                continue;
            }
            let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                log::debug!(server = endpoint.server.as_str(); "MCP event data is not JSON; skipped");
                continue;
            };
            for message in jsonrpc::messages_of(value) {
                dispatch(message, &shared, &client, &endpoint, &message_url).await;
            }
        }
        match response.next().await {
            Some(Ok(chunk)) => {
                if parser.push(&chunk, &mut events).is_err() {
                    log::debug!(server = endpoint.server.as_str(); "MCP event too large; stream dropped");
                    break;
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    let mut shared = shared.borrow_mut();
    shared.closed = true;
    // Dropping the senders fails every pending request with `mcp_stream_closed`.
    shared.waiters.clear();
}

async fn dispatch(
    message: Value,
    shared: &RefCell<Shared>,
    client: &awc::Client,
    endpoint: &Endpoint,
    message_url: &Url,
) {
    match jsonrpc::classify(message) {
        Incoming::Response { id, outcome } => {
            let waiter =
                jsonrpc::id_number(&id).and_then(|n| shared.borrow_mut().waiters.remove(&n));
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(outcome);
                }
                None => {
                    log::debug!(server = endpoint.server.as_str(), id:serde = id; "MCP response for no pending request ignored");
                }
            }
        }
        Incoming::Request { id, method } => {
            let session = SessionHeaders {
                protocol_version: shared.borrow().protocol_version,
                session_id: None,
            };
            let body = jsonrpc::answer_server_request(&id, &method).to_string();
            let sent = endpoint
                .post(client, message_url, &session, endpoint.timeout)
                .send_body(body)
                .await;
            if let Err(err) = sent {
                log::debug!(server = endpoint.server.as_str(), method = method.as_str(); "answering an MCP server request failed: {err}");
            }
        }
        Incoming::Notification { method } => {
            log::debug!(server = endpoint.server.as_str(), method = method.as_str(); "MCP notification ignored");
        }
        Incoming::Invalid => {
            log::debug!(server = endpoint.server.as_str(); "MCP message that is not JSON-RPC ignored");
        }
    }
}
