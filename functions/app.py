"""The ASGI application: the same app under uvicorn (local) and Azure Functions.

`create_app()` is cheap and does no I/O, so importing `function_app.py` stays fast;
settings are read and clients built on ASGI startup (under Functions, on the first
invocation).
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions import logging_redaction, observability
from functions.api.openapi import OPENAPI_URL, install_docs
from functions.api.problems import CORRELATION_HEADER, install_problem_handlers
from functions.api.routes import (  # issue 16
    connect_sessions,
    connections,
    connectors,
    definitions,
    gateways,
    health,
    invoke,
    oauth,
)
from functions.mcp.endpoint import McpEndpoint
from functions.portal import routes as portal  # issue 16
from functions.settings import Settings


class CorrelationIdMiddleware:
    """Gives every request a correlation id (`request.state.correlation_id`) and returns
    it in `X-Correlation-Id`. Pure ASGI, so streamed responses are not buffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = uuid.uuid4().hex
        scope.setdefault("state", {})["correlation_id"] = cid
        # Issue 12: the address this request came in on is the gateway's own; the
        # outbound address policy refuses it as an upstream (a connector would loop).
        gateway = getattr(scope["app"].state, "gateway", None) if "app" in scope else None
        if gateway is not None:
            gateway.egress.note_own_address(scope.get("server"))
        token = observability.correlation_id.set(cid)
        header = (CORRELATION_HEADER.lower().encode(), cid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                # Problem responses already carry the same id; add it otherwise.
                if not any(name == header[0] for name, _ in headers):
                    headers.append(header)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observability.correlation_id.reset(token)


def create_app(settings: Settings | None = None) -> FastAPI:
    logging_redaction.install()
    mcp = McpEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from functions.container import Gateway

        gateway = await Gateway.start(settings or Settings.from_env())
        app.state.gateway = gateway
        # Everything built so far (modules, SDK clients, parsed catalogs) lives as long
        # as the process: keep it out of the garbage collector's full collections. On
        # this app's heap they took 50-70 ms each under load, stalling every call in
        # flight (bench/RESULTS.md); afterwards 3-4 ms.
        gc.freeze()
        try:
            async with mcp.run():
                yield
        finally:
            await gateway.close()

    app = FastAPI(
        title="Connector Gateway",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from vendored assets (no CDN)
        openapi_url=OPENAPI_URL,
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_docs(app)
    # The invoke routes first: they carry the traffic, and routing tries routes in order.
    for module in (invoke, health, connectors, connections, oauth, gateways):
        app.include_router(module.router)
    for module in (definitions, connect_sessions, portal):  # issue 16
        app.include_router(module.router)
    # Before everything else, shadowing their documented twins (routes/invoke.py).
    app.router.routes[:0] = invoke.FAST_ROUTES
    app.router.routes.extend(mcp.routes)  # the MCP endpoint (functions/mcp/endpoint.py)
    app.add_middleware(CorrelationIdMiddleware)
    return app
