"""Request bodies: size limit, JSON parsing and schema validation, with precise errors.

FastAPI's automatic body parsing is not used for JSON: we want a 413 before reading an
oversized body, a 400 `invalid_json` with line and column, and a 422 that names each
field, all as problem+json.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from functions.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)

M = TypeVar("M", bound=BaseModel)

# Management requests (connector and connection definitions) are small; imported
# Power Platform definitions are the largest at a few MiB.
MAX_JSON_BYTES = 4 * 1024 * 1024


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes without buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        # The caller went away mid-upload: nothing to answer, nothing to log as an error.
        raise BadRequestError(
            "the client disconnected before sending the whole body", code="client_disconnected"
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body exceeds the limit of {limit} bytes", extra={"limit": limit}
    )


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise BadRequestError(
            "the request body is empty; a JSON object is required", code="invalid_json"
        )
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"the request body is not UTF-8 ({exc.reason})", code="invalid_json"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"the request body is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
            code="invalid_json",
            extra={"line": exc.lineno, "column": exc.colno},
        ) from None


def validate_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(part) for part in err["loc"]) or "(body)"
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown field"
            errors.append({"field": field, "message": message})
        raise ValidationFailedError(
            "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        ) from None


async def json_body(request: Request, model: type[M], limit: int = MAX_JSON_BYTES) -> M:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(f"expected Content-Type application/json, got {media!r}")
    return validate_model(model, parse_json(await read_body(request, limit)))
