"""Invoking an upstream API through a connection.

The service receives the caller's request as plain data, builds the upstream request
(path checked against the base URL, headers filtered), runs the connector's policy
templates when it was imported from a Power Platform definition, injects the
credential, sends it with the shared httpx client and hands back the response
(streamed, unless a response policy has to rewrite it). Transport failures become
`upstream_timeout` (504) or `upstream_unreachable` (502), naming the connection and
the upstream host, never the credential.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httpx

from functions import telemetry
from functions.errors import (
    BadRequestError,
    GatewayError,
    NotFoundError,
    UpstreamError,
    UpstreamResponseTooLargeError,
    UpstreamTimeoutError,
    ValidationFailedError,
)
from functions.identity.principal import Principal
from functions.observability import correlation_id
from functions.powerplatform import (
    ConnectorDefinition,
    apply_request_policies,
    apply_response_policies,
    ensure_operation_supported,
    prepare_operation,
)
from functions.services.connections import ConnectionService, ResolvedConnection, principal_subject
from functions.services.oauth import OAuthService
from functions.stores.audit import AuditEvent, AuditLog
from functions.upstream.client import classify_failure
from functions.upstream.credentials import BearerAuth, auth_for, credential_header_names
from functions.upstream.egress import canonicalize_url
from functions.upstream.headers import (
    forwardable_request_headers,
    returnable_response_headers,
    strip_framing_headers,
)
from functions.upstream.hops import refuse_looped
from functions.upstream.limits import ConnectionLimiter
from functions.upstream.request import OutgoingRequest
from functions.upstream.urls import build_upstream_url, encode_relative_path, validate_base_url

if TYPE_CHECKING:
    from functions.onprem.relay import GatewayRelay


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
    """The upstream's answer: streamed from `_response`, or rewritten into `content`."""

    status: int
    headers: list[tuple[str, str]]
    _response: httpx.Response
    content: bytes | None = field(default=None, repr=False)
    operation_id: str | None = None
    resolved: ResolvedConnection | None = field(default=None, repr=False)

    async def body(self) -> AsyncIterator[bytes]:
        if self.content is not None:
            yield self.content
            return
        # Raw bytes: compressed bodies pass through as the upstream sent them, with
        # their Content-Encoding header.
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()

    async def read_if_small(self, limit: int) -> bytes | None:
        """The whole raw body when the upstream declared a Content-Length of at most
        `limit` bytes (or the body was rewritten), else None: stream it.

        Most API answers are small; sending them in one piece skips the streaming
        machinery (a task group per response in Starlette), and an upstream that dies
        mid-body becomes a clean 502 instead of a truncated answer.
        """
        if self.content is not None:
            return self.content
        length = self._response.headers.get("content-length", "")
        if not length.isdigit() or int(length) > limit:
            return None
        try:
            return b"".join([chunk async for chunk in self._response.aiter_raw()])
        except Exception as exc:
            failure = classify_failure(exc)
            if failure is None:
                raise
            resolved = self.resolved
            host = self._response.request.url.host
            if failure == "timeout":
                raise UpstreamTimeoutError(
                    f"connection {resolved.connection.id if resolved else '?'}: upstream {host} "
                    "did not finish its answer in time",
                    extra={"upstreamHost": host},
                ) from exc
            raise UpstreamError(
                f"connection {resolved.connection.id if resolved else '?'}: upstream {host} "
                f"broke off its answer ({type(exc).__name__})",
                code="upstream_unreachable",
                extra={"upstreamHost": host},
            ) from exc
        finally:
            await self._response.aclose()


def _has_response_policies(definition: ConnectorDefinition, operation_id: str | None) -> bool:
    return any(
        policy.supported and policy.section != "request" and policy.applies_to(operation_id)
        for policy in definition.policies
    )


