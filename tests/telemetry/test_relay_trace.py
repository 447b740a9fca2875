"""The on-premises agent continues the gateway's trace: the `traceparent` travels in
the relay message, the agent (its own process, exporting OTLP) starts its span under
it and reports the queue wait (issue 19)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from functions.onprem.relay import GatewayRelay
from functions.upstream.request import OutgoingRequest
from tests.doubles.ntlm_server import NtlmServer
from tests.onprem.conftest import TENANT, USERS
from tests.telemetry.otlp_receiver import OtlpReceiver


async def test_agent_span_is_a_child_of_the_relayed_context(
    relay: GatewayRelay, make_gateway: Any, start_agent: Any, ntlm: NtlmServer
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with OtlpReceiver() as receiver:
        gw = await make_gateway("traced-gw")
        await start_agent(
            gw,
            extra_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_METRIC_EXPORT_INTERVAL": "300",
            },
        )
        request = OutgoingRequest(
            "GET", ntlm.url, "/items", headers=[("traceparent", f"00-{trace_id}-{parent_id}-01")]
        )
        password = USERS["alice"]
        credential = gw.credential("conn-trace")
        result = await relay.send(TENANT, gw.record.id, "conn-trace", credential, request, timeout=15)
        assert result.status == 200
        deadline = time.monotonic() + 30
        while True:
            spans = [s for s in receiver.received.spans() if s.name == "gateway.relay.execute"]
            if spans and "gateway.relay.queue_wait" in receiver.received.metric_names():
                break
            assert time.monotonic() < deadline, receiver.received.metric_names()
            time.sleep(0.2)
    span = spans[0]
    assert span.trace_id.hex() == trace_id and span.parent_span_id.hex() == parent_id
    for raw in receiver.received.raw:
        assert password.encode() not in raw
