"""OAuth 2.0 connections end to end: the gateway, node oidc-provider (refresh-token
rotation with reuse detection), Azurite and the Key Vault double."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from functions.devtools.processes import free_port, stop_process, wait_for_ports
from tests.api.helpers import assert_problem
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest, settings_env
from tests.doubles.echo import header_values
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, GATEWAY_REDIRECT_URI

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def oauth_connector(client: httpx.Client, oidc: Any, base_url: str, **extra: Any) -> dict[str, Any]:
    auth = {
        "type": "oauth2",
        "provider": "generic-oidc",
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "settings": {"issuer": oidc.issuer},
        "scopes": ["openid", "offline_access"],
        **extra,
    }
    response = client.post(
        "/api/connectors", json={"name": "OIDC API", "baseUrl": base_url, "auth": auth}
    )
    assert response.status_code == 201, response.text
    return response.json()


def consent(
    gateway: GatewayUnderTest, oidc: Any, consent_url: str, *, deny: bool = False
) -> httpx.Response:
    result = oidc.authorize(consent_url, redirect_uri=GATEWAY_REDIRECT_URI, deny=deny)
    with gateway.client(user=None) as anonymous:
        return anonymous.get("/api/oauth/callback", params=result.params)


def connected(
    gateway: GatewayUnderTest, client: httpx.Client, oidc: Any, connector: dict[str, Any]
) -> dict[str, Any]:
    created = client.post(
        f"/api/connectors/{connector['id']}/connections", json={"displayName": "oauth"}
    )
    assert created.status_code == 201, created.text
    page = consent(gateway, oidc, created.json()["consentUrl"])
    assert page.status_code == 200, page.text
    return client.get(f"/api/connections/{created.json()['id']}").json()


def bearer(report: dict[str, Any]) -> str:
    values = header_values(report, "authorization")
    assert len(values) == 1 and values[0].startswith("Bearer "), values
    return values[0][7:]


def test_consent_callback_and_bearer_injection(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, keyvault_double: Any
) -> None:
    with gateway.client("oauth-owner") as client:
        connector = oauth_connector(client, oidc, echo.url)
        assert connector["oauthClient"] == {
            "clientId": CLIENT_ID,
            "clientSecretSet": True,
            "redirectUri": None,
        }
        assert CLIENT_SECRET not in client.get(f"/api/connectors/{connector['id']}").text

        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "mine"}
        ).json()
        assert created["status"] == "consent_required"
        query = parse_qs(urlsplit(created["consentUrl"]).query)
        assert created["consentUrl"].startswith(oidc.authorization_url)
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert query["redirect_uri"] == [GATEWAY_REDIRECT_URI]
        assert len(query["state"][0]) >= 32 and query["nonce"][0]
        # Not usable before consent.
        assert_problem(
            client.get(f"/api/connections/{created['id']}/invoke/x"),
            409,
            "connection_consent_required",
        )

        result = oidc.authorize(created["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
        with gateway.client(user=None) as anonymous:
            page = anonymous.get("/api/oauth/callback", params=result.params)
            assert page.status_code == 200 and 'data-outcome="connected"' in page.text
            assert page.headers["cache-control"] == "no-store"
            assert result.code not in page.text
            # The same state again: single use.
            replay = anonymous.get("/api/oauth/callback", params=result.params)
            assert replay.status_code == 400 and 'data-outcome="invalid_state"' in replay.text

        connection = client.get(f"/api/connections/{created['id']}").json()
        assert connection["status"] == "connected" and connection["tokenExpiresAt"]
        report = client.get(f"/api/connections/{created['id']}/invoke/me").json()
        access_token = bearer(report)
        # The upstream gets the connection's token, never the caller's gateway token.
        assert access_token != client.headers["authorization"][7:]
        # Tokens live in the vault only.
        assert any(access_token in value for value in keyvault_double.raw_values())
        assert access_token not in all_table_text(gateway.settings)
        assert access_token not in client.get(f"/api/connections/{created['id']}").text


def test_tampered_and_denied_callbacks(gateway: GatewayUnderTest, oidc: Any, echo: Any) -> None:
    with gateway.client("oauth-tamper") as client:
        connector = oauth_connector(client, oidc, echo.url)
        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "t"}
        ).json()
        result = oidc.authorize(created["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
        with gateway.client(user=None) as anonymous:
            tampered = anonymous.get(
                "/api/oauth/callback", params={**result.params, "state": result.state[:-2] + "xx"}
            )
            assert tampered.status_code == 400 and 'data-outcome="invalid_state"' in tampered.text
            missing = anonymous.get("/api/oauth/callback", params={"code": result.code})
            assert missing.status_code == 400
            # The untampered state still works after those attempts.
            assert anonymous.get("/api/oauth/callback", params=result.params).status_code == 200

        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "d"}
        ).json()
        page = consent(gateway, oidc, created["consentUrl"], deny=True)
        assert page.status_code == 400 and 'data-outcome="denied"' in page.text
        assert (
            client.get(f"/api/connections/{created['id']}").json()["status"] == "consent_required"
        )


def test_wrong_pkce_verifier_fails_at_the_provider(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    """The provider enforces PKCE: redeeming the code without our verifier fails."""
    with gateway.client("oauth-pkce") as client:
        connector = oauth_connector(client, oidc, echo.url)
        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "p"}
        ).json()
        result = oidc.authorize(created["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
        with oidc.client() as http:
            response = http.post(
                oidc.token_url,
                data={
                    "grant_type": "authorization_code",
                    "code": result.code,
                    "redirect_uri": GATEWAY_REDIRECT_URI,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "code_verifier": "x" * 43,
                },
            )
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_expired_token_is_refreshed_on_invoke(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    oidc.configure(accessTokenTtl=5)  # due for refresh 2.5 s after issue (half its lifetime)
    with gateway.client("oauth-refresh") as client:
        connection = connected(gateway, client, oidc, oauth_connector(client, oidc, echo.url))
        first = bearer(client.get(f"/api/connections/{connection['id']}/invoke/a").json())
        refreshes = oidc.token_requests("refresh_token")
        time.sleep(2.5)
        second = bearer(client.get(f"/api/connections/{connection['id']}/invoke/b").json())
        assert second != first
        assert oidc.token_requests("refresh_token") == refreshes + 1
        oidc.configure(accessTokenTtl=3600)
        third = bearer(client.get(f"/api/connections/{connection['id']}/invoke/c").json())
        assert oidc.token_requests("refresh_token") == refreshes + 1 or third


def test_revoked_grant_needs_reauthorization_and_reauthorize_fixes_it(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, keyvault_double: Any
) -> None:
    oidc.configure(accessTokenTtl=5)  # the token is due for refresh 2.5 s after consent
    with gateway.client("oauth-revoke") as client:
        connection = connected(gateway, client, oidc, oauth_connector(client, oidc, echo.url))
        cid = connection["id"]
        # Revoke this connection's grant at the provider (its refresh token, read from the vault).
        import asyncio
        import json as _json

        secret = asyncio.run(gateway.state.secrets.get_secret(f"conn-{cid}"))
        oidc.revoke(_json.loads(secret.value)["oauth"]["refresh_token"])
        reauth = client.post(f"/api/connections/{cid}/reauthorize").json()
        assert reauth["consentUrl"].startswith(oidc.authorization_url)
        time.sleep(2.5)
        before = oidc.token_requests("refresh_token")
        problem = assert_problem(
            client.get(f"/api/connections/{cid}/invoke/x"), 401, "connection_needs_reauthorization"
        )
        assert problem["reauthorize"] == f"/api/connections/{cid}/reauthorize"
        assert client.get(f"/api/connections/{cid}").json()["status"] == "reauthorization_required"
        # No further refresh attempts until reauthorized.
        for _ in range(3):
            assert_problem(
                client.get(f"/api/connections/{cid}/invoke/x"),
                401,
                "connection_needs_reauthorization",
            )
        assert oidc.token_requests("refresh_token") <= before + 1
        oidc.configure(accessTokenTtl=3600)
        fresh = client.post(f"/api/connections/{cid}/reauthorize").json()
        assert consent(gateway, oidc, fresh["consentUrl"]).status_code == 200
        assert client.get(f"/api/connections/{cid}").json()["status"] == "connected"
        assert client.get(f"/api/connections/{cid}/invoke/ok").status_code == 200


def test_per_connector_redirect_uri(gateway: GatewayUnderTest, oidc: Any, echo: Any) -> None:
    from tests.fixtures.oidc import REDIRECT_URI

    with gateway.client("oauth-redirect") as client:
        connector = oauth_connector(client, oidc, echo.url, redirectUri=REDIRECT_URI)
        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "r"}
        ).json()
        assert parse_qs(urlsplit(created["consentUrl"]).query)["redirect_uri"] == [REDIRECT_URI]
        result = oidc.authorize(created["consentUrl"], redirect_uri=REDIRECT_URI)
        with gateway.client(user=None) as anonymous:
            assert anonymous.get("/api/oauth/callback", params=result.params).status_code == 200


def test_client_credentials_service_connection(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    with gateway.client("oauth-cc") as client:
        connector = oauth_connector(client, oidc, echo.url, grant="client_credentials", scopes=[])
        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "svc"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "connected" and created.json()["consentUrl"] is None
        report = client.get(f"/api/connections/{created.json()['id']}/invoke/x").json()
        assert bearer(report)
        assert oidc.token_requests("client_credentials", 200) >= 1


def test_bad_oauth_configuration_is_refused(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("oauth-bad") as client:
        for auth, field in (
            ({"type": "oauth2", "provider": "nope", "clientId": "c"}, "auth"),
            (
                {"type": "oauth2", "provider": "generic-oauth2", "clientId": "c", "settings": {}},
                "auth",
            ),
            (
                {
                    "type": "oauth2",
                    "provider": "github",
                    "clientId": "c",
                    "grant": "client_credentials",
                },
                "auth.grant",
            ),
        ):
            problem = assert_problem(
                client.post(
                    "/api/connectors", json={"name": "x", "baseUrl": echo.url, "auth": auth}
                ),
                422,
                "validation_error",
            )
            assert problem["errors"][0]["field"] == field
        assert client.get("/api/connectors").json()["value"] == []


def test_fifty_concurrent_invocations_over_four_workers_refresh_once(
    start_gateway: Any, oidc: Any, echo: Any
) -> None:
    """Right after expiry, 50 concurrent invocations spread over 4 uvicorn worker
    processes cause exactly one refresh at the provider and zero failures."""
    setup = start_gateway()  # in-process, to create the connector and connection
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        **settings_env(setup.settings),
    }
    with setup.client("oauth-burst") as client:
        oidc.configure(accessTokenTtl=16)  # due 8 s after issue (half its lifetime)
        connection = connected(setup, client, oidc, oauth_connector(client, oidc, echo.url))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "functions.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "4",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for_ports([port], 60, process)
        token = setup.token("oauth-burst")
        url = f"http://127.0.0.1:{port}/api/connections/{connection['id']}/invoke/burst"
        with httpx.Client(
            timeout=30, trust_env=False, headers={"Authorization": f"Bearer {token}"}
        ) as warm:
            # Warm every worker (health does no OAuth work) so the burst hits all four.
            for _ in range(40):
                warm.get(f"http://127.0.0.1:{port}/api/health")
        time.sleep(8.5)  # the access token is now due; the burst has 8 s before the next is
        before = oidc.token_requests("refresh_token")
        oidc.configure(tokenDelayMs=300)  # widen the race window
        with concurrent.futures.ThreadPoolExecutor(50) as pool:

            def call(_: int) -> tuple[int, str]:
                with httpx.Client(
                    timeout=30, trust_env=False, headers={"Authorization": f"Bearer {token}"}
                ) as http:
                    response = http.get(url)
                    return response.status_code, (
                        bearer(response.json()) if response.status_code == 200 else response.text
                    )

            results = list(pool.map(call, range(50)))
        assert [status for status, _ in results] == [200] * 50, results
        assert oidc.token_requests("refresh_token") - before == 1
        assert len({token_ for _, token_ in results}) == 1
    finally:
        stop_process(process)
        oidc.configure(tokenDelayMs=0, accessTokenTtl=3600)


def test_refresh_due_job_refreshes_expiring_tokens(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    """The timer's job (also `python -m functions refresh-due`) refreshes tokens that
    expire within its horizon, once, and leaves the others alone."""
    import asyncio

    from functions import jobs

    oidc.configure(accessTokenTtl=400)  # inside the job's 10-minute horizon
    with gateway.client("oauth-timer") as client:
        soon = connected(gateway, client, oidc, oauth_connector(client, oidc, echo.url))
        oidc.configure(accessTokenTtl=7200)
        later = connected(gateway, client, oidc, oauth_connector(client, oidc, echo.url))
        before = oidc.token_requests("refresh_token")
        summary = asyncio.run(jobs.refresh_due_tokens(gateway.settings))
        assert summary["failed"] == 0 and summary["refreshed"] >= 1
        assert oidc.token_requests("refresh_token") - before == summary["refreshed"]
        refreshed = client.get(f"/api/connections/{soon['id']}").json()
        assert refreshed["tokenExpiresAt"] > soon["tokenExpiresAt"]
        assert (
            client.get(f"/api/connections/{later['id']}").json()["tokenExpiresAt"]
            == later["tokenExpiresAt"]
        )
        # The request path keeps working with the refreshed token.
        assert client.get(f"/api/connections/{soon['id']}/invoke/after").status_code == 200
    oidc.configure(accessTokenTtl=3600)


def test_callback_from_another_issuer_is_refused(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    """RFC 9207: an authorization response whose `iss` is not the provider's is refused
    before the code is redeemed (mix-up defence); the real issuer's `iss` is accepted."""
    with gateway.client("oauth-iss") as client:
        connector = oauth_connector(client, oidc, echo.url)
        created = client.post(
            f"/api/connectors/{connector['id']}/connections", json={"displayName": "i"}
        ).json()
        result = oidc.authorize(created["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
        exchanges = oidc.token_requests("authorization_code")
        with gateway.client(user=None) as anonymous:
            page = anonymous.get(
                "/api/oauth/callback", params={**result.params, "iss": "https://evil.example/oidc"}
            )
        assert page.status_code == 502 and "unexpected issuer" in page.text
        assert oidc.token_requests("authorization_code") == exchanges
        assert (
            client.get(f"/api/connections/{created['id']}").json()["status"] == "consent_required"
        )
        again = client.post(f"/api/connections/{created['id']}/reauthorize").json()
        result = oidc.authorize(again["consentUrl"], redirect_uri=GATEWAY_REDIRECT_URI)
        with gateway.client(user=None) as anonymous:
            assert (
                anonymous.get(
                    "/api/oauth/callback", params={**result.params, "iss": oidc.issuer}
                ).status_code
                == 200
            )


def test_deleting_a_connection_revokes_its_grant(
    gateway: GatewayUnderTest, oidc: Any, echo: Any
) -> None:
    import asyncio
    import json as _json

    with gateway.client("oauth-delete") as client:
        connection = connected(gateway, client, oidc, oauth_connector(client, oidc, echo.url))
        secret = asyncio.run(gateway.state.secrets.get_secret(f"conn-{connection['id']}"))
        refresh_token = _json.loads(secret.value)["oauth"]["refresh_token"]
        assert client.delete(f"/api/connections/{connection['id']}").status_code == 204
    with oidc.client() as http:
        response = http.post(
            oidc.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
