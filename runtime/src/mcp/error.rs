//! MCP failure causes (runtime-gateway.md §4.11). A cause reads `<mcp_error>: <detail>` and is
//! embedded in the leg's `tool_discovery_failed` / `tool_call_failed` error texts.

use std::fmt;

/// The stable `mcp_error` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum McpErrorKind {
    /// No connection, or it broke (`connect http://kv:9200/mcp: connection refused`).
    Transport,
    /// A status the exchange does not allow (`tools/list: server returned 500`).
    HttpStatus,
    /// 401 or 403 to `initialize`.
    Unauthorized,
    /// Neither Streamable HTTP nor HTTP+SSE answered.
    NoTransport,
    /// The server chose a protocol version this client does not speak.
    UnsupportedVersion,
    /// No response within the server's timeout.
    Timeout,
    /// A JSON-RPC error response.
    RpcError,
    /// A message that breaks the protocol (unparseable, too large, missing fields).
    Protocol,
    /// 404 on a session twice in a row.
    SessionExpired,
    /// The response stream ended before the response.
    StreamClosed,
}

impl McpErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            McpErrorKind::Transport => "mcp_transport",
            McpErrorKind::HttpStatus => "mcp_http_status",
            McpErrorKind::Unauthorized => "mcp_unauthorized",
            McpErrorKind::NoTransport => "mcp_no_transport",
            McpErrorKind::UnsupportedVersion => "mcp_unsupported_version",
            McpErrorKind::Timeout => "mcp_timeout",
            McpErrorKind::RpcError => "mcp_rpc_error",
            McpErrorKind::Protocol => "mcp_protocol",
            McpErrorKind::SessionExpired => "mcp_session_expired",
            McpErrorKind::StreamClosed => "mcp_stream_closed",
        }
    }
}

/// The `error` object of a JSON-RPC error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcErrorObject {
    pub code: i64,
    pub message: String,
}

/// One MCP failure: its kind and a one-line detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpError {
    pub kind: McpErrorKind,
    pub detail: String,
    /// The JSON-RPC error when `kind` is [`McpErrorKind::RpcError`].
    pub rpc: Option<RpcErrorObject>,
}

impl McpError {
    pub fn new(kind: McpErrorKind, detail: impl Into<String>) -> Self {
        McpError {
            kind,
            detail: detail.into(),
            rpc: None,
        }
    }

    pub fn protocol(detail: impl Into<String>) -> Self {
        Self::new(McpErrorKind::Protocol, detail)
    }

    /// `<method>: server returned <status>`, or `mcp_unauthorized` for 401/403 to `initialize`.
    pub fn status(method: &str, status: u16) -> Self {
        let kind = if method == "initialize" && (status == 401 || status == 403) {
            McpErrorKind::Unauthorized
        } else {
            McpErrorKind::HttpStatus
        };
        Self::new(kind, format!("{method}: server returned {status}"))
    }

    /// `<method> error <code>: <message>`.
    pub fn rpc(method: &str, error: RpcErrorObject) -> Self {
        McpError {
            kind: McpErrorKind::RpcError,
            detail: format!("{method} error {}: {}", error.code, error.message),
            rpc: Some(error),
        }
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl fmt::Display for McpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.detail)
    }
}

impl std::error::Error for McpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_read_code_then_detail() {
        let err = McpError::status("tools/list", 500);
        assert_eq!(
            err.to_string(),
            "mcp_http_status: tools/list: server returned 500"
        );
        assert_eq!(
            McpError::status("initialize", 401).to_string(),
            "mcp_unauthorized: initialize: server returned 401"
        );
        let rpc = McpError::rpc(
            "tools/list",
            RpcErrorObject {
                code: -32603,
                message: "internal error".into(),
            },
        );
        assert_eq!(
            rpc.to_string(),
            "mcp_rpc_error: tools/list error -32603: internal error"
        );
        assert_eq!(rpc.rpc.unwrap().code, -32603);
    }
}
