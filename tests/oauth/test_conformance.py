"""The provider conformance table of `functions/oauth/README.md`: one test per row.

Every row runs against node oidc-provider configured that way (`server.mjs` knobs: the
grants are real; shapes oidc-provider never produces itself are rewritten on the way out
or answered in front of it, as the comments there say). Every test captures all logs at
DEBUG and checks that no client secret, access token or refresh token appears in them
or in the problem details the error would render.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.errors import GatewayError
from functions.oauth import (
    InvalidGrantError,
    OAuthClient,
    ProviderError,
    ReauthorizationRequiredError,
    RefreshBackoffError,
    TokenEndpointClient,
    TokenRefresher,
    TokenSet,
)
from tests.fixtures.oidc import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI
from tests.oauth.helpers import connect, expire_now, oidc_provider


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def problem_text(exc: GatewayError) -> str:
    """Everything the problem+json of `exc` (and its log line) can contain."""
    return json.dumps(
        {
            "title": exc.title,
            "code": exc.code,
            "detail": exc.detail,
            "extra": exc.extra,
            "headers": exc.headers,
            "str": str(exc),
            "error": getattr(exc, "error", None),
            "description": getattr(exc, "description", None),
        },
        default=str,
    )


def token_values(*token_sets: TokenSet | None) -> list[str]:
    values = [CLIENT_SECRET]
    for tokens in token_sets:
        if tokens is not None:
            values += [tokens.access_token, tokens.refresh_token or ""]
    return [v for v in values if v]


def assert_no_leak(
    logs: pytest.LogCaptureFixture, secrets: Iterable[str], *errors: GatewayError
) -> None:
    texts = [logs.text, *(repr(r.__dict__) for r in logs.records)]
    texts += [problem_text(e) for e in errors]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def refresher(http: Any, **kwargs: Any) -> TokenRefresher:
    return TokenRefresher(TokenEndpointClient(http, timeout=kwargs.pop("timeout", 10.0)), **kwargs)


# -- refresh tokens -----------------------------------------------------------------------


async def test_rotation_on_stores_the_new_refresh_token(env, oidc, http, oauth_client, logs):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    provider = await oidc_provider(env, http)
    fresh = await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert fresh.refresh_token and fresh.refresh_token != first.refresh_token
    assert (await store.read_current()).tokens == fresh
    # The provider killed the old one: it could never be used again.
    with pytest.raises(InvalidGrantError):
        await TokenEndpointClient(http).refresh(provider, oauth_client, first)
    assert_no_leak(logs, token_values(first, fresh))


async def test_rotation_off_keeps_using_the_same_refresh_token(env, oidc, http, oauth_client, logs):
    oidc.configure(rotateRefreshToken=False)
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    provider = await oidc_provider(env, http)
    tokens = refresher(http)
    for _ in range(2):
        await expire_now(store)
        fresh = await tokens.ensure_fresh(store, provider, oauth_client)
        assert fresh.refresh_token == first.refresh_token
        assert fresh.access_token != first.access_token
    assert oidc.token_requests("refresh_token", 200) == 2
    assert_no_leak(logs, token_values(first, fresh))


async def test_refresh_response_without_a_refresh_token_keeps_the_old_one(
    env, oidc, http, oauth_client, logs
):
    oidc.configure(rotateRefreshToken=False, omitRefreshTokenOnRefresh=True)
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    fresh = await refresher(http).ensure_fresh(store, await oidc_provider(env, http), oauth_client)
    assert fresh.refresh_token == first.refresh_token
    assert (await store.read_current()).tokens.refresh_token == first.refresh_token
    assert_no_leak(logs, token_values(first, fresh))


# -- expires_in ---------------------------------------------------------------------------


@pytest.mark.parametrize("expires_in", [None, 0, "0", "soon"])
async def test_expires_in_missing_zero_or_not_a_number_means_no_expiry(
    env, oidc, http, oauth_client, logs, expires_in
):
    """Never due, so never refreshed by time (no refresh on every call); a 401 from the
    upstream forces one refresh."""
    oidc.configure(rewriteTokenResponse={"expires_in": expires_in})
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    assert first.expires_at is None
    provider = await oidc_provider(env, http)
    later = [first.obtained_at + timedelta(days=30)]
    tokens = refresher(http, clock=lambda: later[0])
    for _ in range(5):
        assert await tokens.ensure_fresh(store, provider, oauth_client) == first
    assert oidc.token_requests("refresh_token") == 0
    forced = await tokens.ensure_fresh(store, provider, oauth_client, force=True)
    assert forced.access_token != first.access_token and forced.expires_at is None
    assert oidc.token_requests("refresh_token", 200) == 1
    assert_no_leak(logs, token_values(first, forced))


async def test_expires_in_missing_uses_the_catalog_default_lifetime(
    env, oidc, http, oauth_client, logs
):
    oidc.configure(rewriteTokenResponse={"expires_in": None})
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    provider = await oidc_provider(env, http)
    provider = replace(provider, spec=replace(provider.spec, default_lifetime_seconds=7200))
    await expire_now(store)
    fresh = await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert fresh.lifetime_seconds == 7200  # Salesforce-style: documented, not sent
    assert_no_leak(logs, token_values(first, fresh))


async def test_expires_in_as_a_string_is_read_as_a_number(env, oidc, http, oauth_client, logs):
    oidc.configure(rewriteTokenResponse={"expires_in": "600"})
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    assert first.lifetime_seconds == 600
    provider = await oidc_provider(env, http)
    assert first.refresh_margin(provider.spec.refresh_margin_seconds) == 300
    now = [first.obtained_at + timedelta(seconds=200)]
    tokens = refresher(http, clock=lambda: now[0])
    assert await tokens.ensure_fresh(store, provider, oauth_client) == first
    now[0] = first.obtained_at + timedelta(seconds=301)
    fresh = await tokens.ensure_fresh(store, provider, oauth_client)
    assert fresh.access_token != first.access_token and fresh.lifetime_seconds == 600
    assert_no_leak(logs, token_values(first, fresh))


async def test_ext_expires_in_serves_the_token_while_the_provider_is_down(
    env, oidc, http, oauth_client, logs
):
    """Entra ID's extended lifetime: scheduling follows `expires_in`; while refreshing
    fails transiently, an expired token within `ext_expires_in` is still sent."""
    oidc.configure(rewriteTokenResponse={"ext_expires_in": 7200})
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    assert first.extended_expires_at is not None
    assert first.extended_expires_at - first.expires_at >= timedelta(seconds=3500)
    provider = await oidc_provider(env, http)
    assert first.refresh_margin(provider.spec.refresh_margin_seconds) == 300
    expired = await expire_now(store)
    oidc.configure(failTokenRequests=1)
    served = await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert served == expired  # no 503 for the caller
    assert (await store.read_current()).backoff_until is not None
    # Without the extension the same outage is a 503.
    oidc.configure(rewriteTokenResponse=None)
    _, store2, second = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    assert second.extended_expires_at is None
    await expire_now(store2)
    oidc.configure(failTokenRequests=1)
    with pytest.raises(RefreshBackoffError) as info:
        await refresher(http).ensure_fresh(store2, provider, oauth_client)
    assert_no_leak(logs, token_values(first, second), info.value)


# -- errors -------------------------------------------------------------------------------


async def test_invalid_grant_needs_reauthorization(env, oidc, http, oauth_client, logs):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    oidc.revoke(first.refresh_token)
    await expire_now(store)
    provider = await oidc_provider(env, http)
    with pytest.raises(ReauthorizationRequiredError) as info:
        await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert info.value.status == 401 and info.value.code == "connection_needs_reauthorization"
    assert (await store.read_current()).status == "reauthorization_required"
    with pytest.raises(ReauthorizationRequiredError):
        await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert oidc.token_requests("refresh_token") == 1
    assert_no_leak(logs, token_values(first), info.value)


async def test_invalid_client_is_the_connectors_fault_not_the_users(env, oidc, http, logs):
    """A wrong client secret: 502 naming `invalid_client`; the user's connection stays
    connected (a fixed client secret fixes it) and the provider is not hammered."""
    good = OAuthClient(CLIENT_ID, CLIENT_SECRET, ("email",))
    _, store, first = await connect(env, oidc, http, good, REDIRECT_URI)
    await expire_now(store)
    wrong_secret = "wrong-client-secret-3f9c1a"  # noqa: S105 - a test value
    wrong = OAuthClient(CLIENT_ID, wrong_secret, ("email",))
    provider = await oidc_provider(env, http)
    tokens = refresher(http)
    with pytest.raises(ProviderError) as info:
        await tokens.ensure_fresh(store, provider, wrong)
    assert info.value.status == 502 and info.value.code == "oauth_provider_error"
    assert info.value.error == "invalid_client"
    current = await store.read_current()
    assert current.status == "connected" and current.backoff_until is not None
    for _ in range(5):
        with pytest.raises(RefreshBackoffError) as backoff:
            await tokens.ensure_fresh(store, provider, wrong)
    assert oidc.token_requests("refresh_token") == 1
    assert_no_leak(logs, [*token_values(first), wrong_secret], info.value, backoff.value)


@pytest.mark.parametrize("status", [400, 503])
async def test_temporarily_unavailable_backs_off_and_serves_a_valid_token(
    env, oidc, http, oauth_client, logs, status
):
    """`temporarily_unavailable` is transient whatever the status (Entra ID sends it
    with 400 and 503): a still-valid token is served, an expired one is a 503."""
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    provider = await oidc_provider(env, http)
    # Due (past half its hour) but valid.
    now = [first.obtained_at + timedelta(seconds=3400)]
    tokens = refresher(http, clock=lambda: now[0], backoff_initial=300)
    oidc.configure(failTokenRequests=1, failStatus=status, failRetryAfter="")
    assert await tokens.ensure_fresh(store, provider, oauth_client) == first
    assert (await store.read_current()).backoff_until is not None
    now[0] = first.obtained_at + timedelta(seconds=3601)  # expired, still backing off
    with pytest.raises(RefreshBackoffError) as info:
        await tokens.ensure_fresh(store, provider, oauth_client)
    assert info.value.status == 503 and info.value.code == "refresh_backoff"
    assert oidc.token_requests("unknown", status) == 1
    assert oidc.token_requests("refresh_token") == 0
    assert_no_leak(logs, token_values(first), info.value)


async def test_429_with_retry_after_is_honoured(env, oidc, http, oauth_client, logs):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    provider = await oidc_provider(env, http)
    oidc.configure(failTokenRequests=1, failStatus=429, failRetryAfter="40")
    tokens = refresher(http)
    with pytest.raises(RefreshBackoffError) as info:
        await tokens.ensure_fresh(store, provider, oauth_client)
    assert 35 <= int(info.value.headers["Retry-After"]) <= 40
    for _ in range(10):  # nobody retries before the provider said so, in any process
        with pytest.raises(RefreshBackoffError):
            await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert oidc.token_requests("unknown", 429) == 1
    assert oidc.token_requests("refresh_token") == 0
    assert_no_leak(logs, token_values(first), info.value)


@pytest.mark.parametrize("status", [400, 403])
async def test_html_error_page_is_a_provider_error_without_the_page(
    env, oidc, http, oauth_client, logs, status
):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    provider = await oidc_provider(env, http)
    oidc.configure(failTokenRequests=1, failStatus=status, failHtml=True, failRetryAfter="")
    with pytest.raises(ProviderError) as info:
        await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert info.value.status == 502 and info.value.code == "oauth_provider_error"
    assert "unreadable body" in info.value.detail
    assert "<html" not in problem_text(info.value)
    assert (await store.read_current()).status == "connected"
    assert_no_leak(logs, token_values(first), info.value)


async def test_html_error_page_with_5xx_is_transient(env, oidc, http, oauth_client, logs):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    provider = await oidc_provider(env, http)
    oidc.configure(failTokenRequests=1, failStatus=502, failHtml=True, failRetryAfter="")
    with pytest.raises(RefreshBackoffError) as info:
        await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert "<html" not in problem_text(info.value)
    assert_no_leak(logs, token_values(first), info.value)


# -- scopes and timeouts ------------------------------------------------------------------


async def test_scopes_narrowed_on_refresh_are_stored_and_logged(
    env, oidc, http, oauth_client, logs
):
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    assert first.scope is not None and "email" in first.scope.split()
    provider = await oidc_provider(env, http)
    await expire_now(store)
    oidc.configure(rewriteTokenResponse={"scope": "openid offline_access"})
    fresh = await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert fresh.scope == "openid offline_access"
    assert (await store.read_current()).tokens.scope == "openid offline_access"
    warnings = [r.getMessage() for r in logs.records if "narrowed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith("dropped: email")
    # A response that omits `scope` (RFC 6749 §5.1: unchanged) keeps the stored one.
    oidc.configure(rewriteTokenResponse={"scope": None})
    await expire_now(store)
    again = await refresher(http).ensure_fresh(store, provider, oauth_client)
    assert again.scope == "openid offline_access"
    assert_no_leak(logs, token_values(first, fresh, again))


async def test_slow_token_endpoint_times_out_into_a_backoff(env, oidc, http, oauth_client, logs):
    """The token client's timeout ends the wait: 503 refresh_backoff for an expired token.
    Without rotation the next attempt after the backoff succeeds. (With rotation, a
    refresh that timed out may have rotated the token at the provider: the next attempt
    then gets invalid_grant and the connection needs reauthorization; see the README.)"""
    oidc.configure(rotateRefreshToken=False)
    _, store, first = await connect(env, oidc, http, oauth_client, REDIRECT_URI)
    await expire_now(store)
    provider = await oidc_provider(env, http)
    now = [first.obtained_at + timedelta(hours=2)]
    tokens = refresher(http, timeout=0.5, clock=lambda: now[0])
    oidc.configure(tokenDelayMs=2000)
    with pytest.raises(RefreshBackoffError) as info:
        await tokens.ensure_fresh(store, provider, oauth_client)
    assert info.value.status == 503
    oidc.configure(tokenDelayMs=0)
    now[0] += timedelta(minutes=10)  # past the backoff
    fresh = await tokens.ensure_fresh(store, provider, oauth_client)
    assert fresh.access_token != first.access_token
    assert_no_leak(logs, token_values(first, fresh), info.value)
