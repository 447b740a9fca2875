"""Connections: one user's credentials for one connector.

Credentials are written only to the secret store; the table row holds the secret's name
and version and the names of the parameters that are set.

Crash safety (no step leaves a usable half-state, and every leftover is found by
`cleanup`):
    create: insert row (pending) -> write secret -> mark row connected with the version
    delete: mark row deleting -> delete secret (soft delete + purge) -> delete row
A pending or deleting row is never usable. `cleanup` finishes deleting rows left in
`deleting` and rows left `pending` for longer than PENDING_GRACE.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.domain.models import AuthScheme, Connection, ConnectionStatus, Connector
from functions.errors import GatewayError, NotFoundError, ValidationFailedError
from functions.identity.principal import Principal
from functions.logging_redaction import register_secret
from functions.services.connectors import ConnectorService
from functions.services.ids import is_valid_id, new_id
from functions.services.ttl_cache import TtlCache
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.tables import EntityChangedError, MetadataStore

log = logging.getLogger(__name__)

PENDING_GRACE = timedelta(minutes=10)
SECRET_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ConnectionInput:
    display_name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedConnection:
    """Everything an invocation needs, including the credential values (memory only)."""

    connection: Connection
    connector: Connector
    secret_parameters: dict[str, str] = field(repr=False)


def connection_not_found(connection_id: str) -> NotFoundError:
    return NotFoundError(f"connection {connection_id} not found", code="connection_not_found")


def secret_name_for(connection_id: str) -> str:
    return f"conn-{connection_id}"


def validate_parameters(scheme: AuthScheme, parameters: dict[str, Any]) -> dict[str, str]:
    """Check connection parameters against the connector's scheme; name every bad field."""
    errors: list[dict[str, str]] = []
    allowed = set(scheme.required_parameters())
    for name, value in parameters.items():
        if name not in allowed:
            expected = ", ".join(sorted(allowed)) or "none"
            errors.append(
                {"field": f"parameters.{name}", "message": f"unknown parameter (expected: {expected})"}
            )
        elif not isinstance(value, str):
            errors.append({"field": f"parameters.{name}", "message": "must be a string"})
        elif value == "":
            errors.append({"field": f"parameters.{name}", "message": "must not be empty"})
    for name in scheme.required_parameters():
        if name not in parameters:
            errors.append({"field": f"parameters.{name}", "message": "required"})
    if errors:
        raise ValidationFailedError(
            "invalid connection parameters: " + "; ".join(e["field"] + " " + e["message"] for e in errors),
            errors=errors,
        )
    return {name: str(value) for name, value in parameters.items()}


