"""`TokenRefresher.ensure_fresh`: a usable access token, refreshed at most once per expiry.

Contract (for one connection):

* A token that is not due is returned as is: no I/O when the caller passes the
  `StoredTokens` it already has. Due means: less than min(provider margin, half the
  lifetime the provider granted) remains (`TokenSet.needs_refresh`), so a 6-second or a
  5-minute token is refreshed once per lifetime, not on every call after the first
  refresh. A token without an expiry is never due; a 401 from the upstream forces one
  refresh (`force=True`).
* In one process, concurrent callers share one refresh (one task per connection).
* Across processes, one refresh per expiry: the refreshing process holds a lease on the
  connection's table entity (`ConnectionTokenStore.acquire_lease`), re-reads after
  taking it and skips the refresh if someone else already did it (the secret version
  changed and the new token is fresh). Processes that do not get the lease poll the
  store (every `poll_interval`, up to `wait_timeout`) until the new token appears.
* A refresh response without a refresh token keeps the old one; a rotated one replaces
  it, in the same secret version as the new access token (`TokenSet.merged_with_previous`).
* `invalid_grant` when the stored refresh token has changed since we read it is a lost
  race: we re-read and use (or refresh with) the newer tokens. An `invalid_grant` for the
  current refresh token is real: the connection is marked `reauthorization_required`
  and `ReauthorizationRequiredError` (401) is raised, now and on every later call, without
  contacting the provider again until a new consent.
* Transient provider errors (5xx, 429, timeouts) start a per-connection cooldown
  (exponential, honouring Retry-After) recorded in the store so every process sees it.
  While it lasts a still-valid token is returned; an expired one raises
  `RefreshBackoffError` (503 `refresh_backoff` with Retry-After) instead of retrying.

Storage is behind the `ConnectionTokenStore` protocol; `functions.oauth.table_store` is a
reference implementation on Table Storage + the secret store.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from functions.oauth.catalog import ResolvedProvider
from functions.oauth.client import TokenEndpointClient
from functions.oauth.errors import (
    InvalidGrantError,
    ProviderError,
    ReauthorizationRequiredError,
    RefreshBackoffError,
    TransientProviderError,
)
from functions.oauth.tokens import OAuthClient, TokenSet

log = logging.getLogger(__name__)

STATUS_CONNECTED = "connected"
STATUS_REAUTHORIZATION_REQUIRED = "reauthorization_required"


@dataclass(frozen=True)
class StoredTokens:
    """The connection's current tokens as stored, and what the refresher needs to know."""

    tokens: TokenSet | None
    version: str | None
    status: str = STATUS_CONNECTED
    backoff_until: datetime | None = None


