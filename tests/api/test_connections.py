"""Connections: credentials only in the secret store, never returned; crash-safe delete."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from functions.domain.models import Connection, ConnectionStatus
from functions.services.connections import secret_name_for
from functions.services.ids import new_id
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest


def test_api_key_connection_lifecycle(
    gateway: GatewayUnderTest, keyvault_double: Any, echo: Any
) -> None:
    key = "sk-live-" + new_id()
    with gateway.client("conn-owner") as client:
        connector = create_connector(
            client, echo.url, {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        )
        connection = create_connection(client, connector["id"], {"api_key": key})
        assert connection["status"] == "connected"
        assert connection["parametersSet"] == ["api_key"]
        assert connection["connectorId"] == connector["id"]
        assert key not in json.dumps(connection)

        fetched = client.get(f"/api/connections/{connection['id']}")
        assert fetched.status_code == 200 and key not in fetched.text
        listed = client.get("/api/connections")
        assert [c["id"] for c in listed.json()["value"]] == [connection["id"]]
        assert key not in listed.text

        # The credential is in the vault, under the connection's secret, and in no table.
        assert any(key in value for value in keyvault_double.raw_values())
        tables = all_table_text(gateway.settings)
        assert connection["id"] in tables and key not in tables
        assert secret_name_for(connection["id"]) in tables

        assert client.delete(f"/api/connections/{connection['id']}").status_code == 204
        assert not any(key in value for value in keyvault_double.raw_values())
        # Gone everywhere but the (append-only) audit trail.
        assert connection["id"] not in all_table_text(gateway.settings, exclude=("audit",))
        assert_problem(
            client.get(f"/api/connections/{connection['id']}"), 404, "connection_not_found"
        )
        # Idempotent: deleting again (or something missing) succeeds.
        assert client.delete(f"/api/connections/{connection['id']}").status_code == 204


def test_basic_connection_keeps_username_and_password_secret(
    gateway: GatewayUnderTest, keyvault_double: Any, echo: Any
) -> None:
    with gateway.client("basic-owner") as client:
        connector = create_connector(client, echo.url, {"type": "basic"})
        connection = create_connection(
            client, connector["id"], {"username": "svc-user-x1", "password": "pw-" + new_id()}
        )
        assert connection["parametersSet"] == ["password", "username"]
        assert "svc-user-x1" not in all_table_text(gateway.settings)


@pytest.mark.parametrize(
    ("auth", "parameters", "field", "message"),
    [
        ({"type": "apiKey", "in": "query", "name": "key"}, {}, "parameters.api_key", "required"),
        (
            {"type": "apiKey", "in": "query", "name": "key"},
            {"api_key": 42},
            "parameters.api_key",
            "must be a string",
        ),
        (
            {"type": "apiKey", "in": "query", "name": "key"},
            {"api_key": ""},
            "parameters.api_key",
            "must not be empty",
        ),
        ({"type": "basic"}, {"username": "u"}, "parameters.password", "required"),
        (
            {"type": "basic"},
            {"username": "u", "password": "p", "token": "t"},
            "parameters.token",
            "unknown parameter",
        ),
        ({"type": "none"}, {"x": "y"}, "parameters.x", "unknown parameter"),
    ],
)
def test_bad_parameters_store_nothing(
    gateway: GatewayUnderTest,
    keyvault_double: Any,
    auth: dict[str, Any],
    parameters: dict[str, Any],
    field: str,
    message: str,
) -> None:
    with gateway.client("param-user") as client:
        connector = create_connector(client, "http://127.0.0.1:9", auth)
        puts_before = keyvault_double.count(method="PUT")
        response = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={"displayName": "d", "parameters": parameters},
        )
        problem = assert_problem(response, 422, "validation_error")
        assert any(e["field"] == field and message in e["message"] for e in problem["errors"]), (
            problem
        )
        assert keyvault_double.count(method="PUT") == puts_before
        assert client.get("/api/connections").json()["value"] == []
        client.delete(f"/api/connectors/{connector['id']}")


def test_bad_connection_bodies(gateway: GatewayUnderTest) -> None:
    with gateway.client("param-user-2") as client:
        connector = create_connector(client, "http://127.0.0.1:9")
        url = f"/api/connectors/{connector['id']}/connections"
        assert_problem(client.post(url, json={"parameters": {}}), 422, "validation_error")
        assert_problem(
            client.post(url, json={"displayName": "x", "parameters": []}), 422, "validation_error"
        )
        assert_problem(
            client.post(url, content=b"{", headers={"content-type": "application/json"}),
            400,
            "invalid_json",
        )
        assert_problem(
            client.post(f"/api/connectors/{'0' * 32}/connections", json={"displayName": "x"}),
            404,
            "connector_not_found",
        )


def test_other_users_cannot_see_or_delete_a_connection(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    with gateway.client("conn-owner-2") as owner, gateway.client("conn-stranger") as stranger:
        connector = create_connector(owner, echo.url)
        connection = create_connection(owner, connector["id"])
        assert_problem(
            stranger.get(f"/api/connections/{connection['id']}"), 404, "connection_not_found"
        )
        assert stranger.get("/api/connections").json()["value"] == []
        # A stranger's delete answers like deleting nothing, and deletes nothing.
        assert stranger.delete(f"/api/connections/{connection['id']}").status_code == 204
        assert owner.get(f"/api/connections/{connection['id']}").status_code == 200
        # Nor can they create connections on someone else's connector.
        assert_problem(
            stranger.post(
                f"/api/connectors/{connector['id']}/connections", json={"displayName": "x"}
            ),
            404,
            "connector_not_found",
        )


def test_interrupted_create_and_delete_are_unusable_and_cleaned_up(
    gateway: GatewayUnderTest, keyvault_double: Any, echo: Any
) -> None:
    """Simulate crashes between the two steps by writing the intermediate states directly."""
    state = gateway.state
    with gateway.client("crash-owner") as client:
        connector = create_connector(
            client, echo.url, {"type": "apiKey", "in": "header", "name": "X-Key"}
        )
        principal_oid = client.get(f"/api/connectors/{connector['id']}").json()["owner"]
        tenant = gateway.settings.tenant_ids[0]

        async def leave_half_done(status: ConnectionStatus, write_secret: bool) -> Connection:
            cid = new_id()
            connection = Connection(
                id=cid,
                tenant_id=tenant,
                connector_id=connector["id"],
                owner_id=principal_oid,
                display_name="half",
                status=status,
                secret_name=secret_name_for(cid),
                parameters_set=("api_key",),
            )
            if write_secret:
                connection.secret_version = await state.secrets.set_secret(
                    connection.secret_name,
                    json.dumps({"format": 1, "parameters": {"api_key": "half-done-key-" + cid}}),
                )
            return await state.metadata.insert_connection(connection)

        pending = asyncio.run(leave_half_done(ConnectionStatus.PENDING, write_secret=True))
        deleting = asyncio.run(leave_half_done(ConnectionStatus.DELETING, write_secret=True))
        for half in (pending, deleting):
            # Never visible, never usable.
            assert_problem(client.get(f"/api/connections/{half.id}"), 404, "connection_not_found")
            assert_problem(
                client.get(f"/api/connections/{half.id}/invoke/x"), 404, "connection_not_found"
            )
        assert all(
            c["id"] not in (pending.id, deleting.id)
            for c in client.get("/api/connections").json()["value"]
        )

        # A repeated delete finishes the interrupted one.
        assert client.delete(f"/api/connections/{deleting.id}").status_code == 204
        assert not any(deleting.id in v for v in keyvault_double.raw_values())

        # Cleanup removes stale pending rows and their secrets.
        from datetime import UTC, datetime, timedelta

        removed = asyncio.run(state.connections.cleanup(now=datetime.now(UTC) + timedelta(hours=1)))
        assert removed >= 1
        assert not any(pending.id in v for v in keyvault_double.raw_values())
        assert pending.id not in all_table_text(gateway.settings, exclude=("audit",))
