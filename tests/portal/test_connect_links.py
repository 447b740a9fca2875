"""Connect links: an app asks for a link; the person who opens it signs in, creates
their own connection and lands on the app's return URL with its id. Expired, reused
and tampered links give a clear page; foreign return URLs are refused."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.sync_api import expect

from functions.identity.dev_issuer import mint_token, object_id
from functions.settings import DEV_TENANT_ID
from functions.stores.connect_sessions import token_hash
from tests.api.storage_scan import all_table_text
from tests.portal.conftest import Browsing, Portal


def shared_connector(portal: Portal, owner: str, *share_with: str) -> str:
    with portal.gateway.client(owner) as client:
        created = client.post(
            "/api/connectors",
            json={
                "name": "Linked API",
                "baseUrl": portal.return_origin + "/linked",
                "auth": {"type": "apiKey", "in": "header", "name": "X-Key"},
            },
        )
        assert created.status_code == 201, created.text
        connector_id: str = created.json()["id"]
        for name in share_with:
            kind = "app" if name.startswith("app:") else "user"
            principal_id = object_id(DEV_TENANT_ID, kind, name.removeprefix("app:"))
            shared = client.post(
                f"/api/connectors/{connector_id}/shares",
                json={"principal": {"type": kind, "id": principal_id}},
            )
            assert shared.status_code == 201, shared.text
    return connector_id


def app_client(portal: Portal) -> httpx.Client:
    token = mint_token(portal.gateway.dev_key, app="crm-app")
    return httpx.Client(
        base_url=portal.url, headers={"Authorization": f"Bearer {token}"}, trust_env=False
    )


def new_session(portal: Portal, connector_id: str, **extra: Any) -> dict[str, Any]:
    with app_client(portal) as app:
        answer = app.post(
            "/api/connect-sessions",
            json={
                "connectorId": connector_id,
                "returnUrl": portal.return_origin + "/back?x=1",
                **extra,
            },
        )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_connect_link_end_to_end_and_single_use(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    connector_id = shared_connector(portal, "linkowner", "app:crm-app", "dana")
    session = new_session(portal, connector_id, displayName="CRM key")
    link: str = session["link"]
    assert link.startswith(portal.url + "/portal/connect.html#session=")
    # Only the hash is stored.
    assert session["token"] not in all_table_text(portal.gateway.settings)
    assert token_hash(session["token"]) in all_table_text(portal.gateway.settings)

    b = browse()
    b.page.goto(link)
    # Sign in first, then back to the link (the token never went into a URL query).
    b.page.wait_for_url(re.compile(r".*/portal/signin\.html$"))
    b.page.get_by_label("Or any other user name").fill("dana")
    b.page.get_by_role("button", name="Sign in", exact=True).click()
    b.page.wait_for_url(re.compile(r".*/portal/connect\.html$"))
    expect(b.page.locator("h1")).to_have_text("Connect to Linked API")
    expect(b.page.get_by_label("Connection name")).to_have_value("CRM key")
    assert b.axe() == []
    b.screenshot("connect-link")
    b.page.get_by_label("API key").fill("dana-key")
    b.page.get_by_role("button", name="Connect").click()
    b.page.wait_for_url(re.compile(re.escape(portal.return_origin) + r"/back\?.*"))
    query = parse_qs(urlsplit(b.page.url).query)
    assert query["x"] == ["1"]
    connection_id = query["connectionId"][0]
    with portal.gateway.client("dana") as dana:
        connection = dana.get(f"/api/connections/{connection_id}").json()
        assert connection["status"] == "connected" and connection["displayName"] == "CRM key"
        assert connection["owner"] == object_id(DEV_TENANT_ID, "user", "dana")

    # The same link again: a clear page.
    again = browse()
    again.sign_in("dana")
    again.page.goto(link)
    expect(again.page.locator("h1")).to_have_text("This connect link has already been used")
    expect(again.page.locator("#connect-form")).to_be_hidden()
    assert again.axe() == []


def test_expired_and_tampered_links(browse: Callable[[], Browsing], portal: Portal) -> None:
    connector_id = shared_connector(portal, "linkowner2", "app:crm-app", "erin")
    expired = new_session(portal, connector_id, expiresInSeconds=5)
    time.sleep(6)
    b = browse()
    b.sign_in("erin")
    b.page.goto(expired["link"])
    expect(b.page.locator("h1")).to_have_text("This connect link has expired")
    assert b.axe() == []
    b.screenshot("connect-link-expired")

    fresh = new_session(portal, connector_id)
    tampered = fresh["link"][:-4] + ("AAAA" if not fresh["link"].endswith("AAAA") else "BBBB")
    b.page.goto(tampered)
    expect(b.page.locator("h1")).to_have_text("This connect link is not valid")
    # A person the connector is not shared with cannot use a valid link either.
    stranger = browse()
    stranger.sign_in("stranger")
    stranger.page.goto(fresh["link"])
    expect(stranger.page.locator("#error")).to_contain_text("connector_not_found")


def test_return_urls_and_who_may_create_sessions(portal: Portal) -> None:
    connector_id = shared_connector(portal, "linkowner3", "app:crm-app")
    with app_client(portal) as app:
        for foreign in (
            "https://evil.example/back",
            portal.return_origin.replace("127.0.0.1", "localhost") + "/back",
            "javascript:alert(1)",
            portal.return_origin + "@evil.example/",
        ):
            answer = app.post(
                "/api/connect-sessions", json={"connectorId": connector_id, "returnUrl": foreign}
            )
            assert answer.status_code == 422, (foreign, answer.text)
            assert answer.json()["code"] == "validation_error"
            assert "GATEWAY_CONNECT_RETURN_ORIGINS" in answer.json()["detail"]
    # Users are not apps or admins.
    with portal.gateway.client("linkowner3") as user:
        answer = user.post(
            "/api/connect-sessions",
            json={"connectorId": connector_id, "returnUrl": portal.return_origin + "/back"},
        )
        assert answer.status_code == 403 and answer.json()["code"] == "connect_session_forbidden"
    # Tokens are checked through the API too.
    with portal.gateway.client("linkowner3") as user:
        answer = user.post("/api/connect-sessions/open", json={"token": "x" * 43})
        assert answer.status_code == 400 and answer.json()["code"] == "connect_session_invalid"


def test_a_failed_completion_gives_the_link_back(portal: Portal) -> None:
    connector_id = shared_connector(portal, "linkowner4", "app:crm-app", "hugo")
    session = new_session(portal, connector_id)
    with portal.gateway.client("hugo") as hugo:
        missing = hugo.post(
            "/api/connect-sessions/complete",
            json={"token": session["token"], "displayName": "h", "parameters": {}},
        )
        assert missing.status_code == 422 and missing.json()["code"] == "validation_error"
        assert hugo.get("/api/connections").json()["value"] == []
        done = hugo.post(
            "/api/connect-sessions/complete",
            json={"token": session["token"], "displayName": "h", "parameters": {"api_key": "k"}},
        )
        assert done.status_code == 201, done.text
        assert done.json()["redirectUrl"].startswith(
            portal.return_origin + "/back?x=1&connectionId="
        )
        again = hugo.post(
            "/api/connect-sessions/complete",
            json={"token": session["token"], "displayName": "h", "parameters": {"api_key": "k"}},
        )
        assert again.status_code == 410 and again.json()["code"] == "connect_session_used"
        assert len(hugo.get("/api/connections").json()["value"]) == 1