class InvocationService:
    def __init__(
        self,
        connections: ConnectionService,
        oauth: OAuthService,
        http: httpx.AsyncClient,
        audit: AuditLog,
        relay: GatewayRelay,
        *,
        relay_timeout: float,
        limiter: ConnectionLimiter | None = None,
        max_response_bytes: int = 10 * 1024 * 1024,
        hop_marker: str | None = None,
    ) -> None:
        self._limiter = limiter or ConnectionLimiter(500, 50)
        self._max_response_bytes = max_response_bytes
        self._hop_marker = hop_marker
        self._connections = connections
        self._oauth = oauth
        self._http = http
        self._audit = audit
        self._relay = relay
        self._relay_timeout = relay_timeout

    async def invoke_raw(
        self, caller: Principal, connection_id: str, call: IncomingCall
    ) -> UpstreamResponse:
        """Forward a caller's request below the connector's base URL.

        For imported connectors the request is matched to an operation by method and
        path (as API Management does), so operation-scoped policies apply too.
        """
        return await self._audited(
            caller, connection_id, None, self._invoke_raw(caller, connection_id, call)
        )

    def refuse_looped(self, headers: list[tuple[str, str]]) -> None:
        """508 `loop_detected` if the request already went through this gateway (the
        invoke routes call it first thing, before authentication)."""
        if self._hop_marker:
            refuse_looped(headers, self._hop_marker)

    async def invoke_operation(
        self,
        caller: Principal,
        connection_id: str,
        operation_id: str,
        parameters: dict[str, Any],
        body: Any,
    ) -> UpstreamResponse:
        """Call an imported connector's operation by its operationId."""
        return await self._audited(
            caller,
            connection_id,
            operation_id,
            self._invoke_operation(caller, connection_id, operation_id, parameters, body),
        )

    async def _audited(
        self,
        caller: Principal,
        connection_id: str,
        operation_id: str | None,
        work: Awaitable[UpstreamResponse],
    ) -> UpstreamResponse:
        """Run an invocation and queue its audit record (never waits for the write).
        Latency is to the upstream's response headers; bodies are not recorded."""
        started = time.perf_counter()
        status = 500
        error_code: str | None = None
        response: UpstreamResponse | None = None
        try:
            response = await work
            status = response.status
            return response
        except GatewayError as exc:
            status, error_code = exc.status, exc.code
            raise
        finally:
            resolved = response.resolved if response is not None else None
            telemetry.invocation_done(caller, resolved, operation_id, status, error_code, started)
            self._audit.record(
                AuditEvent(
                    tenant_id=caller.tenant_id,
                    principal=principal_subject(caller),
                    action="invoke",
                    status=status,
                    # Denied or unknown ids go to the caller's record only: a stranger's
                    # probes do not write into someone else's connection history.
                    connection_id=resolved.connection.id if resolved else None,
                    connector_id=resolved.connector.id if resolved else None,
                    operation=(response.operation_id if response else None) or operation_id,
                    latency_ms=round((time.perf_counter() - started) * 1000, 2),
                    correlation_id=correlation_id.get(),
                    detail=None if resolved else f"connection {connection_id}",
                )
            )

    async def _invoke_raw(
        self, caller: Principal, connection_id: str, call: IncomingCall
    ) -> UpstreamResponse:
        resolved = await self._connections.resolve_for_invoke(caller, connection_id)
        request = OutgoingRequest(
            method=call.method,
            base_url=resolved.connector.base_url,
            path=encode_relative_path(call.raw_path),
            query=parse_qsl(call.raw_query, keep_blank_values=True),
            headers=_utf8_values(
                forwardable_request_headers(
                    call.headers, credential_headers=credential_header_names(resolved.scheme)
                )
            ),
            body=call.body or None,
        )
        operation_id: str | None = None
        path_parameters: dict[str, str] = {}
        if resolved.definition is not None:
            match = resolved.definition.router.match(
                call.method, request.path or "/", request.query
            )
            if match is not None:
                operation_id = match[0].operation_id
                path_parameters = match[1]
        return await self._run(resolved, request, operation_id, path_parameters)

    async def _invoke_operation(
        self,
        caller: Principal,
        connection_id: str,
        operation_id: str,
        parameters: dict[str, Any],
        body: Any,
    ) -> UpstreamResponse:
        resolved = await self._connections.resolve_for_invoke(caller, connection_id)
        if resolved.definition is None:
            raise NotFoundError(
                f"connection {connection_id} uses a native connector, which has no operations; "
                "call invoke/{path} instead",
                code="operation_not_found",
            )
        definition = resolved.definition.parsed
        ensure_operation_supported(definition, operation_id)
        prepared = prepare_operation(
            definition, operation_id, resolved.connector.base_url, parameters, body
        )
        return await self._run(
            resolved, prepared.request, operation_id, dict(prepared.path_parameters)
        )

    async def _run(
        self,
        resolved: ResolvedConnection,
        request: OutgoingRequest,
        operation_id: str | None,
        path_parameters: dict[str, str],
    ) -> UpstreamResponse:
        definition = resolved.definition.parsed if resolved.definition is not None else None
        if definition is not None:
            ensure_operation_supported(definition, operation_id)
            request = apply_request_policies(
                definition,
                operation_id,
                request,
                resolved.parameters,
                path_parameters=path_parameters,
            )
            if request.base_url != resolved.connector.base_url:
                request.base_url = _policy_base_url(request.base_url)
        limiter, connection_id = self._limiter, resolved.connection.id
        limiter.acquire(connection_id, resolved.connector.calls_per_minute)
        try:
            response = await self.send(resolved, request)
        finally:
            limiter.release(connection_id)
        response.operation_id = operation_id
        response.resolved = resolved
        if definition is None or not _has_response_policies(definition, operation_id):
            return response
        try:
            raw = await self._read_capped(resolved, response._response)
        finally:
            await response.aclose()
        headers, content = apply_response_policies(
            definition,
            operation_id,
            response.status,
            list(response._response.headers.multi_items()),
            raw,
            connection_parameters=resolved.parameters,
            request=request,
        )
        # aread() decoded any Content-Encoding; the rewritten body is plain.
        cleaned = [
            (name, value)
            for name, value in returnable_response_headers(headers, keep_content_length=False)
            if name.lower() != "content-encoding"
        ]
        return UpstreamResponse(
            response.status, cleaned, response._response, content, operation_id, resolved
        )

    async def _read_capped(self, resolved: ResolvedConnection, response: httpx.Response) -> bytes:
        """The whole decoded body, refused past `max_response_bytes` as it is decoded
        (a small compressed answer can decode to gigabytes): gzip and deflate are
        decoded here with a bounded output per step; other encodings by httpx."""
        limit = self._max_response_bytes
        if response.is_stream_consumed:  # buffered already (on-premises relay)
            body = response.content
            if len(body) > limit:
                raise _too_large(resolved, response, limit)
            return body
        encoding = response.headers.get("content-encoding", "").strip().lower()
        chunks: list[bytes] = []
        total = 0
        if encoding in ("gzip", "x-gzip", "deflate"):
            # wbits 47: gzip or zlib container, detected; raw deflate is retried below.
            decoder, decoder_is_raw = zlib.decompressobj(47), False
            async for raw in response.aiter_raw():
                data = raw
                while data:
                    try:
                        out = decoder.decompress(data, limit + 1 - total)
                    except zlib.error:
                        if total or encoding != "deflate" or decoder_is_raw:
                            raise UpstreamError(
                                f"connection {resolved.connection.id}: the upstream's "
                                f"{encoding} body does not decode",
                                code="upstream_unreachable",
                            ) from None
                        decoder, decoder_is_raw = zlib.decompressobj(-zlib.MAX_WBITS), True
                        continue
                    total += len(out)
                    if total > limit:
                        raise _too_large(resolved, response, limit)
                    chunks.append(out)
                    data = decoder.unconsumed_tail
            return b"".join(chunks)
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                raise _too_large(resolved, response, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def send(
        self, resolved: ResolvedConnection, request: OutgoingRequest
    ) -> UpstreamResponse:
        # Framing and hop-by-hop headers from a policy, a definition's header
        # parameters or anything else never reach the wire (request smuggling).
        request.headers = strip_framing_headers(request.headers, source="a policy or definition")
        if resolved.scheme.type == "windows":
            return await self._send_through_gateway(resolved, request)
        url = build_upstream_url(request.base_url, request.path, request.query)
        response = await self._send_once(resolved, request, url, await self._auth(resolved))
        if response.status_code == 401 and resolved.oauth is not None:
            # The provider may have revoked the token early: refresh once and retry.
            await response.aclose()
            response = await self._send_once(
                resolved, request, url, await self._auth(resolved, force=True), retry_count=1
            )
        # Raw bytes as latin-1 text: any byte survives the way back to the caller (an
        # upstream's UTF-8 header value is relayed as sent, not re-encoded).
        raw_headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw
        ]
        return UpstreamResponse(
            status=response.status_code,
            headers=returnable_response_headers(raw_headers),
            _response=response,
        )

    async def _send_through_gateway(
        self, resolved: ResolvedConnection, request: OutgoingRequest
    ) -> UpstreamResponse:
        """Windows authentication: the on-premises agent calls the API (NTLM/Negotiate)
        with credentials only it can decrypt; the response comes back buffered."""
        with telemetry.relay_span(resolved, request):  # the agent continues this trace
            result = await self._relay.send(
                resolved.connection.tenant_id,
                str(resolved.parameters.get("gatewayId", "")),
                resolved.connection.id,
                resolved.credentials["envelope"],
                request,
                timeout=self._relay_timeout,
                protocol_name=resolved.scheme.windows_protocol or "negotiate",
            )
        return UpstreamResponse(
            status=result.status,
            headers=returnable_response_headers(result.headers, keep_content_length=False),
            _response=result.to_httpx(),
            content=result.body,
        )

    async def _auth(self, resolved: ResolvedConnection, *, force: bool = False) -> httpx.Auth:
        if resolved.oauth is None:
            return auth_for(resolved.scheme, resolved.credentials)
        token = await self._oauth.access_token(
            resolved.connection, resolved.oauth.binding, resolved.oauth.stored, force=force
        )
        return BearerAuth(token)

    async def _send_once(
        self,
        resolved: ResolvedConnection,
        request: OutgoingRequest,
        url: httpx.URL,
        auth: httpx.Auth,
        retry_count: int = 0,
    ) -> httpx.Response:
        upstream = self._http.build_request(
            request.method, url, headers=_header_bytes(request.headers), content=request.body
        )
        detail = {"connectionId": resolved.connection.id, "upstreamHost": url.host}
        try:
            return await telemetry.traced_send(self._http, upstream, auth, resolved, retry_count)
        except Exception as exc:
            failure = classify_failure(exc)
            if failure is None:
                raise
            what = type(exc).__name__
            if failure == "timeout":
                raise UpstreamTimeoutError(
                    f"connection {resolved.connection.id}: upstream {url.host} did not answer "
                    "in time",
                    extra=detail,
                ) from exc
            if failure == "unreachable":
                raise UpstreamError(
                    f"connection {resolved.connection.id}: upstream {url.host} is unreachable "
                    f"({what})",
                    code="upstream_unreachable",
                    extra=detail,
                ) from exc
            raise UpstreamError(
                f"connection {resolved.connection.id}: request to upstream {url.host} failed "
                f"({what})",
                extra=detail,
            ) from exc


