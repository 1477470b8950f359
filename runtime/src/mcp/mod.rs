//! The MCP client (runtime-gateway.md §4): Streamable HTTP (protocol 2025-06-18, negotiating
//! down to 2025-03-26 and 2024-11-05) with a fallback to the legacy HTTP+SSE transport, written
//! over awc.
//!
//! ```no_run
//! # async fn demo(spec: &ktsu_shared::wire::invoke::ToolServerSpec) -> Result<(), ktsu_runtime::mcp::McpError> {
//! use ktsu_runtime::mcp::{Endpoint, McpSession};
//! use std::time::Duration;
//! let client = awc::Client::default();
//! let endpoint = Endpoint::new(spec, Duration::from_secs(60), Duration::from_secs(3600))?;
//! let mut session = McpSession::connect(&client, endpoint).await?;
//! let tools = session.list_tools().await?;
//! let outcome = session.call_tool(&tools[0].name, &serde_json::json!({}), 100_000).await?;
//! session.close("done").await;
//! # let _ = outcome; Ok(()) }
//! ```

mod endpoint;
mod error;
mod hints;
mod jsonrpc;
mod legacy_sse;
mod session;
mod sse_parser;
mod streamable;
mod tools;

pub use endpoint::Endpoint;
pub use error::{McpError, McpErrorKind, RpcErrorObject};
pub use session::{
    CallOutcome, McpSession, TransportKind, LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS,
};
pub use tools::{model_input_schema, McpTool, ToolText};
