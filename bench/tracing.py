"""What tracing costs per call: `python -m bench.tracing` (issue 19).

Starts Azurite, the Key Vault double, the ASGI upstream and a local OTLP/HTTP receiver
(`tests/telemetry/otlp_receiver.py`), then runs the real gateway (a uvicorn subprocess,
as in `python -m bench`) three times: telemetry off, OTLP export with sampling at 100%,
and at 10%. Each run: a warm-up, then the same invoke (`GET .../invoke/v1/items/1`,
API key in a header) from `--concurrency` keep-alive clients for `--calls` calls; the
gateway's own CPU time per call (from /proc) and the latency percentiles are reported,
and the difference to the untraced run is tracing's cost. Writes `bench/TRACING.md`.

Needs a quiet machine to mean anything (the figures are CPU microseconds per call).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime

import httpx

from bench.procs import REPO, cpu_seconds, free_port, start, stop_gracefully
from functions.devtools.azurite import AzuritePorts, start_azurite
from functions.devtools.processes import stop_process
from functions.identity.dev_issuer import generate_private_key_pem, mint_token

OUT = REPO / "bench" / "out"
CONFIGS: list[tuple[str, dict[str, str]]] = [
    ("telemetry off", {}),
    ("OTLP export, sampling 100%", {"OTEL_TRACES_SAMPLER_ARG": "1.0"}),
    ("OTLP export, sampling 10%", {"OTEL_TRACES_SAMPLER_ARG": "0.1"}),
]


async def _load(url: str, token: str, calls: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    remaining = calls

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"invoke answered {response.status_code}: {response.text[:300]}")
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--output", default=str(REPO / "bench" / "TRACING.md"))
    args = parser.parse_args(argv)

    from tests.doubles.keyvault import KeyVaultDouble
    from tests.servers import ThreadedServer
    from tests.telemetry.otlp_receiver import OtlpReceiver

    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float, float, float, int]] = []
    dev_key = generate_private_key_pem()
    token = mint_token(dev_key, user="bench", lifetime_seconds=3600)
    with ExitStack() as stack:
        ports = AzuritePorts.free()
        azurite = start_azurite(ports)
        stack.callback(stop_process, azurite)
        kv = KeyVaultDouble().start()
        stack.callback(kv.stop)
        from bench.upstream import app as upstream_app

        upstream = stack.enter_context(ThreadedServer(upstream_app))
        receiver = stack.enter_context(OtlpReceiver())
        for name, extra in CONFIGS:
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
            env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
            env.update({
                "GATEWAY_ENVIRONMENT": "development",
                "GATEWAY_STORAGE_CONNECTION_STRING": ports.connection_string(),
                "GATEWAY_TABLE_PREFIX": "bt" + os.urandom(3).hex(),
                "GATEWAY_SECRET_STORE": "keyvault",
                "GATEWAY_KEY_VAULT_URL": kv.url,
                "GATEWAY_KEY_VAULT_CA_FILE": kv.ca_file,
                "GATEWAY_DEV_ISSUER_PRIVATE_KEY": dev_key,
                # The upstream is on loopback (issue 12's outbound policy refuses it
                # unless allowed, development only).
                "GATEWAY_EGRESS_ALLOW_LOOPBACK": "true",
                # The load is far above a real connection's per-minute limit.
                "GATEWAY_CONNECTION_CALLS_PER_MINUTE": "100000000",
                "GATEWAY_CONNECTION_MAX_CONCURRENT": "100000",
                "PYTHONDONTWRITEBYTECODE": "1",
                **({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **extra} if extra else {}),
            })
            process = start(
                [sys.executable, "-m", "uvicorn", "functions.app:create_app", "--factory", "--host",
                 "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                env=env, ports=[port], log=OUT / f"tracing-{port}.log",
            )
            try:
                base = f"http://127.0.0.1:{port}"
                with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False) as client:
                    connector = client.post("/api/connectors", json={
                        "name": "bench", "baseUrl": upstream.url,
                        "auth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}})
                    connector.raise_for_status()
                    connection = client.post(f"/api/connectors/{connector.json()['id']}/connections",
                                             json={"displayName": "bench", "parameters": {"api_key": "bench-key"}})
                    connection.raise_for_status()
                url = f"{base}/api/connections/{connection.json()['id']}/invoke/v1/items/1"
                asyncio.run(_load(url, token, args.warmup, args.concurrency))
                before = cpu_seconds(process.pid)
                latencies = asyncio.run(_load(url, token, args.calls, args.concurrency))
                cpu_us = (cpu_seconds(process.pid) - before) / args.calls * 1e6
                rows.append((name, cpu_us, _percentile(latencies, 0.5), _percentile(latencies, 0.99), args.calls))
                print(f"{name:32s} {cpu_us:8.0f} us CPU/call  p50 {rows[-1][2]:6.2f} ms  p99 {rows[-1][3]:6.2f} ms")
            finally:
                stop_gracefully(process)
        spans = len(receiver.received.spans())
    base_cpu = rows[0][1]
    lines = [
        "# Tracing cost per call",
        "",
        f"`python -m bench.tracing --calls {args.calls} --concurrency {args.concurrency}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        "The gateway (one uvicorn worker) invoking the ASGI upstream with an API key; OTLP/HTTP export to a "
        "local receiver (batch processor, default intervals).",
        "",
        "| configuration | calls | gateway CPU us/call | added us/call | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {n} | {c} | {cpu:.0f} | {cpu - base_cpu:+.0f} | {p50:.2f} | {p99:.2f} |" for n, cpu, p50, p99, c in rows),
        "",
        f"Spans received by the OTLP receiver over all runs: {spans}. "
        f"Mean CPU per call across configurations: {statistics.mean(r[1] for r in rows):.0f} us.",
    ]
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
