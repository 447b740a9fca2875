"""`python -m functions dev` (what `make run` calls): settings created, Azurite started,
gateway served, everything stopped on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

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


MINIMAL_DEFINITION = {
    "apiDefinition": {
        "swagger": "2.0",
        "info": {"title": "Items", "version": "1.0"},
        "host": "api.example.com",
        "basePath": "/",
        "schemes": ["https"],
        "paths": {
            "/items": {
                "get": {"operationId": "ListItems", "responses": {"200": {"description": "ok"}}}
            }
        },
    }
}


class DevRun:
    """`python -m functions dev` in a child process, as `make run` starts it."""

    def __init__(self, tmp_path: Path, port: int, *extra: str, env: dict[str, str] | None = None):
        self.port = port
        self.settings_file = tmp_path / "local.settings.json"
        self.data_dir = tmp_path / "data"
        base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        base.pop("PORT", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions",
                "dev",
                "--port",
                str(port),
                "--settings-file",
                str(self.settings_file),
                "--data-dir",
                str(self.data_dir),
                *extra,
            ],
            cwd=REPO,
            env={**base, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.output = ""
        self.errors = ""

    def wait_serving(self, timeout: float = 90) -> DevRun:
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None:
                self.stop()
                raise AssertionError(f"dev exited early:\n{self.output}\n{self.errors}")
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
        return self

    def wait_exit(self, timeout: float = 60) -> DevRun:
        """For runs that must refuse to start: wait for the exit, no signal."""
        out, err = self.process.communicate(timeout=timeout)
        self.output, self.errors = out.decode(), err.decode()
        return self

    def stop(self) -> DevRun:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=60)
        self.output, self.errors = out.decode(), err.decode()
        return self

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "stack.json").read_text()))

    def client(self) -> httpx.Client:
        key = read_values(self.settings_file)["GATEWAY_DEV_ISSUER_PRIVATE_KEY"]
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {mint_token(key, user='alice')}"},
            trust_env=False,
            timeout=30,
        )


def azurite_ports(state: dict[str, Any]) -> list[int]:
    return [state["azurite"][k] for k in ("blob", "queue", "table")]


def test_dev_runner_serves_from_its_own_azurite_and_stops_everything(tmp_path: Path) -> None:
    """Its own Azurite on free ports (never the settings file's 10000-10002), data and
    state in the data folder, the public URL following the port, no access log, the
    banner telling what to do next; everything stopped on Ctrl-C."""
    port = free_port()
    run = DevRun(tmp_path, port).wait_serving()
    try:
        state = run.state()
        ports = azurite_ports(state)
        assert 10002 not in ports and all(port_open(p) for p in ports)
        assert state["gatewayUrl"] == f"http://127.0.0.1:{port}"
        assert state["environment"]["GATEWAY_PUBLIC_BASE_URL"] == f"http://127.0.0.1:{port}"
        with run.client() as client:
            assert client.get("/api/health").json() == {"status": "ok"}
            response = client.post(
                "/api/connectors", json={"name": "Echo", "baseUrl": "http://127.0.0.1:9000/v1"}
            )
            assert response.status_code == 201, response.text
            # Exports carry the URL this stack serves on, not the sample's 7071.
            imported = client.post("/api/connectors/import", json=MINIMAL_DEFINITION)
            assert imported.status_code == 201, imported.text
            exported = client.get(f"/api/connectors/{imported.json()['id']}/export")
            assert exported.status_code == 200, exported.text
            assert f"127.0.0.1:{port}" in exported.text and ":7071" not in exported.text
            assert client.get("/api/connectors", headers={"Authorization": ""}).status_code == 401
        # Another run of the same checkout refuses to start beside it.
        second = DevRun(tmp_path, free_port()).wait_exit()
        assert second.process.returncode == 1
        assert "another `make run` of this checkout is running" in second.errors
    finally:
        run.stop()
    text = run.output
    assert f"http://127.0.0.1:{port}" in text
    assert "python -m functions token --user alice" in text
    assert f"export GATEWAY_URL=http://127.0.0.1:{port}" in text
    assert str(run.data_dir / "azurite") in text
    assert "Azurite stopped" in text
    assert "GET /api/health" not in text + run.errors  # no access log by default
    assert (run.data_dir / "azurite").is_dir()
    assert not port_open(port)
    assert not any(port_open(p) for p in ports)


def test_dev_runner_keeps_data_and_never_uses_a_foreign_process_on_its_ports(
    tmp_path: Path,
) -> None:
    """A restart finds the data again; when the remembered ports are taken by a program
    the stack did not start, it says so on stderr, leaves it alone and moves."""
    port = free_port()
    first = DevRun(tmp_path, port).wait_serving()
    try:
        with first.client() as client:
            created = client.post(
                "/api/connectors", json={"name": "Kept", "baseUrl": "http://127.0.0.1:9000"}
            )
            assert created.status_code == 201, created.text
        remembered = azurite_ports(first.state())
    finally:
        first.stop()
    assert not any(port_open(p) for p in remembered)

    # A stranger listens on the remembered table port (as another checkout's Azurite would).
    stranger = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stranger.bind(("127.0.0.1", remembered[2]))
    stranger.listen()
    try:
        second = DevRun(tmp_path, port, "--access-log").wait_serving()
        try:
            moved = azurite_ports(second.state())
            assert moved != remembered
            with second.client() as client:
                names = [c["name"] for c in client.get("/api/connectors").json()["value"]]
                assert names == ["Kept"]
        finally:
            second.stop()
        assert "WARNING" in second.errors and str(remembered[2]) in second.errors
        assert "GET /api/connectors" in second.output + second.errors  # --access-log
        # The stranger was left alone.
        assert stranger.fileno() != -1
        probe = socket.create_connection(("127.0.0.1", remembered[2]), timeout=5)
        probe.close()
    finally:
        stranger.close()


def test_dev_runner_public_url_follows_port_unless_set(tmp_path: Path) -> None:
    from functions.cli.dev import public_base_url

    assert public_base_url(None, "http://127.0.0.1:7071", "127.0.0.1", 7481) == (
        "http://127.0.0.1:7481"
    )
    assert public_base_url(None, "http://localhost:7071", "0.0.0.0", 7481) == (  # noqa: S104
        "http://127.0.0.1:7481"
    )
    assert public_base_url(None, "https://gw.example.test", "127.0.0.1", 7481) == (
        "https://gw.example.test"
    )
    assert public_base_url("https://tunnel.example.test", None, "127.0.0.1", 7481) == (
        "https://tunnel.example.test"
    )


def test_dev_runner_refuses_a_busy_gateway_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = DevRun(tmp_path, port).wait_exit()
    assert run.process.returncode == 1
    assert f"port {port} is already in use" in run.errors and "PORT=" in run.errors
    assert not (run.data_dir / "stack.json").exists()


def test_dev_runner_uses_storage_set_in_the_environment(tmp_path: Path, azurite: Any) -> None:
    """A connection string in the environment is the user's choice: no Azurite of ours."""
    port = free_port()
    run = DevRun(
        tmp_path,
        port,
        env={
            "GATEWAY_STORAGE_CONNECTION_STRING": azurite.connection_string(),
            "GATEWAY_TABLE_PREFIX": "devenv",
        },
    ).wait_serving()
    try:
        assert "GATEWAY_STORAGE_CONNECTION_STRING" not in run.state()["environment"]
        with run.client() as client:
            assert client.get("/api/connectors").json() == {"value": []}
    finally:
        run.stop()
    assert "storage: GATEWAY_STORAGE_CONNECTION_STRING from the environment" in run.output
    assert "Azurite stopped" not in run.output
    assert not (run.data_dir / "azurite").exists()
