"""OAuth `state` records in Azure Table Storage: single use, expiring, user-bound.

Table `{prefix}oauthstates`:
    PartitionKey  first 2 hex characters of sha256(state): spreads writes over partitions
    RowKey        sha256(state) hex; the state itself is never stored, so reading the
                  table does not let anyone complete a consent
    TenantId, ConnectionId, UserId, ProviderId, RedirectUri, Nonce, CodeVerifier, ExpiresAt

The PKCE code verifier (RFC 7636 §4.1) is stored here. That is acceptable: it is a
one-time value bound to this record, useless without the matching authorization code
(which only the user's browser and the provider see) and the state (only its hash is
stored), and the record is deleted on first use and dead after `STATE_TTL`. It is never
logged and never leaves this table except into the token request. Put a storage
lifecycle rule or the cleanup job over the table to remove abandoned records.

Single use (RFC 6749 §10.12): `consume` reads the record, claims it with a MERGE of
`Consumed=true` conditional on the read ETag (`IfNotModified`), then deletes it. Of
concurrent callbacks with the same state only one claim succeeds; the others get 412 (or
404, or see `Consumed`) and fail. (A conditional *delete* cannot decide this: the SDK
reports deleting an already deleted entity as success.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from functions.errors import DependencyUnavailableError
from functions.oauth.errors import OAuthStateError, OAuthStateExpiredError
from functions.oauth.pkce import state_hash

STATE_TTL = timedelta(minutes=10)


@dataclass(frozen=True)
class OAuthStateRecord:
    """What a consent started, to be checked and used by the callback."""

    tenant_id: str
    connection_id: str
    user_id: str
    provider_id: str
    redirect_uri: str
    expires_at: datetime
    code_verifier: str | None = field(default=None, repr=False)
    nonce: str | None = field(default=None, repr=False)


class StateStore(Protocol):
    """Persists state records keyed by the state's hash; `consume` is single use."""

    async def put(self, state: str, record: OAuthStateRecord) -> None: ...

    async def consume(self, state: str, *, now: datetime | None = None) -> OAuthStateRecord:
        """Return and delete the record. `OAuthStateError` if unknown or already used,
        `OAuthStateExpiredError` if too old (the record is deleted either way)."""
        ...


def state_keys(state: str) -> tuple[str, str]:
    digest = state_hash(state)
    return digest[:2], digest


def _unavailable(exc: Exception) -> DependencyUnavailableError:
    return DependencyUnavailableError(
        "Table Storage is unavailable; try again shortly", code="storage_unavailable"
    )


class TableStateStore:
    """`StateStore` on Azure Table Storage (sync SDK run in worker threads)."""

    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self.table_name = f"{prefix}oauthstates"
        self._service = service
        self._table: TableClient = service.get_table_client(self.table_name)

    async def ensure_table(self) -> None:
        await asyncio.to_thread(self._service.create_table_if_not_exists, self.table_name)

    async def put(self, state: str, record: OAuthStateRecord) -> None:
        pk, rk = state_keys(state)
        entity: dict[str, Any] = {
            "PartitionKey": pk,
            "RowKey": rk,
            "TenantId": record.tenant_id,
            "ConnectionId": record.connection_id,
            "UserId": record.user_id,
            "ProviderId": record.provider_id,
            "RedirectUri": record.redirect_uri,
            "ExpiresAt": record.expires_at,
            "CodeVerifier": record.code_verifier or "",
            "Nonce": record.nonce or "",
        }
        try:
            await asyncio.to_thread(self._table.create_entity, entity)
        except ResourceExistsError as exc:  # 256 random bits: only a bug can collide
            raise OAuthStateError("duplicate OAuth state") from exc
        except AzureError as exc:
            raise _unavailable(exc) from exc

    async def consume(self, state: str, *, now: datetime | None = None) -> OAuthStateRecord:
        if not state or len(state) > 512:
            raise OAuthStateError("the OAuth state is missing or malformed")
        pk, rk = state_keys(state)
        try:
            entity = await asyncio.to_thread(self._table.get_entity, pk, rk)
        except ResourceNotFoundError:
            raise OAuthStateError(
                "unknown or already used OAuth state; start the consent again"
            ) from None
        except AzureError as exc:
            raise _unavailable(exc) from exc
        if entity.get("Consumed"):
            raise OAuthStateError("the OAuth state was already used")
        try:
            # Claim it with a conditional update, not a conditional delete: the SDK treats
            # a delete of a missing entity as success, so a delete cannot tell the loser.
            await asyncio.to_thread(
                self._table.update_entity,
                {"PartitionKey": pk, "RowKey": rk, "Consumed": True},
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            # A concurrent callback claimed it between our read and our update.
            raise OAuthStateError("the OAuth state was already used") from None
        except AzureError as exc:
            raise _unavailable(exc) from exc
        try:
            await asyncio.to_thread(self._table.delete_entity, pk, rk)
        except AzureError:
            pass  # claimed already; purge_expired removes it later
        expires_at: datetime = entity["ExpiresAt"]
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if (now or datetime.now(UTC)) >= expires_at:
            raise OAuthStateExpiredError("the OAuth consent took too long; start it again")
        return OAuthStateRecord(
            tenant_id=entity["TenantId"],
            connection_id=entity["ConnectionId"],
            user_id=entity["UserId"],
            provider_id=entity["ProviderId"],
            redirect_uri=entity["RedirectUri"],
            expires_at=expires_at,
            code_verifier=entity.get("CodeVerifier") or None,
            nonce=entity.get("Nonce") or None,
        )

    async def purge_expired(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """Delete abandoned records (a cross-partition scan: run from the timer job)."""
        cutoff = now or datetime.now(UTC)

        def run() -> int:
            removed = 0
            query = "ExpiresAt lt @cutoff"
            for entity in self._table.query_entities(query, parameters={"cutoff": cutoff}):
                try:
                    self._table.delete_entity(
                        entity["PartitionKey"],
                        entity["RowKey"],
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    removed += 1
                except (ResourceModifiedError, ResourceNotFoundError):
                    pass
                if removed >= limit:
                    break
            return removed

        try:
            return await asyncio.to_thread(run)
        except AzureError as exc:
            raise _unavailable(exc) from exc
