"""The MCP endpoint: Streamable HTTP through the official SDK, inside the gateway's app.

    POST /api/mcp                              the caller's usable connections' tools
    POST /api/mcp/connections/{connection_id}  one connection's tools
    GET  /.well-known/oauth-protected-resource[/api/mcp[/connections/{id}]]   RFC 9728

Stateless, JSON responses (server.py): every POST carries one JSON-RPC message and gets
one JSON answer, with no session to keep and no SSE stream. The Azure Functions host
buffers responses and any instance may take the next request, so long-lived streams and
in-memory sessions cannot work there; GET (the server-to-client stream) and DELETE (end
a session) answer 405. The same code runs under uvicorn.

Authentication is the API's (`TokenValidator.authenticate`, Entra ID or the local dev
issuer), checked before the SDK sees the request. A missing or bad token gets the API's
401 problem+json with `WWW-Authenticate: Bearer resource_metadata="<metadata URL>"`
(RFC 9728 section 5.1), from which MCP clients learn where to sign in. The
per-connection endpoint answers 404 problem+json for a connection the caller may not
invoke, before any MCP message is read.

The SDK is imported and its manager started on the first MCP request, in a task of its
own that the app's lifespan stops (`McpEndpoint.run()`): importing it costs more than
the rest of the app, and most cold starts serve no MCP request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from functions.errors import UnauthenticatedError
from functions.mcp.service import McpCall, McpService

if TYPE_CHECKING:
    from functions.container import Gateway
    from functions.mcp.server import McpServer

MCP_PATH = "/api/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"
_STATE_KEY = "mcp_call"  # = server.STATE_KEY, not imported here (see the docstring)


class McpEndpoint:
    """The routes, the per-process service and the lazily started SDK server."""

    def __init__(self) -> None:
        self._service: McpService | None = None
        self._server: McpServer | None = None
        self._starting: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    @property
    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "DELETE"]
        return [
            Route(MCP_PATH, _AsgiEndpoint(self, scoped=False), methods=methods),
            Route(
                MCP_PATH + "/connections/{connection_id}",
                _AsgiEndpoint(self, scoped=True),
                methods=methods,
            ),
            Route(METADATA_PATH, protected_resource_metadata, methods=["GET"]),
            Route(METADATA_PATH + MCP_PATH, protected_resource_metadata, methods=["GET"]),
            Route(
                METADATA_PATH + MCP_PATH + "/connections/{connection_id}",
                protected_resource_metadata,
                methods=["GET"],
            ),
        ]

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """For the app's lifespan: stops the SDK server if a request started it."""
        try:
            yield
        finally:
            self._stop.set()
            if self._starting is not None:
                await self._starting

    def service(self, gateway: Gateway) -> McpService:
        if self._service is None:
            self._service = McpService.from_gateway(gateway)
        return self._service

    async def server(self) -> McpServer:
        if self._starting is None:
            self._starting = asyncio.create_task(self._serve())
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait([ready, self._starting], return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            ready.cancel()
            await self._starting  # raises what stopped it
        assert self._server is not None
        return self._server

    async def _serve(self) -> None:
        # The SDK's task group lives in this task, from the first MCP request until the
        # app stops.
        from functions.mcp.server import McpServer

        server = McpServer()
        async with server.run():
            self._server = server
            self._ready.set()
            await self._stop.wait()


class _AsgiEndpoint:
    """Authenticates, scopes, then hands the request to the SDK's session manager."""

    def __init__(self, endpoint: McpEndpoint, *, scoped: bool) -> None:
        self.endpoint = endpoint
        self.scoped = scoped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            # No server-to-client stream and no sessions (module docstring).
            response = Response(
                status_code=405, headers={"Allow": "POST", "Cache-Control": "no-store"}
            )
            await response(scope, receive, send)
            return
        gateway: Gateway = request.app.state.gateway
        connection_id = request.path_params.get("connection_id") if self.scoped else None
        authorization = request.headers.get("authorization")
        try:
            caller = await gateway.tokens.authenticate(authorization)
        except UnauthenticatedError as exc:
            # The problem handler renders it; the header tells MCP clients where to sign in.
            challenge = f'Bearer resource_metadata="{metadata_url(request)}"'
            if authorization:
                challenge += ', error="invalid_token"'
            exc.headers["WWW-Authenticate"] = challenge
            raise
        request.state.principal = caller
        service = self.endpoint.service(gateway)
        if connection_id is not None:
            await service.check_access(caller, connection_id)
        scope.setdefault("state", {})[_STATE_KEY] = McpCall(caller, connection_id, service)
        server = await self.endpoint.server()
        await server.handle(scope, receive, send)


def public_base(request: Request) -> str:
    """The gateway's external URL: the setting when given, else as the client called it."""
    configured: str | None = request.app.state.gateway.settings.public_base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/")


def metadata_url(request: Request) -> str:
    """RFC 9728 section 3.1: the well-known prefix goes before the resource's path."""
    return public_base(request) + METADATA_PATH + request.url.path


async def protected_resource_metadata(request: Request) -> Response:
    """RFC 9728 Protected Resource Metadata of the MCP endpoint (and, unsuffixed, the API):
    the resource, Entra ID as its authorization server, the token audience's scope."""
    settings = request.app.state.gateway.settings
    suffix = request.url.path[len(METADATA_PATH) :]
    audience = settings.audiences[0].rstrip("/")
    body = {
        "resource": public_base(request) + (suffix or "/api"),
        "authorization_servers": [
            f"https://login.microsoftonline.com/{tenant}/v2.0" for tenant in settings.tenant_ids
        ],
        "scopes_supported": [f"{audience}/.default"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Connector Gateway",
        "resource_documentation": public_base(request) + "/api/docs",
    }
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=3600"})