class ConnectionTokenStore(Protocol):
    """Storage of one connection's tokens, implemented by the host application.

    `key` identifies the connection within the process (e.g. "tenant/connection").
    Lease handles are opaque to the refresher; `write_tokens`, `record_backoff` and
    `mark_reauthorization_required` receive the handle so an implementation can write
    and release in one conditional update. `release_lease` is always called at the end
    and must be a no-op if the lease was already released that way.
    """

    @property
    def key(self) -> str: ...

    async def read_current(self) -> StoredTokens:
        """The connection's status and tokens, read from storage (not from a cache
        that can be older than the last refresh)."""
        ...

    async def acquire_lease(self, owner: str) -> Any | None:
        """Take the cross-process refresh lease, or None if another owner holds it."""
        ...

    async def release_lease(self, lease: Any) -> None: ...

    async def write_tokens(self, tokens: TokenSet, lease: Any) -> StoredTokens:
        """Store `tokens` as a new secret version and make it current; clear any backoff."""
        ...

    async def record_backoff(self, until: datetime, lease: Any) -> None:
        """Remember that nobody should refresh before `until`."""
        ...

    async def mark_reauthorization_required(self, reason: str, lease: Any | None) -> None:
        """Set status `reauthorization_required` (no refresh until a new consent)."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenRefresher:
    """Shared by all requests of a process. See the module docstring for the contract."""

    def __init__(
        self,
        tokens: TokenEndpointClient,
        *,
        instance_id: str | None = None,
        wait_timeout: float = 30.0,
        poll_interval: float = 0.1,
        backoff_initial: float = 5.0,
        backoff_max: float = 300.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.tokens = tokens
        # Wall clock for expiry decisions; tests inject one to move time without sleeping.
        self.clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._inflight: dict[str, asyncio.Task[TokenSet]] = {}
        self._cooldown: dict[str, datetime] = {}
        self._failures: dict[str, int] = {}
        self.refreshes = 0  # token requests this process made (tests and budgets)

    # -- public ------------------------------------------------------------------------------

    async def ensure_fresh(
        self,
        store: ConnectionTokenStore,
        provider: ResolvedProvider,
        client: OAuthClient,
        *,
        current: StoredTokens | None = None,
        force: bool = False,
    ) -> TokenSet:
        """A token good for at least the provider's refresh margin (or still valid).

        `current` may come from the caller's caches; if it is due, storage is re-read.
        `force` refreshes even if not due (after the upstream rejected the token).
        Raises `ReauthorizationRequiredError`, `RefreshBackoffError`, `ProviderError`.
        """
        if current is None:
            current = await store.read_current()
        tokens = self._usable(current)
        margin = provider.spec.refresh_margin_seconds
        if not force and not tokens.needs_refresh(margin, self.clock()):
            return tokens
        backoff = self._backoff_until(store.key, current)
        if backoff is not None:
            return self._during_backoff(tokens, backoff)
        loop = asyncio.get_running_loop()
        task = self._inflight.get(store.key)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._refresh(store, provider, client, current, force))
            self._inflight[store.key] = task
            key = store.key
            task.add_done_callback(lambda t: self._forget(key, t))
        # shield: a caller that gives up must not cancel the refresh others wait for.
        return await asyncio.shield(task)

    def is_due(
        self, stored: StoredTokens, provider: ResolvedProvider, now: datetime | None = None
    ) -> bool:
        """True when `stored` should be refreshed now (used by the timer job)."""
        if stored.tokens is None or stored.status != STATUS_CONNECTED:
            return False
        return stored.tokens.needs_refresh(
            provider.spec.refresh_margin_seconds, now or self.clock()
        )

    # -- internals ---------------------------------------------------------------------------

    def _forget(self, key: str, task: asyncio.Task[TokenSet]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: waiters re-raise it themselves

    @staticmethod
    def _usable(stored: StoredTokens) -> TokenSet:
        if stored.status == STATUS_REAUTHORIZATION_REQUIRED:
            raise ReauthorizationRequiredError(
                "the connection's authorization was revoked or has expired; reauthorize it"
            )
        if stored.tokens is None:
            raise ReauthorizationRequiredError("the connection has no tokens yet; complete consent")
        return stored.tokens

    def _backoff_until(self, key: str, stored: StoredTokens) -> datetime | None:
        now = self.clock()
        candidates = [t for t in (self._cooldown.get(key), stored.backoff_until) if t and t > now]
        return max(candidates) if candidates else None

    def _during_backoff(self, tokens: TokenSet, until: datetime) -> TokenSet:
        now = self.clock()
        if tokens.usable_during_outage(now):
            return tokens  # still valid (or extended): serve it rather than fail
        raise RefreshBackoffError(
            "refreshing the connection's token failed recently; retry later",
            retry_after=(until - now).total_seconds(),
        )

    def _is_fresh_after(self, latest: StoredTokens, start: StoredTokens, margin: int) -> bool:
        return (
            latest.version != start.version
            and latest.tokens is not None
            and not latest.tokens.needs_refresh(margin, self.clock())
        )

    async def _refresh(
        self,
        store: ConnectionTokenStore,
        provider: ResolvedProvider,
        client: OAuthClient,
        start: StoredTokens,
        force: bool,
    ) -> TokenSet:
        margin = provider.spec.refresh_margin_seconds
        owner = f"{self.instance_id}-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + self.wait_timeout
        while True:
            lease = await store.acquire_lease(owner)
            if lease is not None:
                try:
                    # Re-read under the lease: another process may have refreshed between
                    # our read and our take (then there is nothing left to do).
                    latest = await store.read_current()
                    tokens = self._usable(latest)
                    if self._is_fresh_after(latest, start, margin) or (
                        not force and not tokens.needs_refresh(margin, self.clock())
                    ):
                        return tokens
                    backoff = self._backoff_until(store.key, latest)
                    if backoff is not None:
                        return self._during_backoff(tokens, backoff)
                    return await self._refresh_under_lease(store, lease, provider, client, latest)
                finally:
                    await store.release_lease(lease)
            # Someone else is refreshing: wait for their result instead of competing.
            await asyncio.sleep(self.poll_interval)
            latest = await store.read_current()
            tokens = self._usable(latest)
            if self._is_fresh_after(latest, start, margin):
                return tokens
            backoff = self._backoff_until(store.key, latest)
            if backoff is not None:
                return self._during_backoff(tokens, backoff)
            if time.monotonic() > deadline:
                if not tokens.is_expired(self.clock()):
                    return tokens
                raise RefreshBackoffError(
                    "another instance is still refreshing the connection's token", retry_after=1
                )

    async def _refresh_under_lease(
        self,
        store: ConnectionTokenStore,
        lease: Any,
        provider: ResolvedProvider,
        client: OAuthClient,
        latest: StoredTokens,
    ) -> TokenSet:
        margin = provider.spec.refresh_margin_seconds
        tokens = self._usable(latest)
        if not tokens.renewable:
            if not tokens.is_expired(self.clock()):
                return tokens
            await store.mark_reauthorization_required("expired_without_refresh_token", lease)
            raise ReauthorizationRequiredError(
                "the connection's token expired and the provider issued no refresh token"
            )
        for _ in range(3):
            try:
                self.refreshes += 1
                fresh = await self.tokens.refresh(provider, client, tokens)
            except InvalidGrantError as exc:
                again = await store.read_current()
                newer = again.tokens
                if (
                    again.status == STATUS_CONNECTED
                    and newer is not None
                    and newer.refresh_token != tokens.refresh_token
                ):
                    # Lost race: someone stored a newer refresh token after our read.
                    log.info(
                        "refresh lost a race; using the newer tokens", extra={"key": store.key}
                    )
                    if not newer.needs_refresh(margin, self.clock()):
                        return newer
                    tokens = newer
                    continue
                await store.mark_reauthorization_required(exc.error or "invalid_grant", lease)
                self._cooldown.pop(store.key, None)
                log.warning(
                    "connection needs reauthorization", extra={"key": store.key, "error": exc.error}
                )
                raise ReauthorizationRequiredError(
                    "the provider rejected the connection's refresh token; reauthorize it"
                ) from exc
            except TransientProviderError as exc:
                until = await self._start_backoff(store, lease, exc.retry_after)
                log.warning("token refresh failed transiently", extra={"key": store.key})
                if tokens.usable_during_outage(self.clock()):
                    return tokens
                raise RefreshBackoffError(
                    "the OAuth provider is unavailable; retry later",
                    retry_after=(until - self.clock()).total_seconds(),
                ) from exc
            except ProviderError:
                # Not the user's grant (e.g. invalid_client: connector misconfigured):
                # back off too, so a broken connector is not hammered.
                await self._start_backoff(store, lease, None)
                raise
            self._failures.pop(store.key, None)
            self._cooldown.pop(store.key, None)
            written = await store.write_tokens(fresh, lease)
            return written.tokens or fresh
        raise RefreshBackoffError("the connection's token keeps changing; retry", retry_after=1)

    async def _start_backoff(
        self, store: ConnectionTokenStore, lease: Any, retry_after: float | None
    ) -> datetime:
        failures = self._failures.get(store.key, 0) + 1
        self._failures[store.key] = failures
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (failures - 1))
        delay = max(delay, min(retry_after or 0.0, self.backoff_max))
        until = self.clock() + timedelta(seconds=delay)
        self._cooldown[store.key] = until
        await store.record_backoff(until, lease)
        return until
