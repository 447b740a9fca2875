"""The production server (`python -m functions serve`) run exactly as the container image
runs it: the Dockerfile's CMD, with settings from the environment only.

Docker is not on these machines, so the test runs the image's entry command directly;
what the image adds around it (base image, non-root user, runtime requirements only) is
checked by reading the Dockerfile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from functions.devtools.processes import free_port, port_open
from functions.settings import Settings
from tests.api.helpers import create_connection, create_connector
from tests.conftest import settings_env
from tests.servers import ThreadedServer

REPO = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    joined: list[str] = []
    for line in lines:
        if line.strip().startswith("#") or not line.strip():
            continue
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line.strip())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def entry_command() -> list[str]:
    cmd = [arg for kind, arg in dockerfile_instructions() if kind == "CMD"]
    assert len(cmd) == 1, "the Dockerfile has one CMD, in exec form"
    argv: list[str] = json.loads(cmd[0])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_dockerfile_is_slim_non_root_and_runtime_only() -> None:
    instructions = dockerfile_instructions()
    base = next(arg for kind, arg in instructions if kind == "FROM")
    assert base.startswith("python:3.11") and "slim" in base
    user = [arg for kind, arg in instructions if kind == "USER"]
    assert user and user[-1] not in ("root", "0")
    installs = " ".join(arg for kind, arg in instructions if kind == "RUN" and "pip" in arg)
    assert "requirements-serve.txt" in installs
    assert "requirements-dev" not in installs and "requirements-bench" not in installs
    copied = " ".join(arg for kind, arg in instructions if kind == "COPY")
    assert "tests" not in copied and "local.settings" not in copied
    # The image installs only what the runtime needs: serve's file adds nothing but the
    # server to requirements.txt.
    serve_reqs = [
        line.split("==")[0]
        for line in (REPO / "requirements-serve.txt").read_text().splitlines()
        if line and not line.startswith(("#", "-r"))
    ]
    assert sorted(serve_reqs) == ["httptools", "uvicorn", "uvloop"]


@pytest.fixture
def served(
    make_settings: Callable[..., Settings], echo: ThreadedServer, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(settings_env(make_settings()))
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"})
    log = (tmp_path / "serve.log").open("wb")
    # Run from an empty folder: the server must not need local.settings.json or the
    # checkout's layout beyond the package itself.
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(entry_command(), cwd=tmp_path, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}"
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(url + "/api/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()
    assert not list(tmp_path.glob("local.settings*.json")), "serve created development settings"


def test_entry_command_serves_invokes_and_stops_gracefully(
    served: tuple[str, subprocess.Popen[bytes]], dev_key: str, echo: ThreadedServer, tmp_path: Path
) -> None:
    from functions.identity.dev_issuer import mint_token

    url, process = served
    headers = {"Authorization": f"Bearer {mint_token(dev_key, user='alice')}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False) as client:
        connector = create_connector(
            client, echo.url, auth={"type": "apiKey", "in": "header", "name": "X-API-Key"}
        )
        connection = create_connection(client, connector["id"], {"api_key": "k-serve-1"})
        # Two workers share the port: many calls, every one answered with the key injected.
        for _ in range(8):
            response = client.get(f"/api/connections/{connection['id']}/invoke/items?a=1")
            assert response.status_code == 200, response.text
            received = dict((k.lower(), v) for k, v in response.json()["headers"])
            assert received["x-api-key"] == "k-serve-1"
            assert "server" not in response.headers  # no server banner
        # SIGTERM while a call is in flight: the call completes, then every worker exits 0.
        results: list[int] = []
        slow = threading.Thread(target=lambda: results.append(
            client.get(f"/api/connections/{connection['id']}/invoke/slow/1.5").status_code))
        slow.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        slow.join(30)
    assert results == [200]
    assert process.wait(30) == 0
    port = int(url.rsplit(":", 1)[1])
    assert not port_open(port)
    log = (tmp_path / "serve.log").read_text()
    assert "GET /api/health" not in log, "no access log unless --access-log"
    assert "uvloop/httptools" not in log, "serve runs on uvloop and httptools"


def test_serve_help_lists_every_option() -> None:
    out = subprocess.run([sys.executable, "-m", "functions", "serve", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    for option in ("--host", "--port", "--workers", "--access-log", "--graceful-seconds"):
        assert option in out
