"""Entra ID on-behalf-of (issue 18) against node oidc-provider extended with the
JWT-bearer grant (`registerGrantType`, `tests/doubles/oidc/server.mjs`), through msal's
`acquire_token_on_behalf_of` against it as an OIDC authority. The caller's tokens are
minted by the gateway's development issuer; the provider trusts its public key."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from functions.errors import (
    OnBehalfOfAssertionRejectedError,
    OnBehalfOfConsentRequiredError,
    OnBehalfOfInteractionRequiredError,
)
from functions.identity.dev_issuer import (
    DEV_AUDIENCE,
    generate_private_key_pem,
    mint_token,
    public_jwk,
)
from functions.oauth import OAuthClient, ProviderCatalog, TokenEndpointClient
from functions.oauth.obo import OnBehalfOfExchanger, assertion_expiry, user_key
from functions.powerplatform import parse_definition
from functions.services.oauth import on_behalf_of_enabled
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = ("api:read",)
CLIENT = OAuthClient(CLIENT_ID, CLIENT_SECRET, SCOPES)


@pytest.fixture(scope="module")
def caller_key() -> str:
    return generate_private_key_pem()


@pytest.fixture
def obo(oidc: Any, caller_key: str) -> Any:
    oidc.configure(oboTrustedJwk=public_jwk(caller_key), oboAudience=DEV_AUDIENCE)
    return oidc


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
                }
            },
        }
    )
    return await catalog.resolve("entra-like", {"issuer": oidc.issuer}, http=http)


def exchanger(oidc: Any, http: Any, **kwargs: Any) -> OnBehalfOfExchanger:
    return OnBehalfOfExchanger(
        TokenEndpointClient(http, msal_http_client=oidc.requests_session), **kwargs
    )


async def test_exchange_is_cached_per_user_and_scope(obo, http, caller_key, caplog):
    caplog.set_level(logging.DEBUG)
    provider = await msal_provider(obo, http)
    tokens = exchanger(obo, http)
    alice = mint_token(caller_key, user="alice")
    first = await tokens.token_for(
        provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
    )
    assert first.access_token and first.scope == "api:read"
    assert first.refresh_token is None  # nothing to store, nothing stored
    # The same user with the same or a new token of theirs: cached.
    again = await tokens.token_for(
        provider,
        CLIENT,
        mint_token(caller_key, user="alice"),
        user_key=user_key("t", "alice"),
        scopes=SCOPES,
    )
    assert again == first
    assert obo.token_requests(JWT_BEARER, 200) == 1
    # Another user, or another scope: another exchange.
    bob = await tokens.token_for(
        provider,
        CLIENT,
        mint_token(caller_key, user="bob"),
        user_key=user_key("t", "bob"),
        scopes=SCOPES,
    )
    other_scope = await tokens.token_for(
        provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=("email",)
    )
    assert len({first.access_token, bob.access_token, other_scope.access_token}) == 3
    assert obo.token_requests(JWT_BEARER, 200) == 3
    for secret in (alice, first.access_token, bob.access_token, CLIENT_SECRET):
        assert secret not in caplog.text


async def test_concurrent_calls_of_one_user_share_one_exchange(obo, http, caller_key):
    provider = await msal_provider(obo, http)
    tokens = exchanger(obo, http)
    alice = mint_token(caller_key, user="alice")
    results = await asyncio.gather(
        *(
            tokens.token_for(
                provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
            )
            for _ in range(20)
        )
    )
    assert len({r.access_token for r in results}) == 1
    assert obo.token_requests(JWT_BEARER) == 1


async def test_never_beyond_the_callers_token(obo, http, caller_key):
    """A 2-minute caller token: the downstream token (1 h at the provider) is cut to the
    caller's expiry, and nothing is served once the caller's token has expired."""
    provider = await msal_provider(obo, http)
    now = [None]
    tokens = exchanger(obo, http)
    alice = mint_token(caller_key, user="alice", lifetime_seconds=120)
    expiry = assertion_expiry(alice)
    first = await tokens.token_for(
        provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
    )
    assert first.expires_at == expiry
    now[0] = expiry + timedelta(seconds=1)
    tokens.clock = lambda: now[0]
    with pytest.raises(OnBehalfOfAssertionRejectedError):
        await tokens.token_for(
            provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
        )
    assert obo.token_requests(JWT_BEARER) == 1


def problem_text(exc: Any) -> str:
    return json.dumps([exc.detail, exc.extra, exc.headers, exc.code, str(exc)], default=str)


async def test_interaction_required_is_a_401_with_the_claims_challenge(
    obo, http, caller_key, caplog
):
    caplog.set_level(logging.DEBUG)
    obo.configure(oboError="interaction_required")
    provider = await msal_provider(obo, http)
    alice = mint_token(caller_key, user="alice")
    with pytest.raises(OnBehalfOfInteractionRequiredError) as info:
        await exchanger(obo, http).token_for(
            provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
        )
    assert info.value.status == 401 and info.value.code == "obo_interaction_required"
    assert "capolids" in info.value.extra["claims"]
    assert "insufficient_claims" in info.value.headers["WWW-Authenticate"]
    for secret in (alice, CLIENT_SECRET):
        assert secret not in problem_text(info.value) and secret not in caplog.text


async def test_missing_consent_is_a_403_for_an_administrator(obo, http, caller_key, caplog):
    caplog.set_level(logging.DEBUG)
    obo.configure(oboError="consent_required")
    provider = await msal_provider(obo, http)
    alice = mint_token(caller_key, user="alice")
    with pytest.raises(OnBehalfOfConsentRequiredError) as info:
        await exchanger(obo, http).token_for(
            provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
        )
    assert info.value.status == 403 and info.value.code == "obo_consent_required"
    assert "administrator" in info.value.detail and info.value.extra["scopes"] == ["api:read"]
    assert alice not in problem_text(info.value) and alice not in caplog.text


async def test_a_token_the_provider_does_not_trust_is_rejected(obo, http):
    provider = await msal_provider(obo, http)
    stranger = mint_token(generate_private_key_pem(), user="mallory")
    with pytest.raises(OnBehalfOfAssertionRejectedError) as info:
        await exchanger(obo, http).token_for(
            provider, CLIENT, stranger, user_key=user_key("t", "mallory"), scopes=SCOPES
        )
    assert info.value.status == 401 and info.value.code == "obo_assertion_rejected"
    assert obo.token_requests(JWT_BEARER, 400) == 1


def test_definitions_with_enable_on_behalf_of_login_use_it() -> None:
    from tests.powerplatform.samples import folder_path

    folder = folder_path("custom-connectors/Snowflake")
    api_definition = json.loads(
        (folder / "apiDefinition.swagger.json").read_text(encoding="utf-8-sig")
    )
    api_properties = json.loads((folder / "apiProperties.json").read_text(encoding="utf-8-sig"))
    settings = api_properties["properties"]["connectionParameters"]["token"]["oAuthSettings"]
    assert settings["customParameters"]["enableOnbehalfOfLogin"]["value"] == "false"
    (option,) = parse_definition(api_definition, api_properties).auth_options
    assert option.oauth2 is not None and not on_behalf_of_enabled(option.oauth2)
    settings["customParameters"]["enableOnbehalfOfLogin"]["value"] = "true"
    (option,) = parse_definition(api_definition, api_properties).auth_options
    assert option.oauth2 is not None and on_behalf_of_enabled(option.oauth2)


# -- RFC 8693 token exchange (generic providers) ---------------------------------------

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


async def test_discovery_reveals_token_exchange_and_it_is_used(obo, http, caller_key, caplog):
    caplog.set_level(logging.DEBUG)
    from functions.oauth import default_catalog

    # The catalog's generic OpenID Connect entry, as connectors use it.
    provider = await default_catalog().resolve("generic-oidc", {"issuer": obo.issuer}, http=http)
    assert provider.token_exchange  # grant_types_supported lists RFC 8693
    tokens = exchanger(obo, http)
    alice = mint_token(caller_key, user="alice")
    first = await tokens.token_for(
        provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
    )
    assert first.access_token and first.scope == "api:read"
    again = await tokens.token_for(
        provider, CLIENT, alice, user_key=user_key("t", "alice"), scopes=SCOPES
    )
    assert again == first
    assert obo.token_requests(TOKEN_EXCHANGE, 200) == 1
    assert obo.token_requests(JWT_BEARER) == 0
    # RFC 8693 errors: an untrusted subject token, a target the client may not reach.
    with pytest.raises(OnBehalfOfAssertionRejectedError):
        await tokens.token_for(
            provider,
            CLIENT,
            mint_token(generate_private_key_pem(), user="mallory"),
            user_key=user_key("t", "mallory"),
            scopes=SCOPES,
        )
    obo.configure(oboError="invalid_target")
    with pytest.raises(OnBehalfOfConsentRequiredError) as info:
        await tokens.token_for(
            provider,
            CLIENT,
            mint_token(caller_key, user="bob"),
            user_key=user_key("t", "bob"),
            scopes=SCOPES,
        )
    assert info.value.status == 403
    assert alice not in caplog.text and first.access_token not in caplog.text


async def test_a_provider_without_either_mechanism_is_refused(obo, http, caller_key):
    from functions.oauth import ProviderError, default_catalog

    provider = await default_catalog().resolve(
        "generic-oauth2",
        {"authorization_url": obo.authorization_url, "token_url": obo.token_url},
    )
    assert not provider.token_exchange
    with pytest.raises(ProviderError, match="on a caller's behalf"):
        await exchanger(obo, http).token_for(
            provider,
            CLIENT,
            mint_token(caller_key, user="alice"),
            user_key=user_key("t", "alice"),
            scopes=SCOPES,
        )
    assert obo.token_requests(TOKEN_EXCHANGE) == 0
