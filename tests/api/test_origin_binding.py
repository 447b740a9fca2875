"""Issue 12: a connection's credentials are bound to the origin (and injection) they were
entered for. A maker who moves a shared connector elsewhere gets their own connections
along; everyone else's wait for their owner's confirmation, and nothing is sent to the
new origin until then, whatever an instance has cached."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode
from starlette.types import Receive, Scope, Send

from functions.identity.dev_issuer import object_id
from functions.services.ids import new_id
from functions.settings import DEV_TENANT_ID
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest
from tests.doubles.echo import echo_app
from tests.servers import ThreadedServer

API_KEY = {"type": "apiKey", "in": "header", "name": "X-Api-Key"}


class Recorder:
    """An upstream that answers like the echo and remembers every request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await echo_app(scope, receive, send)

    def keys(self) -> list[str]:
        return [h.get("x-api-key", "") for h in self.seen]


@pytest.fixture
def elsewhere() -> Iterator[tuple[ThreadedServer, Recorder]]:
    recorder = Recorder()
    with ThreadedServer(recorder) as server:
        yield server, recorder


def _share_connector(client: Any, connector_id: str, user: str) -> None:
    client.post(
        f"/api/connectors/{connector_id}/shares",
        json={"principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", user)}},
    ).raise_for_status()


def _move(client: Any, connector: dict[str, Any], base_url: str, **changes: Any) -> None:
    body = {"name": connector["name"], "baseUrl": base_url, "auth": connector["auth"], **changes}
    response = client.put(f"/api/connectors/{connector['id']}", json=body)
    assert response.status_code == 200, response.text


def test_moving_a_shared_connector_holds_other_users_credentials_until_they_confirm(
    gateway: GatewayUnderTest, echo: Any, elsewhere: tuple[ThreadedServer, Recorder]
) -> None:
    new_server, recorder = elsewhere
    maker, user = "maker-" + new_id()[:8], "user-" + new_id()[:8]
    user_key, maker_key = "user-key-" + new_id(), "maker-key-" + new_id()
    with gateway.client(maker) as alice, gateway.client(user) as bob:
        connector = create_connector(alice, echo.url, API_KEY)
        _share_connector(alice, connector["id"], user)
        bobs = create_connection(bob, connector["id"], {"api_key": user_key})
        alices = create_connection(alice, connector["id"], {"api_key": maker_key})
        assert bobs["boundOrigin"] == f"http://127.0.0.1:{echo.port}"
        assert bob.get(f"/api/connections/{bobs['id']}/invoke/x").status_code == 200

        _move(alice, connector, new_server.url + "/v2")

        refused = bob.get(f"/api/connections/{bobs['id']}/invoke/x")
        problem = assert_problem(refused, 409, "connection_origin_changed")
        assert problem["confirm"] == f"/api/connections/{bobs['id']}/confirm-origin"
        assert problem["currentOrigin"] == f"http://127.0.0.1:{new_server.port}"
        assert user_key not in refused.text
        state = bob.get(f"/api/connections/{bobs['id']}").json()
        assert state["status"] == "origin_changed"
        assert state["boundOrigin"] == f"http://127.0.0.1:{echo.port}"
        # The maker's own connection followed.
        assert alice.get(f"/api/connections/{alices['id']}").json()["status"] == "connected"
        assert alice.get(f"/api/connections/{alices['id']}/invoke/x").status_code == 200
        assert recorder.keys() == [maker_key]
        # The maker cannot confirm for the user.
        assert_problem(
            alice.post(f"/api/connections/{bobs['id']}/confirm-origin"),
            404,
            "connection_not_found",
        )
        # Confirming an origin the connector no longer has is refused.
        stale = bob.post(
            f"/api/connections/{bobs['id']}/confirm-origin",
            json={"origin": echo.url},
        )
        assert_problem(stale, 409, "connection_origin_changed")
        assert user_key not in "".join(recorder.keys())

        confirmed = bob.post(
            f"/api/connections/{bobs['id']}/confirm-origin", json={"origin": new_server.url}
        )
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["status"] == "connected"
        assert confirmed.json()["boundOrigin"] == f"http://127.0.0.1:{new_server.port}"
        assert bob.get(f"/api/connections/{bobs['id']}/invoke/x").status_code == 200
        assert recorder.keys() == [maker_key, user_key]
        # Both steps are in the connection's activity (audit writes within a second).
        deadline = time.monotonic() + 15
        actions: set[str] = set()
        while not {"connection.origin_changed", "connection.confirm_origin"} <= actions:
            assert time.monotonic() < deadline, actions
            time.sleep(0.2)
            activity = bob.get(f"/api/connections/{bobs['id']}/activity").json()["value"]
            actions = {event["action"] for event in activity}


