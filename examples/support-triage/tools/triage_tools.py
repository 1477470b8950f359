"""Local stand-ins for the services the support-triage example talks to, so it runs offline:

  wiki   MCP server (Streamable HTTP) at http://127.0.0.1:8765/mcp — search, read, delete pages;
         requires the `X-Api-Key` header the wiki server file sends (WIKI_API_KEY, default
         `dev-wiki-key` as in environments/dev.env.yaml)
  hooks  webhook receiver at http://127.0.0.1:8766 — /slack, /pager, /archive; prints each
         request body as one `HOOK <path> <json>` line
  crm    MCP server (Streamable HTTP) at http://127.0.0.1:8767/mcp — customer lookup

Both MCP servers are built with the official MCP Python SDK (`pip install mcp`).

    python3 examples/support-triage/tools/triage_tools.py [--wiki-port N] [--hooks-port N] [--crm-port N]

Prints `READY wiki=<port> hooks=<port> crm=<port>` once all three listen; runs until killed.
"""

import argparse
import asyncio
import json
import os
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

PAGES = {
    "https://wiki.example.com/billing/duplicate-charges": "Refund duplicate card charges within 30 days.",
    "https://wiki.example.com/billing/invoices": "Invoices are issued on the first day of each month.",
    "https://wiki.example.com/tech/login-loops": "Clear cookies, then reset the session from the admin panel.",
}

CUSTOMERS = {
    "u-1001": {"user_id": "u-1001", "name": "Ada Lovelace", "plan": "business", "open_tickets": 1},
    "u-2002": {"user_id": "u-2002", "name": "Alan Turing", "plan": "free", "open_tickets": 0},
}


def new_server(name):
    try:  # mcp 2.x
        from mcp.server.mcpserver import MCPServer

        return MCPServer(name, log_level="WARNING")
    except ImportError:  # mcp 1.x
        from mcp.server.fastmcp import FastMCP

        return FastMCP(name, log_level="WARNING")


def wiki_server():
    server = new_server("triage-wiki")

    @server.tool(description="Search the support wiki. Returns matching pages with their URLs.")
    def wiki_search(query: str) -> dict:
        words = [w.lower() for w in query.split() if len(w) > 2]
        hits = [
            {"url": url, "snippet": text}
            for url, text in PAGES.items()
            if not words or any(w in (url + " " + text).lower() for w in words)
        ]
        return {"pages": hits or [{"url": url, "snippet": text} for url, text in PAGES.items()]}

    @server.tool(description="Read one wiki page by URL.")
    def wiki_read_page(url: str) -> str:
        if url not in PAGES:
            raise ValueError(f"no page at {url}")
        return PAGES[url]

    @server.tool(description="Delete an outdated wiki page. Needs a human's approval.")
    def wiki_delete_page(url: str) -> str:
        PAGES.pop(url, None)
        return f"deleted {url}"

    return server


def crm_server():
    server = new_server("triage-crm")

    @server.tool(description="Look up a customer by user id.")
    def crm_lookup_customer(user_id: str) -> dict:
        return CUSTOMERS.get(user_id, {"user_id": user_id, "name": "unknown", "plan": "free", "open_tickets": 0})

    return server


class RequireHeader:
    """ASGI middleware: 401 unless the request carries `name: value`."""

    def __init__(self, app, name, value):
        self.app, self.name, self.value = app, name.lower().encode(), value.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and dict(scope.get("headers") or []).get(self.name) != self.value:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
            return
        await self.app(scope, receive, send)


def hooks_app():
    async def receive(request):
        try:
            body = await request.json()
        except ValueError:
            body = (await request.body()).decode("utf-8", "replace")
        print(f"HOOK {request.url.path} {json.dumps(body, sort_keys=True)}", flush=True)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(p, receive, methods=["POST", "PUT"]) for p in ("/slack", "/pager", "/archive")])


def listen(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


async def serve(apps):
    servers = []
    for app, sock in apps:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        servers.append(server.serve(sockets=[sock]))
    await asyncio.gather(*servers)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wiki-port", type=int, default=8765)
    parser.add_argument("--hooks-port", type=int, default=8766)
    parser.add_argument("--crm-port", type=int, default=8767)
    args = parser.parse_args()

    wiki_key = os.environ.get("WIKI_API_KEY") or "dev-wiki-key"
    wiki = RequireHeader(wiki_server().streamable_http_app(), "X-Api-Key", wiki_key)
    crm = crm_server().streamable_http_app()
    sockets = [listen(args.wiki_port), listen(args.hooks_port), listen(args.crm_port)]
    ports = [s.getsockname()[1] for s in sockets]
    print(f"READY wiki={ports[0]} hooks={ports[1]} crm={ports[2]}", flush=True)
    asyncio.run(serve(zip([wiki, hooks_app(), crm], sockets)))


if __name__ == "__main__":
    sys.exit(main())
