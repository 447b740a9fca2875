"""Webhook tables (issue 19): subscriptions, the delivery outbox, connection health.

    {prefix}webhooks          PK tenant        RK subscription id
        Url, Events (json), ConnectorId, OwnerId, Scope ("owner" | "all"),
        SecretName, SecretVersion (the signing secret lives in the secret store),
        Status ("active" | "failing"), LastError, LastDeliveryAt, FailingSince
    {prefix}webhookoutbox     PK subscription  RK {connection id}|{seq:020}|{event id}
        Tenant, Payload (json), EventId, Attempts, NextAttemptAt, CreatedAt, LastError
        (RowKey order = delivery order per connection)
    {prefix}connectionhealth  PK tenant        RK connection id
        ConnectorId, State, Failures, LastFailureAt, LastReason

No secret value is ever written here: the signing secret's name and version only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from functions.stores.tables import run_table_call


def _odata(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Subscription:
    id: str
    tenant_id: str
    owner_id: str
    url: str
    events: tuple[str, ...]
    scope: str  # "owner": the owner's connections; "all": every connection (admins)
    secret_name: str
    secret_version: str | None = None
    connector_id: str | None = None
    status: str = "active"
    last_error: str | None = None
    last_delivery_at: datetime | None = None
    failing_since: datetime | None = None
    created_at: datetime | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        if event["type"] not in self.events:
            return False
        if self.connector_id is not None and event["connectorId"] != self.connector_id:
            return False
        return self.scope == "all" or event["ownerId"] == self.owner_id


@dataclass
class Delivery:
    subscription_id: str
    row_key: str
    tenant_id: str
    payload: str
    event_id: str
    attempts: int = 0
    next_attempt_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_error: str | None = None
    etag: str | None = None

    @property
    def connection_id(self) -> str:
        return self.row_key.split("|", 1)[0]


@dataclass
class Health:
    tenant_id: str
    connection_id: str
    connector_id: str
    state: str = "healthy"  # healthy | refresh_failing | reauthorization_required | disabled
    failures: int = 0
    last_failure_at: datetime | None = None
    last_reason: str | None = None


def _subscription(e: Any) -> Subscription:
    return Subscription(
        id=e["RowKey"],
        tenant_id=e["PartitionKey"],
        owner_id=e["OwnerId"],
        url=e["Url"],
        events=tuple(json.loads(e["Events"])),
        scope=e["Scope"],
        secret_name=e["SecretName"],
        secret_version=e.get("SecretVersion") or None,
        connector_id=e.get("ConnectorId") or None,
        status=e.get("Status") or "active",
        last_error=e.get("LastError") or None,
        last_delivery_at=e.get("LastDeliveryAt") or None,
        failing_since=e.get("FailingSince") or None,
        created_at=e.get("CreatedAt"),
    )


def _delivery(e: Any) -> Delivery:
    return Delivery(
        subscription_id=e["PartitionKey"],
        row_key=e["RowKey"],
        tenant_id=e["Tenant"],
        payload=e["Payload"],
        event_id=e["EventId"],
        attempts=int(e.get("Attempts") or 0),
        next_attempt_at=e.get("NextAttemptAt"),
        created_at=e.get("CreatedAt") or datetime.now(UTC),
        last_error=e.get("LastError") or None,
        etag=e.metadata.get("etag"),
    )


class WebhookStore:
    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self._service = service
        self._names = (f"{prefix}webhooks", f"{prefix}webhookoutbox", f"{prefix}connectionhealth")
        self._subscriptions = service.get_table_client(self._names[0])
        self._outbox = service.get_table_client(self._names[1])
        self._health = service.get_table_client(self._names[2])

    async def ensure_tables(self) -> None:
        for name in self._names:
            await run_table_call(partial(self._service.create_table_if_not_exists, name))

    # -- subscriptions -----------------------------------------------------------------

    async def insert(self, s: Subscription) -> None:
        entity = {
            "PartitionKey": s.tenant_id,
            "RowKey": s.id,
            "OwnerId": s.owner_id,
            "Url": s.url,
            "Events": json.dumps(list(s.events)),
            "Scope": s.scope,
            "SecretName": s.secret_name,
            "SecretVersion": s.secret_version or "",
            "ConnectorId": s.connector_id or "",
            "Status": s.status,
            "CreatedAt": s.created_at or datetime.now(UTC),
        }
        await run_table_call(lambda: self._subscriptions.create_entity(entity))

    async def get(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        try:
            entity = await run_table_call(
                lambda: self._subscriptions.get_entity(tenant_id, subscription_id)
            )
        except ResourceNotFoundError:
            return None
        return _subscription(entity)

    async def subscriptions(
        self, tenant_id: str, *, owner_id: str | None = None
    ) -> list[Subscription]:
        query = f"PartitionKey eq {_odata(tenant_id)}"
        if owner_id is not None:
            query += f" and OwnerId eq {_odata(owner_id)}"
        entities = await run_table_call(lambda: list(self._subscriptions.query_entities(query)))
        return sorted(
            (_subscription(e) for e in entities), key=lambda s: s.created_at or datetime.now(UTC)
        )

    async def update(self, tenant_id: str, subscription_id: str, **values: Any) -> None:
        entity = {"PartitionKey": tenant_id, "RowKey": subscription_id, **values}
        entity = {k: ("" if v is None else v) for k, v in entity.items()}
        try:
            await run_table_call(
                lambda: self._subscriptions.update_entity(entity, mode=UpdateMode.MERGE)
            )
        except ResourceNotFoundError:
            pass  # deleted meanwhile

    async def delete(self, tenant_id: str, subscription_id: str) -> None:
        await run_table_call(lambda: self._subscriptions.delete_entity(tenant_id, subscription_id))
        for delivery in await self.outbox_of(subscription_id):
            await self.remove_delivery(delivery)

    # -- outbox ------------------------------------------------------------------------

    async def add_delivery(self, d: Delivery) -> None:
        entity = {
            "PartitionKey": d.subscription_id,
            "RowKey": d.row_key,
            "Tenant": d.tenant_id,
            "Payload": d.payload,
            "EventId": d.event_id,
            "Attempts": d.attempts,
            "NextAttemptAt": d.next_attempt_at or d.created_at,
            "CreatedAt": d.created_at,
        }
        try:
            await run_table_call(lambda: self._outbox.create_entity(entity))
        except ResourceExistsError:
            pass  # the same event queued twice (at-least-once queue): one delivery

    async def outbox(self) -> list[Delivery]:
        entities = await run_table_call(lambda: list(self._outbox.list_entities()))
        return [_delivery(e) for e in entities]

    async def outbox_of(self, subscription_id: str) -> list[Delivery]:
        query = f"PartitionKey eq {_odata(subscription_id)}"
        entities = await run_table_call(lambda: list(self._outbox.query_entities(query)))
        return [_delivery(e) for e in entities]

    async def remove_delivery(self, d: Delivery) -> None:
        try:
            await run_table_call(lambda: self._outbox.delete_entity(d.subscription_id, d.row_key))
        except ResourceNotFoundError:
            pass

    async def retry_later(self, d: Delivery) -> None:
        entity = {
            "PartitionKey": d.subscription_id,
            "RowKey": d.row_key,
            "Attempts": d.attempts,
            "NextAttemptAt": d.next_attempt_at,
            "LastError": (d.last_error or "")[:500],
        }
        try:
            await run_table_call(
                lambda: self._outbox.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=d.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            )
        except ResourceNotFoundError:
            pass

    # -- health ------------------------------------------------------------------------

    async def health(self, tenant_id: str, connection_id: str) -> Health | None:
        try:
            e = await run_table_call(lambda: self._health.get_entity(tenant_id, connection_id))
        except ResourceNotFoundError:
            return None
        return Health(
            tenant_id=tenant_id,
            connection_id=connection_id,
            connector_id=e.get("ConnectorId") or "",
            state=e.get("State") or "healthy",
            failures=int(e.get("Failures") or 0),
            last_failure_at=e.get("LastFailureAt"),
            last_reason=e.get("LastReason") or None,
        )

    async def save_health(self, h: Health) -> None:
        entity = {
            "PartitionKey": h.tenant_id,
            "RowKey": h.connection_id,
            "ConnectorId": h.connector_id,
            "State": h.state,
            "Failures": h.failures,
            "LastFailureAt": h.last_failure_at,
            "LastReason": h.last_reason or "",
        }
        entity = {k: v for k, v in entity.items() if v is not None}
        await run_table_call(lambda: self._health.upsert_entity(entity, mode=UpdateMode.REPLACE))

    async def health_of_tenant(self, tenant_id: str) -> list[Health]:
        query = f"PartitionKey eq {_odata(tenant_id)}"
        entities = await run_table_call(lambda: list(self._health.query_entities(query)))
        return [
            Health(
                tenant_id=tenant_id,
                connection_id=e["RowKey"],
                connector_id=e.get("ConnectorId") or "",
                state=e.get("State") or "healthy",
                failures=int(e.get("Failures") or 0),
                last_failure_at=e.get("LastFailureAt"),
                last_reason=e.get("LastReason") or None,
            )
            for e in entities
        ]

    def close(self) -> None:
        for client in (self._subscriptions, self._outbox, self._health):
            client.close()
