"""Issue 12: an agent that stops cleanly is offline at once (callers get 503
`gateway_offline` immediately, not 504 after their deadline), and the online window is
short and configurable (GATEWAY_ONPREM_HEARTBEAT_SECONDS)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.onprem.errors import GatewayOfflineError
from functions.onprem.registry import ONLINE_WINDOW_SECONDS, GatewayRegistry
from functions.onprem.relay import GatewayRelay
from functions.upstream.request import OutgoingRequest
from tests.conftest import GatewayUnderTest
from tests.doubles.ntlm_server import NtlmServer
from tests.onprem.conftest import TENANT


def _get(ntlm: NtlmServer) -> OutgoingRequest:
    return OutgoingRequest(method="GET", base_url=ntlm.url, path="/items", query=[], headers=[])


async def test_a_cleanly_stopped_agent_is_offline_at_once(
    relay: GatewayRelay,
    registry: GatewayRegistry,
    make_gateway: Any,
    start_agent: Any,
    ntlm: NtlmServer,
) -> None:
    gw = await make_gateway()
    agent = await start_agent(gw)
    result = await relay.send(TENANT, gw.record.id, "c", gw.credential("c"), _get(ntlm), timeout=15)
    assert result.status == 200
    agent.stop()  # SIGTERM: a clean stop
    record = await registry.get(TENANT, gw.record.id)
    assert record is not None and record.left_at is not None
    assert record.status() == "offline"
    started = time.monotonic()
    with pytest.raises(GatewayOfflineError) as info:
        await relay.send(TENANT, gw.record.id, "c", gw.credential("c"), _get(ntlm), timeout=20)
    assert time.monotonic() - started < 5.0  # not the 20 s deadline
    assert info.value.status == 503 and info.value.code == "gateway_offline"
    # Started again: online again (its heartbeat replaces the departure).
    await start_agent(gw)
    assert (await registry.get(TENANT, gw.record.id)).status() == "online"  # type: ignore[union-attr]
    result = await relay.send(TENANT, gw.record.id, "c", gw.credential("c"), _get(ntlm), timeout=15)
    assert result.status == 200


async def test_the_online_window_is_short(registry: GatewayRegistry, make_gateway: Any) -> None:
    gw = await make_gateway()
    assert ONLINE_WINDOW_SECONDS <= 10
    now = datetime.now(UTC)
    await registry.touch(TENANT, gw.record.id, "1.0.0", last_seen=now - timedelta(seconds=15))
    record = await registry.get(TENANT, gw.record.id)
    assert record is not None and record.status(now=now) == "offline"
    await registry.touch(TENANT, gw.record.id, "1.0.0", last_seen=now - timedelta(seconds=5))
    record = await registry.get(TENANT, gw.record.id)
    assert record is not None and record.status(now=now) == "online"


def test_the_window_is_a_setting(start_gateway: Any) -> None:
    gateway: GatewayUnderTest = start_gateway(onprem_heartbeat_seconds=4.5)
    assert gateway.state.onprem_registry.online_window == 4.5
