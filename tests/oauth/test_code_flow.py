"""Consent + callback against the real oidc-provider, with state records in Azurite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from functions.oauth import (
    InvalidGrantError,
    OAuthClient,
    OAuthStateError,
    OAuthStateExpiredError,
    TableStateStore,
    TokenEndpointClient,
    finish_consent,
    start_consent,
)
from functions.oauth.pkce import code_challenge_s256, new_code_verifier
from tests.fixtures.oidc import REDIRECT_URI, OidcServer
from tests.oauth.helpers import TENANT, USER, Env, connect, oidc_provider


async def _consent(env: Env, http: httpx.AsyncClient, client: OAuthClient, **kwargs):
    provider = await oidc_provider(env, http)
    states = TableStateStore(env.table_service(), env.prefix)
    await states.ensure_table()
    consent = await start_consent(
        provider,
        client,
        states,
        tenant_id=TENANT,
        connection_id="c1",
        user_id=USER,
        redirect_uri=REDIRECT_URI,
        **kwargs,
    )
    return provider, states, consent


async def test_full_code_flow_stores_tokens_only_in_the_secret_store(env, oidc, http, oauth_client):
    connection_id, store, tokens = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    assert tokens.refresh_token and tokens.access_token
    assert tokens.id_token_claims and tokens.id_token_claims["sub"] == "alice"
    current = await store.read_current()
    assert current.tokens == tokens and current.status == "connected"
    # Table rows hold no token values, only the secret's name and version.
    entity = env.connections().get_entity(TENANT, connection_id)
    dumped = json.dumps({k: str(v) for k, v in entity.items()})
    assert tokens.access_token not in dumped and tokens.refresh_token not in dumped
    assert oidc.token_requests("authorization_code", 200) == 1


async def test_authorization_url_carries_pkce_state_and_nonce(env, oidc, http, oauth_client):
    _, states, consent = await _consent(env, http, oauth_client)
    query = {k: v[0] for k, v in parse_qs(urlsplit(consent.url).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == code_challenge_s256(consent.record.code_verifier)
    assert query["state"] == consent.state and query["nonce"] == consent.record.nonce
    assert set(query["scope"].split()) == {"openid", "offline_access", "email"}
    # Only the hash of the state is stored.
    rows = list(env.table_service().get_table_client(states.table_name).list_entities())
    assert len(rows) == 1 and consent.state not in json.dumps(
        {k: str(v) for k, v in rows[0].items()}
    )


async def test_tampered_state_is_rejected(env, oidc, http, oauth_client):
    _, states, consent = await _consent(env, http, oauth_client)
    result = await asyncio.to_thread(oidc.authorize, consent.url)
    with pytest.raises(OAuthStateError):
        await states.consume(result.state[:-2] + "xx")
    await states.consume(result.state)  # the genuine one still works


async def test_replayed_state_is_rejected(env, oidc, http, oauth_client):
    provider, states, consent = await _consent(env, http, oauth_client)
    result = await asyncio.to_thread(oidc.authorize, consent.url)
    record = await states.consume(result.state)
    await finish_consent(
        record, provider, oauth_client, TokenEndpointClient(http), code=result.code
    )
    with pytest.raises(OAuthStateError) as info:
        await states.consume(result.state)
    assert info.value.code == "oauth_state_invalid"


async def test_concurrent_callbacks_only_one_consumes(env, oidc, http, oauth_client):
    _, states, consent = await _consent(env, http, oauth_client)
    outcomes = await asyncio.gather(
        *(states.consume(consent.state) for _ in range(8)), return_exceptions=True
    )
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, OAuthStateError) for o in outcomes if isinstance(o, Exception))


async def test_expired_state_is_rejected(env, oidc, http, oauth_client):
    _, states, consent = await _consent(
        env, http, oauth_client, now=datetime.now(UTC) - timedelta(minutes=11)
    )
    with pytest.raises(OAuthStateExpiredError) as info:
        await states.consume(consent.state)
    assert info.value.code == "oauth_state_expired"
    with pytest.raises(OAuthStateError):  # and it is gone
        await states.consume(consent.state)


async def test_wrong_pkce_verifier_fails_at_the_provider(env, oidc, http, oauth_client):
    provider, states, consent = await _consent(env, http, oauth_client)
    result = await asyncio.to_thread(oidc.authorize, consent.url)
    with pytest.raises(InvalidGrantError):
        await TokenEndpointClient(http).exchange_code(
            provider,
            oauth_client,
            code=result.code,
            redirect_uri=REDIRECT_URI,
            code_verifier=new_code_verifier(),
            nonce=consent.record.nonce,
        )
    assert oidc.token_requests("authorization_code", 400) == 1


async def test_denied_consent_returns_an_error_to_the_redirect_uri(
    env, oidc: OidcServer, http, oauth_client
):
    _, _, consent = await _consent(env, http, oauth_client)
    result = await asyncio.to_thread(oidc.authorize, consent.url, deny=True)
    assert result.code is None and result.error == "access_denied" and result.state == consent.state
