"""The audit trail: append-only records in Table Storage, written off the request path.

    {prefix}audit  PartitionKey = "conn|<tenant>|<connection id>"   (per connection)
                                  "prin|<tenant>|<principal subject>" (per caller)
                   RowKey       = <13-digit inverted epoch ms>-<random>  (newest first)

Each event is written twice, once per partition, so "this connection, last 24 h" and
"this principal, last 24 h" are each one single-partition range query. Records hold no
secrets and no bodies: who, what, which connection/connector/operation, status,
latency, correlation id.

`record()` only appends to an in-memory queue; a background task writes batches once a
second (one transaction per partition, up to 100 entities), so an invocation never waits
for the audit write and the write cost does not grow with the call rate. The queue is bounded; on overflow the oldest records are dropped and
counted (`dropped`), and a warning is logged - the request path is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient

log = logging.getLogger(__name__)

_MAX_MS = 10**13  # inverted timestamps stay 13 digits until the year 2286
FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class AuditEvent:
    tenant_id: str
    principal: str  # "user:<oid>" / "app:<oid>"
    action: str  # invoke, connection.create, consent, refresh.failure, share, unshare, ...
    status: int
    connection_id: str | None = None
    connector_id: str | None = None
    operation: str | None = None
    latency_ms: float | None = None
    correlation_id: str | None = None
    detail: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


def _row_key(when: datetime) -> str:
    inverted = _MAX_MS - int(when.timestamp() * 1000)
    return f"{inverted:013d}-{secrets.token_hex(4)}"


def connection_partition(tenant_id: str, connection_id: str) -> str:
    return f"conn|{tenant_id}|{connection_id}"


def principal_partition(tenant_id: str, principal: str) -> str:
    return f"prin|{tenant_id}|{principal}"


def _entity(partition: str, row: str, event: AuditEvent) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": partition,
        "RowKey": row,
        "Time": event.time,
        "Principal": event.principal,
        "Action": event.action,
        "Status": event.status,
    }
    optional = {
        "ConnectionId": event.connection_id,
        "ConnectorId": event.connector_id,
        "Operation": event.operation,
        "LatencyMs": event.latency_ms,
        "CorrelationId": event.correlation_id,
        "Detail": event.detail,
    }
    entity.update({k: v for k, v in optional.items() if v is not None})
    return entity


class AuditLog:
    def __init__(
        self, service: TableServiceClient, prefix: str = "", *, max_pending: int = 50_000
    ) -> None:
        self._service = service
        self.table_name = f"{prefix}audit"
        self._table = service.get_table_client(self.table_name)
        self._pending: deque[AuditEvent] = deque()
        self._max_pending = max_pending
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    async def ensure_table(self) -> None:
        await asyncio.to_thread(self._service.create_table_if_not_exists, self.table_name)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, event: AuditEvent) -> None:
        """Queue an event; never blocks and never raises."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("audit queue full: %d record(s) dropped so far", self.dropped)
        self._pending.append(event)
        self._wake.set()

    async def flush(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), 500))]
            await asyncio.to_thread(self._write, batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(AzureError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let records accumulate: one transaction per partition per interval, so the
            # write cost stays flat under load (records show up within FLUSH_SECONDS).
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except AzureError:
                log.warning("audit write failed; will retry", exc_info=True)
                await asyncio.sleep(1.0)
                self._wake.set()

    def _write(self, events: list[AuditEvent]) -> None:
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            row = _row_key(event.time)
            partitions = [principal_partition(event.tenant_id, event.principal)]
            if event.connection_id:
                partitions.append(connection_partition(event.tenant_id, event.connection_id))
            for partition in partitions:
                by_partition[partition].append(_entity(partition, row, event))
        for entities in by_partition.values():
            for start in range(0, len(entities), 100):
                chunk = entities[start : start + 100]
                self._table.submit_transaction([("create", entity) for entity in chunk])
                self.written += len(chunk)

    async def query(
        self, partition: str, since: timedelta = timedelta(hours=24), limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Newest first, back to `since` ago: one range query inside one partition."""
        oldest = datetime.now(UTC) - since
        upper = f"{_MAX_MS - int(oldest.timestamp() * 1000):013d}~"
        query = (
            f"PartitionKey eq '{partition.replace(chr(39), chr(39) * 2)}' and RowKey lt '{upper}'"
        )

        def run() -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = []
            for entity in self._table.query_entities(query):
                rows.append(dict(entity))
                if len(rows) >= limit:
                    break
            return rows

        return await asyncio.to_thread(run)
