"""The fast local upstream: a minimal ASGI app (no framework), served by uvicorn.

    any path          200, a fixed 95-byte JSON body (Content-Length set)
    /bytes/{n}        n bytes of b"x", streamed in 64 KiB chunks (the 100 MB test)
    /echo/...         JSON report of method, path, query and headers (sanity checks)

`python -m bench.upstream PORT`
"""

from __future__ import annotations

import json
import sys

from starlette.types import Receive, Scope, Send

from functions.devtools.asgi import read_body, serve_lifespan, stream_bytes

BODY = b'{"id":"item-1","name":"benchmark item","tags":["a","b","c"],"price":12.5,"available":true}\n'
BODY = BODY.ljust(95, b" ")
_FIXED_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    await read_body(receive)
    path: str = scope["path"]
    if path.startswith("/bytes/"):
        await stream_bytes(send, int(path.rsplit("/", 1)[1]))
        return
    if path.startswith("/echo"):
        report = {
            "method": scope["method"],
            "path": path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        }
        payload = json.dumps(report).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _FIXED_HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
