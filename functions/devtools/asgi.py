"""Pieces of bare ASGI apps used by the test and benchmark upstreams (development only):
the lifespan handshake, reading a request body, streaming a large response."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

_CHUNK = b"x" * 65536


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown; returns at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def stream_bytes(send: Send, total: int) -> None:
    """Answer 200 with `total` bytes of b"x" in 64 KiB chunks, Content-Length set."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(total).encode()),
            ],
        }
    )
    sent = 0
    while sent < total:
        piece = _CHUNK[: min(len(_CHUNK), total - sent)]
        sent += len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": sent < total})


def request_report(scope: Scope, body: bytes) -> dict[str, Any]:
    """What an echo upstream answers: the request as it arrived (raw path and query,
    headers in order, body as text), shared by the dev echo and the tests' echo."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    return {
        "method": scope["method"],
        "path": raw_path.decode("latin-1"),
        "query": scope.get("query_string", b"").decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body": body.decode("utf-8", errors="replace"),
    }

