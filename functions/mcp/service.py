"""The caller's MCP tools, and tool calls run through the invoke service.

No HTTP and no MCP SDK types here. A tool call is exactly an API call: operation tools
go to `InvocationService.invoke_operation` (as `POST /api/connections/{id}/operations/
{operationId}` does), `http_request` to `invoke_raw` (as `/invoke/{path}` does), so
access checks, policies, credential injection, token refresh, the on-premises relay and
the audit record (with the MCP client's identity) are the API's own.

Which connections: `/api/mcp` serves the caller's usable connections (owned, or shared
with them or their groups; not disabled; listed by `ConnectionService.list_visible`),
each tool prefixed by the connection (names.py); `/api/mcp/connections/{id}` serves one
connection the caller owns or was granted, without prefixes. Admins see connections'
metadata through the API but never invoke them, so they get no tools either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import zlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from functions.domain.models import Connection, ConnectionStatus
from functions.errors import (
    ConflictError,
    ForbiddenError,
    GatewayError,
    NotFoundError,
    ToolNotFoundError,
    ValidationFailedError,
)
from functions.identity.principal import Principal
from functions.mcp.export import copilot_studio_connector
from functions.mcp.names import connection_prefixes, prefixed
from functions.mcp.tools import (
    HTTP_REQUEST_METHODS,
    ToolSpec,
    http_request_tool,
    tools_for_definition,
)
from functions.services.access import connection_role
from functions.services.connections import ConnectionService, connection_not_found
from functions.services.connectors import ConnectorService
from functions.services.invocation import IncomingCall, InvocationService, UpstreamResponse
from functions.services.ttl_cache import TtlCache
from functions.stores.shares import ShareStore

if TYPE_CHECKING:
    from functions.container import Gateway

log = logging.getLogger(__name__)

# What a tool result holds of an upstream answer: enough for a model, not a download.
MAX_RESULT_BYTES = 256 * 1024
# Of an error answer: the start, which says what went wrong.
MAX_ERROR_BODY_CHARS = 2000
CONSENT_CODES = frozenset({"connection_consent_required", "connection_needs_reauthorization"})


@dataclass(frozen=True)
class ServedTool:
    """A tool as one caller sees it: its listed name and the connection it calls."""

    name: str
    connection_id: str
    spec: ToolSpec


@dataclass(frozen=True)
class ToolOutcome:
    """A tool result: text for the model, structured data, and whether it failed."""

    text: str
    is_error: bool = False
    structured: dict[str, Any] | None = None


@dataclass(frozen=True)
class McpCall:
    """One MCP request: who calls, which connection it serves (None: all), the service."""

    caller: Principal
    connection_id: str | None
    service: McpService


class McpService:
    def __init__(
        self,
        connections: ConnectionService,
        connectors: ConnectorService,
        invocations: InvocationService,
        shares: ShareStore,
        *,
        public_base_url: str | None,
        audience: str,
    ) -> None:
        self._connections = connections
        self._connectors = connectors
        self._invocations = invocations
        self._shares = shares
        self._public_base_url = (public_base_url or "").rstrip("/")
        self._audience = audience
        # Tools of a stored definition version: generating them for a large definition
        # takes ~0.2 s, and every MCP request of a stateless client needs them.
        self._specs: TtlCache[list[ToolSpec]] = TtlCache(math.inf, max_entries=256)

    @classmethod
    def from_gateway(cls, gateway: Gateway) -> McpService:
        return cls(
            gateway.connections,
            gateway.connectors,
            gateway.invocations,
            gateway.shares,
            public_base_url=gateway.settings.public_base_url,
            audience=gateway.settings.audiences[0],
        )

    async def export_for_copilot_studio(
        self,
        caller: Principal,
        connector_id: str,
        *,
        connection_id: str | None,
        client_id: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`GET /api/connectors/{id}/export?as=mcp`: the Copilot Studio custom connector
        for this connector's MCP tools (export.py), for a connector the caller can see."""
        connector = await self._connectors.get_visible(caller, connector_id)
        if connection_id is not None:
            try:
                connection = await self.check_access(caller, connection_id)
            except NotFoundError:
                connection = None
            if connection is None or connection.connector_id != connector.id:
                message = "not a connection you can use to this connector"
                raise ValidationFailedError(
                    message, errors=[{"field": "connectionId", "message": message}]
                )
        if not self._public_base_url:
            raise ConflictError(
                "GATEWAY_PUBLIC_BASE_URL is not set: the export needs the gateway's external URL",
                code="export_not_available",
            )
        return copilot_studio_connector(
            gateway_base_url=self._public_base_url,
            audience=self._audience,
            title=f"{connector.name} (MCP)",
            client_id=client_id,
            connection_id=connection_id,
        )

    async def check_access(self, caller: Principal, connection_id: str) -> Connection:
        """The connection if the caller may invoke it (owner or grantee, not disabled);
        else `connection_not_found` (or `connection_disabled`), as the invoke API says."""
        connection = await self._connections.get_visible(caller, connection_id)
        role = connection_role(caller, connection, ())
        if role is None:
            shares = await self._shares.for_resource(caller.tenant_id, "connection", connection.id)
            role = connection_role(caller, connection, shares)
        if role is None:  # an admin: may see it, never invoke it
            raise connection_not_found(connection_id)
        if connection.status == ConnectionStatus.DISABLED:
            raise ForbiddenError(
                f"connection {connection.id} is disabled by an administrator",
                code="connection_disabled",
                extra={"connectionId": connection.id},
            )
        return connection

    async def tools(self, caller: Principal, connection_id: str | None = None) -> list[ServedTool]:
        """The caller's tools: of one connection, or of all usable ones (prefixed)."""
        if connection_id is not None:
            connection = await self.check_access(caller, connection_id)
            return [
                ServedTool(spec.name, connection.id, spec)
                for spec in await self._connection_specs(connection)
            ]
        connections = [
            c
            for c in await self._connections.list_visible(caller)
            if c.status != ConnectionStatus.DISABLED
        ]
        connections.sort(key=lambda c: (c.created_at is None, c.created_at, c.id))
        prefixes = connection_prefixes({c.id: c.display_name for c in connections})
        served: list[ServedTool] = []
        for connection in connections:
            try:
                specs = await self._connection_specs(connection)
            except GatewayError as exc:
                # One connection whose definition cannot be read must not hide the
                # caller's other tools; its own endpoint reports the error.
                log.warning("MCP: no tools for connection %s: %s", connection.id, exc.code)
                continue
            for spec in specs:
                name = prefixed(
                    prefixes[connection.id], spec.name, source=spec.operation_id or spec.name
                )
                served.append(ServedTool(name, connection.id, spec))
        return served

    async def call(
        self,
        caller: Principal,
        name: str,
        arguments: dict[str, Any] | None,
        connection_id: str | None = None,
    ) -> ToolOutcome:
        """Run a tool. Failures a model can act on (bad arguments, upstream errors,
        consent needed) are error outcomes; an unknown tool is ToolNotFoundError."""
        tool = next((t for t in await self.tools(caller, connection_id) if t.name == name), None)
        if tool is None:
            raise ToolNotFoundError(f"no tool named {name!r} here", extra={"tool": name})
        try:
            upstream = await self._invoke(caller, tool, arguments or {})
        except GatewayError as exc:
            return await self._failure(caller, tool, exc)
        return await self._outcome(tool, upstream)

    async def _connection_specs(self, connection: Connection) -> list[ToolSpec]:
        connector = await self._connectors.get_for_invoke(
            connection.tenant_id, connection.connector_id
        )
        if connector is None:
            return []
        if connector.source != "powerplatform":
            return [http_request_tool(connector.name, connector.base_url)]
        key = (connector.tenant_id, connector.id, connector.updated_at)
        specs = self._specs.get(key)
        if specs is None:
            loaded = await self._connectors.definition(connector)
            specs = tools_for_definition(loaded.parsed)
            self._specs.put(key, specs)
        return specs

    async def _invoke(
        self, caller: Principal, tool: ServedTool, arguments: dict[str, Any]
    ) -> UpstreamResponse:
        spec = tool.spec
        if spec.operation_id is not None:
            parameters, body = spec.split(arguments)
            return await self._invocations.invoke_operation(
                caller, tool.connection_id, spec.operation_id, parameters, body
            )
        return await self._invocations.invoke_raw(
            caller, tool.connection_id, http_request_call(arguments)
        )

    async def _outcome(self, tool: ServedTool, upstream: UpstreamResponse) -> ToolOutcome:
        raw, truncated = await _read_limited(upstream, MAX_RESULT_BYTES)
        encoding = _header(upstream.headers, "content-encoding")
        content = _decoded(raw, encoding)
        body_text = (
            content.decode("utf-8", errors="replace")
            if content is not None
            else f"({len(raw)} bytes with Content-Encoding {encoding})"
        )
        if truncated:
            body_text += f"\n(truncated: the answer is larger than {MAX_RESULT_BYTES} bytes)"
        if upstream.status >= 400:
            short = body_text[:MAX_ERROR_BODY_CHARS]
            return ToolOutcome(
                f"The API answered HTTP {upstream.status}: {short}"
                if short
                else f"The API answered HTTP {upstream.status} with no body",
                is_error=True,
                structured={"status": upstream.status, "body": short},
            )
        structured: dict[str, Any] | None = None
        if tool.spec.output_schema is not None:
            # Clients check results against the output schema, which asks for an object.
            parsed = _json(content) if content is not None and not truncated else None
            structured = (
                parsed
                if isinstance(parsed, dict)
                else {"result": parsed if parsed is not None else body_text}
            )
        return ToolOutcome(body_text, structured=structured)

    async def _failure(self, caller: Principal, tool: ServedTool, exc: GatewayError) -> ToolOutcome:
        details: dict[str, Any] = {"code": exc.code, "status": exc.status}
        errors = exc.extra.get("errors")
        if isinstance(errors, list):
            details["errors"] = errors
        if exc.code not in CONSENT_CODES:
            return ToolOutcome(f"{exc.detail} ({exc.code})", is_error=True, structured=details)
        link = await self._consent_link(caller, tool.connection_id)
        if link is not None:
            details["consentUrl"] = link
            message = (
                f"Connection {tool.connection_id} needs its owner to sign in again. Ask the "
                f"user to open this link, sign in and consent, then call the tool again: {link}"
            )
        else:
            reauthorize = (
                f"{self._public_base_url}/api/connections/{tool.connection_id}/reauthorize"
            )
            details["reauthorize"] = reauthorize
            message = (
                f"Connection {tool.connection_id} needs its owner to sign in again; only the "
                f"owner can do that (POST {reauthorize} gives them a new sign-in link)."
            )
        return ToolOutcome(message, is_error=True, structured=details)

    async def _consent_link(self, caller: Principal, connection_id: str) -> str | None:
        """A fresh consent URL when the caller owns the connection (the same as
        `POST /api/connections/{id}/reauthorize`); None for grantees."""
        try:
            url = await self._connections.reauthorize(caller, connection_id)
        except GatewayError:
            return None
        return url or None


