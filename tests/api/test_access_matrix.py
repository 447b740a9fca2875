"""Who may do what: every principal x every action, on connectors with each sharing
setting, against the running gateway.

The connection under test belongs to `conn-owner` on a connector owned by `conn-maker`
(shared with `conn-owner` as a user). When sharing is allowed, the connection is shared
with a user, a group and an app (a Logic Apps managed identity). Each cell gets a fresh
connection, so destructive actions cannot leak into other cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from functions.identity.dev_issuer import app_id, mint_token, object_id
from functions.settings import DEV_TENANT_ID
from tests.conftest import GatewayUnderTest
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET

OTHER_TENANT = "22222222-2222-4222-8222-222222222222"
GROUP = "5a5a5a5a-0000-4000-8000-00000000g001".replace("g", "a")
APP = "logic-app-orders"

PRINCIPALS = [
    "connector_owner",
    "connection_owner",
    "grantee_user",
    "group_member",
    "granted_app",
    "other_user",
    "other_tenant_user",
    "admin",
]
ACTIONS = [
    "see_connector",
    "create_connection",
    "invoke",
    "reauthorize",
    "read_metadata",
    "change_credentials",
    "share",
    "delete",
    "read_activity",
]
GRANTEES = {"grantee_user", "group_member", "granted_app"}

# Expected when connection sharing is allowed. When it is forbidden, grantees have no
# grant (sharing fails), so they are treated like other users.
ALLOWED: dict[str, set[str]] = {
    "connector_owner": {"see_connector", "create_connection"},
    "connection_owner": set(ACTIONS),
    "grantee_user": {"invoke", "read_metadata"},
    "group_member": {"invoke", "read_metadata"},
    "granted_app": {"invoke", "read_metadata"},
    "other_user": set(),
    "other_tenant_user": set(),
    "admin": {"read_metadata", "read_activity"},
}


def token_for(gateway: GatewayUnderTest, principal: str) -> str:
    key = gateway.dev_key
    if principal == "connector_owner":
        return mint_token(key, user="conn-maker")
    if principal == "connection_owner":
        return mint_token(key, user="conn-owner")
    if principal == "grantee_user":
        return mint_token(key, user="grantee")
    if principal == "group_member":
        return mint_token(key, user="member", groups=[GROUP], version=1)
    if principal == "granted_app":
        return mint_token(key, app=APP, version=1)  # v1 app token: appid, idtyp app
    if principal == "other_user":
        return mint_token(key, user="stranger")
    if principal == "other_tenant_user":
        return mint_token(key, user="conn-owner", tenant=OTHER_TENANT)
    if principal == "admin":
        return mint_token(key, user="auditor", roles=["Gateway.Admin"])
    raise AssertionError(principal)


@dataclass
class World:
    gateway: GatewayUnderTest
    connector: dict[str, Any]
    clients: dict[str, httpx.Client]
    sharing: str

    def client(self, principal: str) -> httpx.Client:
        return self.clients[principal]

    def new_connection(self) -> dict[str, Any]:
        owner = self.client("connection_owner")
        created = owner.post(
            f"/api/connectors/{self.connector['id']}/connections", json={"displayName": "shared"}
        )
        assert created.status_code == 201, created.text
        connection = created.json()
        if self.sharing == "allowed":
            for principal in (
                {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "grantee")},
                {"type": "group", "id": GROUP},
                {"type": "app", "id": app_id(APP)},
            ):
                shared = owner.post(
                    f"/api/connections/{connection['id']}/shares", json={"principal": principal}
                )
                assert shared.status_code == 201, shared.text
                assert "credentials of its owner" in shared.json()["statement"]
        else:
            refused = owner.post(
                f"/api/connections/{connection['id']}/shares",
                json={
                    "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "grantee")}
                },
            )
            assert (
                refused.status_code == 403
                and refused.json()["code"] == "connection_sharing_not_allowed"
            )
        return connection


@pytest.fixture(scope="module", params=["allowed", "forbidden"])
def world(
    request: pytest.FixtureRequest,
    start_gateway: Callable[..., GatewayUnderTest],
    oidc_server: Any,
    echo: Any,
) -> Any:
    gateway = start_gateway(tenant_ids=(DEV_TENANT_ID, OTHER_TENANT))
    clients = {
        p: httpx.Client(
            base_url=gateway.url,
            headers={"Authorization": f"Bearer {token_for(gateway, p)}"},
            timeout=30,
            trust_env=False,
        )
        for p in PRINCIPALS
    }
    maker = clients["connector_owner"]
    auth = {
        "type": "oauth2",
        "provider": "generic-oidc",
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "settings": {"issuer": oidc_server.issuer},
        "grant": "client_credentials",
    }
    created = maker.post(
        "/api/connectors",
        json={
            "name": "Orders",
            "baseUrl": echo.url,
            "auth": auth,
            "allowConnectionSharing": request.param == "allowed",
        },
    )
    assert created.status_code == 201, created.text
    connector = created.json()
    share = maker.post(
        f"/api/connectors/{connector['id']}/shares",
        json={
            "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "conn-owner")},
            "role": "user",
        },
    )
    assert share.status_code == 201, share.text
    yield World(gateway, connector, clients, request.param)
    for client in clients.values():
        client.close()


def perform(world: World, principal: str, action: str) -> tuple[int, Callable[[], bool]]:
    """Do `action` as `principal`; return the status and a check that a denied action
    changed nothing."""
    client = world.client(principal)
    owner = world.client("connection_owner")
    cid = world.connector["id"]
    if action == "see_connector":
        status = client.get(f"/api/connectors/{cid}").status_code
        listed = (
            [c["id"] for c in client.get("/api/connectors").json().get("value", [])]
            if status != 401
            else []
        )
        assert (cid in listed) == (status == 200)
        return status, lambda: True
    if action == "create_connection":
        response = client.post(f"/api/connectors/{cid}/connections", json={"displayName": "mine"})
        return response.status_code, lambda: True
    connection = world.new_connection()
    nid = connection["id"]
    if action == "invoke":
        response = client.get(f"/api/connections/{nid}/invoke/orders")
        if response.status_code == 200:
            assert response.json()["headers"], "the echo saw the request"
        return response.status_code, lambda: True
    if action == "reauthorize":
        return client.post(f"/api/connections/{nid}/reauthorize").status_code, lambda: True
    if action == "read_metadata":
        response = client.get(f"/api/connections/{nid}")
        if response.status_code == 200:
            listed = client.get(
                "/api/connections" if principal != "admin" else "/api/admin/connections"
            ).json()["value"]
            assert nid in [c["id"] for c in listed]
        return response.status_code, lambda: True
    if action == "change_credentials":
        before = owner.get(f"/api/connections/{nid}").json()
        response = client.patch(f"/api/connections/{nid}", json={"displayName": "hijacked"})
        return (
            response.status_code,
            lambda: (
                owner.get(f"/api/connections/{nid}").json()["displayName"] == before["displayName"]
            ),
        )
    if action == "share":
        response = client.post(
            f"/api/connections/{nid}/shares",
            json={
                "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "stranger")}
            },
        )
        return response.status_code, lambda: all(
            s["principal"]["id"] != object_id(DEV_TENANT_ID, "user", "stranger")
            for s in owner.get(f"/api/connections/{nid}/shares").json()["value"]
        )
    if action == "delete":
        response = client.delete(f"/api/connections/{nid}")
        exists = owner.get(f"/api/connections/{nid}").status_code == 200
        # A caller who cannot see the connection gets the same 204 as for a missing one,
        # and nothing happens; anyone else is refused.
        if response.status_code == 204 and exists:
            return 404, lambda: True
        return response.status_code, lambda: exists
    if action == "read_activity":
        owner.get(f"/api/connections/{nid}/invoke/activity-seed")
        response = client.get(f"/api/connections/{nid}/activity")
        return response.status_code, lambda: True
    raise AssertionError(action)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("principal", PRINCIPALS)
def test_access_matrix(world: World, principal: str, action: str) -> None:
    allowed = action in ALLOWED[principal]
    if world.sharing == "forbidden" and principal in GRANTEES:
        allowed = False
    if world.sharing == "forbidden" and principal == "connection_owner" and action == "share":
        allowed = False
    status, unchanged = perform(world, principal, action)
    if allowed:
        assert 200 <= status < 300, (principal, action, status)
    else:
        assert status in (403, 404), (principal, action, status)
        assert unchanged(), (principal, action)


def test_unconfigured_tenant_is_refused(world: World) -> None:
    token = mint_token(
        world.gateway.dev_key, user="conn-owner", tenant="33333333-3333-4333-8333-333333333333"
    )
    response = httpx.get(
        f"{world.gateway.url}/api/connectors",
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    assert response.status_code == 401 and response.json()["code"] == "invalid_token"
