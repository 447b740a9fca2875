"""Start and stop Azurite (the Azure Storage emulator) from node_modules, on loopback."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from functions.devtools.processes import free_port, stop_process, wait_for_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_JS = REPO_ROOT / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"

# The emulator's published development account; not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class AzuritePorts:
    blob: int
    queue: int
    table: int

    @classmethod
    def free(cls) -> AzuritePorts:
        return cls(free_port(), free_port(), free_port())

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob}/{DEV_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue}/{DEV_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table}/{DEV_ACCOUNT};"
        )


def start_azurite(
    ports: AzuritePorts, *, location: Path | None = None, timeout: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start Azurite; in memory unless `location` is given. Returns the node process."""
    if not AZURITE_JS.exists():
        raise RuntimeError(f"Azurite is not installed ({AZURITE_JS} missing); run `npm ci`")
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; Azurite needs Node.js 20")
    args = [
        node,
        str(AZURITE_JS),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(ports.blob),
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        str(ports.queue),
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(ports.table),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
    ]
    if location is None:
        args.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(location)]
    process = subprocess.Popen(  # noqa: S603 - fixed argument list
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for_ports([ports.blob, ports.queue, ports.table], timeout, process)
    except Exception:
        stop_process(process)
        raise
    return process


__all__ = ["AzuritePorts", "start_azurite", "stop_process"]
