"""The relay's added latency over calling the NTLM server directly (printed; loose bound).

Run with `-s` to see the numbers: p50/p99 for direct calls and for relayed calls.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

from functions.onprem.relay import GatewayRelay
from functions.onprem.windows_auth import SpnegoAuth
from functions.upstream.request import OutgoingRequest
from tests.doubles.ntlm_server import NtlmServer
from tests.onprem.conftest import DOMAIN, TENANT, USERS

ROUNDS = 40


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def test_added_latency(
    relay: GatewayRelay, make_gateway: Any, start_agent: Any, ntlm: NtlmServer
) -> None:
    gw = await make_gateway()
    await start_agent(gw, concurrency=1)
    cred = gw.credential("c")
    auth = SpnegoAuth(f"{DOMAIN}\\alice", USERS["alice"])
    direct: list[float] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1), trust_env=False) as client:
        for _ in range(ROUNDS):
            started = time.perf_counter()
            assert (await client.get(f"{ntlm.url}/ping", auth=auth)).status_code == 200
            direct.append(time.perf_counter() - started)
    relayed: list[float] = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        result = await relay.send(
            TENANT, gw.record.id, "c", cred, OutgoingRequest("GET", ntlm.url, "/ping"), timeout=10
        )
        assert result.status == 200
        relayed.append(time.perf_counter() - started)
    print(
        f"\ndirect  p50 {_p(direct, 0.5):.1f} ms  p99 {_p(direct, 0.99):.1f} ms"
        f"\nrelayed p50 {_p(relayed, 0.5):.1f} ms  p99 {_p(relayed, 0.99):.1f} ms"
        f"  (mean {statistics.mean(relayed) * 1000:.1f} ms)"
    )
    # Picked up well under a second, even from an idle agent.
    assert _p(relayed, 0.5) < 500
    assert max(relayed) < 1.5
