"""An upstream API for tests that reports exactly what it received.

Any request gets a JSON answer with the method, raw path, raw query string, the header
list as received and the body. A few paths behave differently:
    /slow/{seconds}      waits before answering (timeouts)
    /status/{code}       answers with that status
    /bytes/{n}           streams n bytes of b"x" in 64 KiB chunks
    /headers-out         answers with repeated and hop-by-hop headers
    X-Echo-Respond: JSON  (request header) answers with that JSON instead of the report
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from starlette.types import Receive, Scope, Send

from functions.devtools.asgi import read_body, request_report, serve_lifespan, stream_bytes


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    body = await read_body(receive)
    raw_path = scope.get("raw_path") or scope["path"].encode()
    path = raw_path.decode("latin-1")
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    status = 200

    if path.startswith("/slow/"):
        await asyncio.sleep(float(path.rsplit("/", 1)[1]))
    elif path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
    elif path.startswith("/bytes/"):
        await stream_bytes(send, int(path.rsplit("/", 1)[1]))
        return
    elif any(k == b"x-echo-respond" for k, _ in scope["headers"]):
        # Answer with the JSON the caller supplied (to exercise response policies).
        canned = next(v for k, v in scope["headers"] if k == b"x-echo-respond")
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": canned})
        return
    elif path == "/headers-out":
        headers += [
            (b"link", b"<a>; rel=next"),
            (b"link", b"<b>; rel=prev"),
            (b"set-cookie", b"upstream=1"),
            (b"x-upstream", b"yes"),
            (b"server", b"echo-upstream/1.0"),
            (b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"),
        ]

    report: dict[str, Any] = {
        **request_report(scope, body),
        "bodyBase64": base64.b64encode(body).decode(),
    }
    payload = json.dumps(report).encode()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def header_values(report: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in report["headers"] if k.lower() == name.lower()]


if (
    __name__ == "__main__"
):  # `python -m tests.doubles.echo [PORT]`: the README walkthrough's upstream
    import sys

    import uvicorn

    uvicorn.run(
        echo_app,
        host="127.0.0.1",
        port=int(sys.argv[1]) if len(sys.argv) > 1 else 9000,
        log_level="warning",
    )
