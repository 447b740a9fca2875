"""Client authentication with a certificate (issue 18: `aadcertificate`, private_key_jwt)
against node oidc-provider's `gateway-cert` client (private_key_jwt, two registered keys
as during a rotation): msal's client assertion for Entra-style providers, our own RFC 7523
assertion for http ones, and the API that keeps the bundle in the secret store."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from functions.oauth import (
    OAuthClient,
    ProviderCatalog,
    ProviderError,
    TableStateStore,
    TokenEndpointClient,
    default_catalog,
    finish_consent,
    start_consent,
)
from functions.oauth.certificates import CertificateError, load_certificate_bundle
from tests.api.helpers import assert_problem
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest
from tests.fixtures.oidc import CERT_CLIENT_ID, REDIRECT_URI
from tests.oauth.helpers import TENANT, USER
from tests.powerplatform.samples import folder_path


def key_body(bundle: str) -> str:
    """A line from the middle of the private key: what a leak would contain."""
    lines = bundle.split("-----END")[0].splitlines()
    return lines[len(lines) // 2]


async def msal_provider(oidc: Any, http: Any) -> Any:
    catalog = ProviderCatalog.from_dict(
        {
            "format": 1,
            "providers": {
                "entra-like": {
                    "displayName": "msal against a generic OIDC authority",
                    "protocol": "oidc",
                    "tokenClient": "msal",
                    "msalOidcAuthority": "{issuer}",
                    "discoveryUrl": "{issuer}/.well-known/openid-configuration",
                    "parameters": {"issuer": {"kind": "url"}},
                    "defaultScopes": ["openid", "offline_access"],
                    "authorizationParams": {"prompt": "consent"},
                    "clientCredentials": True,
                }
            },
        }
    )
    return await catalog.resolve("entra-like", {"issuer": oidc.issuer}, http=http)


async def test_http_provider_signs_a_client_assertion_with_either_registered_key(
    oidc, http, caplog
):
    caplog.set_level(logging.DEBUG)
    provider = await default_catalog().resolve(
        "generic-oauth2",
        {"authorization_url": oidc.authorization_url, "token_url": oidc.token_url},
    )
    tokens = TokenEndpointClient(http)
    for bundle in oidc.cert_bundles:  # old and new certificate, during a rotation
        issued = await tokens.client_credentials(
            provider, OAuthClient(CERT_CLIENT_ID, bundle), ("api:read",)
        )
        assert issued.access_token
    with pytest.raises(ProviderError) as info:  # a certificate the app does not know
        await tokens.client_credentials(
            provider, OAuthClient(CERT_CLIENT_ID, oidc.stray_bundle), ("api:read",)
        )
    assert info.value.error == "invalid_client"
    assert oidc.token_requests("client_credentials", 200) == 2
    for bundle in (*oidc.cert_bundles, oidc.stray_bundle):
        assert key_body(bundle) not in caplog.text
        assert key_body(bundle) not in info.value.detail


async def test_msal_code_flow_and_refresh_with_a_certificate(env, oidc, http, caplog):
    """What `aadcertificate` does at Entra ID: the authorization-code flow, the app
    proving itself with msal's certificate assertion at every token request."""
    caplog.set_level(logging.DEBUG)
    provider = await msal_provider(oidc, http)
    client = OAuthClient(CERT_CLIENT_ID, oidc.cert_bundles[0], ("email",))
    states = TableStateStore(env.table_service(), env.prefix)
    await states.ensure_table()
    consent = await start_consent(
        provider,
        client,
        states,
        tenant_id=TENANT,
        connection_id="c-cert",
        user_id=USER,
        redirect_uri=REDIRECT_URI,
    )
    result = await asyncio.to_thread(oidc.authorize, consent.url)
    record = await states.consume(result.state)
    endpoint = TokenEndpointClient(http, msal_http_client=oidc.requests_session)
    tokens = await finish_consent(record, provider, client, endpoint, code=result.code)
    assert tokens.access_token and tokens.refresh_token
    # Rotation: the next request signs with the new certificate (a new msal app).
    rotated = OAuthClient(CERT_CLIENT_ID, oidc.cert_bundles[1], ("email",))
    fresh = await endpoint.refresh(provider, rotated, tokens)
    assert fresh.access_token != tokens.access_token
    service = await endpoint.client_credentials(provider, rotated, ("api:read",))
    assert service.access_token
    assert oidc.token_requests("authorization_code", 200) == 1
    assert oidc.token_requests("refresh_token", 200) == 1
    assert key_body(oidc.cert_bundles[0]) not in caplog.text


