"""The gateways routes in a small app, and `gateway-agent register` / `run` against them."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from functions.api.problems import install_problem_handlers
from functions.api.routes import gateways
from functions.cli.gateway_agent import main as agent_cli
from functions.identity.dev_issuer import mint_token
from functions.identity.tokens import TokenValidator
from functions.onprem.agent import AGENT_VERSION, AgentConfig
from functions.onprem.keys import generate_private_key, load_private_key, public_key_pem
from functions.onprem.registry import GatewayRegistry
from functions.settings import DEV_TENANT_ID, Settings
from tests.onprem.conftest import Gateway
from tests.servers import ThreadedServer


@pytest.fixture
def api(registry: GatewayRegistry, storage: str, dev_key: str) -> Iterator[ThreadedServer]:
    settings = Settings(
        environment="development", storage_connection_string=storage, dev_issuer_private_key=dev_key
    )
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(gateways.router)
    app.state.gateway = SimpleNamespace(
        settings=settings, tokens=TokenValidator.from_settings(settings), onprem_registry=registry
    )
    with ThreadedServer(app) as server:
        yield server


def _client(server: ThreadedServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, trust_env=False, timeout=20)


def test_routes_require_a_caller(api: ThreadedServer) -> None:
    with _client(api, None) as client:
        assert client.get("/api/gateways").status_code == 401
        response = client.post("/api/gateways", json={"name": "x", "publicKey": "y"})
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")


def test_register_validates_the_key(api: ThreadedServer, dev_key: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = public_key_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with _client(api, mint_token(dev_key, user="alice")) as client:
        for body, field in [
            ({"name": "gw", "publicKey": weak}, "publicKey"),
            ({"name": "gw", "publicKey": "not a key"}, "publicKey"),
            ({"name": " ", "publicKey": weak}, "name"),
            ({"name": "gw", "publicKey": weak, "extra": 1}, "extra"),
        ]:
            response = client.post("/api/gateways", json=body)
            assert response.status_code == 422, response.text
            problem = response.json()
            assert problem["code"] == "validation_error"
            assert [e["field"] for e in problem["errors"]] == [field]


async def test_cli_register_then_run(
    api: ThreadedServer,
    dev_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    start_agent: Any,
    registry: GatewayRegistry,
) -> None:
    token = mint_token(dev_key, user="alice")
    key_file = tmp_path / "agent" / "agent-key.pem"
    monkeypatch.setenv("AGENT_PASSPHRASE", "recovery phrase 1")
    argv = [
        "gateway-agent",
        "register",
        "--name",
        "Head office",
        "--gateway",
        api.url,
        "--token",
        token,
        "--key-file",
        str(key_file),
        "--passphrase-env",
        "AGENT_PASSPHRASE",
    ]
    status = await asyncio.to_thread(agent_cli, argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    printed = json.loads(out)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    config = AgentConfig.load(key_file.with_suffix(".json"))
    assert config.gateway_id == printed["gatewayId"] and config.tenant_id == DEV_TENANT_ID
    assert config.fingerprint == printed["fingerprint"]
    assert stat.S_IMODE(key_file.with_suffix(".json").stat().st_mode) == 0o600

    with _client(api, token) as client:
        listed = client.get("/api/gateways").json()["value"]
        assert [(g["name"], g["status"], g["lastSeen"]) for g in listed] == [
            ("Head office", "offline", None)
        ]
        assert listed[0]["relay"]["requestQueue"].endswith(f"gw-{config.gateway_id}-req")
        one = client.get(f"/api/gateways/{config.gateway_id}")
        assert one.status_code == 200 and one.json()["fingerprint"] == config.fingerprint
    with _client(api, mint_token(dev_key, user="bob")) as client:
        assert client.get("/api/gateways").json()["value"] == []
        response = client.get(f"/api/gateways/{config.gateway_id}")
        assert response.status_code == 404 and response.json()["code"] == "gateway_not_found"

    # A second registration must not replace the key.
    again = await asyncio.to_thread(agent_cli, argv)
    assert again == 1 and "exists" in capsys.readouterr().err

    record = await registry.get(DEV_TENANT_ID, config.gateway_id)
    assert record is not None
    gateway = Gateway(record, key_file, config)
    await start_agent(
        gateway,
        extra_args=("--passphrase-env", "AGENT_PASSPHRASE"),
        extra_env={"AGENT_PASSPHRASE": "recovery phrase 1"},
    )
    with _client(api, token) as client:
        listed = client.get("/api/gateways").json()["value"]
    assert listed[0]["status"] == "online" and listed[0]["version"] == AGENT_VERSION
    assert listed[0]["lastSeen"] is not None
    load_private_key(key_file, "recovery phrase 1")


def test_run_refuses_a_wrong_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions.onprem.keys import save_private_key

    key_file = tmp_path / "k.pem"
    save_private_key(generate_private_key(2048), key_file, passphrase="right")
    AgentConfig("a" * 32, "t", "n", "http://x", "", "p").save(key_file.with_suffix(".json"))
    monkeypatch.setenv("PP", "wrong")
    status = agent_cli(
        [
            "gateway-agent",
            "run",
            "--name",
            "n",
            "--key-file",
            str(key_file),
            "--passphrase-env",
            "PP",
        ]
    )
    assert status == 1 and "wrong passphrase" in capsys.readouterr().err
