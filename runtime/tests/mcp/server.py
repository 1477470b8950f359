"""A real MCP server for the runtime's interoperability tests, built with the official `mcp`
Python SDK (FastMCP in mcp 1.x, MCPServer in mcp 2.x). The protocol side is entirely the SDK's;
this script only declares tools and picks a transport.

    python3 server.py <mode> [--auth-header NAME --auth-value VALUE]

Modes:
  streamable-http   FastMCP/MCPServer over Streamable HTTP at /mcp
  sse               FastMCP/MCPServer over the legacy HTTP+SSE transport at /sse
  paginated         the SDK's low-level server over Streamable HTTP at /mcp, listing its tools
                    two per page (cursor pagination); mcp 2.x only

The server binds 127.0.0.1 on a port chosen by the OS and prints `PORT <n>` on stdout once it
is listening. It runs until killed.
"""

import argparse
import asyncio
import socket
import sys

import uvicorn


def build_high_level(name):
    try:  # mcp 2.x
        from mcp.server.mcpserver import MCPServer

        server = MCPServer(name, log_level="WARNING")
    except ImportError:  # mcp 1.x
        from mcp.server.fastmcp import FastMCP

        server = FastMCP(name, log_level="WARNING")

    values = {"a": "42", "secret": "the value is s3cr3t-tool-output"}

    @server.tool(description="Read the value stored under a key.")
    def kv_get(key: str) -> str:
        return values.get(key, "")

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> dict:
        return {"sum": a + b}

    @server.tool(description="Always fails.")
    def explode(reason: str) -> str:
        raise ValueError(f"exploded: {reason}")

    @server.tool(description="Read a file.")
    def read_file(path: str) -> str:
        return f"contents of {path}"

    @server.tool(description="Delete a file.")
    def delete_file(path: str) -> str:
        return f"deleted {path}"

    @server.tool(description="Sleep, then answer.")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    return server


def build_paginated():
    import mcp_types as types
    from mcp.server.lowlevel import Server

    tools = [
        types.Tool(
            name=f"page_tool_{i}",
            description=f"Tool number {i}.",
            input_schema={"type": "object", "properties": {"x": {"type": "string"}}},
        )
        for i in range(5)
    ]

    async def list_tools(ctx, params):
        start = int(params.cursor) if params is not None and params.cursor else 0
        page = tools[start : start + 2]
        next_cursor = str(start + 2) if start + 2 < len(tools) else None
        return types.ListToolsResult(tools=page, next_cursor=next_cursor)

    async def call_tool(ctx, params):
        x = (params.arguments or {}).get("x", "")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"{params.name}({x})")]
        )

    return Server("ktsu-paginated", on_list_tools=list_tools, on_call_tool=call_tool)


class RequireHeader:
    """ASGI middleware: 401 unless the request carries `name: value`."""

    def __init__(self, app, name, value):
        self.app = app
        self.name = name.lower().encode()
        self.value = value.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(self.name) != self.value:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
                return
        await self.app(scope, receive, send)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["streamable-http", "sse", "paginated"])
    parser.add_argument("--auth-header")
    parser.add_argument("--auth-value")
    args = parser.parse_args()

    if args.mode == "paginated":
        app = build_paginated().streamable_http_app()
    else:
        server = build_high_level("ktsu-interop")
        app = server.streamable_http_app() if args.mode == "streamable-http" else server.sse_app()
    if args.auth_header:
        app = RequireHeader(app, args.auth_header, args.auth_value or "")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"PORT {sock.getsockname()[1]}", flush=True)

    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
