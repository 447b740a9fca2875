"""The MCP server proper: the official SDK's low-level `Server` with `tools/list` and
`tools/call` handlers, behind a stateless JSON-response Streamable HTTP manager.

Imported only when the first MCP request arrives (endpoint.py): the SDK and its
protocol models take longer to import than the rest of the app, and a Functions cold
start that serves no MCP request should not pay for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from functions import observability
from functions.errors import GatewayError, ToolNotFoundError
from functions.mcp.service import McpCall, ServedTool

# tools/list page size: a client gets a 138-operation definition in two requests.
PAGE_SIZE = 100
STATE_KEY = "mcp_call"
INSTRUCTIONS = (
    "Tools call APIs through the Connector Gateway with the user's own connections "
    "(credentials stay in the gateway). A tool error with a consentUrl means the user "
    "must open that link and sign in before the tool works."
)
T = TypeVar("T")


class McpServer:
    def __init__(self) -> None:
        self.server: Server[Any] = Server(
            "connector-gateway",
            version="0.1.0",
            title="Connector Gateway",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            # Our schemas declare no `Mcp-Param-*` headers: nothing to check there, and
            # without this the SDK would run a caller's whole tools/list per tools/call
            # on the 2026-07-28 protocol to look for them.
            get_tool_input_schema=_no_header_parameters,
        )
        # No session, no SSE stream: endpoint.py says why.
        self.manager = StreamableHTTPSessionManager(self.server, json_response=True, stateless=True)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        call = _call_of(ctx)
        served = await _gateway_call(call.service.tools(call.caller, call.connection_id))
        start = _cursor_position(params.cursor if params else None, len(served))
        following = start + PAGE_SIZE
        return types.ListToolsResult(
            tools=[_tool(t) for t in served[start:following]],
            next_cursor=str(following) if following < len(served) else None,
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        call = _call_of(ctx)
        outcome = await _gateway_call(
            call.service.call(
                call.caller, params.name, dict(params.arguments or {}), call.connection_id
            )
        )
        return types.CallToolResult(
            content=[types.TextContent(text=outcome.text)],
            structured_content=outcome.structured,
            is_error=outcome.is_error,
        )


def _no_header_parameters(name: str) -> None:
    return None


def _call_of(ctx: ServerRequestContext[Any]) -> McpCall:
    request = ctx.request
    state = request.scope.get("state", {}) if isinstance(request, Request) else {}
    call = state.get(STATE_KEY)
    if not isinstance(call, McpCall):  # only if the SDK stopped passing the HTTP request
        raise MCPError(types.INTERNAL_ERROR, "request context missing")
    cid = state.get("correlation_id")
    if isinstance(cid, str):
        # The SDK runs handlers in its own task: carry the request's correlation id into
        # it, so the audit record and logs of a tool call match the HTTP request.
        observability.correlation_id.set(cid)
    return call


async def _gateway_call(work: Awaitable[T]) -> T:
    """Await a service call; gateway errors become JSON-RPC errors (failures a model can
    act on come back as error results from the service, not as exceptions)."""
    try:
        return await work
    except ToolNotFoundError as exc:
        raise MCPError(types.INVALID_PARAMS, exc.detail, {"code": exc.code}) from None
    except GatewayError as exc:
        raise MCPError(types.INTERNAL_ERROR, exc.detail, {"code": exc.code}) from None


def _cursor_position(cursor: str | None, total: int) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or int(cursor) > total:
        raise MCPError(types.INVALID_PARAMS, "invalid cursor", {"code": "invalid_cursor"})
    return int(cursor)


def _tool(served: ServedTool) -> types.Tool:
    spec = served.spec
    annotations = types.ToolAnnotations(
        title=spec.title,
        read_only_hint=spec.read_only,
        destructive_hint=None if spec.read_only else spec.method == "DELETE",
        open_world_hint=True,
    )
    return types.Tool(
        name=served.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        annotations=annotations,
    )
