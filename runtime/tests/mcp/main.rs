//! MCP client tests: interoperability with the official MCP Python SDK (a server nobody here
//! wrote), and edge cases real servers rarely produce, on wiremock and a scripted legacy server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod legacy_edges;
mod python_sdk;
mod streamable_edges;

use ktsu_runtime::mcp::Endpoint;
use ktsu_shared::wire::invoke::ToolServerSpec;
use serde_json::{json, Value};
use std::time::Duration;

/// An endpoint for `url` with `extra` spec fields and a request timeout.
pub fn endpoint(url: &str, extra: Value, timeout: Duration) -> Endpoint {
    let mut spec = json!({"name": "srv", "url": url});
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        spec[key] = value;
    }
    let spec: ToolServerSpec = serde_json::from_value(spec).unwrap();
    Endpoint::new(&spec, timeout, Duration::from_secs(300)).unwrap()
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .add_default_header((
            "User-Agent",
            format!("ktsu-runtime/{}", ktsu_shared::VERSION),
        ))
        .timeout(Duration::from_secs(60))
        .finish()
}
