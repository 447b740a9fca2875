"""The production HTTP server, for hosting the gateway outside Azure Functions
(containers, VMs, Azure Container Apps, Kubernetes): `python -m functions serve`.

What it does differently from `python -m functions dev`:
- settings come from the environment only (no local.settings.json, no Azurite, no
  development keys created);
- uvicorn runs on uvloop and httptools when they are installed (requirements-serve.txt
  pins both; the bench measures what they buy);
- N worker processes, each with its own listening socket on the same port
  (SO_REUSEPORT), so the kernel spreads connections over them. With one shared socket
  (what `uvicorn --workers` does) asyncio accepts every pending connection in the
  worker that wakes first, and against keep-alive clients one worker ends up serving
  nearly everything (bench/workers.py measured it);
- no access log line per request unless asked for, no `Server` header;
- SIGTERM / SIGINT stop accepting, let calls in flight finish (up to
  `graceful_seconds`), run the app's shutdown, and exit 0.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

APP = "functions.app:create_app"
log = logging.getLogger("functions.server")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "0.0.0.0"  # noqa: S104 - a server in a container listens on every interface
    port: int = 8080
    workers: int = 1
    access_log: bool = False
    graceful_seconds: float = 30.0
    log_level: str = "info"

    def argv(self) -> list[str]:
        """The command line that starts one worker with these options."""
        args = ["--host", self.host, "--port", str(self.port), "--workers", "1",
                "--graceful-seconds", str(self.graceful_seconds), "--log-level", self.log_level]
        if self.access_log:
            args.append("--access-log")
        return args


def event_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def http_protocol() -> str:
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket that other workers can bind too (SO_REUSEPORT).

    IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose `proto` says
    TCP, and accepted sockets inherit it; without it a response written in two parts
    waits for a delayed ACK (~40 ms)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve_worker(options: ServeOptions) -> int:
    """Serve in this process until SIGTERM/SIGINT (uvicorn handles both gracefully)."""
    import uvicorn

    loop, http = event_loop(), http_protocol()
    if (loop, http) != ("uvloop", "httptools"):
        log.warning("serving with %s/%s: install requirements-serve.txt for uvloop/httptools",
                    loop, http)
    config = uvicorn.Config(
        APP,
        factory=True,
        loop=loop,
        http=http,
        access_log=options.access_log,
        log_level=options.log_level,
        server_header=False,
        timeout_graceful_shutdown=int(options.graceful_seconds),
        # Behind a load balancer the client address is the balancer's; the gateway does
        # not use it for decisions, so forwarded headers are not trusted.
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[bind(options.host, options.port)])
    return 0 if server.started else 1


def serve(options: ServeOptions) -> int:
    """One worker in-process, or a supervisor of N worker processes."""
    if os.environ.get("GATEWAY_ENVIRONMENT", "production") == "development":
        log.warning("GATEWAY_ENVIRONMENT=development: development settings are not for production")
    if options.workers <= 1:
        return serve_worker(options)
    command = [sys.executable, "-m", "functions", "serve", *options.argv()]
    workers = [subprocess.Popen(command) for _ in range(options.workers)]  # noqa: S603

    stopping: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # A worker that dies takes the whole server down: the orchestrator (container
    # runtime, systemd, Kubernetes) restarts it, rather than a half-capacity server
    # running unnoticed.
    while all(worker.poll() is None for worker in workers):
        time.sleep(0.2)
    asked = bool(stopping)
    forward(signal.SIGTERM, None)
    codes = [worker.wait() for worker in workers]
    # uvicorn re-raises the stop signal after its graceful shutdown, so a worker that
    # stopped as asked ends "killed by SIGTERM/SIGINT": that is a clean stop.
    clean = {0, -signal.SIGTERM, -signal.SIGINT}
    if asked and all(code in clean for code in codes):
        return 0
    return max(abs(code) for code in codes) or 1
