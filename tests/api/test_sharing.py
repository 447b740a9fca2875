"""Sharing beyond the matrix: revocation across instances within the documented bound,
owner offboarding, Power Platform's allowSharing, the audit trail (no secrets, both
partitions), and the token shapes Logic Apps and Power Automate send."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from functions.identity.dev_issuer import app_id, mint_token, object_id
from functions.services.ids import new_id
from functions.settings import DEV_TENANT_ID
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest
from tests.powerplatform.samples import require_connectors_dir


def as_app(gateway: GatewayUnderTest, name: str, version: int = 2) -> httpx.Client:
    token = mint_token(gateway.dev_key, app=name, version=version)  # type: ignore[arg-type]
    return httpx.Client(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
        timeout=30,
    )


def test_revoked_share_stops_working_on_every_instance_within_the_cache_bound(
    start_gateway: Any, echo: Any
) -> None:
    instance_a = start_gateway(metadata_cache_seconds=1.0)
    # Same storage and vault, another process-like instance with its own caches.
    instance_b = start_gateway(
        metadata_cache_seconds=1.0, table_prefix=instance_a.settings.table_prefix
    )
    grantee = object_id(DEV_TENANT_ID, "user", "bob")
    with instance_a.client("alice") as alice, instance_b.client("bob") as bob_b:
        connector = create_connector(alice, echo.url)
        connection = create_connection(alice, connector["id"])
        alice.post(
            f"/api/connections/{connection['id']}/shares",
            json={"principal": {"type": "user", "id": grantee}},
        ).raise_for_status()
        assert (
            bob_b.get(f"/api/connections/{connection['id']}/invoke/x").status_code == 200
        )  # now cached on B
        revoked = alice.request(
            "DELETE",
            f"/api/connections/{connection['id']}/shares",
            json={"principal": {"type": "user", "id": grantee}},
        )
        assert revoked.status_code == 204
        revoked_at = time.monotonic()
        while bob_b.get(f"/api/connections/{connection['id']}/invoke/x").status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "revocation not effective within the bound"
            time.sleep(0.1)
        assert_problem(
            bob_b.get(f"/api/connections/{connection['id']}/invoke/x"), 404, "connection_not_found"
        )


def test_owner_removal_transfers_or_disables(gateway: GatewayUnderTest, echo: Any) -> None:
    leaver = object_id(DEV_TENANT_ID, "user", "leaver")
    successor = object_id(DEV_TENANT_ID, "user", "successor")
    with (
        gateway.client("leaver") as leaving,
        gateway.client("successor") as heir,
        gateway.client("grantee-2") as grantee,
        gateway.client("boss", roles=["Gateway.Admin"]) as admin,
    ):
        connector = create_connector(leaving, echo.url)
        kept = create_connection(leaving, connector["id"])
        leaving.post(
            f"/api/connections/{kept['id']}/shares",
            json={
                "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "grantee-2")}
            },
        ).raise_for_status()
        assert grantee.get(f"/api/connections/{kept['id']}/invoke/x").status_code == 200

        # Not an admin: refused.
        assert_problem(
            grantee.post(f"/api/admin/principals/{leaver}/offboard", json={"action": "disable"}),
            403,
            "admin_required",
        )
        assert_problem(
            admin.post(f"/api/admin/principals/{leaver}/offboard", json={"action": "transfer"}),
            422,
            "validation_error",
        )

        result = admin.post(
            f"/api/admin/principals/{leaver}/offboard",
            json={"action": "transfer", "newOwner": successor},
        ).json()
        assert result == {"connections": 1, "connectors": 1}
        assert heir.get(f"/api/connections/{kept['id']}").json()["owner"] == successor
        assert heir.get(f"/api/connectors/{connector['id']}").status_code == 200
        assert_problem(leaving.get(f"/api/connections/{kept['id']}"), 404, "connection_not_found")

        # Disable: the connection stays visible and stops working for everyone.
        second = create_connection(heir, connector["id"])
        heir.post(
            f"/api/connections/{second['id']}/shares",
            json={
                "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "grantee-2")}
            },
        ).raise_for_status()
        admin.post(
            f"/api/admin/principals/{successor}/offboard", json={"action": "disable"}
        ).raise_for_status()
        assert heir.get(f"/api/connections/{second['id']}").json()["status"] == "disabled"
        assert_problem(
            grantee.get(f"/api/connections/{second['id']}/invoke/x"), 403, "connection_disabled"
        )
        assert_problem(
            heir.get(f"/api/connections/{second['id']}/invoke/x"), 403, "connection_disabled"
        )
        assert (
            admin.post(f"/api/admin/connections/{second['id']}/enable").json()["status"]
            == "connected"
        )
        assert grantee.get(f"/api/connections/{second['id']}/invoke/x").status_code == 200
        # Admins see every connection, never credentials, and cannot invoke.
        listed = admin.get("/api/admin/connections").json()["value"]
        assert second["id"] in [c["id"] for c in listed]
        assert_problem(admin.get(f"/api/connections/{second['id']}/invoke/x"), 403, "not_a_grantee")


def test_owner_deleting_their_data_stops_grantees(
    gateway: GatewayUnderTest, echo: Any, keyvault_double: Any
) -> None:
    key = "me-key-" + new_id()
    with gateway.client("quitter") as quitter, gateway.client("grantee-3") as grantee:
        connector = create_connector(
            quitter, echo.url, {"type": "apiKey", "in": "header", "name": "X-Key"}
        )
        connection = create_connection(quitter, connector["id"], {"api_key": key})
        quitter.post(
            f"/api/connections/{connection['id']}/shares",
            json={
                "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "grantee-3")}
            },
        ).raise_for_status()
        assert grantee.get(f"/api/connections/{connection['id']}/invoke/x").status_code == 200
        assert quitter.delete("/api/me").json()["connections"] == 1
        assert_problem(
            grantee.get(f"/api/connections/{connection['id']}/invoke/x"),
            404,
            "connection_not_found",
        )
        assert not any(key in value for value in keyvault_double.raw_values())


def test_power_platform_allow_sharing_false_is_honoured(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    folder = require_connectors_dir() / "certified-connectors" / "Scrive eSign"
    with gateway.client("scrive-owner") as client:
        files = {
            name: (f"{name}.json", (folder / file).read_bytes())
            for name, file in (
                ("apiDefinition", "apiDefinition.swagger.json"),
                ("apiProperties", "apiProperties.json"),
            )
        }
        connector = client.post(
            "/api/connectors/import", files=files, data={"baseUrl": echo.url}
        ).json()
        connection = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={
                "displayName": "s",
                "parameterSet": "basic-auth",
                "parameters": {"username": "u@x.io", "password": "scrive-pw-2"},
            },
        ).json()
        refused = client.post(
            f"/api/connections/{connection['id']}/shares",
            json={"principal": {"type": "group", "id": "g-1"}},
        )
        assert_problem(refused, 403, "connection_sharing_not_allowed")


def test_logic_apps_and_power_automate_token_shapes(gateway: GatewayUnderTest, echo: Any) -> None:
    """A Logic Apps managed identity (app token, v1 `appid` or v2 `azp`, `idtyp: app`)
    granted by client id or object id; a Power Automate caller on behalf of a user (v1
    user token) granted by user id."""
    with gateway.client("flow-maker") as maker:
        connector = create_connector(maker, echo.url)
        connection = create_connection(maker, connector["id"])
        url = f"/api/connections/{connection['id']}/invoke/orders"
        maker.post(
            f"/api/connections/{connection['id']}/shares",
            json={"principal": {"type": "app", "id": app_id("workflow-a")}},
        ).raise_for_status()
        maker.post(
            f"/api/connections/{connection['id']}/shares",
            json={
                "principal": {"type": "app", "id": object_id(DEV_TENANT_ID, "app", "workflow-b")}
            },
        ).raise_for_status()
        maker.post(
            f"/api/connections/{connection['id']}/shares",
            json={
                "principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", "flow-user")}
            },
        ).raise_for_status()
        for version in (1, 2):
            with (
                as_app(gateway, "workflow-a", version) as app_a,
                as_app(gateway, "workflow-b", version) as app_b,
                as_app(gateway, "workflow-c", version) as app_c,
            ):
                assert app_a.get(url).status_code == 200  # granted by client id (appid / azp)
                assert app_b.get(url).status_code == 200  # granted by service principal object id
                assert_problem(app_c.get(url), 404, "connection_not_found")
            with gateway.client("flow-user", version=version) as user:
                assert user.get(url).status_code == 200


def test_audit_records_both_partitions_and_no_secrets(gateway: GatewayUnderTest, echo: Any) -> None:
    key = "audit-key-" + new_id()
    with gateway.client("audited") as owner, gateway.client("audit-grantee") as grantee:
        connector = create_connector(
            owner, echo.url, {"type": "apiKey", "in": "query", "name": "key"}
        )
        connection = create_connection(owner, connector["id"], {"api_key": key})
        cid = connection["id"]
        owner.post(
            f"/api/connections/{cid}/shares",
            json={
                "principal": {
                    "type": "user",
                    "id": object_id(DEV_TENANT_ID, "user", "audit-grantee"),
                }
            },
        ).raise_for_status()
        grantee.get(f"/api/connections/{cid}/invoke/a?x=1").raise_for_status()
        owner.post(
            f"/api/connections/{cid}/invoke/b", content=b"body-" + key.encode()
        ).raise_for_status()
        owner.request(
            "DELETE",
            f"/api/connections/{cid}/shares",
            json={
                "principal": {
                    "type": "user",
                    "id": object_id(DEV_TENANT_ID, "user", "audit-grantee"),
                }
            },
        )
        deadline = time.monotonic() + 5
        while True:
            activity = owner.get(f"/api/connections/{cid}/activity").json()["value"]
            if len(activity) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        actions = [a["action"] for a in activity]
        assert actions[:5] == ["unshare", "invoke", "invoke", "share", "connection.create"], actions
        invokes = [a for a in activity if a["action"] == "invoke"]
        assert {a["principal"] for a in invokes} == {
            f"user:{object_id(DEV_TENANT_ID, 'user', 'audited')}",
            f"user:{object_id(DEV_TENANT_ID, 'user', 'audit-grantee')}",
        }
        assert all(
            a["status"] == 200 and a["latencyMs"] >= 0 and len(a["correlationId"]) == 32
            for a in invokes
        )
        assert all(a["connectorId"] == connector["id"] for a in invokes)
        # The grantee's own history has its invocation; it cannot read the connection's.
        mine = grantee.get("/api/me/activity").json()["value"]
        assert any(a["action"] == "invoke" and a.get("connectionId") == cid for a in mine)
        assert_problem(grantee.get(f"/api/connections/{cid}/activity"), 404, "connection_not_found")
    audit_text = all_table_text(gateway.settings)
    assert key not in audit_text and "body-" not in audit_text
    assert json.dumps(activity).count(key) == 0
