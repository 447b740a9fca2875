"""`GET /api/connectors/{id}/export?as=mcp`: the Copilot Studio custom connector for the
MCP endpoint, checked for Microsoft's shape and against the running endpoint."""

from __future__ import annotations

from typing import Any

from functions.powerplatform import parse_definition
from functions.settings import DEV_AUDIENCE
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.api.test_import import connect, import_folder, sample
from tests.conftest import GatewayUnderTest
from tests.mcp.test_endpoint import INITIALIZE, MCP_HEADERS


def test_copilot_studio_connector_for_one_connection(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("mcp-maker") as client:
        connector = import_folder(
            client, sample("independent-publisher-connectors/Diffchecker"), echo.url
        )
        connection = connect(
            client, connector, {"api_key": "dc-secret-key", "emailaddress": "m@x.test"}
        )
        response = client.get(
            f"/api/connectors/{connector['id']}/export",
            params={"as": "mcp", "connectionId": connection["id"], "clientId": "app-123"},
        )
        assert response.status_code == 200, response.text
        assert "dc-secret-key" not in response.text
        exported = response.json()
        swagger, properties = exported["apiDefinition"], exported["apiProperties"]
        assert swagger["swagger"] == "2.0"
        assert swagger["host"] == "gateway.example.test" and swagger["schemes"] == ["https"]
        assert swagger["basePath"] == "/api"
        path = f"/mcp/connections/{connection['id']}"
        assert list(swagger["paths"]) == [path]
        operation = swagger["paths"][path]["post"]
        assert operation["x-ms-agentic-protocol"] == "mcp-streamable-1.0"
        assert operation["operationId"] == "InvokeMCP"
        assert list(swagger["paths"][path]) == ["post"]
        assert swagger["security"] == [{"oauth2-auth": []}]
        assert swagger["securityDefinitions"]["oauth2-auth"]["type"] == "oauth2"
        token = properties["properties"]["connectionParameters"]["token"]
        assert token["type"] == "oauthSetting"
        settings = token["oAuthSettings"]
        assert settings["identityProvider"] == "aad" and settings["clientId"] == "app-123"
        assert settings["customParameters"]["resourceUri"]["value"] == DEV_AUDIENCE
        assert properties["properties"]["policyTemplateInstances"] == []

        # It imports as a Power Platform definition: one POST operation.
        parsed = parse_definition(swagger, properties)
        assert [(op.operation_id, op.method) for op in parsed.operations.values()] == [
            ("InvokeMCP", "POST")
        ]
        # And its URL is the running MCP endpoint (base path + path, on the gateway).
        answer = client.post(swagger["basePath"] + path, json=INITIALIZE, headers=MCP_HEADERS)
        assert answer.status_code == 200 and answer.json()["result"]["serverInfo"]

        # Without a connection: every connection of whoever signs in.
        whole = client.get(f"/api/connectors/{connector['id']}/export", params={"as": "mcp"})
        assert list(whole.json()["apiDefinition"]["paths"]) == ["/mcp"]


def test_export_refuses_foreign_connections_and_unknown_formats(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    with gateway.client("mcp-maker-2") as owner, gateway.client("mcp-other") as other:
        connector = create_connector(owner, echo.url)
        mine = create_connection(owner, connector["id"])
        # A native connector exports too: its tool is http_request.
        ok = owner.get(
            f"/api/connectors/{connector['id']}/export",
            params={"as": "mcp", "connectionId": mine["id"]},
        )
        assert ok.status_code == 200, ok.text
        theirs_connector = create_connector(other, echo.url)
        theirs = create_connection(other, theirs_connector["id"])
        problem = assert_problem(
            owner.get(
                f"/api/connectors/{connector['id']}/export",
                params={"as": "mcp", "connectionId": theirs["id"]},
            ),
            422,
            "validation_error",
        )
        assert problem["errors"][0]["field"] == "connectionId"
        assert_problem(
            other.get(f"/api/connectors/{connector['id']}/export", params={"as": "mcp"}),
            404,
            "connector_not_found",
        )
        bad = owner.get(f"/api/connectors/{connector['id']}/export", params={"as": "yaml"})
        assert bad.status_code in (400, 422) and "Traceback" not in bad.text
        assert bad.headers["content-type"].startswith("application/problem+json")
