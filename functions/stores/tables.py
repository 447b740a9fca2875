"""Connector and connection metadata in Azure Table Storage.

Keys (see docs/storage.md for why):
    {prefix}connectors   PartitionKey = tenant id, RowKey = connector id
    {prefix}connections  PartitionKey = tenant id, RowKey = connection id

Every read on the invoke path is a point read (tenant from the caller's token, id from
the URL); listing a caller's items is a single-partition query. No entity ever holds a
secret value: connections hold the secret's name and version only.

The Azure SDK is synchronous here (its async flavour needs aiohttp); calls run in a
worker thread so the event loop never blocks on storage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from functions.domain.models import (
    AuthScheme,
    Connection,
    ConnectionStatus,
    Connector,
    CredentialBinding,
    OAuthClientConfig,
)
from functions.errors import ConflictError, DependencyUnavailableError
from functions.settings import Settings

T = TypeVar("T")


@dataclass
class StoreCounters:
    """Calls that reached Table Storage (benchmarks report them per 1,000 invokes)."""

    reads: int = 0
    writes: int = 0
    queries: int = 0


class EntityChangedError(ConflictError):
    """An optimistic-concurrency check failed: someone else changed the entity."""

    code = "concurrent_modification"


async def run_table_call(fn: Callable[[], T], timeout: float | None = None) -> T:
    """Run a sync Table SDK call in a worker thread. Outages (5xx, 429 after the SDK's
    retries, network errors) become 503 `storage_unavailable`, a call that takes longer
    than `timeout` seconds 503 `storage_timeout` (the thread finishes on its own, bounded
    by the client's read timeout); not-found, exists and precondition errors pass
    through for the caller to interpret."""
    try:
        if timeout is None:
            return await asyncio.to_thread(fn)
        return await asyncio.wait_for(asyncio.to_thread(fn), timeout)
    except TimeoutError:
        raise DependencyUnavailableError(
            f"Table Storage did not answer within {timeout:g} s; try again shortly",
            code="storage_timeout",
        ) from None
    except (ResourceNotFoundError, ResourceExistsError, ResourceModifiedError):
        raise
    except HttpResponseError as exc:
        if exc.status_code is not None and exc.status_code < 500 and exc.status_code != 429:
            raise
        raise DependencyUnavailableError(
            "Table Storage is unavailable; try again shortly", code="storage_unavailable"
        ) from exc
    except AzureError as exc:
        raise DependencyUnavailableError(
            "Table Storage is unavailable; try again shortly", code="storage_unavailable"
        ) from exc


def table_client_options(timeout: float) -> dict[str, Any]:
    """Bounded SDK options: without them a frozen backend holds a call for the SDK's
    defaults (300 s read timeout, 10 retries). Retries stay short: every call is also
    bounded as a whole by `run_table_call`."""
    return {
        "connection_timeout": min(5.0, timeout),
        "read_timeout": timeout,
        "retry_total": 3,
        "retry_backoff_factor": 0.4,
        "retry_backoff_max": 4.0,
    }


def build_table_service(settings: Settings) -> TableServiceClient:
    options = table_client_options(settings.storage_timeout_seconds)
    if settings.storage_connection_string:
        return TableServiceClient.from_connection_string(
            settings.storage_connection_string, **options
        )
    from azure.identity import DefaultAzureCredential

    assert settings.table_endpoint is not None
    return TableServiceClient(
        endpoint=settings.table_endpoint, credential=DefaultAzureCredential(), **options
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _connector_to_entity(c: Connector) -> dict[str, Any]:
    return {
        "PartitionKey": c.tenant_id,
        "RowKey": c.id,
        "OwnerId": c.owner_id,
        "Name": c.name,
        "BaseUrl": c.base_url,
        "Auth": json.dumps(c.auth.to_dict()),
        "Description": c.description or "",
        "Source": c.source,
        "OAuthClient": json.dumps(c.oauth_client.to_dict()) if c.oauth_client else "",
        "AllowConnectionSharing": c.allow_connection_sharing,
        "CallsPerMinute": c.calls_per_minute or 0,
        "PropagateTraceContext": c.propagate_trace_context,
        "CreatedAt": c.created_at,
        "UpdatedAt": c.updated_at,
    }


def _connector_from_entity(e: Any) -> Connector:
    return Connector(
        id=e["RowKey"],
        tenant_id=e["PartitionKey"],
        owner_id=e["OwnerId"],
        name=e["Name"],
        base_url=e["BaseUrl"],
        auth=AuthScheme.from_dict(json.loads(e["Auth"])),
        description=e.get("Description") or None,
        source=e.get("Source") or "native",
        oauth_client=OAuthClientConfig.from_dict(json.loads(e["OAuthClient"]))
        if e.get("OAuthClient")
        else None,
        allow_connection_sharing=e.get("AllowConnectionSharing", True) is not False,
        calls_per_minute=int(e.get("CallsPerMinute") or 0) or None,
        propagate_trace_context=e.get("PropagateTraceContext", True) is not False,
        created_at=e.get("CreatedAt"),
        updated_at=e.get("UpdatedAt"),
        etag=e.metadata.get("etag"),
    )


def _connection_to_entity(c: Connection) -> dict[str, Any]:
    return {
        "PartitionKey": c.tenant_id,
        "RowKey": c.id,
        "ConnectorId": c.connector_id,
        "OwnerId": c.owner_id,
        "DisplayName": c.display_name,
        "Status": c.status.value,
        "SecretName": c.secret_name,
        "SecretVersion": c.secret_version or "",
        "ParametersSet": json.dumps(list(c.parameters_set)),
        "ParameterSet": c.parameter_set or "",
        "PlainParameters": json.dumps(c.plain_parameters),
        # Empty for rows never bound (written before issue 12); MERGE keeps them empty.
        "BoundOrigin": c.binding.origin if c.binding else "",
        "BoundInjection": c.binding.injection if c.binding else "",
        "CreatedAt": c.created_at,
        "UpdatedAt": c.updated_at,
    }


def _connection_from_entity(e: Any) -> Connection:
    return Connection(
        id=e["RowKey"],
        tenant_id=e["PartitionKey"],
        connector_id=e["ConnectorId"],
        owner_id=e["OwnerId"],
        display_name=e["DisplayName"],
        status=ConnectionStatus(e["Status"]),
        secret_name=e["SecretName"],
        secret_version=e.get("SecretVersion") or None,
        parameters_set=tuple(json.loads(e.get("ParametersSet") or "[]")),
        parameter_set=e.get("ParameterSet") or None,
        plain_parameters=json.loads(e.get("PlainParameters") or "{}"),
        token_expires_at=_token_expiry(e.get("TokenExpiresAt")),
        binding=CredentialBinding(e["BoundOrigin"], e.get("BoundInjection") or "")
        if e.get("BoundOrigin")
        else None,
        created_at=e.get("CreatedAt"),
        updated_at=e.get("UpdatedAt"),
        etag=e.metadata.get("etag"),
    )


def _token_expiry(value: Any) -> datetime | None:
    # The token store writes the epoch for "no expiry known".
    if not isinstance(value, datetime) or value.year <= 1970:
        return None
    return value


def _odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class MetadataStore:
    """Reads and writes connector and connection records. Methods are async."""

    def __init__(
        self, service: TableServiceClient, prefix: str = "", *, call_timeout: float | None = None
    ) -> None:
        self._service = service
        self._call_timeout = call_timeout
        self.connectors_table = f"{prefix}connectors"
        self.connections_table = f"{prefix}connections"
        self._connectors: TableClient = service.get_table_client(self.connectors_table)
        self._connections: TableClient = service.get_table_client(self.connections_table)
        self.counters = StoreCounters()

    async def _run(self, fn: Callable[[], T]) -> T:
        return await run_table_call(fn, self._call_timeout)

    async def ensure_tables(self) -> None:
        for name in (self.connectors_table, self.connections_table):
            await self._run(partial(self._service.create_table_if_not_exists, name))

    # Connectors -------------------------------------------------------------------
    async def insert_connector(self, connector: Connector) -> Connector:
        connector.created_at = connector.updated_at = _now()
        self.counters.writes += 1
        meta = await self._run(
            lambda: self._connectors.create_entity(_connector_to_entity(connector))
        )
        connector.etag = meta.get("etag")
        return connector

    async def get_connector(self, tenant_id: str, connector_id: str) -> Connector | None:
        self.counters.reads += 1
        try:
            entity = await self._run(lambda: self._connectors.get_entity(tenant_id, connector_id))
        except ResourceNotFoundError:
            return None
        return _connector_from_entity(entity)

    async def list_connectors(self, tenant_id: str, owner_id: str | None = None) -> list[Connector]:
        query = f"PartitionKey eq {_odata_quote(tenant_id)}"
        if owner_id is not None:
            query += f" and OwnerId eq {_odata_quote(owner_id)}"
        self.counters.queries += 1
        entities = await self._run(lambda: list(self._connectors.query_entities(query)))
        return sorted(
            (_connector_from_entity(e) for e in entities), key=lambda c: c.created_at or _now()
        )

    async def replace_connector(self, connector: Connector) -> Connector:
        """Replace if unchanged since read (ETag); raises EntityChangedError otherwise."""
        connector.updated_at = _now()
        self.counters.writes += 1
        try:
            meta = await self._run(
                lambda: self._connectors.update_entity(
                    _connector_to_entity(connector),
                    mode=UpdateMode.REPLACE,
                    etag=connector.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise EntityChangedError(
                "the connector was changed or deleted meanwhile; retry"
            ) from exc
        connector.etag = meta.get("etag")
        return connector

    async def delete_connector(self, tenant_id: str, connector_id: str) -> None:
        self.counters.writes += 1
        await self._run(lambda: self._connectors.delete_entity(tenant_id, connector_id))

    # Connections ------------------------------------------------------------------
    async def insert_connection(self, connection: Connection) -> Connection:
        connection.created_at = connection.updated_at = _now()
        self.counters.writes += 1
        meta = await self._run(
            lambda: self._connections.create_entity(_connection_to_entity(connection))
        )
        connection.etag = meta.get("etag")
        return connection

    async def get_connection(self, tenant_id: str, connection_id: str) -> Connection | None:
        self.counters.reads += 1
        try:
            entity = await self._run(lambda: self._connections.get_entity(tenant_id, connection_id))
        except ResourceNotFoundError:
            return None
        return _connection_from_entity(entity)

    async def list_connections(
        self, tenant_id: str, *, owner_id: str | None = None, connector_id: str | None = None
    ) -> list[Connection]:
        clauses = [f"PartitionKey eq {_odata_quote(tenant_id)}"]
        if owner_id is not None:
            clauses.append(f"OwnerId eq {_odata_quote(owner_id)}")
        if connector_id is not None:
            clauses.append(f"ConnectorId eq {_odata_quote(connector_id)}")
        query = " and ".join(clauses)
        self.counters.queries += 1
        entities = await self._run(lambda: list(self._connections.query_entities(query)))
        return sorted(
            (_connection_from_entity(e) for e in entities), key=lambda c: c.created_at or _now()
        )

    async def list_connections_in_status(
        self, statuses: tuple[ConnectionStatus, ...]
    ) -> list[Connection]:
        """Cross-partition scan used only by the cleanup job."""
        query = " or ".join(f"Status eq {_odata_quote(s.value)}" for s in statuses)
        self.counters.queries += 1
        entities = await self._run(lambda: list(self._connections.query_entities(query)))
        return [_connection_from_entity(e) for e in entities]

    async def replace_connection(self, connection: Connection) -> Connection:
        """Update if unchanged since read (ETag); raises EntityChangedError otherwise.

        MERGE, not REPLACE: the OAuth token store owns columns of this entity
        (SecretVersion after a refresh, TokenExpiresAt, lease, backoff) that must survive.
        """
        connection.updated_at = _now()
        self.counters.writes += 1
        entity = _connection_to_entity(connection)
        try:
            meta = await self._run(
                lambda: self._connections.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=connection.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise EntityChangedError(
                "the connection was changed or deleted meanwhile; retry"
            ) from exc
        connection.etag = meta.get("etag")
        return connection

    async def delete_connection(self, tenant_id: str, connection_id: str) -> None:
        self.counters.writes += 1
        # delete_entity succeeds when the entity is already gone (idempotent).
        await self._run(lambda: self._connections.delete_entity(tenant_id, connection_id))

    async def all_ids(self) -> tuple[set[str], set[str]]:
        """Ids of every connector and connection row, all tenants (the cleanup job's
        secret reconciliation: two key-only scans)."""

        def scan(table: TableClient) -> set[str]:
            return {str(e["RowKey"]) for e in table.list_entities(select=["RowKey"])}

        self.counters.queries += 2
        connectors = await self._run(partial(scan, self._connectors))
        connections = await self._run(partial(scan, self._connections))
        return connectors, connections

    @property
    def connections_client(self) -> TableClient:
        """The connections table, for the OAuth token store (same entity, its own columns)."""
        return self._connections

    async def list_connections_expiring(self, before: datetime) -> list[Connection]:
        """Connected OAuth connections whose access token expires before `before`
        (cross-partition; used by the refresh timer only)."""
        query = (
            f"Status eq 'connected' and TokenExpiresAt gt datetime'1970-01-02T00:00:00Z' "
            f"and TokenExpiresAt le datetime'{before.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
        )
        self.counters.queries += 1
        entities = await self._run(lambda: list(self._connections.query_entities(query)))
        return [_connection_from_entity(e) for e in entities]

    def close(self) -> None:
        self._service.close()
