"""The on-premises relay's added latency: `python -m bench.relay` (also run by `make bench`).

Starts Azurite, the pyspnego NTLM server and a registered agent (a separate process,
as in production), then times the same GET sequentially, directly against the NTLM
server (an NTLM-authenticated keep-alive client) and through the relay (queue -> agent
-> NTLM server -> queue), and writes `bench/RELAY.md`. Loopback only, bounded rounds.
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from functions.devtools.azurite import AzuritePorts, start_azurite
from functions.devtools.processes import stop_process
from functions.onprem.agent import IDLE_POLL_SECONDS, STORAGE_CONNECTION_STRING_ENV, AgentConfig
from functions.onprem.envelope import encrypt_for_gateway
from functions.onprem.keys import (
    fingerprint,
    generate_private_key,
    public_key_pem,
    save_private_key,
)
from functions.onprem.registry import HEARTBEAT_INTERVAL_SECONDS, GatewayRegistry
from functions.onprem.relay import GatewayRelay
from functions.onprem.storage import blob_service, queue_service, table_service
from functions.onprem.windows_auth import SpnegoAuth
from functions.upstream.request import OutgoingRequest
from tests.doubles.ntlm_server import ntlm_server, write_users

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 100
TENANT, OWNER, DOMAIN, USER, PASSWORD = "bench-tenant", "bench-owner", "CORP", "alice", "Bench-pw-1!"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _measure(connection_string: str, ntlm_url: str, workdir: Path) -> dict[str, list[float]]:
    prefix = "bn" + secrets.token_hex(3)
    registry = GatewayRegistry(table_service(connection_string), prefix)
    await registry.ensure_tables()
    key = generate_private_key(3072)
    key_file = workdir / "agent-key.pem"
    save_private_key(key, key_file)
    record = await registry.register(TENANT, OWNER, "bench-gw", public_key_pem(key))
    AgentConfig(
        gateway_id=record.id, tenant_id=TENANT, name="bench-gw", gateway_url="http://127.0.0.1:9",
        fingerprint=fingerprint(key), table_prefix=prefix,
    ).save(key_file.with_suffix(".json"))
    env = {**os.environ, STORAGE_CONNECTION_STRING_ENV: connection_string, "PYTHONPATH": str(REPO)}
    env.pop("NTLM_USER_FILE", None)
    agent = subprocess.Popen(
        [sys.executable, "-m", "functions.cli.gateway_agent", "gateway-agent", "run", "--name", "bench-gw",
         "--key-file", str(key_file), "--concurrency", "1"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    relay = GatewayRelay(queue_service(connection_string), blob_service(connection_string), registry, prefix)
    try:
        deadline = time.monotonic() + 30
        while (current := await registry.get(TENANT, record.id)) is None or current.status() != "online":
            if time.monotonic() > deadline or agent.poll() is not None:
                raise RuntimeError("the agent did not come online")
            await asyncio.sleep(0.2)
        credential = encrypt_for_gateway(record.public_key_pem, record.id, "bench", {"username": f"{DOMAIN}\\{USER}", "password": PASSWORD})
        auth = SpnegoAuth(f"{DOMAIN}\\{USER}", PASSWORD)
        direct: list[float] = []
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1), trust_env=False) as client:
            for _ in range(ROUNDS):
                started = time.perf_counter()
                (await client.get(f"{ntlm_url}/ping", auth=auth)).raise_for_status()
                direct.append(time.perf_counter() - started)
        relayed: list[float] = []
        idle_pickup: list[float] = []
        for index in range(ROUNDS):
            if index % 25 == 24:
                await asyncio.sleep(3.0)  # let the agent fall back to its idle polling
            started = time.perf_counter()
            result = await relay.send(TENANT, record.id, "bench", credential, OutgoingRequest("GET", ntlm_url, "/ping"), timeout=10)
            if result.status != 200:
                raise RuntimeError(f"relayed call answered {result.status}")
            (idle_pickup if index % 25 == 24 else relayed).append(time.perf_counter() - started)
        return {"direct": direct, "relayed": relayed, "idle": idle_pickup}
    finally:
        await relay.close()
        stop_process(agent)  # type: ignore[arg-type]
        registry.close()


def main() -> int:
    ports = AzuritePorts.free()
    azurite = start_azurite(ports)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-relay-") as folder:
            users = write_users(Path(folder) / "users.txt", [(DOMAIN, USER, PASSWORD)])
            with ntlm_server(users) as server:
                results = asyncio.run(_measure(ports.connection_string(), server.url, Path(folder)))
    finally:
        stop_process(azurite)
    direct, relayed, idle = results["direct"], results["relayed"], results["idle"]
    per_hour = 3600 / IDLE_POLL_SECONDS
    lines = [
        "# On-premises relay latency",
        "",
        f"`python -m bench.relay` (also run by `make bench`), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Sequential GETs on loopback: "
        "Azurite queues, the pyspnego NTLM server, the agent as a separate process (concurrency 1).",
        "",
        "| path | calls | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|---:|",
        f"| direct to the NTLM server (authenticated keep-alive client) | {len(direct)} | {_percentile(direct, 0.5):.1f} | {_percentile(direct, 0.99):.1f} | {statistics.mean(direct) * 1000:.1f} |",
        f"| through the relay, agent busy (polling every 50 ms) | {len(relayed)} | {_percentile(relayed, 0.5):.1f} | {_percentile(relayed, 0.99):.1f} | {statistics.mean(relayed) * 1000:.1f} |",
        f"| through the relay, first call after 3 s idle | {len(idle)} | {_percentile(idle, 0.5):.1f} | {_percentile(idle, 0.99):.1f} | {statistics.mean(idle) * 1000:.1f} |",
        "",
        f"Added latency (p50): {_percentile(relayed, 0.5) - _percentile(direct, 0.5):.1f} ms busy, "
        f"{_percentile(idle, 0.5) - _percentile(direct, 0.5):.1f} ms from idle. A request is picked up within "
        f"the idle poll interval ({IDLE_POLL_SECONDS:.1f} s) at worst.",
        "",
        f"Idle agent cost: {per_hour:,.0f} queue receives and {3600 / HEARTBEAT_INTERVAL_SECONDS:,.0f} heartbeat "
        "upserts per hour (plus a claim sweep every 10 minutes); see `functions/onprem/agent.py`.",
    ]
    (REPO / "bench" / "RELAY.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
