"""A development upstream that answers every request with what it received, as JSON:
method, raw path, query string, headers (as received) and body. Used by
`python -m functions dev --oauth-demo` (the demo connector's API: it shows the bearer
token the gateway injected) and `--tls-upstream` (over HTTPS, with the stack's own CA).

Runs under uvicorn in a background thread of the dev process, on loopback only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from functions.devtools.asgi import read_body, request_report, serve_lifespan
from functions.devtools.processes import free_port


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    body = await read_body(receive)
    host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
    report = {
        "scheme": scope.get("scheme", "http"),
        "host": host,
        **request_report(scope, body),
    }
    payload = json.dumps(report, indent=2).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@dataclass
class EchoServer:
    """The echo under uvicorn in a daemon thread; `stop()` ends it."""

    port: int
    server: Any
    thread: threading.Thread
    tls: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_echo(
    *, certfile: str | None = None, keyfile: str | None = None, timeout: float = 20.0
) -> EchoServer:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        echo_app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"echo-{port}")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the echo upstream did not start on port {port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the echo upstream did not start on port {port}")
        time.sleep(0.02)
    return EchoServer(port, server, thread, certfile is not None)
