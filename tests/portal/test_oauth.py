"""An OAuth connection made in the browser: the portal sends the user to the node
oidc-provider (login and consent forms), the gateway's callback page brings them back
to the connection, connected; a denied consent says so and offers to try again."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
from playwright.sync_api import expect

from functions.identity.dev_issuer import mint_token, object_id
from functions.settings import DEV_TENANT_ID
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET
from tests.portal.conftest import Browsing, Portal


def create_oauth_connector(b: Browsing, portal: Portal) -> str:
    b.goto("/portal/new-connector.html")
    b.page.get_by_label("Name (required)", exact=True).fill("OIDC API")
    b.page.get_by_label("Base URL (required)").fill(portal.return_origin + "/oauth-api")
    b.page.get_by_label("Authentication").select_option("oauth2")
    b.page.get_by_label("Provider", exact=True).fill("generic-oidc")
    b.page.get_by_label("Client id").fill(CLIENT_ID)
    b.page.get_by_label("Client secret").fill(CLIENT_SECRET)
    b.page.get_by_label("Scopes (separated by spaces)").fill("openid offline_access")
    b.page.get_by_label("Provider settings (one name=value a line)").fill(
        f"issuer={portal.oidc.issuer}"
    )
    assert b.axe() == []
    b.screenshot("new-connector")
    b.page.get_by_role("button", name="Create connector").click()
    b.page.wait_for_url(re.compile(r".*/portal/connector\.html\?id=[0-9a-f]{32}$"))
    expect(b.page.locator("#oauth-current")).to_contain_text(f"Client {CLIENT_ID}; secret set")
    return b.page.url.rsplit("=", 1)[1]


def provider_pages(b: Browsing, portal: Portal, *, deny: bool = False) -> None:
    """The provider's login form, then its consent form (or Cancel)."""
    b.page.wait_for_url(re.compile(re.escape(portal.oidc.issuer) + r"/interaction/.*"))
    if b.page.locator("input[name=login]").count():
        b.page.locator("input[name=login]").fill("alice")
        b.page.locator("input[name=password]").fill("any")
        b.page.locator("button[type=submit]").click()
        b.page.wait_for_url(re.compile(re.escape(portal.oidc.issuer) + r"/interaction/.*"))
    if deny:
        b.page.get_by_role("link", name="[ Cancel ]").click()
    else:
        b.page.get_by_role("button", name="Continue").click()
    b.page.wait_for_url(re.compile(re.escape(portal.url) + r"/api/oauth/callback\?.*"))


def test_oauth_connection_with_consent_in_the_browser(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    b = browse()
    b.sign_in("oauth-olga")
    connector_id = create_oauth_connector(b, portal)

    # The form asks for a name only; Create goes to the provider.
    b.goto(f"/portal/new-connection.html?connector={connector_id}")
    expect(b.page.locator("#parameters")).to_contain_text("sign in to the service")
    b.page.get_by_label("Connection name").fill("olga oauth")
    b.page.get_by_role("button", name="Create").click()

    # First time: the user says no. The callback page says so and links back.
    provider_pages(b, portal, deny=True)
    expect(b.page.locator("h1")).to_have_text("Access not granted")
    b.page.get_by_role("link", name="Back to the connection to try again").click()
    b.page.wait_for_url(re.compile(r".*/portal/connection\.html\?id=[0-9a-f]{32}$"))
    expect(b.page.locator("#connection-status")).to_have_text("Consent required")
    assert b.axe() == []

    # Reauthorize: consent this time, and back to a connected connection.
    b.page.get_by_role("button", name="Reauthorize").click()
    provider_pages(b, portal)
    expect(b.page.locator("h1")).to_have_text("Connected")
    b.page.get_by_role("link", name="Back to the connection").click()
    expect(b.page.locator("#connection-status")).to_have_text("Connected")
    connection_id = b.page.url.rsplit("=", 1)[1]

    # The test call carries the provider's access token, not the portal's.
    b.page.get_by_label("Path").fill("/me")
    b.page.get_by_role("button", name="Send GET").click()
    expect(b.page.locator("#test-status")).to_contain_text("Status 200")
    body = b.page.locator("#test-body").text_content() or ""
    report = json.loads(body)
    bearer = [v for k, v in report["headers"] if k.lower() == "authorization"]
    assert len(bearer) == 1 and bearer[0].startswith("Bearer ")
    with portal.gateway.client("oauth-olga") as client:
        assert client.get(f"/api/connections/{connection_id}").json()["status"] == "connected"
        portal_token = client.headers["authorization"][7:]
    assert bearer[0] != f"Bearer {portal_token}" and portal_token not in body


def test_connect_link_to_an_oauth_connector_returns_after_consent(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    maker = browse()
    maker.sign_in("oauth-maker")
    connector_id = create_oauth_connector(maker, portal)

    # Rotate the OAuth client in the page: a new secret, same client id.
    maker.page.get_by_label("Client secret (a new value rotates it)").fill(CLIENT_SECRET)
    maker.page.get_by_role("button", name="Save OAuth client").click()
    expect(maker.page.locator("#status")).to_have_text("OAuth client saved.")
    # Share the connector with the app and with the person who will connect.
    for kind, name in (("app", "crm-app"), ("user", "oauth-pat")):
        maker.page.get_by_label("Share with").select_option(kind)
        maker.page.get_by_label("Object id").fill(object_id(DEV_TENANT_ID, kind, name))
        maker.page.get_by_role("button", name="Share", exact=True).click()
        expect(maker.page.locator("#shares")).to_contain_text(object_id(DEV_TENANT_ID, kind, name))

    token = mint_token(portal.gateway.dev_key, app="crm-app")
    with httpx.Client(base_url=portal.url, trust_env=False) as http:
        session = http.post(
            "/api/connect-sessions",
            json={"connectorId": connector_id, "returnUrl": portal.return_origin + "/done"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()

    b = browse()
    b.sign_in("oauth-pat")
    b.page.goto(session["link"])
    expect(b.page.locator("h1")).to_have_text("Connect to OIDC API")
    b.page.get_by_label("Connection name").fill("pat oauth")
    b.page.get_by_role("button", name="Connect").click()
    provider_pages(b, portal)
    b.page.get_by_role("link", name="Back to the connection").click()
    b.page.wait_for_url(re.compile(re.escape(portal.return_origin) + r"/done\?connectionId=.*"))
    connection_id = b.page.url.rsplit("=", 1)[1]
    with portal.gateway.client("oauth-pat") as client:
        assert client.get(f"/api/connections/{connection_id}").json()["status"] == "connected"
