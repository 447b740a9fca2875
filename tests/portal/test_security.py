"""The portal's headers, the development-only sign-in, and the Entra ID sign-in page
(production settings): MSAL starts an authorization-code flow with PKCE for the API
scope. Nothing leaves the machine: the browser's requests to Entra ID are answered by
the test."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from fastapi import FastAPI

from functions.api.problems import install_problem_handlers
from functions.identity.dev_issuer import mint_token
from functions.portal import routes as portal_routes
from functions.settings import Settings
from tests.portal.conftest import PAGES_UNDER_TEST, Browsing, Portal
from tests.servers import ThreadedServer

TENANT = "11111111-2222-4333-8444-555555555555"
PORTAL_CLIENT = "99999999-8888-4777-8666-555555555555"
API_SCOPE = "api://connector-gateway/user_impersonation"


def test_every_page_has_a_strict_policy_and_no_framing(portal: Portal) -> None:
    with httpx.Client(base_url=portal.url, trust_env=False) as http:
        for page in PAGES_UNDER_TEST:
            response = http.get(page)
            assert response.status_code == 200, page
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, page
            assert "unsafe-eval" not in csp and "default-src 'none'" in csp
            assert "frame-ancestors 'none'" in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cache-control"] == "no-store"
            # No inline script or style in the markup itself.
            assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), page
            assert "<style" not in response.text and " style=" not in response.text
        for missing in ("/portal/nope.html", "/portal/static/js/../../routes.py"):
            assert http.get(missing).status_code == 404
        asset = http.get("/portal/static/js/api.js")
        assert asset.headers["content-type"].startswith("text/javascript")
        assert asset.headers["x-content-type-options"] == "nosniff"


def settings_app(settings: Settings) -> FastAPI:
    """The portal's routes over the given settings, without the rest of the gateway
    (production settings need Entra ID and Key Vault, which tests cannot start)."""
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(portal_routes.router)
    app.state.gateway = SimpleNamespace(settings=settings)
    return app


def production(base: Settings, **overrides: Any) -> Settings:
    return replace(
        base,
        environment="production",
        dev_issuer_private_key=None,
        tenant_ids=(TENANT,),
        portal_client_id=PORTAL_CLIENT,
        portal_api_scope=API_SCOPE,
        **overrides,
    )


@pytest.fixture(scope="module")
def production_portal(portal: Portal) -> Iterator[ThreadedServer]:
    settings = production(portal.gateway.settings, public_base_url=None)
    with ThreadedServer(settings_app(settings)) as server:
        yield server


def test_dev_sign_in_mints_the_cli_principal_and_only_in_development(
    portal: Portal, production_portal: ThreadedServer
) -> None:
    with httpx.Client(base_url=portal.url, trust_env=False) as http:
        config = http.get("/portal/config.json").json()
        assert config["mode"] == "development" and "alice" in config["devUsers"]
        answer = http.post("/portal/dev-sign-in", json={"user": "alice"})
        assert answer.status_code == 200
        claims = jwt.decode(answer.json()["accessToken"], options={"verify_signature": False})
        cli = jwt.decode(
            mint_token(portal.gateway.dev_key, user="alice"), options={"verify_signature": False}
        )
        assert (claims["oid"], claims["tid"], claims["name"]) == (cli["oid"], cli["tid"], "alice")
        assert "roles" not in claims
        admin = http.post("/portal/dev-sign-in", json={"user": "admin", "admin": True}).json()
        roles = jwt.decode(admin["accessToken"], options={"verify_signature": False})["roles"]
        assert roles == [portal.gateway.settings.admin_role]
        # Other sites cannot mint tokens through a visitor's browser.
        foreign = http.post(
            "/portal/dev-sign-in", json={"user": "alice"}, headers={"Origin": "https://evil.test"}
        )
        assert foreign.status_code == 404
        bad = http.post("/portal/dev-sign-in", json={"user": "<x>"})
        assert bad.status_code == 422
    with httpx.Client(base_url=production_portal.url, trust_env=False) as http:
        absent = http.post("/portal/dev-sign-in", json={"user": "alice"})
        assert absent.status_code == 404 and absent.json()["code"] == "not_found"
        assert "accessToken" not in absent.text
        config = http.get("/portal/config.json").json()
        assert config == {
            "mode": "entra",
            "clientId": PORTAL_CLIENT,
            "authority": f"https://login.microsoftonline.com/{TENANT}",
            "scopes": [API_SCOPE],
            "redirectUri": f"{production_portal.url}/portal/signin.html",
        }
        csp = http.get("/portal/signin.html").headers["content-security-policy"]
        assert "connect-src 'self' https://login.microsoftonline.com" in csp


def test_connect_page_may_be_framed_only_by_the_configured_origins(portal: Portal) -> None:
    settings = replace(portal.gateway.settings, connect_frame_ancestors=("https://app.example",))
    with ThreadedServer(settings_app(settings)) as server, httpx.Client(trust_env=False) as http:
        connect = http.get(f"{server.url}/portal/connect.html")
        assert "frame-ancestors https://app.example" in connect.headers["content-security-policy"]
        assert "x-frame-options" not in connect.headers
        other = http.get(f"{server.url}/portal/index.html")
        assert "frame-ancestors 'none'" in other.headers["content-security-policy"]
        assert other.headers["x-frame-options"] == "DENY"


def entra_answer(route: Any, seen: list[str]) -> None:
    """Stand-in for login.microsoftonline.com: discovery documents, and a page for the
    authorize request (recorded)."""
    url = route.request.url
    seen.append(url)
    base = f"https://login.microsoftonline.com/{TENANT}"
    if "openid-configuration" in url:
        body = {
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "issuer": f"https://login.microsoftonline.com/{TENANT}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
    elif "discovery/instance" in url:
        body = {
            "tenant_discovery_endpoint": f"{base}/v2.0/.well-known/openid-configuration",
            "metadata": [
                {
                    "preferred_network": "login.microsoftonline.com",
                    "preferred_cache": "login.windows.net",
                    "aliases": ["login.microsoftonline.com", "login.windows.net"],
                }
            ],
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
    else:
        route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>x</title>")


def test_entra_sign_in_uses_authorization_code_with_pkce(
    browse: Callable[[], Browsing], production_portal: ThreadedServer
) -> None:
    b = browse()
    b.base_url = production_portal.url
    seen: list[str] = []
    b.page.route("https://login.microsoftonline.com/**", lambda r: entra_answer(r, seen))
    b.goto("/portal/signin.html")
    button = b.page.get_by_role("button", name="Sign in with Microsoft")
    button.wait_for()
    assert b.axe() == []
    button.click()
    b.page.wait_for_url(re.compile(r"https://login\.microsoftonline\.com/.*/authorize\?.*"))
    query = {k: v[0] for k, v in parse_qs(urlsplit(b.page.url).query).items()}
    assert urlsplit(b.page.url).path == f"/{TENANT}/oauth2/v2.0/authorize"
    assert query["client_id"] == PORTAL_CLIENT
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == f"{production_portal.url}/portal/signin.html"
    assert API_SCOPE in query["scope"].split(" ")
    assert not [e for e in b.console_errors if "Content Security Policy" in e]
