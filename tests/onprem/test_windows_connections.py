"""Windows-authentication connections through the real gateway: register an agent with
the CLI, create a connection (credentials sealed for the agent at once), invoke through
the gateway, and the failure modes, against the real NTLM acceptor and Azurite."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from functions.cli.gateway_agent import main as agent_cli
from functions.onprem.agent import AgentConfig
from tests.api.helpers import assert_problem, create_connector
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest
from tests.onprem.conftest import DOMAIN, USERS, AgentProcess, Gateway


def register_agent(gateway: GatewayUnderTest, tmp_path: Path, name: str) -> Gateway:
    key_file = tmp_path / name / "agent-key.pem"
    status = agent_cli(
        [
            "gateway-agent",
            "register",
            "--name",
            name,
            "--gateway",
            gateway.url,
            "--token",
            gateway.token("win-owner"),
            "--key-file",
            str(key_file),
        ]
    )
    assert status == 0
    config = AgentConfig.load(key_file.with_suffix(".json"))
    record = asyncio.run(
        gateway.state.onprem_registry.get(gateway.settings.tenant_ids[0], config.gateway_id)
    )
    assert record is not None
    return Gateway(record, key_file, config)


def wait_online(client: httpx.Client, gateway_id: str, agent: AgentProcess) -> None:
    deadline = time.monotonic() + 30
    while client.get(f"/api/gateways/{gateway_id}").json()["status"] != "online":
        assert agent.process.poll() is None and time.monotonic() < deadline, agent.output()
        time.sleep(0.2)


def test_windows_connection_end_to_end(
    gateway: GatewayUnderTest, ntlm: Any, tmp_path: Path, keyvault_double: Any, azurite: Any
) -> None:
    onprem = register_agent(gateway, tmp_path, "branch-office")
    password = USERS["alice"]
    with gateway.client("win-owner") as owner, gateway.client("win-other") as other:
        connector = create_connector(
            owner, ntlm.url + "/api", {"type": "windows", "protocol": "ntlm"}
        )
        params = {
            "gatewayId": onprem.record.id,
            "username": f"{DOMAIN}\\alice",
            "password": password,
        }
        # Offline gateway: 503 at once, not after the deadline.
        connection = owner.post(
            f"/api/connectors/{connector['id']}/connections",
            json={"displayName": "w", "parameters": params},
        ).json()
        started = time.monotonic()
        assert_problem(
            owner.get(f"/api/connections/{connection['id']}/invoke/items"), 503, "gateway_offline"
        )
        assert time.monotonic() - started < 1.0
        # Someone else's gateway cannot be used.
        problem = assert_problem(
            other.post(
                f"/api/connectors/{connector['id']}/connections",
                json={"displayName": "x", "parameters": params},
            ),
            404,
            "connector_not_found",
        )
        assert password not in json.dumps(problem)

        agent = AgentProcess(onprem, azurite.connection_string())
        try:
            wait_online(owner, onprem.record.id, agent)
            response = owner.post(
                f"/api/connections/{connection['id']}/invoke/items?x=1", content=b"payload"
            )
            assert response.status_code == 200, response.text
            report = response.json()
            assert (
                report["method"] == "POST"
                and report["path"] == "/api/items"
                and report["user"].lower().endswith("alice")
            )
            # Wrong password: 502 naming the gateway and the user, never the password.
            wrong = owner.post(
                f"/api/connectors/{connector['id']}/connections",
                json={
                    "displayName": "bad",
                    "parameters": {**params, "password": "not-" + password},
                },
            ).json()
            problem = assert_problem(
                owner.get(f"/api/connections/{wrong['id']}/invoke/items"),
                502,
                "upstream_authentication_failed",
            )
            assert "alice" in problem["detail"].lower() and onprem.record.name in problem["detail"]
            assert password not in json.dumps(problem) and "not-" + password not in json.dumps(
                problem
            )
        finally:
            agent.stop()
    # Only ciphertext is stored: no table entity and no stored secret holds the password.
    assert password not in all_table_text(gateway.settings)
    assert not any(password in value for value in keyvault_double.raw_values())
    assert any('"envelope"' in value for value in keyvault_double.raw_values())


def test_power_platform_gateway_connector_without_credentials_is_relayed(
    gateway: GatewayUnderTest, echo: Any, tmp_path: Path, azurite: Any
) -> None:
    """Connect Bridge: `gatewaySetting` + authType none. Its calls go through the agent
    (the API sits in the private network); the agent relays them without Windows auth."""
    from tests.powerplatform.samples import require_connectors_dir

    folder = require_connectors_dir() / "certified-connectors" / "Connect Bridge"
    onprem = register_agent(gateway, tmp_path, "bridge-office")
    with gateway.client("win-owner") as owner:
        files = {
            "apiDefinition": (
                "apiDefinition.swagger.json",
                (folder / "apiDefinition.swagger.json").read_bytes(),
            ),
            "apiProperties": ("apiProperties.json", (folder / "apiProperties.json").read_bytes()),
        }
        connector = owner.post(
            "/api/connectors/import", files=files, data={"baseUrl": echo.url}
        ).json()
        option = connector["definition"]["authOptions"][0]
        assert option["type"] == "none" and option["gateway"] is True
        missing = owner.post(
            f"/api/connectors/{connector['id']}/connections",
            json={"displayName": "b", "parameters": {"authType": "none"}},
        )
        assert_problem(missing, 422, "validation_error")
        connection = owner.post(
            f"/api/connectors/{connector['id']}/connections",
            json={
                "displayName": "b",
                "parameters": {"authType": "none", "gateway": onprem.record.id},
            },
        ).json()
        # Relayed: with the agent offline the call fails fast instead of going direct.
        assert_problem(
            owner.post(
                f"/api/connections/{connection['id']}/invoke/WsDriver/rest/Execute", json={}
            ),
            503,
            "gateway_offline",
        )
        agent = AgentProcess(onprem, azurite.connection_string())
        try:
            wait_online(owner, onprem.record.id, agent)
            response = owner.post(
                f"/api/connections/{connection['id']}/invoke/WsDriver/rest/Execute", json={"q": 1}
            )
            assert response.status_code == 200, response.text
            report = response.json()
            assert report["path"] == "/WsDriver/rest/Execute" and json.loads(report["body"]) == {
                "q": 1
            }
            assert not any(k.lower() == "authorization" for k, _ in report["headers"])
        finally:
            agent.stop()
