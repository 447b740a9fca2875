"""A small closed-loop HTTP/1.1 load generator (used when wrk is not installed).

N keep-alive connections on raw asyncio streams, each sending its next request as soon
as the previous response is complete (like wrk). Latency is measured per request with
`perf_counter`; the result is JSON on stdout. It runs in its own process so it shares
no interpreter lock with anything it measures; its own CPU time is reported so a run
can show it was not the bottleneck (bench/__main__.py calibrates its ceiling against
the fastest server available).

`python -m bench.loadgen URL --connections 32 --duration 10 [--method POST --body B] [-H 'Name: value']`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit


def build_request(url: str, method: str, headers: list[str], body: bytes) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += headers
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return parts.hostname or "127.0.0.1", parts.port or 80, raw


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    index = lower.find(b"\r\ncontent-length:")
    if index >= 0:
        end = lower.index(b"\r\n", index + 2)
        length = int(lower[index + 17:end])
        if length:
            await reader.readexactly(length)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def worker(host: str, port: int, raw: bytes, stop_at: float, latencies: list[float], counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    perf = time.perf_counter
    try:
        while perf() < stop_at:
            start = perf()
            writer.write(raw)
            try:
                status = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                counts["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(perf() - start)
            if status >= 400:
                counts["non2xx"] += 1
    finally:
        writer.close()


async def run(url: str, connections: int, duration: float, method: str, headers: list[str], body: bytes) -> dict[str, float]:
    host, port, raw = build_request(url, method, headers, body)
    latencies: list[float] = []
    counts = {"errors": 0, "non2xx": 0}
    cpu0 = os.times()
    start = time.perf_counter()
    stop_at = start + duration
    await asyncio.gather(*(worker(host, port, raw, stop_at, latencies, counts) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    cpu1 = os.times()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "errors": counts["errors"],
        "non2xx": counts["non2xx"],
        "loadgen_cpu_percent": 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="")
    parser.add_argument("-H", dest="headers", action="append", default=[])
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.connections, args.duration, args.method, args.headers, args.body.encode()))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
