"""Invoking an upstream API through a connection.

The service receives the caller's request as plain data, builds the upstream request
(path checked against the base URL, headers filtered, credential injected), sends it
with the shared httpx client and hands back a streaming response. Transport failures
become `upstream_timeout` (504) or `upstream_unreachable` (502), naming the connection
and the upstream host, never the credential.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx

from functions.errors import UpstreamError, UpstreamTimeoutError
from functions.identity.principal import Principal
from functions.services.connections import ConnectionService, ResolvedConnection
from functions.upstream.credentials import auth_for, credential_header_names
from functions.upstream.headers import forwardable_request_headers, returnable_response_headers
from functions.upstream.request import OutgoingRequest
from functions.upstream.urls import build_upstream_url, encode_relative_path


@dataclass(frozen=True)
class IncomingCall:
    """What the caller sent to `invoke/{path}`, minus the gateway's own route."""

    method: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    _response: httpx.Response

    async def body(self) -> AsyncIterator[bytes]:
        # Raw bytes: compressed bodies pass through as the upstream sent them, with
        # their Content-Encoding header.
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()


class InvocationService:
    def __init__(self, connections: ConnectionService, http: httpx.AsyncClient) -> None:
        self._connections = connections
        self._http = http

    async def invoke_raw(self, caller: Principal, connection_id: str, call: IncomingCall) -> UpstreamResponse:
        resolved = await self._connections.resolve_for_invoke(caller, connection_id)
        scheme = resolved.connector.auth
        request = OutgoingRequest(
            method=call.method,
            base_url=resolved.connector.base_url,
            path=encode_relative_path(call.raw_path),
            query=parse_qsl(call.raw_query, keep_blank_values=True),
            headers=forwardable_request_headers(
                call.headers, credential_headers=credential_header_names(scheme)
            ),
            body=call.body or None,
        )
        return await self.send(resolved, request)

    async def send(self, resolved: ResolvedConnection, request: OutgoingRequest) -> UpstreamResponse:
        url = build_upstream_url(request.base_url, request.path, request.query)
        auth = auth_for(resolved.connector.auth, resolved.secret_parameters)
        upstream = self._http.build_request(
            request.method, url, headers=request.headers, content=request.body
        )
        try:
            response = await self._http.send(upstream, auth=auth, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError(
                f"connection {resolved.connection.id}: upstream {url.host} did not answer in time",
                extra={"connectionId": resolved.connection.id, "upstreamHost": url.host},
            ) from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise UpstreamError(
                f"connection {resolved.connection.id}: upstream {url.host} is unreachable "
                f"({type(exc).__name__})",
                code="upstream_unreachable",
                extra={"connectionId": resolved.connection.id, "upstreamHost": url.host},
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"connection {resolved.connection.id}: request to upstream {url.host} failed "
                f"({type(exc).__name__})",
                extra={"connectionId": resolved.connection.id, "upstreamHost": url.host},
            ) from exc
        return UpstreamResponse(
            status=response.status_code,
            headers=returnable_response_headers(response.headers.multi_items()),
            _response=response,
        )
