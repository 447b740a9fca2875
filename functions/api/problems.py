"""RFC 9457 problem+json for every error, with a stable `code`.

Unexpected exceptions become 500 `internal_error` with a correlation id; the traceback
goes to the log (never to the caller), and the correlation id ties the two together.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.errors import GatewayError

log = logging.getLogger("functions.api")

PROBLEM_JSON = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-Id"

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def correlation_id(request: Request) -> str:
    existing = getattr(request.state, "correlation_id", None)
    if existing:
        return str(existing)
    value = uuid.uuid4().hex
    request.state.correlation_id = value
    return value


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    cid = correlation_id(request)
    body: dict[str, Any] = {
        "type": f"https://connector-gateway.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": request.url.path,
        "correlationId": cid,
    }
    if extra:
        body.update(extra)
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_JSON,
        headers={CORRELATION_HEADER: cid, **(headers or {})},
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s %s", exc.code, exc.detail)
        return problem(
            request,
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            extra=exc.extra,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only path/query parameters reach here: bodies are parsed by api/bodies.py.
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        return problem(
            request,
            status=422,
            code="validation_error",
            title="Validation failed",
            detail="; ".join(f"{e['field']}: {e['message']}" for e in errors),
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        if exc.status_code == 404:
            code = "route_not_found"
        return problem(
            request,
            status=exc.status_code,
            code=code,
            title=str(exc.detail),
            detail=f"{request.method} {request.url.path}: {exc.detail}",
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        cid = correlation_id(request)
        # exc_info goes to the log only; the record's text is redacted of known secrets.
        log.error("unexpected error (correlation id %s)", cid, exc_info=exc)
        return problem(
            request,
            status=500,
            code="internal_error",
            title="Internal error",
            detail=f"the gateway failed unexpectedly; quote correlation id {cid}",
        )
