"""Imported connector definitions (the Power Platform file pair), in Table Storage.

    {prefix}definitions  PartitionKey = tenant id, RowKey = connector id

A definition is a document of up to a few MiB, larger than one table property
(64 KiB) allows, so it is stored gzip-compressed and split over binary properties
`Chunk000`, `Chunk001`, ... of one entity (an entity holds up to 1 MiB; JSON compresses
about tenfold, so definitions of several MiB fit). One entity per connector keeps
writes atomic: a definition is never half-stored. It is kept apart from the connector
row so the invoke path's connector read stays small.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from functions.errors import PayloadTooLargeError
from functions.stores.tables import run_table_call

T = TypeVar("T")

CHUNK_BYTES = 60 * 1024
# Leave room under the 1 MiB entity limit for keys and system properties.
MAX_COMPRESSED_BYTES = 900 * 1024


def encode_document(document: dict[str, Any]) -> dict[str, bytes]:
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packed = gzip.compress(raw, compresslevel=6)
    if len(packed) > MAX_COMPRESSED_BYTES:
        raise PayloadTooLargeError(
            f"the definition is too large to store ({len(raw)} bytes, {len(packed)} compressed; "
            f"limit {MAX_COMPRESSED_BYTES} compressed)",
            code="definition_too_large",
        )
    return {
        f"Chunk{index:03d}": packed[start : start + CHUNK_BYTES]
        for index, start in enumerate(range(0, len(packed), CHUNK_BYTES))
    }


def decode_document(entity: dict[str, Any]) -> dict[str, Any]:
    names = sorted(key for key in entity if key.startswith("Chunk"))
    packed = b"".join(bytes(entity[name]) for name in names)
    result: dict[str, Any] = json.loads(gzip.decompress(packed))
    return result


class DefinitionStore:
    def __init__(
        self, service: TableServiceClient, prefix: str = "", *, call_timeout: float | None = None
    ) -> None:
        self._service = service
        self._call_timeout = call_timeout
        self.table_name = f"{prefix}definitions"
        self._table = service.get_table_client(self.table_name)
        self.reads = 0

    async def ensure_table(self) -> None:
        await self._run(partial(self._service.create_table_if_not_exists, self.table_name))

    async def put(self, tenant_id: str, connector_id: str, document: dict[str, Any]) -> None:
        entity: dict[str, Any] = {"PartitionKey": tenant_id, "RowKey": connector_id}
        # Serialising and compressing megabytes: off the event loop.
        entity.update(await asyncio.to_thread(encode_document, document))
        await self._run(partial(self._table.upsert_entity, entity, mode=UpdateMode.REPLACE))

    async def get(self, tenant_id: str, connector_id: str) -> dict[str, Any] | None:
        self.reads += 1
        try:
            entity = await self._run(partial(self._table.get_entity, tenant_id, connector_id))
        except ResourceNotFoundError:
            return None
        return await asyncio.to_thread(decode_document, dict(entity))

    async def delete(self, tenant_id: str, connector_id: str) -> None:
        await self._run(partial(self._table.delete_entity, tenant_id, connector_id))

    async def _run(self, fn: Callable[[], T]) -> T:
        return await run_table_call(fn, self._call_timeout)
