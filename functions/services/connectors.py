"""Connectors: create, read, update, delete. Only the owner sees or changes one for now
(sharing arrives with the access-policy work); anything else answers 404 so ids cannot
be probed."""

from __future__ import annotations

from dataclasses import dataclass

from functions.domain.models import AuthScheme, Connector
from functions.errors import ConflictError, NotFoundError
from functions.identity.principal import Principal
from functions.services.ids import is_valid_id, new_id
from functions.stores.tables import MetadataStore
from functions.upstream.urls import validate_base_url


@dataclass(frozen=True)
class ConnectorInput:
    name: str
    base_url: str
    auth: AuthScheme
    description: str | None = None


def connector_not_found(connector_id: str) -> NotFoundError:
    return NotFoundError(f"connector {connector_id} not found", code="connector_not_found")


class ConnectorService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def create(self, caller: Principal, data: ConnectorInput) -> Connector:
        connector = Connector(
            id=new_id(),
            tenant_id=caller.tenant_id,
            owner_id=caller.object_id,
            name=data.name,
            base_url=validate_base_url(data.base_url),
            auth=data.auth,
            description=data.description,
        )
        return await self._store.insert_connector(connector)

    async def list_visible(self, caller: Principal) -> list[Connector]:
        return await self._store.list_connectors(caller.tenant_id, caller.object_id)

    async def get_visible(self, caller: Principal, connector_id: str) -> Connector:
        connector = None
        if is_valid_id(connector_id):
            connector = await self._store.get_connector(caller.tenant_id, connector_id)
        if connector is None or connector.owner_id != caller.object_id:
            raise connector_not_found(connector_id)
        return connector

    async def replace(self, caller: Principal, connector_id: str, data: ConnectorInput) -> Connector:
        connector = await self.get_visible(caller, connector_id)
        base_url = validate_base_url(data.base_url)
        if data.auth != connector.auth:
            # Existing connections hold credentials for the old scheme; changing it
            # under them would send the wrong credential or none.
            in_use = await self._store.list_connections(caller.tenant_id, connector_id=connector.id)
            if in_use:
                raise ConflictError(
                    f"connector {connector.id} has {len(in_use)} connection(s); delete them "
                    "before changing its authentication scheme",
                    code="connector_in_use",
                )
        connector.name = data.name
        connector.base_url = base_url
        connector.auth = data.auth
        connector.description = data.description
        return await self._store.replace_connector(connector)

    async def delete(self, caller: Principal, connector_id: str) -> None:
        connector = await self.get_visible(caller, connector_id)
        in_use = await self._store.list_connections(caller.tenant_id, connector_id=connector.id)
        if in_use:
            raise ConflictError(
                f"connector {connector.id} has {len(in_use)} connection(s); delete them first",
                code="connector_in_use",
            )
        await self._store.delete_connector(caller.tenant_id, connector.id)
