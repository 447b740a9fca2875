"""`ANY /api/connections/{id}/invoke/{path}`: the raw proxy route."""

from __future__ import annotations

from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.routing import Route

from functions.api.bodies import json_body, read_body
from functions.api.deps import get_caller
from functions.api.openapi import INVOKE_BODY, UPSTREAM_RESPONSES, request_body
from functions.api.schemas import OperationCall
from functions.errors import BadRequestError
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
    # Found by structure, not by the decoded id: a client may percent-encode the id
    # (`%38...`), and searching for the decoded form silently dropped the whole path.
    prefix = "/api/connections/"
    index = text.find(prefix)
    if index < 0:
        raise _unroutable()
    segment, _, rest = text[index + len(prefix) :].partition("/")
    if unquote(segment) != connection_id:
        raise _unroutable()
    if rest == "invoke":
        return ""
    if rest.startswith("invoke/"):
        return rest[len("invoke") :]
    # e.g. an encoded `invoke` segment (`%69nvoke`): the router decoded it, we cannot
    # tell reliably where the caller's path starts, so we refuse rather than guess.
    raise _unroutable()


def _unroutable() -> BadRequestError:
    return BadRequestError(
        "the request path must be /api/connections/{id}/invoke/{path}, with `invoke` "
        "not percent-encoded",
        code="invalid_path",
    )


async def invoke(request: Request) -> Response:
    """`ANY /api/connections/{connection_id}/invoke/{path}`"""
    connection_id: str = request.path_params["connection_id"]
    gateway = request.app.state.gateway
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    gateway.invocations.refuse_looped(headers)
    caller = await get_caller(request, gateway)
    body = await read_body(request, gateway.settings.max_request_bytes)
    call = IncomingCall(
        method=request.method,
        raw_path=_path_after_invoke(request, connection_id),
        raw_query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=body,
    )
    upstream = await gateway.invocations.invoke_raw(caller, connection_id, call)
    return await _relay(upstream, request.method)


async def invoke_operation(request: Request) -> Response:
    """`POST /api/connections/{connection_id}/operations/{operation_id}`:
    {"parameters": {...}, "body": ...}."""
    gateway = request.app.state.gateway
    gateway.invocations.refuse_looped(
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    )
    caller = await get_caller(request, gateway)
    call = await json_body(request, OperationCall, limit=gateway.settings.max_request_bytes)
    upstream = await gateway.invocations.invoke_operation(
        caller,
        request.path_params["connection_id"],
        request.path_params["operation_id"],
        call.parameters,
        call.body,
    )
    return await _relay(upstream, "POST")


# The hot path is served by plain Starlette routes, placed before every other route
# (functions/app.py): FastAPI's per-request handling (parameter solving, dependency
# resolution, response checks) costs 60-75 us a call, about 6% of a call's CPU,
# for nothing these two handlers use (bench/RESULTS.md). Same error handlers.
FAST_ROUTES = [
    Route("/api/connections/{connection_id}/invoke", invoke, methods=METHODS),
    Route("/api/connections/{connection_id}/invoke/{path:path}", invoke, methods=METHODS),
    # `:path`, because operationIds may contain `/` (published definitions have them):
    # the caller percent-encodes it (`a%2Fb`, the `encodedOperationId` of listings),
    # and the path is decoded before routes match, so a plain segment would not match.
    Route(
        "/api/connections/{connection_id}/operations/{operation_id:path}",
        invoke_operation,
        methods=["POST"],
    ),
]


# For the OpenAPI document only: the routes above match first, so these never run
# (they would do the same).
async def invoke_documented(connection_id: str, path: str, request: Request) -> Response:
    """Forward the request below the connector's base URL, with the connection's
    credential; imported connectors' policies apply to the matching operation."""
    return await invoke(request)


for _method in METHODS:  # one entry per method, each with its own operationId
    router.add_api_route(
        "/{connection_id}/invoke/{path:path}",
        invoke_documented,
        methods=[_method],
        operation_id=f"invoke_{_method.lower()}",
        summary=f"Call the connector's API through a connection ({_method})",
        openapi_extra=INVOKE_BODY if _method in ("POST", "PUT", "PATCH") else None,
        responses=UPSTREAM_RESPONSES,
    )


@router.post(
    "/{connection_id}/operations/{operation_id:path}",
    response_class=Response,
    summary="Call an imported connector's operation by its operationId",
    openapi_extra=request_body(OperationCall),
    responses=UPSTREAM_RESPONSES,
)
async def invoke_operation_documented(
    connection_id: str, operation_id: str, call: OperationCall, request: Request
) -> Response:
    """Call an imported connector's operation by operationId, percent-encoded as one
    path segment (an id with `/` is sent as `%2F`: use `encodedOperationId` from the
    connector's operation list)."""
    return await invoke_operation(request)


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
