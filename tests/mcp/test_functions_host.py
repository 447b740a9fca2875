"""The MCP endpoint under the Azure Functions host (simulated as in
tests/test_function_app.py): buffered responses, one event loop the host drives per
invocation. Stateless JSON answers are what makes it work there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.helpers import create_connection, create_connector
from tests.conftest import GatewayUnderTest, settings_env
from tests.doubles.echo import header_values
from tests.test_function_app import FunctionsHost


@pytest.fixture(scope="module")
def functions_host(gateway: GatewayUnderTest) -> Iterator[FunctionsHost]:
    mp = pytest.MonkeyPatch()
    for name, value in settings_env(gateway.settings).items():
        mp.setenv(name, value)
    host = FunctionsHost()
    yield host
    if host.app.startup_task_done:
        # The lifespan's end stops the MCP server the first MCP request started.
        host.loop.run_until_complete(host.app.middleware.notify_shutdown())
        host.app.startup_task_done = False
    host.loop.close()
    mp.undo()


def rpc(host: FunctionsHost, token: str, message: dict[str, Any]) -> dict[str, Any]:
    response = host.request(
        "POST",
        "/api/mcp",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18",
        },
        body=json.dumps(message).encode(),
    )
    assert response.status_code == 200, response.get_body()
    assert response.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = json.loads(response.get_body())
    return answer


def test_mcp_under_the_functions_host(
    functions_host: FunctionsHost, gateway: GatewayUnderTest, echo: Any
) -> None:
    with gateway.client("mcp-host") as client:
        connector = create_connector(
            client, echo.url, {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        )
        create_connection(client, connector["id"], {"api_key": "host-mcp-key"})
    token = gateway.token("mcp-host")
    initialized = rpc(
        functions_host,
        token,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "host-test", "version": "0"},
            },
        },
    )
    assert initialized["result"]["serverInfo"]["name"] == "connector-gateway"
    listed = rpc(functions_host, token, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert [t["name"] for t in listed["result"]["tools"]] == ["test__http_request"]
    called = rpc(
        functions_host,
        token,
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "test__http_request", "arguments": {"path": "/via/host"}},
        },
    )
    assert called["result"]["isError"] is False
    report = json.loads(called["result"]["content"][0]["text"])
    assert report["path"] == "/via/host"
    assert header_values(report, "x-api-key") == ["host-mcp-key"]

    unauthenticated = functions_host.request("POST", "/api/mcp", body=b"{}")
    assert unauthenticated.status_code == 401
    assert "resource_metadata=" in unauthenticated.headers["www-authenticate"]
