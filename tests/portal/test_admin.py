"""Admins: all connections with filters, disable and enable, offboard a user."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import expect

from functions.identity.dev_issuer import object_id
from functions.settings import DEV_TENANT_ID
from tests.portal.conftest import Browsing, Portal


def connection_for(portal: Portal, user: str, name: str) -> str:
    with portal.gateway.client(user) as client:
        connector = client.post(
            "/api/connectors", json={"name": f"{name} API", "baseUrl": portal.return_origin}
        ).json()
        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": name}
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


def test_admin_filters_disables_and_offboards(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    first = connection_for(portal, "frank", "frank-conn")
    connection_for(portal, "gina", "gina-conn")
    frank = object_id(DEV_TENANT_ID, "user", "frank")
    gina = object_id(DEV_TENANT_ID, "user", "gina")

    b = browse()
    b.sign_in(admin=True)
    b.goto("/portal/admin.html")
    expect(b.page.get_by_role("button", name="Disable frank-conn")).to_be_visible()
    assert b.axe() == []
    b.screenshot("admin")

    # Filter by owner: only gina's connection remains.
    b.page.get_by_label("Owner id").fill(gina)
    b.page.get_by_role("button", name="Filter").click()
    expect(b.page.get_by_role("button", name="Disable gina-conn")).to_be_visible()
    expect(b.page.get_by_role("button", name="Disable frank-conn")).to_have_count(0)
    b.page.get_by_label("Owner id").fill("")

    # Disable frank's connection: it stops working.
    b.page.get_by_label("Owner id").fill(frank)
    b.page.get_by_role("button", name="Filter").click()
    b.page.get_by_role("button", name="Disable frank-conn").click()
    expect(b.page.get_by_role("button", name="Enable frank-conn")).to_be_visible()
    with portal.gateway.client("frank") as client:
        assert client.get(f"/api/connections/{first}").json()["status"] == "disabled"
        assert client.get(f"/api/connections/{first}/invoke/x").status_code == 403
    # The status filter finds it.
    b.page.get_by_label("Owner id").fill("")
    b.page.get_by_label("Status").select_option("disabled")
    b.page.get_by_role("button", name="Filter").click()
    expect(b.page.get_by_role("row", name=re.compile("frank-conn"))).to_contain_text("Disabled")
    expect(b.page.get_by_role("row", name=re.compile("gina-conn"))).to_have_count(0)

    # Offboard gina: her connections are disabled.
    b.page.get_by_label("Object id of the user who leaves").fill(gina)
    b.page.get_by_label("Action").select_option("disable")
    b.page.get_by_role("button", name="Offboard").click()
    expect(b.page.locator("#offboard-result")).to_contain_text("Done")
    with portal.gateway.client("gina") as client:
        assert client.get("/api/connections").json()["value"][0]["status"] == "disabled"


def test_non_admin_sees_the_refusal_in_words(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    b = browse()
    b.sign_in("bob")
    b.goto("/portal/admin.html")
    expect(b.page.locator("#error")).to_contain_text("admin_required")
    assert b.axe() == []
