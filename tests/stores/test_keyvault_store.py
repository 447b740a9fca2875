"""KeyVaultSecretStore: the real SDK over HTTPS against the Key Vault double."""

from __future__ import annotations

import logging
import socket
import time
import traceback
import uuid

import pytest
from azure.core.exceptions import HttpResponseError

from functions.errors import (
    ConfigurationError,
    DependencyUnavailableError,
    SecretNotFoundError,
)
from functions.settings import Settings
from functions.stores.secrets.keyvault import (
    KeyVaultSecretStore,
    StaticTokenCredential,
    build_keyvault_store,
)
from tests.doubles.keyvault import KeyVaultDouble
from tests.fixtures.keyvault import make_keyvault_store


def new_name() -> str:
    return f"conn-{uuid.uuid4().hex[:12]}"


def new_value() -> str:
    # Distinctive, so a leak is found by a plain substring search.
    return f"S3cr3t-{uuid.uuid4().hex}"


def test_set_then_get_latest_and_by_version(keyvault_store, keyvault_double):
    name, first, second = new_name(), new_value(), new_value()

    v1 = keyvault_store.set_secret(name, first, tags={"connection": "c1"})
    v2 = keyvault_store.set_secret(name, second)

    assert v1 != v2
    assert len(v1) == 32
    latest = keyvault_store.get_secret(name)
    assert (latest.name, latest.version, latest.value) == (name, v2, second)
    # Old versions stay readable: metadata rows may still point at them.
    assert keyvault_store.get_secret(name, v1).value == first
    assert keyvault_store.get_secret(name, v2).value == second
    assert first not in repr(latest) and second not in repr(latest)
    assert keyvault_double.count("PUT", f"/secrets/{name}") >= 2


def test_each_set_creates_a_new_version(keyvault_store):
    name = new_name()
    versions = {keyvault_store.set_secret(name, new_value()) for _ in range(5)}
    assert len(versions) == 5


def test_get_missing_name_raises_secret_not_found(keyvault_store):
    name = new_name()
    with pytest.raises(SecretNotFoundError) as caught:
        keyvault_store.get_secret(name)
    assert name in caught.value.detail
    assert caught.value.code == "secret_not_found"


def test_get_missing_version_raises_secret_not_found(keyvault_store):
    name = new_name()
    keyvault_store.set_secret(name, new_value())
    with pytest.raises(SecretNotFoundError):
        keyvault_store.get_secret(name, uuid.uuid4().hex)


def test_delete_purges_and_is_idempotent(keyvault_store, keyvault_double):
    name, value = new_name(), new_value()
    keyvault_store.set_secret(name, value)

    keyvault_store.delete_secret(name)

    assert not keyvault_double.exists(name)
    assert not keyvault_double.is_deleted(name)  # gone from deleted secrets too
    assert value not in keyvault_double.raw_values()
    assert keyvault_double.count("DELETE", f"/deletedsecrets/{name}") == 1
    with pytest.raises(SecretNotFoundError):
        keyvault_store.get_secret(name)
    keyvault_store.delete_secret(name)  # again: nothing left, still succeeds
    keyvault_store.delete_secret(new_name())  # never existed


def test_delete_with_purge_protection_keeps_it_soft_deleted(
    keyvault_store, keyvault_double, caplog
):
    keyvault_double.purge_protection = True
    name, value = new_name(), new_value()
    keyvault_store.set_secret(name, value)
    caplog.set_level(logging.INFO, logger="functions.stores.secrets.keyvault")

    keyvault_store.delete_secret(name)

    assert keyvault_double.is_deleted(name)
    assert not keyvault_double.exists(name)
    with pytest.raises(SecretNotFoundError):
        keyvault_store.get_secret(name)
    assert any("not purged" in r.getMessage() for r in caplog.records)
    assert all(value not in r.getMessage() for r in caplog.records)
    # A retried delete of the soft-deleted secret succeeds as well.
    keyvault_store.delete_secret(name)
    assert keyvault_double.is_deleted(name)


