"""Power Platform's generic OAuth 2 identity provider (`oauth2generic`) end to end: a
definition pair whose consent URL, code exchange and refresh are templates, imported
unchanged, against node oidc-provider (PKCE required, refresh-token rotation).

The connector's OAuth client id is deliberately one the provider does not know: only
requests built from the definition's templates (which name the client through the
`IdpClientId` connection parameter) can succeed, so a passing consent and refresh prove
the templates were used, not RFC 6749 defaults."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.api.helpers import assert_problem
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest
from tests.doubles.echo import header_values
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, GATEWAY_REDIRECT_URI

UNKNOWN_CLIENT = "pp-connector-client"  # the connector's client: unknown to the provider


def string_parameter(display: str, kind: str = "string") -> dict[str, Any]:
    return {
        "type": kind,
        "uiDefinition": {"displayName": display, "constraints": {"required": "true"}},
    }


def definition_pair(body_secret: str = "{ClientSecret}") -> dict[str, Any]:
    """A minimal Power Platform definition pair using oauth2generic templates, shaped
    like the certified BiG EVAL connector (URLs and client from connection parameters)."""
    api_definition = {
        "swagger": "2.0",
        "info": {"title": "Generic OAuth API", "version": "1.0"},
        "host": "api.example.com",
        "basePath": "/",
        "schemes": ["https"],
        "securityDefinitions": {
            "oauth2-auth": {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": "https://login.example.com/authorize",
                "tokenUrl": "https://login.example.com/token",
                "scopes": {},
            }
        },
        "security": [{"oauth2-auth": []}],
        "paths": {
            "/me": {"get": {"operationId": "GetMe", "responses": {"200": {"description": "ok"}}}}
        },
    }
    custom = {
        "authorizationUrlTemplate": "{IdpUrl}/auth",
        "authorizationUrlQueryStringTemplate": (
            "?response_type=code&client_id={IdpClientId}&redirect_uri={RedirectUrl}"
            "&scope={Scopes}&state={State}"
        ),
        "tokenUrlTemplate": "{IdpUrl}/token",
        "refreshUrlTemplate": "{IdpUrl}/token",
        "tokenBodyTemplate": (
            "grant_type=authorization_code&code={Code}&redirect_uri={RedirectUrl}"
            f"&client_id={{IdpClientId}}&client_secret={body_secret}"
        ),
        "refreshBodyTemplate": (
            "grant_type=refresh_token&refresh_token={RefreshToken}&client_id={IdpClientId}"
            f"&client_secret={body_secret}&redirect_uri={{RedirectUrl}}"
        ),
        "scopeListDelimiter": " ",
    }
    parameters: dict[str, Any] = {
        "token": {
            "type": "oauthSetting",
            "oAuthSettings": {
                "identityProvider": "oauth2generic",
                "clientId": "dummy",
                "scopes": ["openid", "offline_access"],
                "redirectMode": "Global",
                "redirectUrl": "https://global.consent.azure-apim.net/redirect",
                "properties": {"IsFirstParty": "False"},
                "customParameters": {k: {"value": v} for k, v in custom.items()},
            },
        },
        "token:IdpUrl": string_parameter("Identity provider URL"),
        "token:IdpClientId": string_parameter("Client ID"),
    }
    if body_secret != "{ClientSecret}":
        parameters["token:" + body_secret.strip("{}")] = string_parameter(
            "Client secret", "securestring"
        )
    return {
        "apiDefinition": api_definition,
        "apiProperties": {"properties": {"connectionParameters": parameters}},
    }


def import_generic(
    client: httpx.Client, echo: Any, body_secret: str = "{ClientSecret}"
) -> dict[str, Any]:
    response = client.post(
        "/api/connectors/import", json={**definition_pair(body_secret), "baseUrl": echo.url}
    )
    assert response.status_code == 201, response.text
    connector = response.json()
    configured = client.put(
        f"/api/connectors/{connector['id']}/oauth-client",
        json={"clientId": UNKNOWN_CLIENT, "clientSecret": CLIENT_SECRET},
    )
    assert configured.status_code == 200, configured.text
    return connector


def bearer(report: dict[str, Any]) -> str:
    values = header_values(report, "authorization")
    assert len(values) == 1 and values[0].startswith("Bearer "), values
    return values[0][7:]


def test_oauth2generic_consent_invoke_and_templated_refresh(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, keyvault_double: Any
) -> None:
    oidc.configure(accessTokenTtl=5)  # due for refresh 2.5 s after issue (half its lifetime)
    with gateway.client("oauth-generic") as client:
        connector = import_generic(client, echo)
        created = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={
                "displayName": "generic",
                "parameters": {"token:IdpUrl": oidc.issuer, "token:IdpClientId": CLIENT_ID},
            },
        )
        assert created.status_code == 201, created.text
        connection = created.json()
        assert connection["status"] == "consent_required"

        # The consent URL is the rendered template, plus our PKCE challenge.
        consent_url = connection["consentUrl"]
        assert consent_url.startswith(
            f"{oidc.authorization_url}?response_type=code&client_id={CLIENT_ID}&"
        )
        query = parse_qs(urlsplit(consent_url).query)
        assert query["client_id"] == [CLIENT_ID] and query["redirect_uri"] == [GATEWAY_REDIRECT_URI]
        assert query["scope"] == ["openid offline_access"]
        assert len(query["state"][0]) >= 32
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert CLIENT_SECRET not in consent_url

        result = oidc.authorize(consent_url, redirect_uri=GATEWAY_REDIRECT_URI)
        assert result.code and result.state == query["state"][0]
        with gateway.client(user=None) as anonymous:
            page = anonymous.get("/api/oauth/callback", params=result.params)
            assert page.status_code == 200 and 'data-outcome="connected"' in page.text, page.text
            # Single use, as for every provider.
            assert anonymous.get("/api/oauth/callback", params=result.params).status_code == 400
        # The exchange was the token body template: the connector's own client id is
        # unknown to the provider, so an RFC 6749 default request would have failed.
        assert oidc.token_requests("authorization_code", 200) == 1
        assert oidc.token_requests("authorization_code") == 1

        cid = connection["id"]
        assert client.get(f"/api/connections/{cid}").json()["status"] == "connected"
        first = bearer(client.get(f"/api/connections/{cid}/invoke/me").json())
        assert any(first in value for value in keyvault_double.raw_values())
        assert first not in all_table_text(gateway.settings)

        # Expire the token: the next invocation refreshes through the refresh body template.
        refreshes = oidc.token_requests("refresh_token", 200)
        time.sleep(2.5)
        second = bearer(client.get(f"/api/connections/{cid}/invoke/me").json())
        assert second != first
        assert oidc.token_requests("refresh_token", 200) == refreshes + 1
        assert oidc.token_requests("refresh_token") == refreshes + 1  # no failed attempt
        oidc.configure(accessTokenTtl=3600)
        # The rotated refresh token and the redirect URI stay in the vault for the next one.
        payloads = [json.loads(v) for v in keyvault_double.raw_values() if '"oauth"' in v]
        latest = [p["oauth"] for p in payloads if p["oauth"].get("access_token") == second]
        assert (
            latest
            and latest[0]["refresh_token"]
            and latest[0]["redirect_uri"] == GATEWAY_REDIRECT_URI
        )
        assert CLIENT_SECRET not in client.get(f"/api/connections/{cid}").text
        assert CLIENT_SECRET not in client.get(f"/api/connectors/{connector['id']}").text


def test_oauth2generic_template_needing_an_unknown_value_is_refused_at_creation(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    """A body template naming a placeholder nothing fills fails when the connection is
    created (naming it), not after the user consented."""
    with gateway.client("oauth-generic-missing") as client:
        pair = definition_pair()
        custom = pair["apiProperties"]["properties"]["connectionParameters"]["token"][
            "oAuthSettings"
        ]["customParameters"]
        custom["tokenBodyTemplate"]["value"] += "&audience={Audience}"
        response = client.post("/api/connectors/import", json={**pair, "baseUrl": echo.url})
        assert response.status_code == 201, response.text
        connector = response.json()
        client.put(
            f"/api/connectors/{connector['id']}/oauth-client",
            json={"clientId": UNKNOWN_CLIENT, "clientSecret": CLIENT_SECRET},
        ).raise_for_status()
        created = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={
                "displayName": "x",
                "parameters": {"token:IdpUrl": oidc.issuer, "token:IdpClientId": CLIENT_ID},
            },
        )
        problem = assert_problem(created, 409, "oauth_client_not_configured")
        assert "{Audience} (token body)" in problem["detail"]
        assert CLIENT_SECRET not in created.text


def test_oauth2generic_secret_connection_parameter_in_body_templates(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    """BiG EVAL's shape: the client secret is a securestring connection parameter named in
    the token and refresh body templates ({IdpClientSecret})."""
    oidc.configure(accessTokenTtl=5)  # due 2.5 s after issue (half its lifetime)
    try:
        with gateway.client("oauth-generic-secret") as client:
            connector = import_generic(client, echo, body_secret="{IdpClientSecret}")
            parameters = {
                "token:IdpUrl": oidc.issuer,
                "token:IdpClientId": CLIENT_ID,
                "token:IdpClientSecret": CLIENT_SECRET,
            }
            created = client.post(
                f"/api/connectors/{connector['id']}/connections",
                json={"displayName": "s", "parameters": parameters},
            )
            assert created.status_code == 201, created.text
            result = oidc.authorize(created.json()["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
            with gateway.client(user=None) as anonymous:
                page = anonymous.get("/api/oauth/callback", params=result.params)
                assert 'data-outcome="connected"' in page.text
            cid = created.json()["id"]
            first = bearer(client.get(f"/api/connections/{cid}/invoke/me").json())
            refreshes = oidc.token_requests("refresh_token", 200)
            time.sleep(2.5)
            assert bearer(client.get(f"/api/connections/{cid}/invoke/me").json()) != first
            assert oidc.token_requests("refresh_token", 200) == refreshes + 1
    finally:
        oidc.configure(accessTokenTtl=3600)
