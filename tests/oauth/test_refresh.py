"""Refresh against the real oidc-provider (rotation and reuse detection on)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from functions.oauth import (
    ReauthorizationRequiredError,
    RefreshBackoffError,
    TokenEndpointClient,
    TokenRefresher,
    default_catalog,
)
from tests.doubles.oidc.github_like import UnavailableProvider
from tests.fixtures.oidc import REDIRECT_URI
from tests.oauth.helpers import (
    connect,
    expire_now,
    new_connection,
    oidc_provider,
    refresh_worker,
    wave_worker,
)
from tests.servers import ThreadedServer


async def test_expired_token_is_refreshed_with_rotation(env, oidc, http, oauth_client):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    before = (await store.read_current()).version
    refresher = TokenRefresher(TokenEndpointClient(http))
    fresh = await refresher.ensure_fresh(store, await oidc_provider(env, http), oauth_client)
    assert fresh.access_token != first.access_token
    assert fresh.refresh_token and fresh.refresh_token != first.refresh_token  # rotated
    stored = await store.read_current()
    assert stored.version != before and stored.tokens == fresh  # same version holds both
    assert oidc.token_requests("refresh_token", 200) == 1
    # Fresh now: no further request.
    assert (
        await refresher.ensure_fresh(store, await oidc_provider(env, http), oauth_client) == fresh
    )
    assert oidc.token_requests("refresh_token") == 1


async def test_refresh_without_refresh_token_keeps_the_old_one(env, oidc, http, oauth_client):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    oidc.configure(rotateRefreshToken=False, omitRefreshTokenOnRefresh=True)
    await expire_now(store)
    refresher = TokenRefresher(TokenEndpointClient(http))
    provider = await oidc_provider(env, http)
    fresh = await refresher.ensure_fresh(store, provider, oauth_client)
    assert fresh.access_token != first.access_token
    assert fresh.refresh_token == first.refresh_token
    # And the kept one still works.
    await expire_now(store)
    again = await refresher.ensure_fresh(store, provider, oauth_client)
    assert again.access_token != fresh.access_token
    assert oidc.token_requests("refresh_token", 200) == 2


async def test_revoked_grant_requires_reauthorization_and_stops_refreshing(
    env, oidc, http, oauth_client
):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    oidc.revoke(first.refresh_token)
    await expire_now(store)
    refresher = TokenRefresher(TokenEndpointClient(http))
    provider = await oidc_provider(env, http)
    with pytest.raises(ReauthorizationRequiredError) as info:
        await refresher.ensure_fresh(store, provider, oauth_client)
    assert info.value.status == 401 and info.value.code == "connection_needs_reauthorization"
    assert (await store.read_current()).status == "reauthorization_required"
    with pytest.raises(ReauthorizationRequiredError):
        await TokenRefresher(TokenEndpointClient(http)).ensure_fresh(store, provider, oauth_client)
    assert oidc.token_requests("refresh_token") == 1  # no retry storm


async def test_reauthorize_after_revocation_restores_the_connection(env, oidc, http, oauth_client):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    oidc.revoke(first.refresh_token)
    await expire_now(store)
    refresher = TokenRefresher(TokenEndpointClient(http))
    provider = await oidc_provider(env, http)
    with pytest.raises(ReauthorizationRequiredError):
        await refresher.ensure_fresh(store, provider, oauth_client)
    # A new consent for the same connection (reauthorize): status back to connected.
    _, store2, second = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await store.store_consent(second, f"conn-{store.row_key}")
    assert (await refresher.ensure_fresh(store, provider, oauth_client)) == second


async def test_lost_race_uses_the_newer_tokens_and_keeps_the_connection(
    env, oidc, http, oauth_client
):
    """Another instance rotated the refresh token after we read it: invalid_grant for our
    stale token is a lost race, not a dead connection."""
    from functions.oauth.refresh import StoredTokens

    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    provider = await oidc_provider(env, http)
    stale = await expire_now(store)
    # Someone else refreshes (rotating the token) and stores the result...
    rotated = await TokenEndpointClient(http).refresh(provider, oauth_client, stale)
    await store.store_consent(rotated, f"conn-{store.row_key}")
    # ...while our refresh still works from the stale view, under the lease (as when a
    # lease expired mid-refresh).
    refresher = TokenRefresher(TokenEndpointClient(http))
    lease = await store.acquire_lease("us")
    try:
        result = await refresher._refresh_under_lease(
            store, lease, provider, oauth_client, StoredTokens(tokens=stale, version="old")
        )
    finally:
        await store.release_lease(lease)
    assert result == rotated
    assert oidc.token_requests("refresh_token", 400) == 1  # our stale attempt was refused
    assert (await store.read_current()).status == "connected"


async def test_fifty_calls_in_four_processes_cause_one_refresh(env, oidc, http, oauth_client):
    connection_id, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    oidc.configure(tokenDelayMs=300)  # widen the race window
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    calls = [13, 13, 12, 12]
    workers = [
        ctx.Process(
            target=refresh_worker, args=(env, oauth_client, connection_id, n, barrier, results)
        )
        for n in calls
    ]
    for w in workers:
        w.start()
    outcomes = [item for _ in workers for item in results.get(timeout=120)]
    for w in workers:
        w.join(30)
    errors = [o for o in outcomes if not o.startswith("ok:")]
    assert len(outcomes) == 50 and errors == []
    assert len(set(outcomes)) == 1  # everyone got the same new access token
    assert oidc.token_requests("refresh_token") == 1
    assert oidc.token_requests("refresh_token", 200) == 1
    assert (await store.read_current()).tokens.access_token == outcomes[0][3:]


async def test_short_lived_tokens_are_refreshed_once_per_lifetime_in_every_wave(
    env, oidc, http, oauth_client
):
    """6-second tokens (shorter than the 300 s provider margin), 4 long-lived worker
    processes, 50 concurrent calls per wave. A wave released once the token is due makes
    exactly one refresh; a wave released right after, while the new token still has most
    of its life, makes none. Repeated, so the first refresh's token is not itself
    "due from birth" (the fixed-margin bug refreshed on every call after the first)."""
    ttl = 6
    oidc.configure(accessTokenTtl=ttl, tokenDelayMs=200)  # the delay widens the race
    connection_id, store, _ = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    margin = (await oidc_provider(env, http)).spec.refresh_margin_seconds
    ctx = multiprocessing.get_context("spawn")
    waves = 6  # due, fresh, due, fresh, due, fresh
    barrier = ctx.Barrier(5)  # the four workers and this test
    results = ctx.Queue()
    calls = [13, 13, 12, 12]
    workers = [
        ctx.Process(
            target=wave_worker,
            args=(env, oauth_client, connection_id, n, waves, barrier, results),
        )
        for n in calls
    ]
    for w in workers:
        w.start()
    try:
        for wave in range(waves):
            current = (await store.read_current()).tokens
            assert current is not None and current.lifetime_seconds is not None
            assert current.refresh_margin(margin) == ttl / 2  # half the lifetime, not 300 s
            due_wave = wave % 2 == 0
            if due_wave:
                # Wait for the token to become due: derived from its own expiry.
                due_at = current.expires_at - timedelta(seconds=current.refresh_margin(margin))
                wait = (due_at - current.obtained_at).total_seconds() - (
                    time.time() - current.obtained_at.timestamp()
                )
                await asyncio.sleep(max(0.0, wait) + 0.2)
                assert current.needs_refresh(margin)
            else:
                assert not current.needs_refresh(margin)  # most of its life remains
            before = oidc.token_requests("refresh_token")
            await asyncio.to_thread(barrier.wait, 120)
            released = time.monotonic()
            outcomes = [
                item for _ in workers for item in await asyncio.to_thread(results.get, True, 120)
            ]
            took = time.monotonic() - released  # a wave longer than 3 s outlives its token's
            # freshness: a second refresh would then be right, and this message says so
            stored = (await store.read_current()).tokens
            assert stored is not None
            errors = [o for o in outcomes if not o.startswith("ok:")]
            assert len(outcomes) == 50 and errors == [], (wave, errors)
            assert set(outcomes) == {"ok:" + stored.access_token}, wave
            refreshes = oidc.token_requests("refresh_token") - before
            if due_wave:
                assert refreshes == 1, (wave, refreshes, f"wave took {took:.1f} s")
                assert stored.access_token != current.access_token
            else:
                assert refreshes == 0, (wave, refreshes, f"wave took {took:.1f} s")
                assert stored.access_token == current.access_token
    finally:
        for w in workers:
            w.join(30)
            if w.is_alive():
                w.terminate()
    assert oidc.token_requests("refresh_token", 200) == waves // 2


async def test_margin_scales_with_the_granted_lifetime_and_follows_the_clock(
    env, oidc, http, oauth_client
):
    """An injected clock moves time: a 5-minute token is not due at issue (the 300 s
    margin alone would make it due at once), is due past half its life, and is refreshed
    exactly once; the refreshed token is not due."""
    oidc.configure(accessTokenTtl=300)
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    provider = await oidc_provider(env, http)
    now = [first.obtained_at]
    refresher = TokenRefresher(TokenEndpointClient(http), clock=lambda: now[0])
    assert first.refresh_margin(provider.spec.refresh_margin_seconds) == 150
    for seconds in (0, 60, 149):
        now[0] = first.obtained_at + timedelta(seconds=seconds)
        assert await refresher.ensure_fresh(store, provider, oauth_client) == first
    assert oidc.token_requests("refresh_token") == 0
    now[0] = first.obtained_at + timedelta(seconds=151)
    fresh = await refresher.ensure_fresh(store, provider, oauth_client)
    assert fresh.access_token != first.access_token
    # The new token's times come from the real clock: continue from its issue.
    now[0] = fresh.obtained_at + timedelta(seconds=1)
    for _ in range(10):
        assert await refresher.ensure_fresh(store, provider, oauth_client) == fresh
    assert oidc.token_requests("refresh_token") == 1
    # An hour-long token keeps the provider's 300 s margin.
    hour = replace(fresh, expires_at=fresh.obtained_at + timedelta(hours=1))
    assert hour.refresh_margin(provider.spec.refresh_margin_seconds) == 300


async def test_transient_errors_back_off_per_connection(env, oidc, http, oauth_client):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    down = UnavailableProvider(retry_after=30)
    with ThreadedServer(down.app, interface="asgi3") as server:
        provider = await default_catalog().resolve(
            "generic-oauth2",
            {"authorization_url": f"{server.url}/auth", "token_url": f"{server.url}/token"},
        )
        await expire_now(store)
        refresher = TokenRefresher(TokenEndpointClient(http))
        with pytest.raises(RefreshBackoffError) as info:
            await refresher.ensure_fresh(store, provider, oauth_client)
        assert info.value.status == 503 and info.value.code == "refresh_backoff"
        assert 25 <= int(info.value.headers["Retry-After"]) <= 30
        for _ in range(20):  # no refresh storm: callers get 503 from the cooldown
            with pytest.raises(RefreshBackoffError):
                await refresher.ensure_fresh(store, provider, oauth_client)
        # Other processes see the cooldown through the store.
        with pytest.raises(RefreshBackoffError):
            await TokenRefresher(TokenEndpointClient(http)).ensure_fresh(
                store, provider, oauth_client
            )
        assert down.attempts == 1
        assert (await store.read_current()).status == "connected"


async def test_client_credentials_grant_for_generic(env, oidc, http, oauth_client):
    provider = await default_catalog().resolve(
        "generic-oauth2",
        {"authorization_url": oidc.authorization_url, "token_url": oidc.token_url},
    )
    tokens = await TokenEndpointClient(http).client_credentials(
        provider, oauth_client, ("api:read",)
    )
    assert tokens.grant == "client_credentials" and tokens.refresh_token is None
    assert tokens.expires_at is not None
    # Renewal runs the grant again.
    connection_id = new_connection(env)
    store = env.token_store(connection_id)
    await store.store_consent(
        replace(tokens, expires_at=tokens.obtained_at), f"conn-{connection_id}"
    )
    renewed = await TokenRefresher(TokenEndpointClient(http)).ensure_fresh(
        store, provider, oauth_client
    )
    assert renewed.access_token != tokens.access_token
    assert oidc.token_requests("client_credentials", 200) == 2


async def test_client_authentication_with_http_basic(env, oidc, http):
    from functions.oauth import OAuthClient
    from tests.fixtures.oidc import BASIC_CLIENT_ID, BASIC_CLIENT_SECRET

    provider = await default_catalog().resolve(
        "generic-oauth2",
        {"authorization_url": oidc.authorization_url, "token_url": oidc.token_url},
    )
    basic = replace(provider, spec=replace(provider.spec, client_auth="basic"))
    client = OAuthClient(BASIC_CLIENT_ID, BASIC_CLIENT_SECRET)
    tokens = await TokenEndpointClient(http).client_credentials(basic, client, ("api:read",))
    assert tokens.access_token
