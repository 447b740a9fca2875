"""`CachedSecretStore`: the async facade services use in front of a blocking `SecretStore`.

* Every call to the inner store runs in a worker thread (`asyncio.to_thread`), never on
  the event loop.
* Reads of an explicit version are cached in process, bounded LRU. Versions are
  immutable, so an entry can never be stale and needs no TTL. Reads of the latest
  version (`version=None`) always reach the inner store; their answer is then cached under
  the concrete version it names.
* Concurrent misses for the same (name, version) share one inner read.
* `delete_secret` evicts every cached version of the name; a read that was in flight
  during a delete does not put its (now deleted) value back.
* `reads` / `writes` / `deletes` count calls that reached the inner store, `hits` the reads
  answered from the cache (benchmarks report Key Vault calls per invocation).
* Each value that passes through is registered with `functions.logging_redaction` (when
  that module exists) so log redaction knows it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable

from functions import telemetry
from functions.stores.secrets.base import SecretListing, SecretStore, SecretValue

_register_secret: Callable[[str], object] | None
try:
    from functions.logging_redaction import register_secret as _imported_register
except ModuleNotFoundError as exc:  # the module is optional; a broken one must still fail
    if exc.name != "functions.logging_redaction":
        raise
    _register_secret = None
else:
    _register_secret = _imported_register

_Key = tuple[str, str]  # (lower-cased name, version): Key Vault names are case-insensitive


class CachedSecretStore:
    """Async, caching facade over `inner`. Safe to share across tasks and threads."""

    def __init__(self, inner: SecretStore, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.inner = inner
        self.max_entries = max_entries
        self.reads = 0
        self.writes = 0
        self.deletes = 0
        self.hits = 0
        self._entries: OrderedDict[_Key, SecretValue] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every delete. A read that started before a delete finished must not
        # cache its answer: it may hold a version that no longer exists.
        self._epoch = 0
        self._inflight: dict[_Key, asyncio.Task[SecretValue]] = {}

    async def set_secret(self, name: str, value: str, *, tags: dict[str, str] | None = None) -> str:
        """Write a new version through the inner store; cache it; return the version id."""
        with self._lock:
            self.writes += 1
            epoch = self._epoch
        version = await asyncio.to_thread(self.inner.set_secret, name, value, tags=tags)
        self._remember(SecretValue(name=name, version=version, value=value), epoch)
        return version

    async def get_secret(self, name: str, version: str | None = None) -> SecretValue:
        """Return one version; the latest (never from the cache) when `version` is None."""
        if version is None:
            with self._lock:
                self.reads += 1
                epoch = self._epoch
            secret = await asyncio.to_thread(self.inner.get_secret, name, None)
            self._remember(secret, epoch)
            return secret
        key = (name.lower(), version)
        with self._lock:
            cached = self._entries.get(key)
            telemetry.record_cache("secret", cached is not None)
            if cached is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return cached
        loop = asyncio.get_running_loop()
        task = self._inflight.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._fetch(key, name, version))
            self._inflight[key] = task
        # shield: a cancelled caller must not cancel the read other callers are awaiting.
        return await asyncio.shield(task)

    async def delete_secret(self, name: str) -> None:
        """Delete every version through the inner store and evict them from the cache."""
        with self._lock:
            self.deletes += 1
            self._evict(name)
        try:
            await asyncio.to_thread(self.inner.delete_secret, name)
        finally:
            # Evict again: a read that finished while the delete ran may have cached a value.
            with self._lock:
                self._evict(name)

    async def list_secrets(self) -> list[SecretListing]:
        """Every secret's name and write time, from the inner store (never cached)."""
        return await asyncio.to_thread(self.inner.list_secrets)

    def close(self) -> None:
        """Close the inner store if it holds connections."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- helpers -------------------------------------------------------------------------

    async def _fetch(self, key: _Key, name: str, version: str) -> SecretValue:
        try:
            with self._lock:
                self.reads += 1
                epoch = self._epoch
            secret = await asyncio.to_thread(self.inner.get_secret, name, version)
            self._remember(secret, epoch)
            return secret
        finally:
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]

    def _remember(self, secret: SecretValue, epoch: int) -> None:
        if _register_secret is not None and secret.value:  # "" would redact nothing useful
            _register_secret(secret.value)
        key = (secret.name.lower(), secret.version)
        with self._lock:
            if epoch != self._epoch:
                return
            self._entries[key] = secret
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _evict(self, name: str) -> None:
        """Drop every cached version of `name` and invalidate reads in flight. Under lock."""
        self._epoch += 1
        lowered = name.lower()
        for key in [k for k in self._entries if k[0] == lowered]:
            del self._entries[key]
        # Reads started before the delete may still be running; later reads must not
        # join them.
        for key in [k for k in self._inflight if k[0] == lowered]:
            del self._inflight[key]