def _too_large(
    resolved: ResolvedConnection, response: httpx.Response, limit: int
) -> UpstreamResponseTooLargeError:
    host = response.request.url.host
    return UpstreamResponseTooLargeError(
        f"connection {resolved.connection.id}: the answer of upstream {host} is larger than "
        f"{limit} bytes decoded, the most the gateway reads whole (to run response policies)",
        extra={"upstreamHost": host, "limit": limit},
    )


def _utf8_values(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Caller header values arrive as bytes read as latin-1; non-ASCII ones must be
    UTF-8 (relayed as sent), anything else is refused with 400 `invalid_header`."""
    if all(value.isascii() for _, value in headers):
        return headers
    decoded: list[tuple[str, str]] = []
    for name, value in headers:
        if not value.isascii():
            try:
                value = value.encode("latin-1").decode("utf-8")
            except UnicodeError:
                raise BadRequestError(
                    f"header {name}: the value is neither ASCII nor UTF-8; the gateway "
                    "cannot relay it unchanged",
                    code="invalid_header",
                    extra={"header": name},
                ) from None
        decoded.append((name, value))
    return decoded


def _header_bytes(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header values as UTF-8 bytes (httpx would encode text as ASCII and fail on the
    first accented character)."""
    return [(name.encode("latin-1"), value.encode("utf-8")) for name, value in headers]


def _policy_base_url(value: str) -> str:
    """A base URL produced by a policy (e.g. `dynamichosturl` from connection
    parameters) gets the same checks as one a maker typed."""
    try:
        return canonicalize_url(validate_base_url(value, field="dynamichosturl"))
    except ValidationFailedError as exc:
        raise BadRequestError(
            f"the connector's host policy produced an unusable URL: {exc.detail}",
            code="policy_evaluation_failed",
        ) from None
