"""Webhook subscriptions API, the status filter and the health summary (issue 19)."""

from __future__ import annotations

from typing import Any

from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest
from tests.webhooks.conftest import subscribe
from tests.webhooks.receiver import Receiver


def test_create_list_rotate_delete(hooks: GatewayUnderTest, receiver: Receiver, keyvault_double: Any) -> None:
    with hooks.client("hook-owner") as owner, hooks.client("hook-other") as other, hooks.client(
        "hook-admin", roles=["Gateway.Admin"]
    ) as admin:
        created = subscribe(owner, receiver, ["connection.created", "connection.deleted"])
        secret = created["secret"]
        assert secret.startswith("whsec_") and created["scope"] == "owner"
        assert created["status"] == "active" and created["events"] == ["connection.created", "connection.deleted"]
        hook_id = created["id"]
        # Shown once: never in reads, never in tables; kept in the secret store.
        shown = owner.get(f"/api/webhooks/{hook_id}")
        assert shown.status_code == 200 and "secret" not in shown.json()
        listed = owner.get("/api/webhooks").json()["value"]
        assert [w["id"] for w in listed] == [hook_id] and secret not in str(listed)
        assert secret not in all_table_text(hooks.settings)
        assert any(secret in value for value in keyvault_double.raw_values())
        # Others do not see it; admins see every webhook and subscribe for all.
        assert_problem(other.get(f"/api/webhooks/{hook_id}"), 404, "webhook_not_found")
        assert_problem(other.delete(f"/api/webhooks/{hook_id}"), 404, "webhook_not_found")
        assert hook_id not in str(other.get("/api/webhooks").json())
        assert hook_id in {w["id"] for w in admin.get("/api/webhooks").json()["value"]}
        admin_hook = subscribe(admin, receiver, ["connection.deleted"])
        assert admin_hook["scope"] == "all"
        # Rotation: a new secret, shown once.
        rotated = owner.post(f"/api/webhooks/{hook_id}/rotate-secret")
        assert rotated.status_code == 200
        assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != secret
        assert owner.delete(f"/api/webhooks/{hook_id}").status_code == 204
        assert_problem(owner.get(f"/api/webhooks/{hook_id}"), 404, "webhook_not_found")
        assert not any(rotated.json()["secret"] in v for v in keyvault_double.raw_values())
        assert admin.delete(f"/api/webhooks/{admin_hook['id']}").status_code == 204


def test_bad_input_is_refused(hooks: GatewayUnderTest) -> None:
    with hooks.client("hook-bad") as client:
        cases = [
            ({"url": "ftp://127.0.0.1/x", "events": ["connection.created"]}, "url"),
            ({"url": "http://user:pw@127.0.0.1/x", "events": ["connection.created"]}, "url"),
            ({"url": "not a url", "events": ["connection.created"]}, "url"),
            ({"url": "http://127.0.0.1/x", "events": ["connection.exploded"]}, "events"),
            ({"url": "http://127.0.0.1/x", "events": []}, "events"),
        ]
        for body, field in cases:
            problem = assert_problem(client.post("/api/webhooks", json=body), 422, "validation_error")
            assert any(e["field"] == field for e in problem["errors"]), problem
        unknown_connector = client.post(
            "/api/webhooks",
            json={"url": "http://127.0.0.1/x", "events": ["connection.created"], "connectorId": "c" * 32},
        )
        assert_problem(unknown_connector, 404, "connector_not_found")
        assert client.get("/api/webhooks").json()["value"] == []


def test_status_filter_and_health_summary_need_admin(hooks: GatewayUnderTest, echo: Any) -> None:
    with hooks.client("hook-filter") as client, hooks.client("hook-boss", roles=["Gateway.Admin"]) as admin:
        connector = create_connector(client, f"{echo.url}/v1", {"type": "apiKey", "in": "header", "name": "K"})
        first = create_connection(client, connector["id"], {"api_key": "filter-key-1"})
        second = create_connection(client, connector["id"], {"api_key": "filter-key-2"})
        assert admin.post(f"/api/admin/connections/{second['id']}/disable").status_code == 200
        disabled = client.get("/api/connections", params={"status": "disabled"}).json()["value"]
        assert [c["id"] for c in disabled] == [second["id"]]
        connected = {c["id"] for c in client.get("/api/connections", params={"status": "connected"}).json()["value"]}
        assert first["id"] in connected and second["id"] not in connected
        assert_problem(client.get("/api/connections", params={"status": "sleepy"}), 422, "validation_error")
        assert_problem(client.get("/api/admin/connection-health"), 403, "admin_required")
        summary = {s["connectorId"]: s for s in admin.get("/api/admin/connection-health").json()["value"]}
        assert summary[connector["id"]]["counts"] == {"connected": 1, "disabled": 1}


def test_webhook_urls_obey_the_outbound_address_policy(hooks: GatewayUnderTest) -> None:
    """The same rules as upstreams (issue 12): metadata, private and link-local
    destinations are refused at create, before anything is stored; nothing is looked up
    or connected for an address literal."""
    with hooks.client("hook-egress") as client:
        for url in (
            "http://169.254.169.254/metadata/identity",
            "http://10.0.0.7/hook",
            "http://[fd00:ec2::254]/hook",
            "http://0x7f000001/hook",
        ):
            response = client.post("/api/webhooks", json={"url": url, "events": ["connection.created"]})
            assert response.status_code == 422, (url, response.text)
            problem = response.json()
            assert problem["code"] in ("egress_denied", "invalid_host"), problem
            assert problem["errors"][0]["field"] == "url"
        assert client.get("/api/webhooks").json()["value"] == []
