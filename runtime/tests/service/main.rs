//! Service tests of the runtime: the real HTTP API on 127.0.0.1, fake peers at the edge (a
//! scripted gateway, a JSON-RPC MCP server, a callback sink standing in for the orchestrator).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod agent_loop;
mod api;
mod approvals;
mod callbacks;
mod failures;
mod harness;
mod heartbeat;
