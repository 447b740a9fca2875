"""Connect sessions (issue 16) in Table Storage.

    {prefix}connectsessions  PartitionKey = SHA-256 of the link token (hex), RowKey = "session"

The link carries the token; only its hash is stored, so reading the table gives no
usable link. Opening a link is one point read by that hash. Using it is an update
conditioned on the entity's ETag, so two people completing the same link at once
cannot both succeed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from functions.stores.tables import run_table_call

ROW_KEY = "session"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ConnectSession:
    token_hash: str
    tenant_id: str
    connector_id: str
    return_url: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    display_name: str | None = None
    # Set once, when someone starts completing the link (single use).
    used_at: datetime | None = None
    used_by: str | None = None
    connection_id: str | None = None
    etag: str | None = None


def _to_entity(s: ConnectSession) -> dict[str, object]:
    return {
        "PartitionKey": s.token_hash,
        "RowKey": ROW_KEY,
        "TenantId": s.tenant_id,
        "ConnectorId": s.connector_id,
        "ReturnUrl": s.return_url,
        "CreatedBy": s.created_by,
        "CreatedAt": s.created_at,
        "ExpiresAt": s.expires_at,
        "DisplayName": s.display_name or "",
        "UsedAt": s.used_at,
        "UsedBy": s.used_by or "",
        "ConnectionId": s.connection_id or "",
    }


def _from_entity(e: dict[str, object], etag: str | None) -> ConnectSession:
    def text(name: str) -> str | None:
        value = e.get(name)
        return value if isinstance(value, str) and value else None

    def when(name: str) -> datetime | None:
        value = e.get(name)
        return value if isinstance(value, datetime) else None

    created, expires = when("CreatedAt"), when("ExpiresAt")
    assert created is not None and expires is not None  # always written together
    return ConnectSession(
        token_hash=str(e["PartitionKey"]),
        tenant_id=str(e["TenantId"]),
        connector_id=str(e["ConnectorId"]),
        return_url=str(e["ReturnUrl"]),
        created_by=str(e["CreatedBy"]),
        created_at=created,
        expires_at=expires,
        display_name=text("DisplayName"),
        used_at=when("UsedAt"),
        used_by=text("UsedBy"),
        connection_id=text("ConnectionId"),
        etag=etag,
    )


class ConnectSessionStore:
    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self._service = service
        self.table_name = f"{prefix}connectsessions"
        self._table = service.get_table_client(self.table_name)

    async def ensure_table(self) -> None:
        await run_table_call(lambda: self._service.create_table_if_not_exists(self.table_name))

    async def insert(self, session: ConnectSession) -> None:
        await run_table_call(lambda: self._table.create_entity(_to_entity(session)))

    async def get(self, hashed: str) -> ConnectSession | None:
        try:
            entity = await run_table_call(lambda: self._table.get_entity(hashed, ROW_KEY))
        except ResourceNotFoundError:
            return None
        return _from_entity(dict(entity), entity.metadata.get("etag"))

    async def replace_if_unchanged(self, session: ConnectSession) -> ConnectSession | None:
        """Write `session` if nobody changed it since it was read; None if someone did."""
        try:
            meta = await run_table_call(
                lambda: self._table.update_entity(
                    _to_entity(session),
                    mode=UpdateMode.REPLACE,
                    etag=session.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return replace(session, etag=meta.get("etag"))

    def close(self) -> None:
        self._table.close()
