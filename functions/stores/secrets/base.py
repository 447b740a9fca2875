"""The secret store interface.

One secret per connection (and per connector for OAuth client secrets). Every change
writes a new version; the metadata row records which version is current, so a cached
value keyed by (name, version) can never be stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class SecretValue:
    name: str
    version: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class SecretListing:
    """A secret's name and when its current version was written (no value)."""

    name: str
    updated: datetime | None
    tags: dict[str, str] = field(default_factory=dict)


class SecretStore(Protocol):
    """Implemented by `KeyVaultSecretStore` (Azure) and `LocalSecretStore` (development).

    Errors: `SecretNotFoundError` when the name or version does not exist (or is
    deleted); `DependencyUnavailableError` (code `secret_store_unavailable`) when the
    backend cannot be reached after retries. Implementations are thread-safe; calls may
    block and are run off the event loop by `CachedSecretStore`.
    """

    def set_secret(self, name: str, value: str, *, tags: dict[str, str] | None = None) -> str:
        """Write a new version of `name` (creating it if needed); return the version id."""
        ...

    def get_secret(self, name: str, version: str | None = None) -> SecretValue:
        """Read one version (the latest when `version` is None)."""
        ...

    def delete_secret(self, name: str) -> None:
        """Delete every version. Idempotent: deleting a missing secret succeeds.

        Key Vault soft-deletes and then purges where the vault allows it.
        """
        ...

    def list_secrets(self) -> list[SecretListing]:
        """Every secret (not deleted ones), without values: for reconciliation."""
        ...
