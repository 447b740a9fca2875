"""The audit trail: append-only records in Table Storage, written off the request path.

    {prefix}audit  PartitionKey = "conn|<tenant>|<connection id>"   (per connection)
                                  "prin|<tenant>|<principal subject>" (per caller)
                   RowKey       = <13-digit inverted epoch ms of the newest event>-<random>
                   Events       = JSON array of the events of one flush (newest first)

Each event is written to both partitions, so "this connection, last 24 h" and "this
principal, last 24 h" are each one single-partition range query. Events hold no secrets
and no bodies: who, what, which connection/connector/operation, status, latency,
correlation id.

`record()` only appends to an in-memory queue; a background task flushes once a second,
writing one entity per partition per flush with that second's events (a plain insert:
the profile showed batch transactions' MIME encoding costing a fifth of the gateway's
CPU). So an invocation never waits for the audit write, and the write cost stays at a
couple of inserts a second whatever the call rate. The queue is bounded; on overflow the oldest records are dropped and
counted (`dropped`), and a warning is logged - the request path is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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


# A string property holds 64 KiB of UTF-16: keep each entity's event list under that.
_MAX_EVENTS_CHARS = 30_000


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """The event as stored and as the activity routes return it."""
    data: dict[str, Any] = {
        "time": event.time.isoformat(),
        "principal": event.principal,
        "action": event.action,
        "status": event.status,
        "connectionId": event.connection_id,
        "connectorId": event.connector_id,
        "operation": event.operation,
        "latencyMs": event.latency_ms,
        "correlationId": event.correlation_id,
        "detail": event.detail,
    }
    return {key: value for key, value in data.items() if value is not None}


def _entities(partition: str, events: list[AuditEvent]) -> list[dict[str, Any]]:
    """One entity per chunk of events (newest first), each under the property limit;
    a chunk's RowKey is the time of its newest event."""
    ordered = sorted(events, key=lambda e: e.time, reverse=True)
    chunks: list[tuple[AuditEvent, list[str]]] = []
    size = 0
    for event in ordered:
        text = json.dumps(event_dict(event), separators=(",", ":"))
        if not chunks or size + len(text) + 1 > _MAX_EVENTS_CHARS:
            chunks.append((event, []))
            size = 0
        chunks[-1][1].append(text)
        size += len(text) + 1
    return [
        {
            "PartitionKey": partition,
            "RowKey": _row_key(newest.time),
            "Count": len(texts),
            "Events": "[" + ",".join(texts) + "]",
        }
        for newest, texts in chunks
    ]


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
        by_partition: dict[str, list[AuditEvent]] = defaultdict(list)
        for event in events:
            by_partition[principal_partition(event.tenant_id, event.principal)].append(event)
            if event.connection_id:
                by_partition[connection_partition(event.tenant_id, event.connection_id)].append(
                    event
                )
        for partition, grouped in by_partition.items():
            for entity in _entities(partition, grouped):
                self._table.create_entity(entity)
                self.written += entity["Count"]

    async def purge_older_than(self, age: timedelta) -> int:
        """Retention: delete flush entities whose newest event is older than `age`.
        The only deletion the audit table sees (run by the cleanup job)."""
        cutoff = datetime.now(UTC) - age
        lower = f"{_MAX_MS - int(cutoff.timestamp() * 1000):013d}~"
        query = f"RowKey gt '{lower}'"

        def run() -> int:
            removed = 0
            for entity in self._table.query_entities(query, select=["PartitionKey", "RowKey"]):
                self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                removed += 1
            return removed

        return await asyncio.to_thread(run)

    async def query(
        self, partition: str, since: timedelta = timedelta(hours=24), limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Events newest first, back to `since` ago: one range query inside one partition."""
        oldest = datetime.now(UTC) - since
        upper = f"{_MAX_MS - int(oldest.timestamp() * 1000):013d}~"
        query = (
            f"PartitionKey eq '{partition.replace(chr(39), chr(39) * 2)}' and RowKey lt '{upper}'"
        )
        cutoff = oldest.isoformat()

        def run() -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = []
            for entity in self._table.query_entities(query):
                # Entities come newest first; a batch may reach back past the cutoff.
                events.extend(e for e in json.loads(entity["Events"]) if e["time"] >= cutoff)
                if len(events) >= limit:
                    break
            events.sort(key=lambda e: e["time"], reverse=True)
            return events[:limit]

        return await asyncio.to_thread(run)
