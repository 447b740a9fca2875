"""Signing keys for bearer-token validation: a cached JWKS (RFC 7517) fetched over HTTPS,
and a static one for the local development issuer.

Both expose `async get_key(kid) -> jwt.PyJWK`. Only RSA signing keys are kept, and each
is bound to RS256 at parse time, so a key can never be used with another algorithm
whatever a token's header says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx
import jwt

from functions.errors import DependencyUnavailableError

logger = logging.getLogger(__name__)

SIGNING_ALGORITHM = "RS256"
FETCH_TIMEOUT_SECONDS = 10.0
# Retry delay while no keys have ever been fetched (see JwksCache).
EMPTY_RETRY_SECONDS = 5.0


class UnknownSigningKeyError(LookupError):
    """No signing key with this `kid` (after at most one permitted refresh)."""


class JwksUnavailableError(DependencyUnavailableError):
    """The JWKS endpoint could not be read and no previously fetched keys are available."""

    code = "identity_provider_unavailable"


class KeySource(Protocol):
    """Where a token validator gets the public key named by a token's `kid`."""

    async def get_key(self, kid: str) -> jwt.PyJWK: ...


def parse_jwks(document: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    """Index the RSA signing keys of a JWKS document by `kid`.

    Keys that are not RSA, are marked for encryption, name another algorithm, have no
    `kid` or do not parse are skipped: providers publish mixed sets, and one odd key
    must not take the others down. Raises ValueError if `keys` is not a list.
    """
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    indexed: dict[str, jwt.PyJWK] = {}
    for entry in keys:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", SIGNING_ALGORITHM) != (
            SIGNING_ALGORITHM
        ):
            continue
        try:
            indexed[kid] = jwt.PyJWK(entry, algorithm=SIGNING_ALGORITHM)
        except jwt.PyJWTError:
            logger.warning("skipping unusable key %r in JWKS", kid)
    return indexed


class StaticJwks:
    """A fixed key set (the dev issuer's): no network, never refreshed."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = parse_jwks(jwks)

    async def get_key(self, kid: str) -> jwt.PyJWK:
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownSigningKeyError(kid) from None


class JwksCache:
    """Keys from a JWKS URL, fetched on first use and cached for `ttl_seconds`.

    Contract:
    - A known `kid` is served from memory (no network) until the TTL ends.
    - An unknown `kid` triggers a refetch (keys rotate), but at most once per
      `min_refresh_interval_seconds`, so tokens with made-up `kid`s cannot make the
      gateway hammer the identity provider; otherwise `UnknownSigningKeyError`.
    - Concurrent callers share one fetch.
    - If a fetch fails while older keys are held, those keep being used (an identity
      provider outage must not lock every caller out); with no keys at all,
      `JwksUnavailableError` (503) is raised, and the fetch is retried at most every
      few seconds.

    `http` is borrowed, never closed; without it each fetch uses a short-lived client
    (fetches are rare, so a pool would buy nothing).
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient | None = None,
        ttl_seconds: float = 3600,
        min_refresh_interval_seconds: float = 300,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._ttl = ttl_seconds
        self._min_interval = min_refresh_interval_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        # Time of the last attempt, successful or not: the refetch rate limit counts
        # failures too, so a down endpoint is not retried on every request.
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def get_key(self, kid: str) -> jwt.PyJWK:
        """The key named `kid`. Raises UnknownSigningKeyError or JwksUnavailableError."""
        keys = self._keys
        if keys is not None and kid in keys and not self._expired():
            return keys[kid]
        async with self._lock:
            # Re-check: another caller may have refreshed while we waited.
            if self._needs_fetch(kid):
                await self._refresh()
            keys = self._keys
        if keys is None:
            raise JwksUnavailableError(f"no signing keys available from {self.url}")
        try:
            return keys[kid]
        except KeyError:
            raise UnknownSigningKeyError(kid) from None

    def _expired(self) -> bool:
        return self._clock() - self._fetched_at >= self._ttl

    def _needs_fetch(self, kid: str) -> bool:
        if self._keys is None:
            # Nothing to serve, so every caller is failing: retry soon, but not on
            # every request while the endpoint is down.
            return self._may_attempt(min(self._min_interval, EMPTY_RETRY_SECONDS))
        if self._expired():
            return self._may_attempt()
        return kid not in self._keys and self._may_attempt()

    def _may_attempt(self, interval: float | None = None) -> bool:
        interval = self._min_interval if interval is None else interval
        return self._attempted_at is None or self._clock() - self._attempted_at >= interval

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            keys = await self._fetch()
        except JwksUnavailableError as exc:
            if self._keys is None:
                raise
            logger.warning("keeping cached signing keys: %s", exc.detail)
            return
        self._keys = keys
        self._fetched_at = self._clock()

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        try:
            if self._http is not None:
                response = await self._http.get(self.url, timeout=FETCH_TIMEOUT_SECONDS)
            else:
                async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
                    response = await client.get(self.url)
        except httpx.HTTPError as exc:
            raise JwksUnavailableError(
                f"could not fetch signing keys from {self.url}: {type(exc).__name__}"
            ) from exc
        if response.status_code != 200:
            raise JwksUnavailableError(
                f"could not fetch signing keys from {self.url}: HTTP {response.status_code}"
            )
        try:
            document = response.json()
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            return parse_jwks(document)
        except ValueError as exc:
            raise JwksUnavailableError(
                f"signing keys from {self.url} are not a valid JWKS: {exc}"
            ) from exc
