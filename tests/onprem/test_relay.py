"""The relay end to end: GatewayRelay.send <-> Azurite <-> agent process <-> NTLM server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

import pytest

from functions.errors import PayloadTooLargeError
from functions.onprem import names
from functions.onprem.errors import (
    GatewayOfflineError,
    GatewayTimeoutError,
    RelayUnavailableError,
    UpstreamAuthenticationFailedError,
)
from functions.onprem.protocol import RelayRequest, RelayResponse
from functions.onprem.registry import GatewayRegistry
from functions.onprem.relay import GatewayRelay
from functions.onprem.storage import blob_service, queue_service, table_service
from functions.upstream.request import OutgoingRequest
from tests.doubles.ntlm_server import NtlmServer
from tests.onprem.conftest import DOMAIN, TENANT, USERS


def _request(
    ntlm: NtlmServer, method: str, path: str, body: bytes | None = None, **headers: str
) -> OutgoingRequest:
    query: list[tuple[str, str]] = []
    if "?" in path:
        path, raw = path.split("?", 1)
        query = [tuple(p.split("=", 1)) for p in raw.split("&")]  # type: ignore[misc]
    return OutgoingRequest(
        method=method,
        base_url=ntlm.url,
        path=path,
        query=query,
        headers=[(k.replace("_", "-"), v) for k, v in headers.items()],
        body=body,
    )


async def test_get_and_post(
    relay: GatewayRelay, make_gateway: Any, start_agent: Any, ntlm: NtlmServer
) -> None:
    gw = await make_gateway()
    await start_agent(gw)
    cred = gw.credential("conn1")

    result = await relay.send(
        TENANT, gw.record.id, "conn1", cred, _request(ntlm, "GET", "/items?top=5"), timeout=15
    )
    assert result.status == 200
    answer = json.loads(result.body)
    assert answer["method"] == "GET" and answer["path"] == "/items" and answer["query"] == "top=5"
    assert answer["user"] == f"{DOMAIN}\\alice"
    assert ("content-type", "application/json") in [(k.lower(), v) for k, v in result.headers]
    assert not any(k.lower() == "www-authenticate" for k, _ in result.headers)

    body = b'{"name": "widget"}'
    request = _request(
        ntlm, "POST", "/items", body, Content_Type="application/json", X_Request_Id="p1"
    )
    result = await relay.send(TENANT, gw.record.id, "conn1", cred, request, timeout=15)
    answer = json.loads(result.body)
    assert answer["method"] == "POST" and answer["user"] == f"{DOMAIN}\\alice"
    assert answer["bodyLength"] == len(body) and answer["requestId"] == "p1"
    assert ntlm.count("p1") == 1


async def test_large_bodies_travel_through_blobs(
    relay: GatewayRelay,
    make_gateway: Any,
    start_agent: Any,
    ntlm: NtlmServer,
    storage: str,
    prefix: str,
) -> None:
    gw = await make_gateway()
    await start_agent(gw)
    cred = gw.credential("conn1")
    big = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB, not compressible text

    result = await relay.send(
        TENANT, gw.record.id, "conn1", cred, _request(ntlm, "POST", "/upload", big), timeout=30
    )
    answer = json.loads(result.body)
    assert answer["bodyLength"] == len(big)
    assert answer["bodySha256"] == hashlib.sha256(big).hexdigest()

    size = 5 * 1024 * 1024 + 7
    result = await relay.send(
        TENANT,
        gw.record.id,
        "conn1",
        cred,
        _request(ntlm, "GET", f"/bytes?size={size}"),
        timeout=30,
    )
    assert result.status == 200 and len(result.body) == size
    assert result.body == (b"0123456789" * (size // 10 + 1))[:size]

    # Both bodies went through the container, and both were deleted once read.
    container = blob_service(storage).get_container_client(names.body_container(prefix))
    assert list(container.list_blobs()) == []

    with pytest.raises(PayloadTooLargeError):
        await relay.send(
            TENANT,
            gw.record.id,
            "conn1",
            cred,
            _request(ntlm, "POST", "/upload", b"x" * (16 * 1024 * 1024 + 1)),
            timeout=5,
        )


async def test_concurrent_requests_two_users(
    relay: GatewayRelay, make_gateway: Any, start_agent: Any, ntlm: NtlmServer
) -> None:
    gw = await make_gateway()
    await start_agent(gw, concurrency=6)
    creds = {"alice": gw.credential("conn-a", "alice"), "bob": gw.credential("conn-b", "bob")}

    async def one(i: int) -> None:
        user = "alice" if i % 3 else "bob"
        conn = "conn-a" if user == "alice" else "conn-b"
        rid = f"c{i}-{uuid.uuid4().hex[:6]}"
        body = f"payload {i}".encode()
        result = await relay.send(
            TENANT,
            gw.record.id,
            conn,
            creds[user],
            _request(ntlm, "POST", f"/echo/{i}", body, X_Request_Id=rid),
            timeout=30,
        )
        answer = json.loads(result.body)
        assert result.status == 200
        assert answer["path"] == f"/echo/{i}" and answer["requestId"] == rid
        assert answer["user"] == f"{DOMAIN}\\{user}"
        assert answer["bodyLength"] == len(body)

    failures_before = ntlm.failures
    await asyncio.gather(*(one(i) for i in range(30)))
    assert ntlm.failures == failures_before


async def test_wrong_password(
    relay: GatewayRelay, make_gateway: Any, start_agent: Any, ntlm: NtlmServer
) -> None:
    gw = await make_gateway("branch-office")
    await start_agent(gw)
    wrong = "not-the-Password-42"
    cred = gw.credential("conn1", "bob", password=wrong)
    with pytest.raises(UpstreamAuthenticationFailedError) as info:
        await relay.send(
            TENANT, gw.record.id, "conn1", cred, _request(ntlm, "GET", "/x"), timeout=15
        )
    error = info.value
    assert error.status == 502 and error.code == "upstream_authentication_failed"
    text = error.detail + json.dumps(error.extra)
    assert "branch-office" in error.detail and gw.record.id in error.detail
    assert f"{DOMAIN}\\bob" in error.detail and error.extra["windowsUser"] == f"{DOMAIN}\\bob"
    assert wrong not in text and USERS["bob"] not in text


async def test_offline_gateway_fails_at_once(
    relay: GatewayRelay, make_gateway: Any, registry: GatewayRegistry, ntlm: NtlmServer
) -> None:
    from datetime import UTC, datetime, timedelta

    gw = await make_gateway()
    for last_seen in (None, datetime.now(UTC) - timedelta(minutes=5)):
        if last_seen is not None:
            await registry.touch(TENANT, gw.record.id, "1.0.0", last_seen=last_seen)
        started = time.monotonic()
        with pytest.raises(GatewayOfflineError) as info:
            await relay.send(
                TENANT,
                gw.record.id,
                "c",
                gw.credential("c"),
                _request(ntlm, "GET", "/"),
                timeout=20,
            )
        assert time.monotonic() - started < 1.0
        assert info.value.status == 503 and info.value.code == "gateway_offline"
        assert "corp-gw" in info.value.detail


async def test_agent_killed_mid_request_times_out_by_deadline(
    relay: GatewayRelay, make_gateway: Any, start_agent: Any, ntlm: NtlmServer
) -> None:
    gw = await make_gateway()
    agent = await start_agent(gw)
    ntlm.slow_started.clear()
    rid = "killed-" + uuid.uuid4().hex[:6]
    started = time.monotonic()
    task = asyncio.create_task(
        relay.send(
            TENANT,
            gw.record.id,
            "c",
            gw.credential("c"),
            _request(ntlm, "POST", "/slow?seconds=8", b"once", X_Request_Id=rid),
            timeout=4,
        )
    )
    assert await asyncio.to_thread(ntlm.slow_started.wait, 10)
    agent.kill()
    with pytest.raises(GatewayTimeoutError) as info:
        await task
    elapsed = time.monotonic() - started
    assert 3.9 <= elapsed < 5.0
    assert info.value.status == 504 and info.value.code == "gateway_timeout"


async def test_restart_processes_pending_requests_exactly_once(
    relay: GatewayRelay, make_gateway: Any, start_agent: Any, ntlm: NtlmServer
) -> None:
    gw = await make_gateway()
    first = await start_agent(gw)
    cred = gw.credential("c")
    ntlm.slow_started.clear()
    in_flight = "inflight-" + uuid.uuid4().hex[:6]
    crashed = asyncio.create_task(
        relay.send(
            TENANT,
            gw.record.id,
            "c",
            cred,
            _request(ntlm, "POST", "/slow?seconds=2", b"a", X_Request_Id=in_flight),
            timeout=6,
        )
    )
    assert await asyncio.to_thread(ntlm.slow_started.wait, 10)
    first.kill()
    # Sent while no agent runs (its heartbeat is still fresh): they wait in the queue.
    pending_ids = [f"pending-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    pending = [
        asyncio.create_task(
            relay.send(
                TENANT,
                gw.record.id,
                "c",
                cred,
                _request(ntlm, "POST", "/orders", b"x", X_Request_Id=rid),
                timeout=25,
            )
        )
        for rid in pending_ids
    ]
    await asyncio.sleep(0.5)
    assert all(ntlm.count(rid) == 0 for rid in pending_ids)
    await start_agent(gw)
    results = await asyncio.gather(*pending)
    assert [json.loads(r.body)["requestId"] for r in results] == pending_ids
    with pytest.raises(GatewayTimeoutError):
        await crashed
    await asyncio.sleep(1.0)  # time for any (wrong) re-execution to show
    assert ntlm.count(in_flight) == 1
    assert all(ntlm.count(rid) == 1 for rid in pending_ids)


async def test_duplicate_delivery_executes_once(
    make_gateway: Any, start_agent: Any, ntlm: NtlmServer, storage: str, prefix: str
) -> None:
    """The same message delivered twice (a retried send) runs once; the copy is dropped."""
    gw = await make_gateway()
    await start_agent(gw)
    queues = queue_service(storage)
    reply = queues.get_queue_client(f"{prefix}-replies")
    reply.create_queue()
    rid = "dup-" + uuid.uuid4().hex[:6]
    message = RelayRequest(
        id=uuid.uuid4().hex,
        tenant_id=TENANT,
        gateway_id=gw.record.id,
        connection_id="c",
        reply_to=reply.queue_name,
        deadline=time.time() + 20,
        method="POST",
        url=f"{ntlm.url}/pay",
        headers=[("X-Request-Id", rid)],
        credential=gw.credential("c"),
        body=b"1",
    ).to_json()
    requests = queues.get_queue_client(names.request_queue(prefix, gw.record.id))
    requests.send_message(message)
    requests.send_message(message)
    responses: list[RelayResponse] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not responses:
        for m in reply.receive_messages():
            responses.append(RelayResponse.from_json(m.content))
            reply.delete_message(m)
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    responses += [RelayResponse.from_json(m.content) for m in reply.receive_messages()]
    assert len(responses) == 1 and responses[0].status == 200
    assert ntlm.count(rid) == 1
    assert requests.peek_messages() == []


async def test_storage_unavailable(
    registry: GatewayRegistry, make_gateway: Any, ntlm: NtlmServer, prefix: str
) -> None:
    from functions.devtools.processes import free_port

    gw = await make_gateway()
    await registry.touch(TENANT, gw.record.id, "1.0.0")
    dead = free_port()
    dead_storage = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"BlobEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{dead}/devstoreaccount1;"
    )
    # Queues and blobs down, tables up.
    relay = GatewayRelay(queue_service(dead_storage), blob_service(dead_storage), registry, prefix)
    started = time.monotonic()
    with pytest.raises(RelayUnavailableError) as info:
        await relay.send(
            TENANT, gw.record.id, "c", gw.credential("c"), _request(ntlm, "GET", "/"), timeout=20
        )
    assert info.value.status == 503 and info.value.code == "relay_unavailable"
    assert time.monotonic() - started < 10
    await relay.close()
    # Everything down, the gateway status included.
    down = GatewayRegistry(table_service(dead_storage), prefix)
    relay = GatewayRelay(queue_service(dead_storage), blob_service(dead_storage), down, prefix)
    with pytest.raises(RelayUnavailableError):
        await relay.send(
            TENANT, gw.record.id, "c", gw.credential("c"), _request(ntlm, "GET", "/"), timeout=20
        )
    await relay.close()
