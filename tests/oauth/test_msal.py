"""The msal path (Entra ID, Microsoft account) against oidc-provider as an OIDC authority."""

from __future__ import annotations

import asyncio
import sys

from functions.oauth import (
    ProviderCatalog,
    TableStateStore,
    TokenEndpointClient,
    finish_consent,
    start_consent,
)
from tests.fixtures.oidc import REDIRECT_URI
from tests.oauth.helpers import TENANT, USER


def _catalog() -> ProviderCatalog:
    # An entry shaped like the catalog's Entra ID one, with a generic OIDC authority.
    return ProviderCatalog.from_dict(
        {
            "format": 1,
            "providers": {
                "msal-oidc": {
                    "displayName": "msal against a generic OIDC authority",
                    "protocol": "oidc",
                    "tokenClient": "msal",
                    "msalOidcAuthority": "{issuer}",
                    "discoveryUrl": "{issuer}/.well-known/openid-configuration",
                    "parameters": {"issuer": {"kind": "url"}},
                    "defaultScopes": ["openid", "offline_access"],
                    # OpenID Connect Core §11: offline_access is granted only with consent.
                    "authorizationParams": {"prompt": "consent"},
                }
            },
        }
    )


async def test_msal_code_flow_and_refresh(env, oidc, http, oauth_client):
    catalog = _catalog()
    provider = await catalog.resolve("msal-oidc", {"issuer": oidc.issuer}, http=http)
    states = TableStateStore(env.table_service(), env.prefix)
    await states.ensure_table()
    consent = await start_consent(
        provider,
        oauth_client,
        states,
        tenant_id=TENANT,
        connection_id="c-msal",
        user_id=USER,
        redirect_uri=REDIRECT_URI,
    )
    result = await asyncio.to_thread(oidc.authorize, consent.url)
    record = await states.consume(result.state)
    client = TokenEndpointClient(http, msal_http_client=oidc.requests_session)
    tokens = await finish_consent(record, provider, oauth_client, client, code=result.code)
    assert tokens.access_token and tokens.refresh_token
    assert tokens.id_token_claims["sub"] == "alice"
    fresh = await client.refresh(provider, oauth_client, tokens)
    assert fresh.refresh_token and fresh.refresh_token != tokens.refresh_token
    assert oidc.token_requests("authorization_code", 200) == 1
    assert oidc.token_requests("refresh_token", 200) == 1
    assert "msal" in sys.modules  # imported on this path only
