"""`ANY /api/connections/{id}/invoke/{path}`: the raw proxy route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from functions.api.bodies import json_body, read_body
from functions.api.deps import get_caller
from functions.api.schemas import OperationCall
from functions.services.invocation import IncomingCall, UpstreamResponse

# Answers up to this size (declared by Content-Length) are read whole and sent in one
# piece; larger or unsized ones stream through without being held in memory.
SMALL_BODY_BYTES = 64 * 1024

router = APIRouter(prefix="/api/connections", tags=["invoke"])

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _path_after_invoke(request: Request, connection_id: str) -> str:
    """The caller's path after `/invoke`, still percent-encoded as sent.

    Starlette decodes `%2F` in `path`; `raw_path` keeps it, so encoded slashes can be
    refused instead of silently becoming separators. (The Functions host decodes the
    path before the app sees it; docs/proxy.md explains what that means.)
    """
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    text = raw.decode("latin-1").split("?", 1)[0]
    marker = f"/api/connections/{connection_id}/invoke"
    index = text.find(marker)
    return text[index + len(marker) :] if index >= 0 else "/"


@router.api_route("/{connection_id}/invoke", methods=METHODS, include_in_schema=False)
@router.api_route("/{connection_id}/invoke/{path:path}", methods=METHODS)
async def invoke(connection_id: str, request: Request) -> Response:
    # The hot path: no FastAPI dependencies (resolving them is a measurable share of a
    # call's CPU, bench/RESULTS.md); the same two steps, called directly.
    gateway = request.app.state.gateway
    caller = await get_caller(request, gateway)
    body = await read_body(request, gateway.settings.max_request_bytes)
    call = IncomingCall(
        method=request.method,
        raw_path=_path_after_invoke(request, connection_id),
        raw_query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
        body=body,
    )
    upstream = await gateway.invocations.invoke_raw(caller, connection_id, call)
    return await _relay(upstream, request.method)


@router.post("/{connection_id}/operations/{operation_id}")
async def invoke_operation(connection_id: str, operation_id: str, request: Request) -> Response:
    """Call an imported connector's operation: {"parameters": {...}, "body": ...}."""
    gateway = request.app.state.gateway
    caller = await get_caller(request, gateway)
    call = await json_body(request, OperationCall, limit=gateway.settings.max_request_bytes)
    upstream = await gateway.invocations.invoke_operation(
        caller, connection_id, operation_id, call.parameters, call.body
    )
    return await _relay(upstream, "POST")


async def _relay(upstream: UpstreamResponse, method: str) -> Response:
    # Raw header list, so repeated headers (Link, Vary, WWW-Authenticate) survive.
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in upstream.headers
    ]
    body = await upstream.read_if_small(SMALL_BODY_BYTES)
    response: Response
    if body is None:
        response = StreamingResponse(upstream.body(), status_code=upstream.status)
    else:
        response = Response(body, status_code=upstream.status)
        if method != "HEAD" and not any(name == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(len(body)).encode("latin-1")))
    response.raw_headers = headers
    return response