def test_set_after_purge_protected_delete_recovers_the_name(keyvault_store, keyvault_double):
    keyvault_double.purge_protection = True
    name = new_name()
    keyvault_store.set_secret(name, new_value())
    keyvault_store.delete_secret(name)
    assert keyvault_double.is_deleted(name)

    fresh = new_value()
    version = keyvault_store.set_secret(name, fresh)

    assert keyvault_double.count("POST", f"/deletedsecrets/{name}/recover") == 1
    assert keyvault_store.get_secret(name).version == version
    assert keyvault_store.get_secret(name).value == fresh


def test_recreate_after_purge(keyvault_store):
    name = new_name()
    old_version = keyvault_store.set_secret(name, new_value())
    keyvault_store.delete_secret(name)

    fresh = new_value()
    version = keyvault_store.set_secret(name, fresh)

    assert keyvault_store.get_secret(name).value == fresh
    assert keyvault_store.get_secret(name, version).value == fresh
    with pytest.raises(SecretNotFoundError):
        keyvault_store.get_secret(name, old_version)  # purged versions do not come back


def test_429_with_retry_after_is_retried_by_the_sdk(keyvault_store, keyvault_double):
    name, value = new_name(), new_value()
    version = keyvault_store.set_secret(name, value)
    before = keyvault_double.count("GET", f"/secrets/{name}/{version}")
    keyvault_double.fail_next(1, status=429, retry_after=1)

    started = time.monotonic()
    secret = keyvault_store.get_secret(name, version)
    elapsed = time.monotonic() - started

    assert secret.value == value
    assert keyvault_double.count("GET", f"/secrets/{name}/{version}") - before == 2
    assert elapsed >= 0.9  # the SDK honoured Retry-After


def test_429_that_outlasts_the_retries_is_unavailable(keyvault_store, keyvault_double):
    name = new_name()
    keyvault_store.set_secret(name, new_value())
    keyvault_double.fail_next(100, status=429, retry_after=0.05)

    with pytest.raises(DependencyUnavailableError) as caught:
        keyvault_store.get_secret(name)

    assert caught.value.code == "secret_store_unavailable"
    assert caught.value.status == 503
    assert "429" in caught.value.detail


def test_persistent_503_is_unavailable(keyvault_store, keyvault_double):
    name = new_name()
    keyvault_store.set_secret(name, new_value())
    before = keyvault_double.count("GET", f"/secrets/{name}")
    keyvault_double.fail_next(100, status=503)

    with pytest.raises(DependencyUnavailableError) as caught:
        keyvault_store.get_secret(name)

    assert caught.value.code == "secret_store_unavailable"
    assert isinstance(caught.value.__cause__, HttpResponseError)
    # One attempt plus retry_total=3 retries.
    assert keyvault_double.count("GET", f"/secrets/{name}") - before == 4


def test_503_on_set_and_delete_is_unavailable(keyvault_store, keyvault_double):
    name = new_name()
    keyvault_double.fail_next(100, status=503)
    with pytest.raises(DependencyUnavailableError):
        keyvault_store.set_secret(name, new_value())
    with pytest.raises(DependencyUnavailableError):
        keyvault_store.delete_secret(name)


def test_unreachable_vault_is_unavailable(keyvault_double):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = KeyVaultSecretStore(
        f"https://127.0.0.1:{port}",
        StaticTokenCredential(),
        connection_verify=keyvault_double.ca_file,
        retry_total=1,
        retry_backoff_factor=0.01,
    )
    with store, pytest.raises(DependencyUnavailableError) as caught:
        store.get_secret(new_name())
    assert caught.value.code == "secret_store_unavailable"


def test_transient_503_is_absorbed_by_sdk_retries(keyvault_store, keyvault_double):
    name, value = new_name(), new_value()
    keyvault_double.fail_next(2, status=503)
    version = keyvault_store.set_secret(name, value)
    assert keyvault_store.get_secret(name, version).value == value


@pytest.mark.parametrize(
    "name", ["", "has_underscore", "has space", "a/b", "dot.ted", "x" * 128, "ünïcode"]
)
def test_invalid_names_are_rejected_before_any_request(keyvault_store, keyvault_double, name):
    before = len(keyvault_double.requests)
    with pytest.raises(ValueError):
        keyvault_store.set_secret(name, "v")
    with pytest.raises(ValueError):
        keyvault_store.get_secret(name)
    with pytest.raises(ValueError):
        keyvault_store.delete_secret(name)
    assert len(keyvault_double.requests) == before


