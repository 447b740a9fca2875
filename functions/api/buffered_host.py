"""Body limits for hosts that hold whole messages in memory (the Azure Functions host).

Under `azure.functions.AsgiFunctionApp` nothing streams: the host hands the worker the
whole request body, and the worker collects every response chunk before it answers
(RECIPES.md). A 2 GB download through invoke would therefore sit in the instance's
memory twice, and an upload past the host's `FUNCTIONS_REQUEST_BODY_SIZE_LIMIT` never
reaches the gateway at all. HTTP streams for Python (`azurefunctions-extensions-http-
fastapi`) do not fit: they replace the ASGI bridge with per-function FastAPI request
and response types, and switch every HTTP function of the app to that model
(docs/decisions.md, issue 20). So under the host the gateway states the limits and
keeps them, in both directions, before memory does:

- a request body above `FUNCTIONS_REQUEST_BODY_SIZE_LIMIT` (the host's own setting,
  100 MiB by default) is answered 413 `request_too_large`, by its Content-Length when
  it has one, otherwise as soon as the bytes read pass the limit;
- a response above `GATEWAY_BUFFERED_RESPONSE_LIMIT_BYTES` (default: the same) is
  answered 502 `upstream_response_too_large` instead, and the upstream read stops
  there: by its Content-Length before any body is read, otherwise at the first chunk
  past the limit.

`python -m functions serve` and `make run` stream and do not use this.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.api.problems import CORRELATION_HEADER, PROBLEM_JSON
from functions.errors import GatewayError, PayloadTooLargeError, UpstreamResponseTooLargeError

DEFAULT_LIMIT = 100 * 1024 * 1024  # the Functions host's default request limit


class _ResponseTooLarge(Exception):
    """Raised from `send` to stop the app producing a response nobody will receive."""


@dataclass(frozen=True)
class BodyLimits:
    request_bytes: int = DEFAULT_LIMIT
    response_bytes: int = DEFAULT_LIMIT

    @classmethod
    def from_env(cls) -> BodyLimits:
        def size(name: str) -> int:
            text = os.environ.get(name, "").strip()
            return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_LIMIT

        return cls(
            request_bytes=size("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"),
            response_bytes=size("GATEWAY_BUFFERED_RESPONSE_LIMIT_BYTES"),
        )


class BufferedHostLimits:
    """Pure ASGI wrapper applying `BodyLimits` around the whole app."""

    def __init__(self, app: ASGIApp, limits: BodyLimits | None = None) -> None:
        self.app = app
        self.limits = limits or BodyLimits.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        declared = _content_length(scope.get("headers", []))
        if declared is not None and declared > limits.request_bytes:
            await _send_problem(send, scope, _request_too_large(limits.request_bytes))
            return

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limits.request_bytes:
                    raise _request_too_large(limits.request_bytes)
            return message

        # The host sends nothing before the app has finished, so holding the start
        # message until the body is known costs nothing the host would not hold anyway.
        held: list[Message] = []
        sent = 0

        async def limited_send(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                length = _content_length(message.get("headers", []))
                if length is not None and length > limits.response_bytes:
                    raise _ResponseTooLarge
                held.append(message)
                return
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if sent > limits.response_bytes:
                    raise _ResponseTooLarge
                held.append(message)
                if not message.get("more_body", False):
                    for each in held:
                        await send(each)
                    held.clear()
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, limited_send)
        except _ResponseTooLarge:
            await _send_problem(send, scope, UpstreamResponseTooLargeError(
                f"the response is larger than this host can hold "
                f"({limits.response_bytes} bytes, GATEWAY_BUFFERED_RESPONSE_LIMIT_BYTES): "
                "the Azure Functions host buffers responses whole; ask for less (a range "
                "or a page), or host the gateway with `python -m functions serve`, which streams"
            ))


def _request_too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the request body is larger than this host accepts ({limit} bytes, "
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT): the Azure Functions host holds bodies whole in memory"
    )


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _send_problem(send: Send, scope: Scope, error: GatewayError) -> None:
    cid = scope.get("state", {}).get("correlation_id") or uuid.uuid4().hex
    body = json.dumps({
        "type": f"https://connector-gateway.dev/problems/{error.code}",
        "title": error.title,
        "status": error.status,
        "code": error.code,
        "detail": error.detail,
        "instance": scope.get("path", ""),
        "correlationId": cid,
    }).encode()
    await send({
        "type": "http.response.start",
        "status": error.status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (CORRELATION_HEADER.lower().encode(), cid.encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
