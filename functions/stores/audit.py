"""The audit trail: append-only records in Table Storage, written off the request path.

    {prefix}audit  PartitionKey = "conn|<tenant>|<connection id>"   (per connection)
                                  "prin|<tenant>|<principal subject>" (per caller)
                   RowKey       = <13-digit inverted epoch ms of the newest event>-<random>
                   EventsGz     = gzip of the JSON array of the events of one flush
                                  (newest first), a binary property of at most 60 KB
                   Count        = how many events it holds

Each event is written to both partitions, so "this connection, last 24 h" and "this
principal, last 24 h" are each one single-partition range query. Events hold no secrets
and no bodies: who, what, which connection/connector/operation, status, latency,
correlation id.

`record()` only appends to an in-memory queue; a background task flushes once a second,
writing one entity per partition per flush with that second's events (a plain insert:
the profile showed batch transactions' MIME encoding costing a fifth of the gateway's
CPU). The events are gzip-compressed: an insert costs about 3 ms of CPU in the SDK
whatever its size, and plain JSON filled a 32K-character string property every ~100
events (8 inserts a second at 400 calls/s); compressed, one entity holds a few
thousand. So an invocation never waits for the audit write, and the write cost stays at a
couple of inserts a second whatever the call rate. The queue is bounded; on overflow the oldest records are dropped and
counted (`dropped`), and a warning is logged - the request path is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient

from functions.stores.tables import run_table_call

log = logging.getLogger(__name__)

_MAX_MS = 10**13  # inverted timestamps stay 13 digits until the year 2286
FLUSH_SECONDS = 1.0
_WRITE_CHUNK = 5000  # events per write call (one entity per partition when they compress)


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
    # Written to the connection's partition only: for an event whose copy in the
    # caller's partition is written by someone else (an invocation refused after
    # access was established: the invocation service records the caller's copy).
    connection_only: bool = False


def _row_key(when: datetime) -> str:
    inverted = _MAX_MS - int(when.timestamp() * 1000)
    return f"{inverted:013d}-{secrets.token_hex(4)}"


def connection_partition(tenant_id: str, connection_id: str) -> str:
    return f"conn|{tenant_id}|{connection_id}"


def principal_partition(tenant_id: str, principal: str) -> str:
    return f"prin|{tenant_id}|{principal}"


# A binary property holds 64 KiB: keep each entity's compressed event list under that.
_MAX_COMPRESSED_BYTES = 60_000


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


def _entities(partition: str, events: list[tuple[AuditEvent, str]]) -> list[dict[str, Any]]:
    """Entities for one partition: the events (with their JSON text), newest first,
    compressed; split in halves until each part fits the property limit. A part's
    RowKey is the time of its newest event."""
    ordered = sorted(events, key=lambda e: e[0].time, reverse=True)
    packed = gzip.compress(("[" + ",".join(text for _, text in ordered) + "]").encode(), 6)
    if len(packed) > _MAX_COMPRESSED_BYTES and len(ordered) > 1:
        middle = len(ordered) // 2
        return _entities(partition, ordered[:middle]) + _entities(partition, ordered[middle:])
    return [
        {
            "PartitionKey": partition,
            "RowKey": _row_key(ordered[0][0].time),
            "Count": len(ordered),
            "EventsGz": packed,
        }
    ]


def _events_of(entity: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(gzip.decompress(entity["EventsGz"]))
    return events


class AuditLog:
    def __init__(
        self,
        service: TableServiceClient,
        prefix: str = "",
        *,
        max_pending: int = 50_000,
        call_timeout: float | None = None,
    ) -> None:
        self._service = service
        self._call_timeout = call_timeout
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
            await self._write_oldest(len(self._pending))

    async def _write_oldest(self, count: int) -> None:
        """Write the `count` oldest queued events. If a write fails they go back to the
        front of the queue (at least once: a partition written before the failure is
        written again on the retry)."""
        while count > 0 and self._pending:
            size = min(count, len(self._pending), _WRITE_CHUNK)
            batch = [self._pending.popleft() for _ in range(size)]
            count -= size
            try:
                await asyncio.to_thread(self._write, batch)
            except AzureError:
                self._pending.extendleft(reversed(batch))
                raise

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
                # Only what is queued now: events that arrive during the write wait
                # for the next interval (draining until empty would, under load, turn
                # into a stream of small writes).
                await self._write_oldest(len(self._pending))
            except AzureError:
                log.warning("audit write failed; will retry", exc_info=True)
                await asyncio.sleep(1.0)
                self._wake.set()

    def _write(self, events: list[AuditEvent]) -> None:
        by_partition: dict[str, list[tuple[AuditEvent, str]]] = defaultdict(list)
        for event in events:
            # Serialised once, stored in both partitions.
            item = (event, json.dumps(event_dict(event), separators=(",", ":")))
            if not (event.connection_only and event.connection_id):
                by_partition[principal_partition(event.tenant_id, event.principal)].append(item)
            if event.connection_id:
                by_partition[connection_partition(event.tenant_id, event.connection_id)].append(
                    item
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

        return await run_table_call(run, self._call_timeout)

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
                events.extend(e for e in _events_of(entity) if e["time"] >= cutoff)
                if len(events) >= limit:
                    break
            events.sort(key=lambda e: e["time"], reverse=True)
            return events[:limit]

        # Reads answer callers: outages and timeouts are 503s (writes retry on their own).
        return await run_table_call(run, self._call_timeout)
