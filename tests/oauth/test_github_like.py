"""GitHub-style token endpoint: form-encoded answers, errors with status 200."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from functions.oauth import (
    InvalidGrantError,
    OAuthClient,
    ProviderSpec,
    ResolvedProvider,
    TokenEndpointClient,
    default_catalog,
)
from tests.doubles.oidc.github_like import CLIENT_ID, CLIENT_SECRET, GitHubLikeProvider
from tests.servers import ThreadedServer

CLIENT = OAuthClient(CLIENT_ID, CLIENT_SECRET)


@pytest.fixture
def github() -> Iterator[tuple[GitHubLikeProvider, ResolvedProvider]]:
    double = GitHubLikeProvider()
    with ThreadedServer(double.app, interface="asgi3") as server:
        spec: ProviderSpec = default_catalog().get("github")
        # The catalog's GitHub entry, pointed at the local double.
        yield (
            double,
            ResolvedProvider(
                spec=spec,
                authorization_url=f"{server.url}/login/oauth/authorize",
                token_url=f"{server.url}/login/oauth/access_token",
                refresh_url=f"{server.url}/login/oauth/access_token",
                revocation_url=f"{server.url}/applications/{{client_id}}/grant",
            ),
        )


async def test_form_encoded_code_exchange_and_refresh(github):
    double, provider = github
    async with httpx.AsyncClient(trust_env=False) as http:
        client = TokenEndpointClient(http)
        tokens = await client.exchange_code(
            provider,
            CLIENT,
            code=double.issue_code(),
            redirect_uri="https://gw/cb",
            code_verifier=None,
        )
        assert tokens.access_token.startswith("ghu_") and tokens.refresh_token.startswith("ghr_")
        assert tokens.expires_at is not None and tokens.refresh_token_expires_at is not None
        assert double.requests[-1]["accept"] != "application/json"  # GitHub's default: form
        fresh = await client.refresh(provider, CLIENT, tokens)
        assert fresh.refresh_token != tokens.refresh_token


async def test_json_when_asked(github):
    double, provider = github
    json_provider = replace(provider, spec=replace(provider.spec, token_response="json"))
    async with httpx.AsyncClient(trust_env=False) as http:
        tokens = await TokenEndpointClient(http).exchange_code(
            json_provider,
            CLIENT,
            code=double.issue_code(),
            redirect_uri="https://gw/cb",
            code_verifier=None,
        )
    assert tokens.access_token.startswith("ghu_")
    assert double.requests[-1]["accept"] == "application/json"


async def test_errors_with_status_200_map_to_invalid_grant(github):
    double, provider = github
    async with httpx.AsyncClient(trust_env=False) as http:
        client = TokenEndpointClient(http)
        with pytest.raises(InvalidGrantError) as info:
            await client.exchange_code(
                provider, CLIENT, code="nope", redirect_uri="https://gw/cb", code_verifier=None
            )
        assert info.value.error == "bad_verification_code"
        tokens = await client.exchange_code(
            provider,
            CLIENT,
            code=double.issue_code(),
            redirect_uri="https://gw/cb",
            code_verifier=None,
        )
        await client.refresh(provider, CLIENT, tokens)
        with pytest.raises(InvalidGrantError) as info:
            await client.refresh(provider, CLIENT, tokens)  # rotated: the old one is dead
        assert info.value.error == "bad_refresh_token"


async def test_non_expiring_tokens_are_never_due(github):
    double, provider = github
    double.expiring = False
    async with httpx.AsyncClient(trust_env=False) as http:
        tokens = await TokenEndpointClient(http).exchange_code(
            provider,
            CLIENT,
            code=double.issue_code(),
            redirect_uri="https://gw/cb",
            code_verifier=None,
        )
    assert tokens.expires_at is None and tokens.refresh_token is None
    assert not tokens.expires_within(10**9)


def test_catalog_names_githubs_revocation_endpoint():
    spec = default_catalog().get("github")
    assert spec.revocation_url == "https://api.github.com/applications/{client_id}/grant"
    assert spec.revocation_request == "delete-json-access-token"


async def test_catalog_resolves_the_static_revocation_url():
    provider = await default_catalog().resolve("github")
    assert provider.revocation_url == "https://api.github.com/applications/{client_id}/grant"
    salesforce = await default_catalog().resolve("salesforce", {"domain": "acme.my.salesforce.com"})
    assert salesforce.revocation_url == "https://acme.my.salesforce.com/services/oauth2/revoke"


async def test_revoke_deletes_the_whole_grant_with_basic_auth(github):
    double, provider = github
    async with httpx.AsyncClient(trust_env=False) as http:
        client = TokenEndpointClient(http)
        tokens = await client.exchange_code(
            provider,
            CLIENT,
            code=double.issue_code("mona"),
            redirect_uri="https://gw/cb",
            code_verifier=None,
        )
        assert await client.revoke(provider, CLIENT, tokens) is True
        request = double.requests[-1]
        assert (
            request["method"] == "DELETE" and request["path"] == f"/applications/{CLIENT_ID}/grant"
        )
        assert request["headers"]["authorization"].startswith("Basic ")
        assert double.revoked_users == ["mona"]
        # The refresh token died with the grant.
        with pytest.raises(InvalidGrantError):
            await client.refresh(provider, CLIENT, tokens)
        # Already gone, or the wrong client secret: not confirmed (and no exception).
        assert await client.revoke(provider, CLIENT, tokens) is False
        wrong = OAuthClient(CLIENT_ID, "not-the-secret")
        assert await client.revoke(provider, wrong, tokens) is False
