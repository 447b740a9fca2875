"""The audit log against Azurite: both partitions, newest first, large flushes split
under the property limit, the time window honoured, and `record()` cheap."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from functions.stores.audit import AuditEvent, AuditLog, connection_partition, principal_partition


async def test_events_land_in_both_partitions_newest_first(azurite: Any) -> None:
    log = AuditLog(
        TableServiceClient.from_connection_string(azurite.connection_string()),
        "au" + secrets.token_hex(3),
    )
    await log.ensure_table()
    now = datetime.now(UTC)
    for index in range(1200):  # one flush, far more than one entity holds
        log.record(
            AuditEvent(
                "t1",
                "user:u1",
                "invoke",
                200,
                connection_id="c1",
                latency_ms=1.5,
                detail=f"event {index}",
                time=now - timedelta(seconds=1200 - index),
            )
        )
    log.record(
        AuditEvent(
            "t1",
            "user:u1",
            "invoke",
            200,
            connection_id="c1",
            detail="too old",
            time=now - timedelta(hours=30),
        )
    )
    await log.flush()
    by_connection = await log.query(
        connection_partition("t1", "c1"), since=timedelta(hours=24), limit=5000
    )
    by_principal = await log.query(
        principal_partition("t1", "user:u1"), since=timedelta(hours=24), limit=5000
    )
    assert len(by_connection) == len(by_principal) == 1200
    assert by_connection[0]["detail"] == "event 1199" and by_connection[-1]["detail"] == "event 0"
    assert [e["time"] for e in by_connection] == sorted(
        (e["time"] for e in by_connection), reverse=True
    )
    assert log.written == 2 * 1201
    entities = list(
        TableServiceClient.from_connection_string(azurite.connection_string())
        .get_table_client(log.table_name)
        .list_entities()
    )
    assert len(entities) > 2 and all(len(e["Events"]) < 32_000 for e in entities)
    assert len(await log.query(connection_partition("t1", "c1"), limit=10)) == 10


def test_record_is_cheap() -> None:
    """`record()` is what an invocation pays; it must stay in the microseconds."""
    log = AuditLog.__new__(AuditLog)
    import asyncio
    from collections import deque

    log._pending, log._max_pending, log.dropped, log._wake = deque(), 50_000, 0, asyncio.Event()
    started = time.perf_counter()
    for _ in range(10_000):
        log.record(AuditEvent("t", "user:u", "invoke", 200, connection_id="c"))
    per_call_us = (time.perf_counter() - started) / 10_000 * 1e6
    print(f"AuditLog.record: {per_call_us:.2f} µs per call")
    assert len(log._pending) == 10_000


async def test_retention_deletes_only_old_batches(azurite: Any) -> None:
    log = AuditLog(
        TableServiceClient.from_connection_string(azurite.connection_string()),
        "ar" + secrets.token_hex(3),
    )
    await log.ensure_table()
    now = datetime.now(UTC)
    log.record(
        AuditEvent(
            "t1",
            "user:u1",
            "invoke",
            200,
            connection_id="c1",
            detail="old",
            time=now - timedelta(days=100),
        )
    )
    log.record(
        AuditEvent("t1", "user:u2", "invoke", 200, connection_id="c2", detail="new", time=now)
    )
    await log.flush()
    assert await log.purge_older_than(timedelta(days=90)) == 2  # both partitions of the old event
    assert await log.query(connection_partition("t1", "c1"), since=timedelta(days=365)) == []
    assert [e["detail"] for e in await log.query(connection_partition("t1", "c2"))] == ["new"]
