"""The floor for a Python gateway: FastAPI + one pooled httpx client, nothing else.

No authentication, no storage, no policies: every request under `/` is forwarded to
`BENCH_UPSTREAM_URL` + the same raw path and query, hop-by-hop headers and Host dropped,
the response streamed back (raw bytes, as the gateway does). Same server (uvicorn, one
worker), same framework, same HTTP client (httpx over aiohttp's pool, as the gateway's
data plane) and pool limits as the gateway, so the difference between the two is what
the gateway itself does per call. BENCH_PASSTHROUGH_TRANSPORT=httpcore swaps in httpx's
default transport, to show what that choice costs.

`uvicorn bench.passthrough:app` with BENCH_UPSTREAM_URL=http://127.0.0.1:PORT
(`bench.passthrough:lean_app`: the same with the gateway's hot-path shortcuts, below).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from httpx_aiohttp import AiohttpTransport
from starlette.routing import Route

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host",
})
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    transport: httpx.AsyncBaseTransport
    if os.environ.get("BENCH_PASSTHROUGH_TRANSPORT") == "httpcore":
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    else:  # the gateway's data-plane transport (functions/upstream/client.py)
        transport = AiohttpTransport(limits=limits, trust_env=False)
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=30.0) as client:
        app.state.client = client
        app.state.upstream = os.environ["BENCH_UPSTREAM_URL"].rstrip("/")
        yield


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
SMALL_BODY_BYTES = 64 * 1024


@app.api_route("/{path:path}", methods=METHODS)
async def proxy(path: str, request: Request) -> Response:
    return await _proxy(request, lean=False)


async def _proxy(request: Request, *, lean: bool) -> Response:
    client: httpx.AsyncClient = request.app.state.client
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    url = request.app.state.upstream + raw.decode("latin-1")
    query = request.scope.get("query_string", b"")
    if query:
        url += "?" + query.decode("latin-1")
    headers = [(k, v) for k, v in request.scope["headers"] if k.decode("latin-1").lower() not in HOP_BY_HOP]
    body = await request.body()
    upstream = client.build_request(request.method, url, headers=headers, content=body or None)
    response = await client.send(upstream, stream=True)
    headers_out = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.multi_items()
        if k.lower() not in HOP_BY_HOP
    ]
    length = response.headers.get("content-length", "")
    if lean and length.isdigit() and int(length) <= SMALL_BODY_BYTES:
        try:
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        small = Response(content, status_code=response.status_code)
        small.raw_headers = headers_out
        return small

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()

    result = StreamingResponse(relay(), status_code=response.status_code)
    result.raw_headers = headers_out
    return result


async def _lean(request: Request) -> Response:
    return await _proxy(request, lean=True)


# The same floor with the shortcuts the gateway's hot path takes: its data-plane client
# (functions/upstream/client.py: no cookie jar), a plain Starlette route instead of
# FastAPI's request handling, and answers with a Content-Length up to 64 KiB sent in
# one piece (functions/api/routes/invoke.py). Against this one the ratio is what the
# gateway's own work (auth, lookups, credentials, policies, audit) costs.
@asynccontextmanager
async def lean_lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The gateway's own data-plane client (aiohttp's pool, no cookie jar).
    import ssl

    from functions.upstream.client import data_plane_client
    from functions.upstream.egress import EgressPolicy

    async with data_plane_client(
        ssl.create_default_context(),
        httpx.Timeout(30.0),
        egress=EgressPolicy(allow_loopback=True),
    ) as client:
        app.state.client = client
        app.state.upstream = os.environ["BENCH_UPSTREAM_URL"].rstrip("/")
        yield


lean_app = FastAPI(lifespan=lean_lifespan, docs_url=None, redoc_url=None, openapi_url=None)
lean_app.router.routes.append(Route("/{path:path}", _lean, methods=METHODS))
