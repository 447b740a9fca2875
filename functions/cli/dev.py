"""`python -m functions dev`: run the gateway locally (what `make run` calls).

Creates local.settings.json if missing, loads it into the environment, starts Azurite on
the ports named in GATEWAY_STORAGE_CONNECTION_STRING (unless something already listens
there), and serves the app with uvicorn. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from functions.devtools.processes import port_open, stop_process


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dev", help="run the gateway locally with Azurite")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7071")))
    parser.add_argument(
        "--settings-file",
        type=Path,
        default=None,
        help="default: local.settings.json at the repo root",
    )
    parser.set_defaults(handler=run)


def _azurite_ports(connection_string: str) -> tuple[int, int, int] | None:
    found = {}
    for service in ("Blob", "Queue", "Table"):
        match = re.search(rf"{service}Endpoint=http://127\.0\.0\.1:(\d+)/", connection_string)
        if match is None:
            return None
        found[service] = int(match.group(1))
    return found["Blob"], found["Queue"], found["Table"]


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from functions.app import create_app
    from functions.devtools.azurite import AzuritePorts, start_azurite
    from functions.devtools.localsettings import LOCAL, ensure_local_settings, load_into_environment
    from functions.webhooks.options import WorkerOptions

    settings_file: Path = args.settings_file or LOCAL
    if ensure_local_settings(settings_file):
        print(f"created {settings_file} with fresh development keys")
    values = load_into_environment(settings_file)
    os.environ.setdefault("GATEWAY_PUBLIC_BASE_URL", f"http://{args.host}:{args.port}")

    azurite = None
    ports = _azurite_ports(os.environ.get("GATEWAY_STORAGE_CONNECTION_STRING", ""))
    if ports is not None:
        if all(port_open(p) for p in ports):
            print(f"Azurite (or another storage emulator) already listens on {ports}; using it")
        else:
            data = settings_file.resolve().parent / ".localdata" / "azurite"
            azurite = start_azurite(AzuritePorts(*ports), location=data)
            print(f"Azurite started on 127.0.0.1 ports {ports} (data in .localdata/azurite)")
    tenant = values.get("GATEWAY_AUTH_TENANT_IDS", "").split(",")[0]
    print(
        f"\nConnector Gateway on http://{args.host}:{args.port}  (health: /api/health, docs: /api/docs)\n"
        "Get a development token:  .venv/bin/python -m functions token --user alice\n"
        f"(tenant {tenant}; Ctrl-C stops the gateway and Azurite)\n",
        flush=True,
    )
    try:
        # The webhook delivery loop runs in the same process (in Azure: a timer job).
        app = create_app(webhook_worker=WorkerOptions())
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        if azurite is not None:
            stop_process(azurite)
            print("Azurite stopped")
    return 0
