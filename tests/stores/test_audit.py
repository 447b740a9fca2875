"""The audit log against Azurite: both partitions, newest first, compressed, large
flushes split under the property limit, the time window honoured, and `record()` cheap."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableServiceClient

from functions.stores.audit import AuditEvent, AuditLog, connection_partition, principal_partition


async def new_log(azurite: Any, prefix: str) -> AuditLog:
    log = AuditLog(
        TableServiceClient.from_connection_string(azurite.connection_string()),
        prefix + secrets.token_hex(3),
    )
    await log.ensure_table()
    return log


def invoke_event(**fields: Any) -> AuditEvent:
    """An `invoke` by user:u1 of connection c1 in tenant t1, with `fields` on top."""
    return AuditEvent("t1", "user:u1", "invoke", 200, **{"connection_id": "c1", **fields})


def stored_entities(azurite: Any, log: AuditLog) -> list[Any]:
    service = TableServiceClient.from_connection_string(azurite.connection_string())
    return list(service.get_table_client(log.table_name).list_entities())


async def test_events_land_in_both_partitions_newest_first(azurite: Any) -> None:
    log = await new_log(azurite, "au")
    now = datetime.now(UTC)
    for index in range(1200):  # one flush; random details compress badly: several entities
        log.record(
            invoke_event(
                latency_ms=1.5,
                detail=f"event {index} {secrets.token_hex(64)}",
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
    assert by_connection[0]["detail"].startswith("event 1199 ")
    assert by_connection[-1]["detail"].startswith("event 0 ")
    assert [e["time"] for e in by_connection] == sorted(
        (e["time"] for e in by_connection), reverse=True
    )
    assert log.written == 2 * 1201
    entities = stored_entities(azurite, log)
    assert len(entities) > 2 and all(len(e["EventsGz"]) <= 60_000 for e in entities)
    assert sum(e["Count"] for e in entities) == 2 * 1201
    assert len(await log.query(connection_partition("t1", "c1"), limit=10)) == 10


async def test_a_busy_second_is_one_insert_per_partition(azurite: Any) -> None:
    """Typical events compress well: a thousand calls in one flush are one entity in
    the connection's partition and one in the caller's (an insert costs the SDK ~3 ms
    of CPU whatever its size, so the number of inserts is what matters)."""
    log = await new_log(azurite, "ab")
    for _ in range(1000):
        log.record(
            invoke_event(
                connector_id="k1",
                latency_ms=2.5,
                correlation_id=secrets.token_hex(16),
            )
        )
    await log.flush()
    entities = stored_entities(azurite, log)
    assert sorted(e["PartitionKey"] for e in entities) == [
        connection_partition("t1", "c1"),
        principal_partition("t1", "user:u1"),
    ]
    assert [e["Count"] for e in entities] == [1000, 1000]
    assert len(await log.query(connection_partition("t1", "c1"), limit=5000)) == 1000


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
    log = await new_log(azurite, "ar")
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


async def test_under_steady_load_each_partition_gets_one_write_per_interval(azurite: Any) -> None:
    """Events keep arriving while a write is in flight; they wait for the next
    interval instead of turning the writer into a stream of small inserts."""
    import asyncio

    from functions.stores import audit

    log = await new_log(azurite, "as")
    log.start()
    started = time.monotonic()
    recorded = 0
    while time.monotonic() - started < 2.5 * audit.FLUSH_SECONDS:
        for _ in range(5):  # a few thousand a second: one write chunk per interval
            log.record(AuditEvent("t1", "user:u1", "invoke", 200, connection_id="c1"))
            recorded += 1
        await asyncio.sleep(0.002)
    await log.close()
    entities = stored_entities(azurite, log)
    per_partition = {e["PartitionKey"]: 0 for e in entities}
    for entity in entities:
        per_partition[entity["PartitionKey"]] += 1
    # ~2.5 intervals of load, plus the final flush on close.
    assert max(per_partition.values()) <= 4, per_partition
    assert sum(e["Count"] for e in entities) == 2 * recorded


async def test_a_failed_write_keeps_the_events(azurite: Any) -> None:
    service = TableServiceClient.from_connection_string(azurite.connection_string())
    log = AuditLog(service, "af" + secrets.token_hex(3))  # table not created yet
    log.record(AuditEvent("t1", "user:u1", "invoke", 200, connection_id="c1", detail="kept"))
    from azure.core.exceptions import AzureError

    try:
        await log.flush()
        raise AssertionError("the write to a missing table should have failed")
    except AzureError:
        pass
    await log.ensure_table()
    await log.flush()
    assert [e["detail"] for e in await log.query(connection_partition("t1", "c1"))] == ["kept"]
