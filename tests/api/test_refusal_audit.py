"""Issue 12: an invocation refused because the connection cannot be used now (disabled
by an admin, origin changed) is in that connection's activity, once, and in the
caller's own activity once; a stranger's probe is in neither the connection's."""

from __future__ import annotations

import time
from typing import Any

import httpx

from functions.identity.dev_issuer import object_id
from functions.services.ids import new_id
from functions.settings import DEV_TENANT_ID
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest


def _wait_for(client: httpx.Client, path: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        events = [e for e in client.get(path).json()["value"] if e["action"] == "invoke"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_a_refused_invocation_is_in_the_connections_activity(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    owner, grantee, stranger = (f"{n}-{new_id()[:8]}" for n in ("owner", "grantee", "stranger"))
    with (
        gateway.client(owner) as alice,
        gateway.client(grantee) as bob,
        gateway.client(stranger) as eve,
        gateway.client("admin-" + new_id()[:8], roles=["Gateway.Admin"]) as admin,
    ):
        connector = create_connector(alice, echo.url)
        connection = create_connection(alice, connector["id"])
        cid = connection["id"]
        alice.post(
            f"/api/connections/{cid}/shares",
            json={"principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", grantee)}},
        ).raise_for_status()
        admin.post(f"/api/admin/connections/{cid}/disable").raise_for_status()
        for client in (alice, bob):
            assert_problem(
                client.get(f"/api/connections/{cid}/invoke/x"), 403, "connection_disabled"
            )
        assert_problem(eve.get(f"/api/connections/{cid}/invoke/x"), 404, "connection_not_found")

        events = _wait_for(alice, f"/api/connections/{cid}/activity", 2)
        assert len(events) == 2, events
        assert {e["principal"] for e in events} == {
            f"user:{object_id(DEV_TENANT_ID, 'user', owner)}",
            f"user:{object_id(DEV_TENANT_ID, 'user', grantee)}",
        }
        assert all(e["status"] == 403 and e["connectorId"] == connector["id"] for e in events)
        assert all(e["detail"] == "refused: connection_disabled" for e in events)
        # The grantee's own activity holds the refusal once (no duplicate).
        mine = _wait_for(bob, "/api/me/activity", 1)
        time.sleep(1.5)  # anything queued later would have been written by now
        mine = _wait_for(bob, "/api/me/activity", 1)
        assert len(mine) == 1 and mine[0]["status"] == 403