def test_longest_valid_name_is_accepted(keyvault_store):
    name = "a-" + uuid.uuid4().hex + "x" * 93
    assert len(name) == 127
    version = keyvault_store.set_secret(name, "v")
    assert keyvault_store.get_secret(name, version).value == "v"


def test_invalid_version_is_rejected(keyvault_store):
    with pytest.raises(ValueError):
        keyvault_store.get_secret(new_name(), "../other")
    with pytest.raises(ValueError):
        keyvault_store.get_secret(new_name(), "")


def test_double_rejects_invalid_names_like_key_vault(keyvault_double):
    from azure.keyvault.secrets import SecretClient

    client = SecretClient(
        keyvault_double.url,
        StaticTokenCredential(),
        connection_verify=keyvault_double.ca_file,
        verify_challenge_resource=False,
    )
    with client, pytest.raises(HttpResponseError) as caught:
        client.set_secret("bad_name", "v")
    assert caught.value.status_code == 400
    assert caught.value.error.code == "BadParameter"


def test_no_value_in_exceptions_or_logs(keyvault_double, caplog):
    caplog.set_level(logging.DEBUG)  # root: every logger, azure.* and urllib3 included
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG)
    keyvault_double.reset()
    store = make_keyvault_store(keyvault_double, retry_total=1)
    name, value, other = new_name(), new_value(), new_value()
    errors: list[BaseException] = []
    try:
        version = store.set_secret(name, value)
        store.set_secret(name, other)
        assert store.get_secret(name, version).value == value
        assert store.get_secret(name).value == other
        for status in (429, 503):
            keyvault_double.fail_next(10, status=status, retry_after=0.01)
            for call in (
                lambda: store.get_secret(name, version),
                lambda: store.set_secret(name, value),
                lambda: store.delete_secret(name),
            ):
                try:
                    call()
                except DependencyUnavailableError as exc:
                    errors.append(exc)
            keyvault_double.reset()
        store.delete_secret(name)
        try:
            store.get_secret(name, version)
        except SecretNotFoundError as exc:
            errors.append(exc)
    finally:
        store.close()
        keyvault_double.reset()
        for noisy in ("azure", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.NOTSET)

    assert len(errors) == 7
    assert caplog.records, "expected SDK and store log records"
    for exc in errors:
        rendered = "".join(traceback.format_exception(exc))
        for secret in (value, other):
            assert secret not in rendered
            assert secret not in repr(exc)
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        assert value not in text and other not in text, record.name


def test_build_keyvault_store_uses_static_credential_only_in_development(keyvault_double):
    base = {
        "storage_connection_string": "UseDevelopmentStorage=true",
        "secret_backend": "keyvault",
        "key_vault_url": keyvault_double.url,
        "key_vault_ca_file": keyvault_double.ca_file,
    }
    with build_keyvault_store(Settings(environment="development", **base)) as store:
        name = new_name()
        version = store.set_secret(name, "v")
        assert store.get_secret(name, version).value == "v"

    with pytest.raises(ConfigurationError):
        build_keyvault_store(
            Settings(environment="production", tenant_ids=("t",), audiences=("a",), **base)
        )
    with pytest.raises(ConfigurationError):
        build_keyvault_store(
            Settings(
                environment="development",
                storage_connection_string="UseDevelopmentStorage=true",
                secret_backend="keyvault",
            )
        )


def test_build_keyvault_store_uses_default_credential_in_production():
    from azure.identity import DefaultAzureCredential

    settings = Settings(
        environment="production",
        table_endpoint="https://example.table.core.windows.net",
        secret_backend="keyvault",
        key_vault_url="https://example.vault.azure.net",
        tenant_ids=("t",),
        audiences=("a",),
    )
    with build_keyvault_store(settings) as store:
        assert isinstance(store.credential, DefaultAzureCredential)
        assert store.vault_url == "https://example.vault.azure.net"


def test_double_as_context_manager_serves_https():
    with KeyVaultDouble(purge_protection=True) as double:
        assert double.url.startswith("https://127.0.0.1:")
        with make_keyvault_store(double) as store:
            name = new_name()
            store.set_secret(name, "v")
            store.delete_secret(name)
            assert double.is_deleted(name)
    with pytest.raises(RuntimeError):
        _ = double.url
