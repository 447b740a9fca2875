"""Real export over the network: the gateway sends OTLP/HTTP protobuf to a local
receiver, and nothing secret is in what it sends (issue 19)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.telemetry import setup
from tests.api.helpers import create_connection, create_connector
from tests.conftest import GatewayUnderTest
from tests.telemetry.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
        monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
        assert setup.configure_from_env() == "otlp"
        try:
            yield server
        finally:
            setup.disable()


def _values(attributes: Any) -> list[str]:
    return [f"{a.key}={a.value}" for a in attributes]


def test_export_reaches_the_receiver_without_secrets(
    gateway: GatewayUnderTest, echo: Any, receiver: OtlpReceiver
) -> None:
    key = "otlp-secret-" + secrets.token_hex(12)
    token = gateway.token("alice")
    with gateway.client() as client:
        connector = create_connector(
            client, f"{echo.url}/v1", {"type": "apiKey", "in": "query", "name": "api_key"}
        )
        connection = create_connection(client, connector["id"], {"api_key": key})
        response = client.post(
            f"/api/connections/{connection['id']}/invoke/orders",
            params={"q": "1"},
            json={"body": "value-" + key},
        )
    assert response.status_code == 200, response.text
    assert key in response.text  # the echo saw the key: it is a real credential
    # A log line that quotes the key (as a careless library might) goes out redacted.
    logging.getLogger("functions.tests").warning("upstream said %s", key)
    trace_id = response.headers["x-correlation-id"]
    deadline = time.monotonic() + 20
    while True:
        setup.force_flush()
        spans = receiver.received.spans()
        if any(s.trace_id.hex() == trace_id and s.kind == 2 for s in spans) and receiver.received.log_records():
            break
        assert time.monotonic() < deadline, (len(spans), len(receiver.received.log_records()))
        time.sleep(0.2)
    in_trace = [s for s in spans if s.trace_id.hex() == trace_id]
    names = {s.name for s in in_trace}
    assert "POST upstream" in names, names
    upstream = next(s for s in in_trace if s.name == "POST upstream")
    assert f"gateway.connection.id={connection['id']}" in " ".join(
        f"{a.key}={a.value.string_value}" for a in upstream.attributes
    )
    messages = [r.body.string_value for r in receiver.received.log_records()]
    assert any("upstream said ***" in m for m in messages), messages
    # Metrics went out too.
    deadline = time.monotonic() + 20
    while "gateway.invocations" not in receiver.received.metric_names():
        setup.force_flush()
        assert time.monotonic() < deadline, receiver.received.metric_names()
        time.sleep(0.2)
    # Nothing exported anywhere carries the key, the caller's token or the body.
    for raw in receiver.received.raw:
        assert key.encode() not in raw
        assert token.encode() not in raw
        assert token.split(".")[1].encode() not in raw
        assert b"value-" not in raw
