//! The tools of one leg (runtime-gateway.md §3.4): MCP sessions opened on every server at once,
//! tools filtered by the allowlist and merged in server order under their model-facing names,
//! and the routing table back to (server, MCP name).

use super::outcome::{ErrorCode, LegFailure};
use super::LegEnv;
use crate::allowlist;
use crate::mcp::{model_input_schema, CallOutcome, Endpoint, McpError, McpSession, McpTool};
use futures_util::future::join_all;
use ktsu_shared::wire::gateway::ToolDef;
use ktsu_shared::wire::invoke::ApprovalRule;
use std::collections::HashMap;

/// Where a model-facing tool name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index into the request's `tool_servers`.
    pub server: usize,
    pub mcp_name: String,
}

/// The leg's sessions, tool definitions and routing table.
#[derive(Default)]
pub struct Toolbox {
    /// One slot per `tool_servers` entry; `None` until connected (or never, for `[]`).
    sessions: Vec<Option<McpSession>>,
    defs: Vec<ToolDef>,
    routes: HashMap<String, Route>,
}

impl Toolbox {
    /// Opens a session on every server that may contribute tools and lists them. The first
    /// failing server in list order fails the leg; sessions opened so far stay in the toolbox
    /// for [`Toolbox::close`].
    pub async fn discover(&mut self, env: &LegEnv<'_>) -> Result<(), LegFailure> {
        let specs = &env.request.tool_servers;
        self.sessions = specs.iter().map(|_| None).collect();
        let client = &env.clients.mcp;
        let step_limit = env.step_limit;
        let mcp_timeout = env.settings.mcp_timeout;
        let listings = join_all(specs.iter().zip(self.sessions.iter_mut()).map(
            |(spec, slot)| async move {
                if spec.allowlist.as_ref().is_some_and(Vec::is_empty) {
                    return Ok(Vec::new());
                }
                let endpoint = Endpoint::new(spec, mcp_timeout, step_limit)?;
                let session = slot.insert(McpSession::connect(client, endpoint).await?);
                if let Some(reason) = session.fallback_reason() {
                    leg_log!(log::Level::Info, env.ids, event = "mcp.transport_fallback",
                        server = spec.name.as_str(), reason = reason;
                        "MCP server did not answer Streamable HTTP; using the legacy SSE transport");
                }
                leg_log!(log::Level::Info, env.ids, event = "mcp.connected",
                    server = spec.name.as_str(), transport = session.transport().as_str(),
                    protocol_version = session.protocol_version(), session = session.has_session();
                    "MCP server connected");
                let tools = session.list_tools().await?;
                if session.skipped_tools() > 0 {
                    leg_log!(log::Level::Warn, env.ids, event = "tools.entry_skipped",
                        server = spec.name.as_str(), skipped = session.skipped_tools();
                        "tools/list entries without a string name skipped");
                }
                Ok(tools)
            },
        ))
        .await;
        let mut per_server = Vec::with_capacity(listings.len());
        for (spec, listing) in specs.iter().zip(listings) {
            match listing {
                Ok(tools) => per_server.push(tools),
                Err(err) => return Err(discovery_failure(&spec.name, &err)),
            }
        }
        for (server, tools) in per_server.into_iter().enumerate() {
            self.add_server_tools(env, server, tools);
        }
        Ok(())
    }

    fn add_server_tools(&mut self, env: &LegEnv<'_>, server: usize, tools: Vec<McpTool>) {
        let spec = &env.request.tool_servers[server];
        let listed = tools.len();
        let mut allowed = 0usize;
        for tool in tools {
            if !allowlist::allows(spec.allowlist.as_deref(), &tool.name) {
                continue;
            }
            allowed += 1;
            let name = allowlist::model_facing_name(&tool.name);
            if let Some(kept) = self.routes.get(&name) {
                let kept_server = env.request.tool_servers[kept.server].name.as_str();
                leg_log!(log::Level::Warn, env.ids, event = "tool.name_conflict",
                    tool = name.as_str(), server = spec.name.as_str(), kept_server = kept_server;
                    "tool dropped: its model-facing name is taken by an earlier tool");
                continue;
            }
            self.defs.push(ToolDef {
                name: name.clone(),
                description: tool.description,
                input_schema: model_input_schema(&tool.input_schema),
            });
            self.routes.insert(
                name,
                Route {
                    server,
                    mcp_name: tool.name,
                },
            );
        }
        if spec.allowlist.as_ref().is_none_or(|list| !list.is_empty()) {
            leg_log!(log::Level::Info, env.ids, event = "tools.discovered",
                server = spec.name.as_str(), listed = listed, allowed = allowed;
                "tools discovered");
        }
    }

    /// Whether any tool is offered to the model.
    pub fn has_tools(&self) -> bool {
        !self.defs.is_empty()
    }

    /// Lends the definitions out (to serialise a request without copying them); give them back
    /// with [`Toolbox::restore_defs`].
    pub fn take_defs(&mut self) -> Vec<ToolDef> {
        std::mem::take(&mut self.defs)
    }

    pub fn restore_defs(&mut self, defs: Vec<ToolDef>) {
        self.defs = defs;
    }

    pub fn route(&self, model_name: &str) -> Option<&Route> {
        self.routes.get(model_name)
    }

    /// Model-facing names in offer order (T6).
    pub fn names(&self) -> Vec<&str> {
        self.defs.iter().map(|d| d.name.as_str()).collect()
    }

    /// The first approval rule of the owning server that matches the MCP name.
    pub fn approval_rule<'a>(
        &self,
        env: &'a LegEnv<'_>,
        route: &Route,
    ) -> Option<&'a ApprovalRule> {
        env.request.tool_servers[route.server]
            .approval_rules
            .iter()
            .find(|rule| allowlist::matches(&rule.pattern, &route.mcp_name))
    }

    /// `tools/call` on the owning server.
    pub async fn call(
        &mut self,
        route: &Route,
        arguments: &serde_json::Value,
        max_result_bytes: usize,
    ) -> Result<CallOutcome, McpError> {
        match self.sessions.get_mut(route.server).and_then(Option::as_mut) {
            Some(session) => {
                session
                    .call_tool(&route.mcp_name, arguments, max_result_bytes)
                    .await
            }
            None => Err(McpError::protocol("no session for this server")),
        }
    }

    /// Closes every session at once (in-flight requests get `notifications/cancelled` with
    /// `reason` first).
    pub async fn close(&mut self, reason: &str) {
        let sessions = std::mem::take(&mut self.sessions);
        join_all(sessions.into_iter().flatten().map(|s| s.close(reason))).await;
    }
}

fn discovery_failure(server: &str, err: &McpError) -> LegFailure {
    LegFailure::new(
        ErrorCode::ToolDiscoveryFailed,
        format!("discover tools from {server}: {err}"),
    )
    .with_detail("server", server)
    .with_detail("mcp_error", err.code())
}
