"""CachedSecretStore over the real stores, and the store factory."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from functions.errors import ConfigurationError, SecretNotFoundError
from functions.settings import Settings
from functions.stores.secrets import cache as cache_module
from functions.stores.secrets.base import SecretValue
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.secrets.factory import build_secret_store
from functions.stores.secrets.keyvault import KeyVaultSecretStore
from functions.stores.secrets.local import LocalSecretStore, generate_local_key


def new_name() -> str:
    return f"conn-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cached(keyvault_store) -> CachedSecretStore:
    return CachedSecretStore(keyvault_store)


async def test_second_read_of_a_version_does_not_reach_key_vault(cached, keyvault_double):
    name = new_name()
    version = await cached.set_secret(name, "value-1")
    cached._entries.clear()  # start cold, as another instance would
    path = f"/secrets/{name}/{version}"

    first = await cached.get_secret(name, version)
    second = await cached.get_secret(name, version)

    assert first == second == SecretValue(name, version, "value-1")
    assert keyvault_double.count("GET", path) == 1
    assert (cached.reads, cached.hits, cached.writes) == (1, 1, 1)


async def test_set_fills_the_cache(cached, keyvault_double):
    name = new_name()
    version = await cached.set_secret(name, "fresh")
    assert (await cached.get_secret(name, version)).value == "fresh"
    assert keyvault_double.count("GET", f"/secrets/{name}") == 0
    assert cached.reads == 0


async def test_latest_reads_are_never_served_from_the_cache(cached, keyvault_double):
    name = new_name()
    await cached.set_secret(name, "one")
    v2 = await cached.set_secret(name, "two")

    for _ in range(3):
        latest = await cached.get_secret(name)
        assert (latest.version, latest.value) == (v2, "two")
    assert keyvault_double.count("GET", f"/secrets/{name}/") == 3
    assert cached.reads == 3

    # A version written elsewhere is seen at once by a latest read.
    v3 = cached.inner.set_secret(name, "three")
    assert (await cached.get_secret(name)).version == v3


async def test_delete_evicts_every_version(cached, keyvault_double):
    name, other = new_name(), new_name()
    v1 = await cached.set_secret(name, "one")
    v2 = await cached.set_secret(name, "two")
    kept = await cached.set_secret(other, "kept")

    await cached.delete_secret(name)

    assert cached.deletes == 1
    for version in (v1, v2):
        with pytest.raises(SecretNotFoundError):
            await cached.get_secret(name, version)
    assert keyvault_double.count("GET", f"/secrets/{name}/{v1}") == 1
    assert (await cached.get_secret(other, kept)).value == "kept"  # other names untouched
    assert keyvault_double.count("GET", f"/secrets/{other}") == 0


async def test_not_found_is_not_cached(cached, keyvault_double):
    name = new_name()
    missing = uuid.uuid4().hex
    for _ in range(2):
        with pytest.raises(SecretNotFoundError):
            await cached.get_secret(name, missing)
    assert cached.reads == 2


async def test_lru_is_bounded(keyvault_store, keyvault_double):
    cached = CachedSecretStore(keyvault_store, max_entries=2)
    name = new_name()
    v1 = await cached.set_secret(name, "1")
    v2 = await cached.set_secret(name, "2")
    await cached.get_secret(name, v1)  # v1 is now the most recently used
    v3 = await cached.set_secret(name, "3")  # evicts v2

    assert len(cached) == 2
    await cached.get_secret(name, v1)
    await cached.get_secret(name, v3)
    assert cached.reads == 0
    assert (await cached.get_secret(name, v2)).value == "2"
    assert cached.reads == 1


async def test_concurrent_misses_share_one_read(cached, keyvault_double):
    name = new_name()
    version = cached.inner.set_secret(name, "shared")

    results = await asyncio.gather(*(cached.get_secret(name, version) for _ in range(20)))

    assert {r.value for r in results} == {"shared"}
    assert keyvault_double.count("GET", f"/secrets/{name}/{version}") == 1
    assert cached.reads == 1


async def test_counts_per_thousand_reads(cached, keyvault_double):
    name = new_name()
    version = await cached.set_secret(name, "hot")
    for _ in range(1000):
        await cached.get_secret(name, version)
    assert keyvault_double.count("GET", f"/secrets/{name}") == 0
    assert cached.hits == 1000


async def test_values_are_registered_for_log_redaction(cached, monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(cache_module, "_register_secret", seen.append)
    name = new_name()

    version = await cached.set_secret(name, "written-value")
    cached._entries.clear()
    await cached.get_secret(name, version)
    cached.inner.set_secret(name, "latest-value")
    await cached.get_secret(name)

    assert seen == ["written-value", "written-value", "latest-value"]


class ThreadRecordingStore:
    """A real LocalSecretStore that notes which thread each call ran on."""

    def __init__(self, inner: LocalSecretStore) -> None:
        self.inner = inner
        self.threads: list[threading.Thread] = []

    def set_secret(self, name, value, *, tags=None):
        self.threads.append(threading.current_thread())
        return self.inner.set_secret(name, value, tags=tags)

    def get_secret(self, name, version=None):
        self.threads.append(threading.current_thread())
        return self.inner.get_secret(name, version)

    def delete_secret(self, name):
        self.threads.append(threading.current_thread())
        self.inner.delete_secret(name)


async def test_inner_calls_run_off_the_event_loop(tmp_path):
    recording = ThreadRecordingStore(LocalSecretStore(str(tmp_path), generate_local_key()))
    cached = CachedSecretStore(recording)

    version = await cached.set_secret("n", "v")
    cached._entries.clear()
    await cached.get_secret("n", version)
    await cached.get_secret("n")
    await cached.delete_secret("n")

    assert len(recording.threads) == 4
    assert threading.current_thread() not in recording.threads


async def test_a_cancelled_reader_does_not_fail_the_others(cached):
    name = new_name()
    version = cached.inner.set_secret(name, "v")
    first = asyncio.ensure_future(cached.get_secret(name, version))
    second = asyncio.ensure_future(cached.get_secret(name, version))
    await asyncio.sleep(0)
    first.cancel()

    assert (await second).value == "v"
    with pytest.raises(asyncio.CancelledError):
        await first


def test_max_entries_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        CachedSecretStore(LocalSecretStore(str(tmp_path), generate_local_key()), max_entries=0)


# -- factory ---------------------------------------------------------------------------


async def test_factory_builds_local_store(tmp_path):
    settings = Settings(
        environment="development",
        storage_connection_string="UseDevelopmentStorage=true",
        secret_backend="local",
        local_secret_key=generate_local_key(),
        local_secrets_dir=str(tmp_path / "secrets"),
    )
    store = build_secret_store(settings)
    assert isinstance(store, CachedSecretStore)
    assert isinstance(store.inner, LocalSecretStore)
    version = await store.set_secret("x", "y")
    assert (await store.get_secret("x", version)).value == "y"


async def test_factory_builds_keyvault_store(keyvault_double):
    settings = Settings(
        environment="development",
        storage_connection_string="UseDevelopmentStorage=true",
        secret_backend="keyvault",
        key_vault_url=keyvault_double.url,
        key_vault_ca_file=keyvault_double.ca_file,
    )
    store = build_secret_store(settings)
    try:
        assert isinstance(store.inner, KeyVaultSecretStore)
        name = new_name()
        version = await store.set_secret(name, "y")
        assert (await store.get_secret(name)).version == version
    finally:
        store.close()


def test_factory_refuses_local_store_outside_development(tmp_path):
    settings = Settings(
        environment="production",
        table_endpoint="https://example.table.core.windows.net",
        secret_backend="local",
        local_secret_key=generate_local_key(),
        local_secrets_dir=str(tmp_path),
        tenant_ids=("t",),
        audiences=("a",),
    )
    with pytest.raises(ConfigurationError):
        build_secret_store(settings)


async def test_many_concurrent_calls_through_the_thread_pool(cached, keyvault_double):
    names = [new_name() for _ in range(40)]
    versions = await asyncio.gather(*(cached.set_secret(n, f"value-{n}") for n in names))
    cached._entries.clear()

    secrets = await asyncio.gather(
        *(cached.get_secret(n, v) for n, v in zip(names, versions, strict=True)),
        *(cached.get_secret(n) for n in names),
    )

    assert [s.value for s in secrets] == [f"value-{n}" for n in names] * 2
    await asyncio.gather(*(cached.delete_secret(n) for n in names))
    assert not any(keyvault_double.exists(n) or keyvault_double.is_deleted(n) for n in names)
    assert (cached.writes, cached.reads, cached.deletes) == (40, 80, 40)
