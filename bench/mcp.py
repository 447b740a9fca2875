"""`tools/list` of the largest sample definition through the MCP endpoint:
`python -m bench.mcp` writes bench/MCP.md.

Starts Azurite and the Key Vault double, runs the gateway under uvicorn (in-process
thread, as the tests do), imports Blackbaud Church Management (138 operations, 119
tools), creates a connection, then times `tools/list` over HTTP: the first page once
cold (the definition's tools generated) and every page warm, sequentially. Sizes are
the JSON-RPC response bodies. Loopback only.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from functions.app import create_app
from functions.devtools.azurite import AzuritePorts, start_azurite
from functions.devtools.processes import stop_process
from functions.identity.dev_issuer import generate_private_key_pem, mint_token
from functions.settings import DEV_AUDIENCE, DEV_TENANT_ID, Settings
from tests.doubles.keyvault import KeyVaultDouble
from tests.servers import ThreadedServer

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (
    REPO
    / "tests"
    / "fixtures"
    / "connectors"
    / "certified-connectors"
    / "Blackbaud Church Management"
)
ROUNDS = 30
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def _pages(client: httpx.Client, path: str) -> list[tuple[float, int, int]]:
    """(seconds, bytes, tools) per page of one full listing."""
    pages: list[tuple[float, int, int]] = []
    cursor: str | None = None
    while True:
        message: dict[str, object] = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        if cursor:
            message["params"] = {"cursor": cursor}
        started = time.perf_counter()
        response = client.post(path, json=message, headers=HEADERS)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        result = response.json()["result"]
        pages.append((elapsed, len(response.content), len(result["tools"])))
        cursor = result.get("nextCursor")
        if not cursor:
            return pages


def main() -> int:
    ports = AzuritePorts.free()
    azurite = start_azurite(ports)
    vault = KeyVaultDouble().start()
    key = generate_private_key_pem()
    settings = Settings(
        environment="development",
        storage_connection_string=ports.connection_string(),
        table_prefix="benchmcp" + secrets.token_hex(4),
        secret_backend="keyvault",  # noqa: S106 (the store type, not a secret)
        key_vault_url=vault.url,
        key_vault_ca_file=vault.ca_file,
        tenant_ids=(DEV_TENANT_ID,),
        audiences=(DEV_AUDIENCE,),
        dev_issuer_private_key=key,
        public_base_url="http://127.0.0.1",
    )
    server = ThreadedServer(create_app(settings)).start()
    try:
        headers = {"Authorization": f"Bearer {mint_token(key, user='bench')}"}
        with httpx.Client(
            base_url=server.url, headers=headers, timeout=60, trust_env=False
        ) as client:
            files = {
                name: (f"{name}.json", (SAMPLE / file).read_bytes())
                for name, file in (
                    ("apiDefinition", "apiDefinition.swagger.json"),
                    ("apiProperties", "apiProperties.json"),
                )
            }
            connector = client.post(
                "/api/connectors/import", files=files, data={"baseUrl": "https://x.test"}
            ).json()
            client.put(
                f"/api/connectors/{connector['id']}/oauth-client",
                json={"clientId": "c", "clientSecret": "s"},
            ).raise_for_status()
            connection = client.post(
                f"/api/connectors/{connector['id']}/connections", json={"displayName": "bb"}
            ).json()
            native = client.post(
                "/api/connectors", json={"name": "Small", "baseUrl": "https://x.test"}
            ).json()
            small = client.post(
                f"/api/connectors/{native['id']}/connections", json={"displayName": "small"}
            ).json()
            one = f"/api/mcp/connections/{connection['id']}"
            cold = _pages(client, one)
            warm_one = [_pages(client, one) for _ in range(ROUNDS)]
            warm_all = [_pages(client, "/api/mcp") for _ in range(ROUNDS)]
            baseline = [
                _pages(client, f"/api/mcp/connections/{small['id']}") for _ in range(ROUNDS)
            ]
    finally:
        server.stop()
        vault.stop()
        stop_process(azurite)

    def row(label: str, listings: list[list[tuple[float, int, int]]]) -> str:
        totals = [sum(p[0] for p in pages) * 1000 for pages in listings]
        first = [pages[0][0] * 1000 for pages in listings]
        sizes = [p[1] for p in listings[0]]
        tools = sum(p[2] for p in listings[0])
        return (
            f"| {label} | {tools} | {len(listings[0])} | {' + '.join(f'{s / 1024:.0f}' for s in sizes)} "
            f"| {statistics.median(first):.1f} | {statistics.median(totals):.1f} |"
        )

    lines = [
        "# MCP `tools/list` of the largest sample",
        "",
        f"`python -m bench.mcp`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Blackbaud Church Management (138 operations, "
        f"119 tools after internal/deprecated ones), sequential POSTs on loopback; medians of "
        f"{ROUNDS} full listings (pages of 100 tools). Azurite and the Key Vault double as storage.",
        "",
        "| endpoint | tools | pages | KiB per page | first page ms | whole listing ms |",
        "|---|---:|---:|---|---:|---:|",
        row("cold: /api/mcp/connections/{id}, first listing", [cold]),
        row("warm: /api/mcp/connections/{id}", warm_one),
        row("warm: /api/mcp (both connections)", warm_all),
        row("baseline, warm: a native connection (1 tool)", baseline),
    ]
    (REPO / "bench" / "MCP.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(json.dumps({"cold_ms": [round(p[0] * 1000, 1) for p in cold]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