class ConnectionService:
    def __init__(
        self,
        store: MetadataStore,
        secrets: CachedSecretStore,
        connectors: ConnectorService,
        *,
        cache_seconds: float,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._connectors = connectors
        self._resolved: TtlCache[tuple[Connection, Connector]] = TtlCache(cache_seconds)

    async def create(self, caller: Principal, connector_id: str, data: ConnectionInput) -> Connection:
        connector = await self._connectors.get_visible(caller, connector_id)
        values = validate_parameters(connector.auth, data.parameters)
        connection_id = new_id()
        connection = Connection(
            id=connection_id,
            tenant_id=caller.tenant_id,
            connector_id=connector.id,
            owner_id=caller.object_id,
            display_name=data.display_name,
            status=ConnectionStatus.PENDING,
            secret_name=secret_name_for(connection_id),
            parameters_set=tuple(sorted(values)),
        )
        connection = await self._store.insert_connection(connection)
        try:
            payload = json.dumps({"format": SECRET_FORMAT_VERSION, "parameters": values})
            version = await self._secrets.set_secret(
                connection.secret_name,
                payload,
                tags={"connection": connection.id, "connector": connector.id},
            )
            connection.secret_version = version
            connection.status = ConnectionStatus.CONNECTED
            return await self._store.replace_connection(connection)
        except BaseException:
            # Undo what we can; whatever remains stays pending (never usable) and is
            # removed by cleanup.
            await self._discard(connection)
            raise

    async def list_visible(self, caller: Principal) -> list[Connection]:
        items = await self._store.list_connections(caller.tenant_id, owner_id=caller.object_id)
        return [c for c in items if c.status == ConnectionStatus.CONNECTED]

    async def get_visible(self, caller: Principal, connection_id: str) -> Connection:
        connection = None
        if is_valid_id(connection_id):
            connection = await self._store.get_connection(caller.tenant_id, connection_id)
        if (
            connection is None
            or connection.owner_id != caller.object_id
            or connection.status in (ConnectionStatus.PENDING, ConnectionStatus.DELETING)
        ):
            raise connection_not_found(connection_id)
        return connection

    async def delete(self, caller: Principal, connection_id: str) -> None:
        """Delete a connection and its secret. Deleting a missing connection succeeds."""
        connection = None
        if is_valid_id(connection_id):
            connection = await self._store.get_connection(caller.tenant_id, connection_id)
        if connection is None or connection.owner_id != caller.object_id:
            return
        self._resolved.evict((caller.tenant_id, connection_id))
        if connection.status != ConnectionStatus.DELETING:
            connection.status = ConnectionStatus.DELETING
            try:
                connection = await self._store.replace_connection(connection)
            except EntityChangedError:
                # Changed concurrently (e.g. another delete): re-read and carry on.
                current = await self._store.get_connection(caller.tenant_id, connection_id)
                if current is None:
                    return
                connection = current
        await self._finish_delete(connection)

    async def _finish_delete(self, connection: Connection) -> None:
        await self._secrets.delete_secret(connection.secret_name)
        await self._store.delete_connection(connection.tenant_id, connection.id)
        log.info("connection deleted", extra={"connection_id": connection.id})

    async def _discard(self, connection: Connection) -> None:
        try:
            await self._secrets.delete_secret(connection.secret_name)
            await self._store.delete_connection(connection.tenant_id, connection.id)
        except GatewayError:
            log.warning(
                "could not undo a failed connection create; cleanup will remove it",
                extra={"connection_id": connection.id},
            )

    async def cleanup(self, *, now: datetime | None = None) -> int:
        """Finish interrupted creates and deletes. Returns how many rows were removed."""
        now = now or datetime.now(UTC)
        removed = 0
        leftovers = await self._store.list_connections_in_status(
            (ConnectionStatus.PENDING, ConnectionStatus.DELETING)
        )
        for connection in leftovers:
            stale_pending = connection.status == ConnectionStatus.PENDING and (
                connection.updated_at is None or now - connection.updated_at > PENDING_GRACE
            )
            if connection.status == ConnectionStatus.DELETING or stale_pending:
                await self._finish_delete(connection)
                removed += 1
        return removed

    async def resolve_for_invoke(self, caller: Principal, connection_id: str) -> ResolvedConnection:
        """The connection, its connector and credentials, from caches when warm.

        Metadata is cached for GATEWAY_METADATA_CACHE_SECONDS; the secret by version
        (immutable), so a warm call reads neither Table Storage nor Key Vault.
        """
        key = (caller.tenant_id, connection_id)
        cached = self._resolved.get(key)
        if cached is None:
            connection = await self.get_visible(caller, connection_id)
            connector = await self._store.get_connector(connection.tenant_id, connection.connector_id)
            if connector is None:
                raise connection_not_found(connection_id)
            cached = (connection, connector)
            self._resolved.put(key, cached)
        connection, connector = cached
        if connection.owner_id != caller.object_id:
            raise connection_not_found(connection_id)
        assert connection.secret_version is not None
        secret = await self._secrets.get_secret(connection.secret_name, connection.secret_version)
        parameters: dict[str, str] = json.loads(secret.value)["parameters"]
        for value in parameters.values():
            # Individual values too: an API key can show up alone, e.g. in a URL.
            register_secret(value)
        return ResolvedConnection(connection, connector, parameters)
