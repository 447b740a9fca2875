"""A maker creates a native API-key connector in the portal; users create connections
through the generated form, make a test call the echo upstream records, share, revoke,
read the activity and delete."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from playwright.sync_api import expect

from functions.identity.dev_issuer import object_id
from functions.settings import DEV_TENANT_ID
from tests.portal.conftest import Browsing, Portal

KEY = "s3cr3t-portal-key"


def create_api_key_connector(b: Browsing, base_url: str, name: str = "Echo API") -> str:
    b.goto("/portal/new-connector.html")
    b.page.get_by_label("Name (required)", exact=True).fill(name)
    b.page.get_by_label("Base URL (required)").fill(base_url)
    b.page.get_by_label("Authentication").select_option("apiKey")
    b.page.get_by_label("Header or query parameter name").fill("X-API-Key")
    b.page.get_by_role("button", name="Create connector").click()
    b.page.wait_for_url(re.compile(r".*/portal/connector\.html\?id=[0-9a-f]{32}$"))
    expect(b.page.locator("h1")).to_have_text(name)
    return b.page.url.rsplit("=", 1)[1]


def create_connection(b: Browsing, connector_id: str, name: str, key: str) -> str:
    b.goto(f"/portal/new-connection.html?connector={connector_id}")
    b.page.get_by_label("Connection name").fill(name)
    key_field = b.page.get_by_label("API key")
    # securestring fields are masked
    expect(key_field).to_have_attribute("type", "password")
    key_field.fill(key)
    b.page.get_by_role("button", name="Create").click()
    b.page.wait_for_url(re.compile(r".*/portal/connection\.html\?id=[0-9a-f]{32}&created=1$"))
    expect(b.page.locator("#connection-status")).to_have_text("Connected")
    return b.page.url.split("id=", 1)[1].split("&", 1)[0]


def test_api_key_connection_test_call_sharing_activity_delete(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    alice = browse()
    alice.sign_in("alice")
    connector_id = create_api_key_connector(alice, portal.return_origin + "/v1")
    alice.screenshot("connector")
    assert alice.axe() == []
    alice.goto(f"/portal/new-connection.html?connector={connector_id}")
    expect(alice.page.get_by_label("API key")).to_be_visible()
    assert alice.axe() == []
    alice.screenshot("new-connection")
    connection_id = create_connection(alice, connector_id, "my echo", KEY)

    # The test call: the echo upstream reports what it received.
    alice.page.get_by_label("Path").fill("/items/7?x=1")
    alice.page.get_by_role("button", name="Send GET").click()
    expect(alice.page.locator("#test-status")).to_contain_text("Status 200")
    report = json.loads(alice.page.locator("#test-body").text_content() or "")
    assert report["path"] == "/v1/items/7" and report["query"] == "x=1"
    headers = {name.lower(): value for name, value in report["headers"]}
    assert headers["x-api-key"] == KEY
    assert "authorization" not in headers  # the portal's bearer token stays at the gateway
    # The key is never shown back in the page.
    alice.page.get_by_label("Path").fill("/")
    assert KEY not in alice.page.locator("#details").inner_text()
    assert alice.axe() == []
    alice.screenshot("connection")

    # Sharing shows the explicit statement, then the grant; the grantee can call.
    statement = alice.page.locator("#share-statement")
    expect(statement).to_contain_text("with your credentials")
    bob_id = object_id(DEV_TENANT_ID, "user", "bob")
    alice.page.get_by_label("Object id").fill(bob_id)
    alice.page.get_by_role("button", name="Share", exact=True).click()
    expect(alice.page.locator("#share-answer")).to_contain_text("credentials of its owner")
    expect(alice.page.get_by_role("button", name=f"Revoke user {bob_id}")).to_be_visible()
    with portal.gateway.client("bob") as bob:
        assert bob.get(f"/api/connections/{connection_id}/invoke/x").status_code == 200

    # Revoking takes it away.
    alice.page.get_by_role("button", name=f"Revoke user {bob_id}").click()
    expect(alice.page.locator("#shares")).to_contain_text("Not shared with anyone")
    with portal.gateway.client("bob") as bob:
        assert bob.get(f"/api/connections/{connection_id}/invoke/x").status_code == 404

    # Activity: the test call and bob's call, once the audit batch is written.
    for _ in range(30):
        alice.page.get_by_role("button", name="Refresh activity").click()
        if alice.page.locator("#activity table").count():
            break
        alice.page.wait_for_timeout(1000)
    expect(alice.page.locator("#activity table")).to_contain_text("invoke")

    # The list shows the connection with its status.
    alice.goto("/portal/")
    row = alice.page.get_by_role("row", name=re.compile("my echo"))
    expect(row).to_contain_text("Connected")
    assert alice.axe() == []
    alice.screenshot("connections")

    # Delete asks first.
    alice.goto(f"/portal/connection.html?id={connection_id}")
    alice.page.get_by_role("button", name="Delete this connection").click()
    expect(alice.page.get_by_role("group")).to_contain_text("Delete this connection?")
    alice.page.get_by_role("button", name="Yes, delete").click()
    alice.page.wait_for_url(re.compile(r".*/portal/$"))
    with portal.gateway.client("alice") as client:
        assert client.get(f"/api/connections/{connection_id}").status_code == 404
    assert not [e for e in alice.console_errors if "Content Security Policy" in e]


def test_bad_key_is_reported_in_words(browse: Callable[[], Browsing], portal: Portal) -> None:
    b = browse()
    b.sign_in("carol")
    connector_id = create_api_key_connector(b, portal.return_origin, "Empty key API")
    b.goto(f"/portal/new-connection.html?connector={connector_id}")
    b.page.get_by_label("Connection name").fill("no key")
    # The browser's own required check is bypassed to see the gateway's answer.
    b.page.locator("#connection-form").evaluate("form => form.noValidate = true")
    b.page.get_by_role("button", name="Create").click()
    expect(b.page.locator("#error")).to_contain_text("parameters.api_key")
    expect(b.page.locator("#error")).to_contain_text("validation_error")


def test_native_connector_form_covers_every_auth_type(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    b = browse()
    b.sign_in("maker-max")
    expected = {"none": {"type": "none"}, "basic": {"type": "basic"}}
    for auth in ("none", "basic", "windows"):
        b.goto("/portal/new-connector.html")
        b.page.get_by_label("Name (required)", exact=True).fill(f"{auth} API")
        b.page.get_by_label("Base URL (required)").fill(portal.return_origin)
        b.page.get_by_label("Authentication").select_option(auth)
        if auth == "windows":
            b.page.get_by_label("Protocol").select_option("ntlm")
        b.page.get_by_role("button", name="Create connector").click()
        b.page.wait_for_url(re.compile(r".*/portal/connector\.html\?id=[0-9a-f]{32}$"))
        connector_id = b.page.url.rsplit("=", 1)[1]
        with portal.gateway.client("maker-max") as client:
            stored = client.get(f"/api/connectors/{connector_id}").json()["auth"]
        assert stored == expected.get(auth, {"type": "windows", "protocol": "ntlm"})
        # Their connection forms ask for what each needs.
        b.goto(f"/portal/new-connection.html?connector={connector_id}")
        expect(b.page.locator("h1")).to_have_text(f"New connection to {auth} API")
        b.page.wait_for_load_state("networkidle")
        labels = " ".join(b.page.locator("#parameters label").all_inner_texts())
        if auth == "none":
            assert labels == ""
        else:
            assert "User name" in labels and "Password" in labels
            expect(b.page.get_by_label("Password")).to_have_attribute("type", "password")
        if auth == "windows":
            assert "On-premises data gateway" in labels
