"""Acting on behalf of the caller: Entra ID on-behalf-of (Power Platform `aad` with
`enableOnbehalfOfLogin`) and OAuth 2.0 Token Exchange (RFC 8693) for generic providers.

The caller's own token (the one the gateway validated) is exchanged for a token to the
downstream resource: msal `acquire_token_on_behalf_of` for `tokenClient: msal` providers,
RFC 8693 for providers with `tokenExchange` (catalog flag, or discovery's
`grant_types_supported`). No per-connection consent, no refresh token, nothing in the
secret store.

* **Cache**: per (authority, client, user, scopes), in process memory only, never past
  the caller's token's own `exp` (the downstream token's expiry is cut to it), and
  refreshed like any token: due when less than min(provider margin, half its lifetime)
  remains. Bounded (`max_entries`, oldest entries dropped first). A new caller token
  for the same user reuses a cached downstream token within the old token's life.
* **Single flight**: concurrent calls of one user for one scope share one exchange.
* **Errors** (Entra's answers): `interaction_required` or a `claims` challenge (MFA,
  conditional access) -> 401 `obo_interaction_required` with `claims`; missing consent
  (`consent_required`, AADSTS65001) -> 403 `obo_consent_required`; any other
  `invalid_grant` (a token the provider refuses as an assertion) -> 401
  `obo_assertion_rejected`; RFC 8693 `invalid_target` (the client may not get tokens for
  that audience) -> 403 `obo_consent_required`; 5xx / 429 / timeouts -> 503
  `oauth_provider_unavailable`.
  The assertion and the downstream token are never logged or put in an error.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt

from functions.errors import (
    OnBehalfOfAssertionRejectedError,
    OnBehalfOfConsentRequiredError,
    OnBehalfOfInteractionRequiredError,
)
from functions.oauth.catalog import ResolvedProvider
from functions.oauth.client import TokenEndpointClient, token_set_from_response
from functions.oauth.errors import ProviderError
from functions.oauth.tokens import OAuthClient, TokenSet

_INTERACTION_SUBERRORS = {
    "basic_action",
    "additional_action",
    "message_only",
    "user_password_expired",
    "bad_token",
}
# AADSTS codes of missing consent (65001: not consented; 65004: consent declined).
_CONSENT_CODES = ("AADSTS65001", "AADSTS65004")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def assertion_expiry(assertion: str) -> datetime | None:
    """`exp` of the caller's token (already validated by the identity layer)."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return datetime.fromtimestamp(exp, UTC)


def obo_error(
    provider: ResolvedProvider, body: dict[str, Any], scopes: tuple[str, ...]
) -> Exception:
    """The gateway error for an on-behalf-of error response."""
    error = str(body.get("error") or "unknown_error")
    suberror = str(body.get("suberror") or "")
    description = str(body.get("error_description") or "")
    claims = body.get("claims")
    what = " ".join(scopes) or "the downstream API"
    if error == "invalid_target":
        return OnBehalfOfConsentRequiredError(
            f"{provider.spec.display_name} does not allow the gateway's client to obtain "
            f"tokens for {what} on a user's behalf; an administrator must permit it",
            extra={"scopes": list(scopes)},
        )
    if (
        error == "consent_required"
        or suberror == "consent_required"
        or any(code in description for code in _CONSENT_CODES)
    ):
        return OnBehalfOfConsentRequiredError(
            f"{provider.spec.display_name}: nobody consented to the gateway's app calling "
            f"{what} for this user; an administrator must grant consent to the app "
            "(there is no per-connection consent for on-behalf-of connections)",
            extra={"scopes": list(scopes)},
        )
    if error == "interaction_required" or suberror in _INTERACTION_SUBERRORS or claims:
        extra: dict[str, Any] = {}
        if isinstance(claims, str) and claims:
            extra["claims"] = claims[:2000]
        return OnBehalfOfInteractionRequiredError(
            f"{provider.spec.display_name} needs you to sign in again interactively "
            "(multi-factor authentication or a conditional access policy) before the "
            "gateway can call the API on your behalf",
            extra=extra,
            headers={"WWW-Authenticate": 'Bearer error="insufficient_claims"'}
            if "claims" in extra
            else None,
        )
    if error == "invalid_grant":
        return OnBehalfOfAssertionRejectedError(
            f"{provider.spec.display_name} refused your token for on-behalf-of ({error})"
        )
    return ProviderError(
        f"{provider.spec.display_name} token endpoint: {error}",
        error=error,
        description=description or None,
    )


