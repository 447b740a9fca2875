"""Grants on connectors and connections, in Table Storage.

    {prefix}shares  PartitionKey = tenant id,
                    RowKey = "<resource type>:<resource id>:<principal type>:<principal id>"

The grants of one resource are one range query inside the tenant's partition (the hot
path reads them with the connection and caches them with it); "what is shared with me"
is a filter over the same partition. Writes are idempotent upserts and deletes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from functions.domain.models import Share
from functions.stores.tables import run_table_call

T = TypeVar("T")


def _row_key(resource_type: str, resource_id: str, principal_type: str, principal_id: str) -> str:
    return f"{resource_type}:{resource_id}:{principal_type}:{principal_id}"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _from_entity(e: Any) -> Share:
    return Share(
        tenant_id=e["PartitionKey"],
        resource_type=e["ResourceType"],
        resource_id=e["ResourceId"],
        principal_type=e["PrincipalType"],
        principal_id=e["PrincipalId"],
        role=e["Role"],
        granted_by=e["GrantedBy"],
        granted_at=e.get("GrantedAt"),
    )


class ShareStore:
    def __init__(
        self, service: TableServiceClient, prefix: str = "", *, call_timeout: float | None = None
    ) -> None:
        self._service = service
        self._call_timeout = call_timeout
        self.table_name = f"{prefix}shares"
        self._table = service.get_table_client(self.table_name)
        self.reads = 0

    async def ensure_table(self) -> None:
        await self._run(partial(self._service.create_table_if_not_exists, self.table_name))

    async def put(self, share: Share) -> Share:
        entity = {
            "PartitionKey": share.tenant_id,
            "RowKey": _row_key(
                share.resource_type, share.resource_id, share.principal_type, share.principal_id
            ),
            "ResourceType": share.resource_type,
            "ResourceId": share.resource_id,
            "PrincipalType": share.principal_type,
            "PrincipalId": share.principal_id,
            "Role": share.role,
            "GrantedBy": share.granted_by,
            "GrantedAt": share.granted_at or datetime.now(UTC),
        }
        await self._run(partial(self._table.upsert_entity, entity, mode=UpdateMode.REPLACE))
        return share

    async def delete(
        self,
        tenant_id: str,
        resource_type: str,
        resource_id: str,
        principal_type: str,
        principal_id: str,
    ) -> bool:
        key = _row_key(resource_type, resource_id, principal_type, principal_id)
        try:
            await self._run(partial(self._table.get_entity, tenant_id, key))
        except ResourceNotFoundError:
            return False
        await self._run(partial(self._table.delete_entity, tenant_id, key))
        return True

    async def for_resource(
        self, tenant_id: str, resource_type: str, resource_id: str
    ) -> list[Share]:
        prefix = f"{resource_type}:{resource_id}:"
        # ';' sorts right after ':', closing the range of this resource's rows.
        query = (
            f"PartitionKey eq {_quote(tenant_id)} and RowKey ge {_quote(prefix)} "
            f"and RowKey lt {_quote(prefix[:-1] + ';')}"
        )
        self.reads += 1
        entities = await self._run(lambda: list(self._table.query_entities(query)))
        return [_from_entity(e) for e in entities]

    async def for_subjects(
        self, tenant_id: str, resource_type: str, subjects: frozenset[str]
    ) -> list[Share]:
        """Grants of `resource_type` to any of `subjects` ("user:<oid>", "group:<id>"...)."""
        found: list[Share] = []
        ordered = sorted(subjects)
        # Chunks keep the filter well under the service's limit on conditions.
        for start in range(0, len(ordered), 15):
            chunk = ordered[start : start + 15]
            matches = " or ".join(
                f"(PrincipalType eq {_quote(s.split(':', 1)[0])} and PrincipalId eq {_quote(s.split(':', 1)[1])})"
                for s in chunk
            )
            query = f"PartitionKey eq {_quote(tenant_id)} and ResourceType eq {_quote(resource_type)} and ({matches})"
            self.reads += 1
            entities = await self._run(partial(self._query, query))
            found.extend(_from_entity(e) for e in entities)
        return found

    async def _run(self, fn: Callable[[], T]) -> T:
        # The shared mapping: outages and timeouts are 503s, never 500s.
        return await run_table_call(fn, self._call_timeout)

    def _query(self, query: str) -> list[Any]:
        return list(self._table.query_entities(query))

    async def delete_for_resource(
        self, tenant_id: str, resource_type: str, resource_id: str
    ) -> None:
        for share in await self.for_resource(tenant_id, resource_type, resource_id):
            await self.delete(
                tenant_id, resource_type, resource_id, share.principal_type, share.principal_id
            )
