"""A small in-process cache with a time-to-live, bounded in size.

Used for metadata on the invoke path: a warm invocation reads no table. The TTL is the
documented bound on how long another instance may act on a changed or deleted record
(GATEWAY_METADATA_CACHE_SECONDS); changes made by this instance evict at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from functions import telemetry

V = TypeVar("V")


class TtlCache(Generic[V]):
    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        name: str = "metadata",  # the cache's label in metrics (issue 19)
    ) -> None:
        self.name = name
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is not None and item[0] <= self._clock():
            del self._items[key]
            item = None
        telemetry.record_cache(self.name, item is not None)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, value: V) -> None:
        self._items[key] = (self._clock() + self.ttl_seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def evict(self, key: Hashable) -> None:
        self._items.pop(key, None)

    def evict_where(self, predicate: Callable[[V], bool]) -> None:
        """Drop every entry whose value matches (e.g. all connections of a connector)."""
        for key in [k for k, (_, value) in self._items.items() if predicate(value)]:
            del self._items[key]

    def clear(self) -> None:
        self._items.clear()
