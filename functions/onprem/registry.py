"""Registered on-premises gateways and their agents' heartbeats, in Table Storage.

    {prefix}gateways      PartitionKey = tenant id, RowKey = gateway id
                          Name, OwnerId, PublicKey (PEM), Fingerprint, CreatedAt
    {prefix}gwheartbeats  PartitionKey = tenant id, RowKey = gateway id
                          LastSeen, AgentVersion

Heartbeats live in their own table because agents write them: an agent's storage
identity never needs write access to registrations (which hold the public keys every
credential is encrypted with). A gateway is **online** when its last heartbeat is at
most `ONLINE_WINDOW_SECONDS` old (GATEWAY_ONPREM_HEARTBEAT_SECONDS on the cloud side):
about three heartbeat intervals, so one lost heartbeat never flips the status, and a
crashed agent is offline within seconds. An agent that stops cleanly says so
(`leave`: a `LeftAt` column): it is offline at once, callers get 503 `gateway_offline`
instead of waiting for their deadline; its next heartbeat (a restart) replaces the row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar

from azure.core.exceptions import (
    ResourceNotFoundError,
)
from azure.data.tables import TableServiceClient, UpdateMode

from functions.onprem import names
from functions.onprem.keys import fingerprint, load_public_key
from functions.services.ids import new_id
from functions.stores.tables import run_table_call

T = TypeVar("T")

HEARTBEAT_INTERVAL_SECONDS = 3.0
ONLINE_WINDOW_SECONDS = 10.0

GatewayStatus = Literal["online", "offline"]


def _now() -> datetime:
    return datetime.now(UTC)


def _odata(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class GatewayRecord:
    """One registered gateway. `public_key_pem` is public; nothing here is secret."""

    id: str
    tenant_id: str
    name: str
    owner_id: str
    public_key_pem: str
    fingerprint: str
    created_at: datetime | None = None
    last_seen: datetime | None = None
    agent_version: str | None = None
    # When the agent said it was stopping (after its last heartbeat, or it would be gone).
    left_at: datetime | None = None

    def status(
        self, now: datetime | None = None, window: float = ONLINE_WINDOW_SECONDS
    ) -> GatewayStatus:
        if self.last_seen is None:
            return "offline"
        if self.left_at is not None and self.left_at >= self.last_seen:
            return "offline"
        age = (now or _now()) - self.last_seen
        return "online" if age <= timedelta(seconds=window) else "offline"


class GatewayRegistry:
    """Registers gateways, reads them with their last heartbeat, records heartbeats.

    Methods are async; the sync SDK runs in worker threads. Storage outages raise
    DependencyUnavailableError (503 storage_unavailable).
    """

    def __init__(
        self,
        service: TableServiceClient,
        prefix: str = "",
        *,
        online_window: float = ONLINE_WINDOW_SECONDS,
    ) -> None:
        self._service = service
        self.prefix = prefix
        self.online_window = online_window
        self.gateways_table = names.gateways_table(prefix)
        self.heartbeats_table = names.heartbeats_table(prefix)
        self._gateways = service.get_table_client(self.gateways_table)
        self._heartbeats = service.get_table_client(self.heartbeats_table)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await run_table_call(fn)

    async def ensure_tables(self) -> None:
        for name in (self.gateways_table, self.heartbeats_table):
            await self._run(partial(self._service.create_table_if_not_exists, name))

    async def register(
        self, tenant_id: str, owner_id: str, name: str, public_key_pem: str
    ) -> GatewayRecord:
        """Store a new gateway. Raises ValueError if the key is not RSA >= 2048 bits."""
        key = load_public_key(public_key_pem)
        record = GatewayRecord(
            id=new_id(),
            tenant_id=tenant_id,
            name=name,
            owner_id=owner_id,
            public_key_pem=public_key_pem.strip() + "\n",
            fingerprint=fingerprint(key),
            created_at=_now(),
        )
        entity = {
            "PartitionKey": record.tenant_id,
            "RowKey": record.id,
            "Name": record.name,
            "OwnerId": record.owner_id,
            "PublicKey": record.public_key_pem,
            "Fingerprint": record.fingerprint,
            "CreatedAt": record.created_at,
        }
        await self._run(lambda: self._gateways.create_entity(entity))
        return record

    async def get(self, tenant_id: str, gateway_id: str) -> GatewayRecord | None:
        """The gateway with its last heartbeat, or None. Two point reads, in parallel."""

        async def heartbeat() -> Any:
            try:
                return await self._run(lambda: self._heartbeats.get_entity(tenant_id, gateway_id))
            except ResourceNotFoundError:
                return None

        async def registration() -> Any:
            try:
                return await self._run(lambda: self._gateways.get_entity(tenant_id, gateway_id))
            except ResourceNotFoundError:
                return None

        entity, beat = await asyncio.gather(registration(), heartbeat())
        if entity is None:
            return None
        return _record(entity, beat)

    async def list_for_owner(self, tenant_id: str, owner_id: str) -> list[GatewayRecord]:
        query = f"PartitionKey eq {_odata(tenant_id)} and OwnerId eq {_odata(owner_id)}"
        entities, beats = await asyncio.gather(
            self._run(lambda: list(self._gateways.query_entities(query))),
            self._run(
                lambda: list(
                    self._heartbeats.query_entities(f"PartitionKey eq {_odata(tenant_id)}")
                )
            ),
        )
        by_id = {b["RowKey"]: b for b in beats}
        records = [_record(e, by_id.get(e["RowKey"])) for e in entities]
        return sorted(records, key=lambda r: r.created_at or _now())

    async def touch(
        self,
        tenant_id: str,
        gateway_id: str,
        version: str,
        last_seen: datetime | None = None,
    ) -> None:
        """Record a heartbeat (an upsert: one write, whether or not one existed)."""
        entity = {
            "PartitionKey": tenant_id,
            "RowKey": gateway_id,
            "LastSeen": last_seen or _now(),
            "AgentVersion": version,
        }
        await self._run(lambda: self._heartbeats.upsert_entity(entity, mode=UpdateMode.REPLACE))

    async def leave(self, tenant_id: str, gateway_id: str, left_at: datetime | None = None) -> None:
        """The agent is stopping: offline from now (a MERGE: LastSeen stays for display)."""
        entity = {"PartitionKey": tenant_id, "RowKey": gateway_id, "LeftAt": left_at or _now()}
        await self._run(lambda: self._heartbeats.upsert_entity(entity, mode=UpdateMode.MERGE))

    def close(self) -> None:
        self._service.close()


def _record(entity: Any, beat: Any | None) -> GatewayRecord:
    return GatewayRecord(
        id=entity["RowKey"],
        tenant_id=entity["PartitionKey"],
        name=entity["Name"],
        owner_id=entity["OwnerId"],
        public_key_pem=entity["PublicKey"],
        fingerprint=entity["Fingerprint"],
        created_at=entity.get("CreatedAt"),
        last_seen=beat.get("LastSeen") if beat is not None else None,
        agent_version=(beat.get("AgentVersion") or None) if beat is not None else None,
        left_at=beat.get("LeftAt") if beat is not None else None,
    )