def test_bundle_checks(oidc):
    certificate = load_certificate_bundle(oidc.cert_bundles[0])
    assert certificate.algorithm == "RS256" and len(certificate.sha256_thumbprint) == 64
    key_of_one = oidc.cert_bundles[0].split("-----BEGIN CERTIFICATE-----")[0]
    cert_of_other = (
        "-----BEGIN CERTIFICATE-----" + oidc.cert_bundles[1].split("-----BEGIN CERTIFICATE-----")[1]
    )
    with pytest.raises(CertificateError, match="does not belong"):
        load_certificate_bundle(key_of_one + cert_of_other)
    with pytest.raises(CertificateError, match="PEM certificate"):
        load_certificate_bundle(key_of_one)
    with pytest.raises(CertificateError, match="private key"):
        load_certificate_bundle(cert_of_other)


def test_aadcertificate_connector_needs_its_certificate_in_the_secret_store(
    gateway: GatewayUnderTest, oidc: Any, echo: Any, keyvault_double: Any
) -> None:
    import json

    folder = folder_path("custom-connectors/AzureAdIp")
    pair = {
        "apiDefinition": json.loads(
            (folder / "apiDefinition.swagger.json").read_text(encoding="utf-8-sig")
        ),
        "apiProperties": json.loads(
            (folder / "apiProperties.json").read_text(encoding="utf-8-sig")
        ),
        "baseUrl": echo.url,
    }
    bundle = oidc.cert_bundles[0]
    with gateway.client("cert-owner") as client:
        imported = client.post("/api/connectors/import", json=pair)
        assert imported.status_code == 201, imported.text
        cid = imported.json()["id"]
        problem = assert_problem(
            client.post(f"/api/connectors/{cid}/connections", json={"displayName": "x"}),
            409,
            "oauth_client_not_configured",
        )
        assert "clientCertificate" in problem["detail"]
        client_id = "77121646-fd2e-4a26-b74b-8be141d01223"  # the definition's own
        for bad, field in (
            ("not a pem", "clientCertificate"),
            (bundle.split("-----BEGIN CERTIFICATE-----")[0], "clientCertificate"),
        ):
            refused = client.put(
                f"/api/connectors/{cid}/oauth-client",
                json={"clientId": client_id, "clientCertificate": bad},
            )
            problem = assert_problem(refused, 422, "validation_error")
            assert [e["field"] for e in problem["errors"]] == [field]
            assert key_body(bundle) not in refused.text
        both = client.put(
            f"/api/connectors/{cid}/oauth-client",
            json={"clientId": client_id, "clientCertificate": bundle, "clientSecret": "s"},
        )
        assert_problem(both, 422, "validation_error")
        configured = client.put(
            f"/api/connectors/{cid}/oauth-client",
            json={"clientId": client_id, "clientCertificate": bundle},
        )
        assert configured.status_code == 200, configured.text
        assert configured.json()["oauthClient"]["clientSecretSet"] is True
        assert key_body(bundle) not in configured.text
        created = client.post(f"/api/connectors/{cid}/connections", json={"displayName": "x"})
        assert created.status_code == 201, created.text
        assert created.json()["consentUrl"].startswith(
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"
        )
        assert f"client_id={client_id}" in created.json()["consentUrl"]
    assert any(key_body(bundle) in value for value in keyvault_double.raw_values())
    assert key_body(bundle) not in all_table_text(gateway.settings)