def http_request_call(arguments: dict[str, Any]) -> IncomingCall:
    """The `http_request` tool's arguments as an invoke call (same path rules)."""
    errors: list[dict[str, str]] = []
    unknown = sorted(set(arguments) - {"method", "path", "query", "body"})
    for name in unknown:
        errors.append({"field": f"arguments.{name}", "message": "not an argument of http_request"})
    method = str(arguments.get("method") or "GET").upper()
    if method not in HTTP_REQUEST_METHODS:
        errors.append(
            {
                "field": "arguments.method",
                "message": f"must be one of: {', '.join(HTTP_REQUEST_METHODS)}",
            }
        )
    path = arguments.get("path")
    if not isinstance(path, str):
        errors.append({"field": "arguments.path", "message": "required: a path starting with '/'"})
    query = arguments.get("query") or {}
    if not isinstance(query, dict) or any(isinstance(v, dict | list) for v in query.values()):
        errors.append(
            {"field": "arguments.query", "message": "must be an object of names to values"}
        )
    body = arguments.get("body")
    if errors:
        raise ValidationFailedError(
            "; ".join(f"{e['field']} {e['message']}" for e in errors), errors=errors
        )
    assert isinstance(path, str) and isinstance(query, dict)
    pairs = [(str(k), _query_text(v)) for k, v in query.items() if v is not None]
    headers: list[tuple[str, str]] = []
    content = b""
    if body is not None:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers.append(("Content-Type", "application/json"))
    return IncomingCall(
        method=method, raw_path=path, raw_query=urlencode(pairs), headers=headers, body=content
    )


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


async def _read_limited(upstream: UpstreamResponse, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the answer, and whether there was more (then closed)."""
    whole = await upstream.read_if_small(limit)
    if whole is not None:
        return whole, False
    chunks: list[bytes] = []
    size = 0
    # body() is an async generator: closing it closes the upstream response.
    stream = cast(AsyncGenerator[bytes, None], upstream.body())
    async with contextlib.aclosing(stream) as body:
        async for chunk in body:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _decoded(raw: bytes, encoding: str | None) -> bytes | None:
    """The body without its Content-Encoding (gzip, deflate), capped; None if unknown."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return raw
    if coding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if "gzip" in coding else zlib.MAX_WBITS
        try:
            inflater = zlib.decompressobj(wbits)
            return inflater.decompress(raw, MAX_RESULT_BYTES)
        except zlib.error:
            return None
    return None


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None
