"""Build the secret store the settings ask for."""

from __future__ import annotations

from functions.errors import ConfigurationError
from functions.settings import Settings
from functions.stores.secrets.base import SecretStore
from functions.stores.secrets.cache import CachedSecretStore


def build_secret_store(settings: Settings, *, max_entries: int = 10_000) -> CachedSecretStore:
    """Return the cached async facade over Key Vault or the local store.

    `secret_backend == "keyvault"`: `build_keyvault_store` (managed identity, or the test
    double when `key_vault_ca_file` is set in development). `"local"`: the encrypted
    file store, refused outside development (as `Settings.validate` also does; checked
    again because a `Settings` can be built without `from_env`).
    """
    inner: SecretStore
    # `match` rather than `==`: the backend name is not a password (ruff S105 thinks so).
    match settings.secret_backend:
        case "keyvault":
            from functions.stores.secrets.keyvault import build_keyvault_store

            inner = build_keyvault_store(settings)
        case "local":
            if not settings.is_development:
                raise ConfigurationError("the local secret store is for development only")
            if not settings.local_secret_key:
                raise ConfigurationError(
                    "GATEWAY_SECRET_STORE=local needs GATEWAY_LOCAL_SECRET_KEY"
                )
            from functions.stores.secrets.local import LocalSecretStore

            inner = LocalSecretStore(settings.local_secrets_dir, settings.local_secret_key)
        case other:
            raise ConfigurationError(f"unknown secret backend {other!r}")
    return CachedSecretStore(inner, max_entries=max_entries)
