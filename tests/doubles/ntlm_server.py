"""An internal API that accepts only Windows authentication (NTLM / Negotiate), for tests.

A real acceptor: pyspnego's `spnego.server`, with users from the file named by
`NTLM_USER_FILE` (lines `DOMAIN:USER:PASSWORD`). As IIS does, authentication belongs to
the TCP connection (HTTP/1.1 keep-alive): an unauthenticated request gets 401 with
`WWW-Authenticate: Negotiate` and `WWW-Authenticate: NTLM`; the handshake is stepped on
that connection; later requests on it pass as the authenticated user.

Authenticated requests are answered with JSON: method, path, query, user, the
`X-Request-Id` header, body length and SHA-256 (and the body itself, base64, when under
64 KiB). Paths:
    /slow?seconds=S      waits S seconds first (records the request before waiting)
    /bytes?size=N        answers N bytes (b"0123456789" repeated) instead of JSON

`executions` lists every authenticated request served, so tests count how often an
operation really ran. Threaded, loopback, free port.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import spnego
from spnego.exceptions import SpnegoError

SCHEMES = {"negotiate": "Negotiate", "ntlm": "NTLM"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, Nagle + delayed ACK add 40 ms.
    disable_nagle_algorithm = True
    server: _Server
    # Per connection: BaseHTTPRequestHandler serves all requests of one connection.
    context: Any = None
    scheme: str | None = None
    user: str | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        return

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _challenge(self) -> None:
        self.context, self.scheme = None, None
        self.server.challenges += 1
        self._send(
            401,
            b"authentication required",
            [
                ("WWW-Authenticate", "Negotiate"),
                ("WWW-Authenticate", "NTLM"),
                ("Content-Type", "text/plain"),
            ],
        )

    def _handle(self) -> None:
        body = self._read_body()
        if self.user is None:
            header = self.headers.get("Authorization") or ""
            scheme, _, token = header.partition(" ")
            protocol = scheme.lower()
            if protocol not in SCHEMES or not token:
                self._challenge()
                return
            try:
                if self.context is None or self.scheme != protocol:
                    self.context = spnego.server(protocol=protocol)
                    self.scheme = protocol
                out = self.context.step(base64.b64decode(token))
            except (SpnegoError, ValueError):
                self.server.failures += 1
                self._challenge()
                return
            if not self.context.complete:
                self._send(
                    401,
                    b"continue",
                    [("WWW-Authenticate", f"{SCHEMES[protocol]} {base64.b64encode(out).decode()}")]
                    if out
                    else [],
                )
                return
            self.user = str(self.context.client_principal)
        self._serve(body)

    def _serve(self, body: bytes) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        record = {
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "user": self.user,
            "requestId": self.headers.get("X-Request-Id"),
            "bodyLength": len(body),
            "bodySha256": hashlib.sha256(body).hexdigest(),
        }
        with self.server.lock:
            self.server.executions.append(record)
        if url.path == "/slow":
            self.server.slow_started.set()
            time.sleep(float(query.get("seconds", ["1"])[0]))
        if url.path == "/bytes":
            size = int(query.get("size", ["0"])[0])
            data = (b"0123456789" * (size // 10 + 1))[:size]
            self._send(200, data, [("Content-Type", "application/octet-stream")])
            return
        answer = dict(record)
        if len(body) < 64 * 1024:
            answer["body"] = base64.b64encode(body).decode()
        self._send(200, json.dumps(answer).encode(), [("Content-Type", "application/json")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.executions: list[dict[str, Any]] = []
        self.challenges = 0
        self.failures = 0
        self.slow_started = threading.Event()


class NtlmServer:
    """The server in a background thread. `users` are (domain, user, password)."""

    def __init__(self, users_file: Path) -> None:
        self.users_file = users_file
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def executions(self) -> list[dict[str, Any]]:
        with self._server.lock:
            return list(self._server.executions)

    @property
    def failures(self) -> int:
        return self._server.failures

    @property
    def slow_started(self) -> threading.Event:
        return self._server.slow_started

    def count(self, request_id: str) -> int:
        return sum(1 for e in self.executions if e["requestId"] == request_id)

    def start(self) -> NtlmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def write_users(path: Path, users: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(f"{d}:{u}:{p}\n" for d, u, p in users), encoding="utf-8")
    return path


@contextmanager
def ntlm_server(users_file: Path) -> Iterator[NtlmServer]:
    """Run the server with NTLM_USER_FILE pointing at `users_file` (read by pyspnego)."""
    previous = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = str(users_file)
    server = NtlmServer(users_file).start()
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = previous