class OnBehalfOfExchanger:
    """Shared by all requests of a process; see the module docstring."""

    def __init__(
        self,
        tokens: TokenEndpointClient,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.tokens = tokens
        self.max_entries = max_entries
        self.clock = clock
        self._cache: OrderedDict[tuple[str, ...], TokenSet] = OrderedDict()
        self._inflight: dict[tuple[str, ...], asyncio.Task[TokenSet]] = {}
        self.exchanges = 0  # token requests made (tests and budgets)

    async def token_for(
        self,
        provider: ResolvedProvider,
        client: OAuthClient,
        assertion: str,
        *,
        user_key: str,
        scopes: tuple[str, ...],
    ) -> TokenSet:
        """A downstream token for the caller (`user_key`: tenant and object id)."""
        caller_expiry = assertion_expiry(assertion)
        now = self.clock()
        if caller_expiry is None or caller_expiry <= now:
            raise OnBehalfOfAssertionRejectedError(
                "your token has no future expiry; it cannot be exchanged on your behalf"
            )
        authority = provider.msal_oidc_authority or provider.msal_authority or provider.token_url
        key = (authority, client.client_id, user_key, " ".join(sorted(scopes)))
        margin = provider.spec.refresh_margin_seconds
        cached = self._cache.get(key)
        if cached is not None and not cached.needs_refresh(margin, now):
            self._cache.move_to_end(key)
            return cached
        loop = asyncio.get_running_loop()
        task = self._inflight.get(key)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._exchange(provider, client, assertion, scopes, key))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._forget(key, t))
        return await asyncio.shield(task)

    def _forget(self, key: tuple[str, ...], task: asyncio.Task[TokenSet]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: waiters re-raise it themselves

    async def _exchange(
        self,
        provider: ResolvedProvider,
        client: OAuthClient,
        assertion: str,
        scopes: tuple[str, ...],
        key: tuple[str, ...],
    ) -> TokenSet:
        self.exchanges += 1
        if provider.spec.token_client == "msal":  # noqa: S105 - a setting's name, not a secret
            body = await self.tokens.on_behalf_of(provider, client, assertion, scopes)
        elif provider.token_exchange:
            body = await self.tokens.token_exchange(provider, client, assertion, scopes)
        else:
            raise ProviderError(
                f"{provider.spec.display_name} offers no way to act on a caller's behalf "
                "(neither Entra ID on-behalf-of nor RFC 8693 token exchange)"
            )
        if "error" in body:
            raise obo_error(provider, body, scopes)
        tokens = token_set_from_response(
            provider, body, client_id=client.client_id, grant="authorization_code"
        )
        # Never beyond the caller's own token: the exchange is only as good as it.
        caller_expiry = assertion_expiry(assertion)
        if caller_expiry is not None and (
            tokens.expires_at is None or tokens.expires_at > caller_expiry
        ):
            tokens = TokenSet(
                access_token=tokens.access_token,
                token_type=tokens.token_type,
                expires_at=caller_expiry,
                scope=tokens.scope,
                obtained_at=tokens.obtained_at,
            )
        else:
            # No refresh token is kept: the next exchange uses the caller's next token.
            tokens = TokenSet(
                access_token=tokens.access_token,
                token_type=tokens.token_type,
                expires_at=tokens.expires_at,
                scope=tokens.scope,
                obtained_at=tokens.obtained_at,
            )
        self._cache[key] = tokens
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return tokens

    def forget_user(self, user_key: str) -> int:
        """Drop a user's cached tokens (sign-out, offboarding); how many were dropped."""
        keys = [k for k in self._cache if k[2] == user_key]
        for k in keys:
            del self._cache[k]
        return len(keys)


def user_key(tenant_id: str, object_id: str) -> str:
    """The cache key of a caller; hashed so cache dumps name nobody."""
    return hashlib.sha256(f"{tenant_id}/{object_id}".encode()).hexdigest()[:32]
