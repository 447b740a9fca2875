"""`python -m functions dev` (what `make run` calls): settings created, Azurite started,
gateway served, everything stopped on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from functions.devtools.azurite import AzuritePorts
from functions.devtools.localsettings import SAMPLE, ensure_local_settings, read_values
from functions.devtools.processes import free_port, port_open
from functions.identity.dev_issuer import mint_token

REPO = Path(__file__).resolve().parents[1]


def test_ensure_local_settings_generates_keys_once(tmp_path: Path) -> None:
    target = tmp_path / "local.settings.json"
    assert ensure_local_settings(target) is True
    first = read_values(target)
    assert (
        first["GATEWAY_LOCAL_SECRET_KEY"]
        and "BEGIN PRIVATE KEY" in first["GATEWAY_DEV_ISSUER_PRIVATE_KEY"]
    )
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert ensure_local_settings(target) is False
    assert read_values(target) == first
    sample_names = set(json.loads(SAMPLE.read_text())["Values"])
    assert set(first) == sample_names


def test_dev_runner_serves_and_stops_everything(tmp_path: Path) -> None:
    ports = AzuritePorts.free()
    values = json.loads(SAMPLE.read_text())
    values["Values"]["GATEWAY_STORAGE_CONNECTION_STRING"] = ports.connection_string()
    values["Values"]["GATEWAY_LOCAL_SECRETS_DIR"] = str(tmp_path / "secrets")
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps(values))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions",
            "dev",
            "--port",
            str(port),
            "--settings-file",
            str(settings_file),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
        assert all(port_open(p) for p in (ports.blob, ports.queue, ports.table))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            assert client.get("/api/health").json() == {"status": "ok"}
            key = read_values(settings_file)["GATEWAY_DEV_ISSUER_PRIVATE_KEY"]
            token = mint_token(key, user="alice")
            response = client.post(
                "/api/connectors",
                json={"name": "Echo", "baseUrl": "http://127.0.0.1:9000/v1"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 201, response.text
            assert client.get("/api/connectors").status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    text = output.decode()
    assert f"http://127.0.0.1:{port}" in text and "python -m functions token --user alice" in text
    assert "Azurite stopped" in text
    assert not port_open(port)
    assert not any(port_open(p) for p in (ports.blob, ports.queue, ports.table))
