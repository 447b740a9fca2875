"""Request bodies: size limit, JSON parsing and schema validation, with precise errors.

FastAPI's automatic body parsing is not used for JSON: we want a 413 before reading an
oversized body, a 400 `invalid_json` with line and column, and a 422 that names each
field, all as problem+json.
"""

from __future__ import annotations

import asyncio
import json
import sys
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
# Deeper nesting is refused (400 json_too_deep). The 43 sample Power Platform
# definitions nest at most 25 levels; Python's own recursion gives out near 1,000.
MAX_JSON_DEPTH = 128
# Bodies above this size are parsed in a worker thread.
OFF_LOOP_BYTES = 256 * 1024


async def read_body(request: Request, limit: int, *, code: str | None = None) -> bytes:
    """Read the body, refusing more than `limit` bytes without buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, code)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, code)
            chunks.append(chunk)
    except ClientDisconnect:
        # The caller went away mid-upload: nothing to answer, nothing to log as an error.
        raise BadRequestError(
            "the client disconnected before sending the whole body", code="client_disconnected"
        ) from None
    return b"".join(chunks)


def _too_large(limit: int, code: str | None = None) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body exceeds the limit of {limit} bytes", code=code, extra={"limit": limit}
    )


def parse_json(raw: bytes, *, what: str = "the request body") -> Any:
    """Parse JSON, refusing what the rest of the gateway could not handle safely:
    nesting deeper than MAX_JSON_DEPTH (recursive code further on would fail) and
    integers longer than Python converts (4,300 digits), both as 400s."""
    if not raw.strip():
        raise BadRequestError(f"{what} is empty; a JSON object is required", code="invalid_json")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"{what} is not UTF-8 ({exc.reason})", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"{what} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
            code="invalid_json",
            extra={"line": exc.lineno, "column": exc.colno},
        ) from None
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError:
        # int() refuses integer literals over sys.get_int_max_str_digits() digits.
        raise BadRequestError(
            f"{what} holds a number with too many digits (at most "
            f"{sys.get_int_max_str_digits()} are accepted)",
            code="json_number_too_long",
        ) from None
    check_json_depth(value, what=what)
    return value


def _too_deep(what: str) -> BadRequestError:
    return BadRequestError(
        f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
        code="json_too_deep",
        extra={"maxDepth": MAX_JSON_DEPTH},
    )


def check_json_depth(value: Any, *, what: str = "the request body") -> None:
    """Level by level, iteratively (a recursive walk would fail on the very input it
    guards against); only containers are visited."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(what)
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below.extend([c for c in children if type(c) is dict or type(c) is list])
        level = below


async def parse_json_off_loop(raw: bytes, *, what: str = "the request body") -> Any:
    """`parse_json`, in a worker thread when the body is large: parsing megabytes takes
    the event loop away from every other request for tens of milliseconds or more."""
    if len(raw) <= OFF_LOOP_BYTES:
        return parse_json(raw, what=what)
    return await asyncio.to_thread(parse_json, raw, what=what)


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


async def json_body(
    request: Request, model: type[M], limit: int = MAX_JSON_BYTES, *, too_large: str | None = None
) -> M:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(f"expected Content-Type application/json, got {media!r}")
    raw = await read_body(request, limit, code=too_large)
    return validate_model(model, await parse_json_off_loop(raw))
