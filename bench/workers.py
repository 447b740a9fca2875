"""Serve an ASGI app with N uvicorn processes, each with its own listening socket on the
same port (SO_REUSEPORT), so the kernel spreads incoming connections over them.

Why not `uvicorn --workers N`: its workers share one listening socket, and asyncio
accepts every pending connection in one go when it wakes. Against keep-alive clients
(wrk opens its 32 connections at once and keeps them) whichever worker wakes first
takes nearly all of them: measured here, one of two workers served ~90% of the calls,
for the bare passthrough as much as for the gateway, and two workers were no faster
than one. Under Azure Functions this does not arise: the host dispatches each
invocation to a worker process.

    python -m bench.workers --workers 2 --port P [--factory] module:app
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
from types import FrameType


def serve_one(app: str, port: int, factory: bool) -> None:
    import uvicorn

    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose `proto`
    # says TCP, and accepted sockets inherit it. With proto 0 (what uvicorn --workers
    # binds) every response written in two parts waits for a delayed ACK: ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, factory=factory, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        serve_one(args.app, args.port, args.factory)
        return 0
    command = [sys.executable, "-m", "bench.workers", args.app, "--port", str(args.port), "--one"]
    if args.factory:
        command.append("--factory")
    workers = [subprocess.Popen(command) for _ in range(args.workers)]  # noqa: S603

    def stop(signum: int, _frame: FrameType | None) -> None:
        for worker in workers:
            worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return max(worker.wait() for worker in workers)


if __name__ == "__main__":
    sys.exit(main())
