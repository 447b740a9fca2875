"""What the outbound address policy (functions/upstream/egress.py, issue 12) costs.

Two measurements, in this process, on loopback only:

- per call: the checks every data-plane request passes (`check_name` and
  `check_literal` on the URL's host, the framing guard), timed over many iterations
  for an IP-literal host and a name; and the check of a fresh resolution
  (`check_resolved`, paid once per aiohttp DNS-cache entry, i.e. per `ttl_dns_cache`);
- DNS on the warm path: N calls through the real data-plane client to a name (mapped
  to 127.0.0.1 by a counting resolver) with a new connection each time; the resolver
  must be asked once, not N times (aiohttp's cache holds the checked answer).

Run alone: `.venv/bin/python -m bench.egress`; `make bench` includes it in RESULTS.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import time
from typing import Any

import httpx

from functions.upstream.client import _enforce_framing
from functions.upstream.egress import EgressPolicy


def _per_call_us(work: Any, iterations: int) -> float:
    for _ in range(min(1000, iterations)):
        work()
    started = time.perf_counter()
    for _ in range(iterations):
        work()
    return (time.perf_counter() - started) / iterations * 1e6


def per_call_costs(iterations: int = 200_000) -> dict[str, float]:
    policy = EgressPolicy(allow_loopback=True)
    policy.note_own_address(("127.0.0.1", 7071))
    request = httpx.Request(
        "POST", "http://api.example.com/v1/items", headers={"X-Api-Key": "k"}, content=b"{}"
    )

    def literal() -> None:
        policy.check_host("127.0.0.1", 8080)

    def name() -> None:
        policy.check_host("api.example.com", 443)

    def uncached() -> None:
        policy.check_name("127.0.0.1", 8080)
        policy.check_literal("127.0.0.1", 8080)

    def resolved() -> None:
        policy.check_resolved("api.example.com", 443, ["93.184.215.14", "2606:2800:21f::1"])

    def framing() -> None:
        _enforce_framing(request)

    return {
        "IP-literal host (per call)": _per_call_us(literal, iterations),
        "named host (per call; addresses come from aiohttp's cache)": _per_call_us(
            name, iterations
        ),
        "IP-literal host, first sight (uncached checks)": _per_call_us(uncached, iterations // 4),
        "framing guard (per call)": _per_call_us(framing, iterations // 4),
        "fresh resolution, 2 addresses (per DNS-cache miss)": _per_call_us(
            resolved, iterations // 4
        ),
    }


def warm_path_lookups(calls: int = 200) -> dict[str, int]:
    """Calls to a name through the data-plane client, each on a new connection."""
    from aiohttp.abc import AbstractResolver, ResolveResult

    from functions.upstream.client import data_plane_client

    class Counting(AbstractResolver):
        lookups = 0

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            Counting.lookups += 1
            return [
                {
                    "hostname": host,
                    "host": "127.0.0.1",
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]

        async def close(self) -> None:
            return None

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def run() -> dict[str, int]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connects: list[tuple[str, int]] = []
        policy = EgressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
        async with server, data_plane_client(
            ssl.create_default_context(),
            httpx.Timeout(10.0),
            egress=policy,
            resolver=Counting(),
            connects=connects,
        ) as client:
            for _ in range(calls):
                (await client.get(f"http://bench-upstream.test:{port}/")).raise_for_status()
        return {"calls": calls, "connections": len(connects), "lookups": Counting.lookups}

    return asyncio.run(run())


def measure() -> dict[str, Any]:
    return {"per_call_us": per_call_costs(), "warm_path": warm_path_lookups()}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
