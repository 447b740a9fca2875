"""A webhook receiver on loopback that verifies Standard Webhooks signatures with the
`standardwebhooks` library, and can be made to fail or answer slowly."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Arrival:
    webhook_id: str
    status: int  # what the receiver answered
    verified: bool
    body: dict[str, Any]
    raw: bytes
    at: float


class Receiver:
    def __init__(self) -> None:
        self.secrets: list[str] = []  # accepted signing secrets (rotation: several)
        self.fail_with: int | None = None
        self.delay = 0.0
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = False
                for secret in list(receiver.secrets):
                    try:
                        Webhook(secret).verify(raw, headers)
                        verified = True
                        break
                    except WebhookVerificationError:
                        continue
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.fail_with or (204 if verified else 400)
                with receiver._lock:
                    receiver.arrivals.append(
                        Arrival(headers.get("webhook-id", ""), status, verified, json.loads(raw or b"{}"), raw, time.monotonic())
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if 200 <= a.status < 300]

    def accepted_for(self, connection_id: str) -> list[Arrival]:
        return [a for a in self.accepted() if a.body["data"]["connectionId"] == connection_id]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[Arrival]:
        deadline = time.monotonic() + timeout
        while True:
            accepted = self.accepted()
            if predicate(accepted):
                return accepted
            assert time.monotonic() < deadline, [(a.body.get("type"), a.status) for a in self.arrivals]
            time.sleep(0.1)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
