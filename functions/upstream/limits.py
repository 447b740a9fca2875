"""Per-connection limits: calls a minute and calls in flight at once.

Power Platform allows 500 calls a minute per connection; one user's runaway flow must
not take the gateway (or the upstream pool) from everyone else. The limits are kept
in process: each gateway instance enforces them on its own share of the traffic, so
with N instances a connection may make up to N times as many calls (docs/security.md).

Rate: a token bucket per connection (capacity = calls a minute, refilled evenly), so
bursts up to the minute's budget pass and the long-run rate is bounded. Refusals are
429 `rate_limited` with `Retry-After` (whole seconds until a call would pass).
Concurrency: calls waiting for an upstream's answer at once, per connection.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from functions.errors import RateLimitedError

# Buckets idle this long are full again, so they are dropped (bounded memory).
_IDLE_SECONDS = 120.0


@dataclass
class _Bucket:
    tokens: float
    updated: float
    capacity: float


class ConnectionLimiter:
    def __init__(
        self,
        calls_per_minute: int,
        max_concurrent: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calls_per_minute = calls_per_minute
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}
        self._last_sweep = clock()

    def take(self, connection_id: str, calls_per_minute: int | None = None) -> None:
        """Spend one call of `connection_id`'s budget (`calls_per_minute`, else the
        default), or raise RateLimitedError."""
        limit = calls_per_minute or self.calls_per_minute
        rate = limit / 60.0
        now = self._clock()
        if now - self._last_sweep > _IDLE_SECONDS:
            self._sweep(now)
        bucket = self._buckets.get(connection_id)
        if bucket is None or bucket.capacity != limit:  # new, or the limit was changed
            bucket = self._buckets[connection_id] = _Bucket(float(limit), now, float(limit))
        else:
            bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens < 1.0:
            wait = max(1, math.ceil((1.0 - bucket.tokens) / rate))
            raise RateLimitedError(
                f"connection {connection_id} made more than {limit} calls a minute; retry in "
                f"{wait} s",
                extra={"connectionId": connection_id, "limit": limit},
                headers={"Retry-After": str(wait)},
            )
        bucket.tokens -= 1.0

    def acquire(self, connection_id: str, calls_per_minute: int | None = None) -> None:
        """Start one call of `connection_id`: rate budget, then an in-flight slot.
        Raises RateLimitedError; otherwise `release` must follow (try/finally)."""
        self.take(connection_id, calls_per_minute)
        running = self._in_flight.get(connection_id, 0)
        if running >= self.max_concurrent:
            raise RateLimitedError(
                f"connection {connection_id} already has {running} calls in flight (at most "
                f"{self.max_concurrent}); retry when one finishes",
                extra={"connectionId": connection_id, "concurrencyLimit": self.max_concurrent},
                headers={"Retry-After": "1"},
            )
        self._in_flight[connection_id] = running + 1

    def release(self, connection_id: str) -> None:
        left = self._in_flight[connection_id] - 1
        if left:
            self._in_flight[connection_id] = left
        else:
            del self._in_flight[connection_id]

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        stale = [key for key, b in self._buckets.items() if now - b.updated > _IDLE_SECONDS]
        for key in stale:
            del self._buckets[key]