def test_changing_where_the_key_is_injected_also_needs_confirmation(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    maker, user = "maker-" + new_id()[:8], "user-" + new_id()[:8]
    with gateway.client(maker) as alice, gateway.client(user) as bob:
        connector = create_connector(alice, echo.url, API_KEY)
        _share_connector(alice, connector["id"], user)
        bobs = create_connection(bob, connector["id"], {"api_key": "k-" + new_id()})
        # Same origin, but the key would now go into a query parameter (and logs).
        _move(alice, connector, echo.url, auth={"type": "apiKey", "in": "query", "name": "k"})
        assert_problem(
            bob.get(f"/api/connections/{bobs['id']}/invoke/x"), 409, "connection_origin_changed"
        )
        # A path-only change keeps the origin: no confirmation needed.
        connector = alice.get(f"/api/connectors/{connector['id']}").json()
        assert bob.post(f"/api/connections/{bobs['id']}/confirm-origin").status_code == 200
        _move(alice, connector, echo.url + "/other/path")
        assert bob.get(f"/api/connections/{bobs['id']}/invoke/x").status_code == 200
        # Changing the scheme type still refuses while connections exist.
        response = alice.put(
            f"/api/connectors/{connector['id']}",
            json={"name": "x", "baseUrl": echo.url, "auth": {"type": "basic"}},
        )
        assert_problem(response, 409, "connector_in_use")


def test_a_warm_cache_on_another_instance_never_sends_a_key_to_the_new_origin(
    start_gateway: Any, echo: Any, elsewhere: tuple[ThreadedServer, Recorder]
) -> None:
    new_server, recorder = elsewhere
    instance_a = start_gateway(metadata_cache_seconds=1.0)
    instance_b = start_gateway(
        metadata_cache_seconds=1.0, table_prefix=instance_a.settings.table_prefix
    )
    user_key = "warm-key-" + new_id()
    with instance_a.client("maker") as alice, instance_b.client("user") as bob_b:
        connector = create_connector(alice, echo.url, API_KEY)
        _share_connector(alice, connector["id"], "user")
        bobs = create_connection(bob_b, connector["id"], {"api_key": user_key})
        assert bob_b.get(f"/api/connections/{bobs['id']}/invoke/x").status_code == 200
        _move(alice, connector, new_server.url)
        moved_at = time.monotonic()
        statuses = set()
        while time.monotonic() - moved_at < 2.5:
            statuses.add(bob_b.get(f"/api/connections/{bobs['id']}/invoke/x").status_code)
            time.sleep(0.05)
        assert_problem(
            bob_b.get(f"/api/connections/{bobs['id']}/invoke/x"), 409, "connection_origin_changed"
        )
    # Cached calls may still go to the old origin (where the key was entered) within
    # the cache bound; never to the new one.
    assert statuses <= {200, 409}
    assert recorder.seen == []


def _blank_binding(gateway: GatewayUnderTest, connection_id: str) -> None:
    """Make the row look like one written before bindings were stored."""
    settings = gateway.settings
    assert settings.storage_connection_string
    service = TableServiceClient.from_connection_string(settings.storage_connection_string)
    table = service.get_table_client(f"{settings.table_prefix}connections")
    entity = table.get_entity(DEV_TENANT_ID, connection_id)
    for column in ("BoundOrigin", "BoundInjection"):
        entity.pop(column, None)
    table.update_entity(entity, mode=UpdateMode.REPLACE)
    gateway.state.connections.forget(DEV_TENANT_ID, connection_id)


def _stored_origin(gateway: GatewayUnderTest, connection_id: str) -> str | None:
    settings = gateway.settings
    assert settings.storage_connection_string
    service = TableServiceClient.from_connection_string(settings.storage_connection_string)
    table = service.get_table_client(f"{settings.table_prefix}connections")
    value = table.get_entity(DEV_TENANT_ID, connection_id).get("BoundOrigin")
    return str(value) if value else None


def test_rows_written_before_bindings_take_the_connectors_origin_at_first_read(
    gateway: GatewayUnderTest, echo: Any, elsewhere: tuple[ThreadedServer, Recorder]
) -> None:
    new_server, recorder = elsewhere
    maker, user = "maker-" + new_id()[:8], "user-" + new_id()[:8]
    with gateway.client(maker) as alice, gateway.client(user) as bob:
        connector = create_connector(alice, echo.url, API_KEY)
        _share_connector(alice, connector["id"], user)
        used = create_connection(bob, connector["id"], {"api_key": "old-row-" + new_id()})
        idle = create_connection(bob, connector["id"], {"api_key": "idle-row-" + new_id()})
        for connection in (used, idle):
            _blank_binding(gateway, connection["id"])
            assert _stored_origin(gateway, connection["id"]) is None
        # First read on the invoke path: the connector's current origin, persisted.
        assert bob.get(f"/api/connections/{used['id']}/invoke/x").status_code == 200
        assert _stored_origin(gateway, used["id"]) == f"http://127.0.0.1:{echo.port}"
        # A connector change pins the never-used row to the origin it was entered for.
        _move(alice, connector, new_server.url)
        assert _stored_origin(gateway, idle["id"]) == f"http://127.0.0.1:{echo.port}"
        for connection in (used, idle):
            assert_problem(
                bob.get(f"/api/connections/{connection['id']}/invoke/x"),
                409,
                "connection_origin_changed",
            )
    assert recorder.seen == []


def test_the_check_at_invoke_holds_even_if_the_status_was_never_updated(
    gateway: GatewayUnderTest, echo: Any, elsewhere: tuple[ThreadedServer, Recorder]
) -> None:
    """A crash between the connector write and the status updates (or a create racing
    the change) leaves a `connected` row bound elsewhere: still refused."""
    new_server, recorder = elsewhere
    with gateway.client("racer") as client:
        connector = create_connector(client, echo.url, API_KEY)
        connection = create_connection(client, connector["id"], {"api_key": "r-" + new_id()})
        settings = gateway.settings
        assert settings.storage_connection_string
        service = TableServiceClient.from_connection_string(settings.storage_connection_string)
        table = service.get_table_client(f"{settings.table_prefix}connectors")
        entity = table.get_entity(DEV_TENANT_ID, connector["id"])
        entity["BaseUrl"] = new_server.url
        table.update_entity(entity, mode=UpdateMode.REPLACE)
        gateway.state.connectors._for_invoke.clear()
        gateway.state.connections.forget(DEV_TENANT_ID, connection["id"])
        assert client.get(f"/api/connections/{connection['id']}").json()["status"] == "connected"
        assert_problem(
            client.get(f"/api/connections/{connection['id']}/invoke/x"),
            409,
            "connection_origin_changed",
        )
    assert recorder.seen == []
