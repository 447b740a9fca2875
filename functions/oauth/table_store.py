"""Reference `ConnectionTokenStore`: a Table Storage entity + the connection's secret.

The entity (the connection's own row, or any row the host chooses) carries:
    SecretName, SecretVersion   where the current tokens are (secret payload
                                `{"format": 1, "parameters": {...}, "oauth": {...}}`)
    Status                      "connected" | "reauthorization_required" | ...
    TokenExpiresAt              access token expiry (lets a timer job query due rows)
    RefreshBackoffUntil         no refresh before this time (transient provider errors)
    ReauthReason                why reauthorization is required (an OAuth error code)
    LeaseOwner, LeaseUntil      the refresh lease (`functions.oauth.lease`)

Token writes go to the secret store first (a new version), then one conditional MERGE
makes that version current and releases the lease. A crash between the two leaves an
unreferenced secret version and the old one current; the lease expires and the next
caller refreshes again (with the rotated token lost, at worst a reauthorization).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from functions.errors import DependencyUnavailableError, NotFoundError
from functions.oauth.lease import EPOCH, EntityLease, Lease
from functions.oauth.refresh import STATUS_CONNECTED, STATUS_REAUTHORIZATION_REQUIRED, StoredTokens
from functions.oauth.tokens import TokenSet
from functions.stores.secrets.cache import CachedSecretStore


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return None if value <= EPOCH else value


class TableConnectionTokenStore:
    """`ConnectionTokenStore` over one table entity and a `CachedSecretStore`."""

    def __init__(
        self,
        table: TableClient,
        secrets: CachedSecretStore,
        partition_key: str,
        row_key: str,
        *,
        lease: EntityLease | None = None,
        secret_tags: dict[str, str] | None = None,
    ) -> None:
        self.table = table
        self.secrets = secrets
        self.partition_key = partition_key
        self.row_key = row_key
        self.lease = lease or EntityLease(table)
        self.secret_tags = secret_tags
        self.table_reads = 0
        self.table_writes = 0

    @property
    def key(self) -> str:
        return f"{self.table.table_name}/{self.partition_key}/{self.row_key}"

    async def _get_entity(self) -> Any:
        self.table_reads += 1
        try:
            return await asyncio.to_thread(self.table.get_entity, self.partition_key, self.row_key)
        except ResourceNotFoundError:
            raise NotFoundError("connection not found", code="connection_not_found") from None
        except AzureError as exc:
            raise DependencyUnavailableError(
                "Table Storage is unavailable; try again shortly", code="storage_unavailable"
            ) from exc

    async def read_current(self) -> StoredTokens:
        entity = await self._get_entity()
        version = entity.get("SecretVersion") or None
        tokens = None
        if version:
            secret = await self.secrets.get_secret(entity["SecretName"], version)
            tokens = TokenSet.from_secret(secret.value)
        return StoredTokens(
            tokens=tokens,
            version=version,
            status=entity.get("Status") or STATUS_CONNECTED,
            backoff_until=_aware(entity.get("RefreshBackoffUntil")),
        )

    async def acquire_lease(self, owner: str) -> Lease | None:
        self.table_reads += 1
        taken = await self.lease.acquire(self.partition_key, self.row_key, owner)
        if taken is not None:
            self.table_writes += 1
        return taken

    async def release_lease(self, lease: Lease) -> None:
        if lease.released:
            return
        self.table_writes += 1
        await self.lease.release(lease)
        lease.released = True

    async def _release_with(self, lease: Lease | None, extra: dict[str, Any]) -> None:
        self.table_writes += 1
        if lease is None:
            await asyncio.to_thread(
                self.table.update_entity,
                {"PartitionKey": self.partition_key, "RowKey": self.row_key, **extra},
                mode=UpdateMode.MERGE,
            )
            return
        await self.lease.release(lease, extra)
        lease.released = True

    async def write_tokens(self, tokens: TokenSet, lease: Lease) -> StoredTokens:
        name = lease.entity["SecretName"]
        previous_version = lease.entity.get("SecretVersion") or None
        existing = None
        if previous_version:
            existing = (await self.secrets.get_secret(name, previous_version)).value
        version = await self.secrets.set_secret(
            name, tokens.to_secret(existing), tags=self.secret_tags
        )
        await self._release_with(
            lease,
            {
                "SecretVersion": version,
                "Status": STATUS_CONNECTED,
                "TokenExpiresAt": tokens.expires_at or EPOCH,
                "RefreshBackoffUntil": EPOCH,
                "ReauthReason": "",
            },
        )
        return StoredTokens(tokens=tokens, version=version, status=STATUS_CONNECTED)

    async def record_backoff(self, until: datetime, lease: Lease) -> None:
        await self._release_with(lease, {"RefreshBackoffUntil": until})

    async def mark_reauthorization_required(self, reason: str, lease: Lease | None) -> None:
        await self._release_with(
            lease, {"Status": STATUS_REAUTHORIZATION_REQUIRED, "ReauthReason": reason[:100]}
        )

    # -- for consent and tests ------------------------------------------------------------

    async def store_consent(self, tokens: TokenSet, secret_name: str) -> str:
        """After a successful callback: new secret version, status connected, no backoff."""
        entity = await self._get_entity()
        previous = entity.get("SecretVersion") or None
        existing = (
            (await self.secrets.get_secret(secret_name, previous)).value if previous else None
        )
        version = await self.secrets.set_secret(
            secret_name, tokens.to_secret(existing), tags=self.secret_tags
        )
        await self._release_with(
            None,
            {
                "SecretName": secret_name,
                "SecretVersion": version,
                "Status": STATUS_CONNECTED,
                "TokenExpiresAt": tokens.expires_at or EPOCH,
                "RefreshBackoffUntil": EPOCH,
                "ReauthReason": "",
            },
        )
        return version
