"""An unexpected failure answers 500 problem+json with a correlation id; the traceback
goes to the log (redacted of known secrets), never to the caller."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from functions.services.ids import new_id
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest


def test_unexpected_error_is_a_500_with_a_correlation_id(
    start_gateway: Any, echo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gateway: GatewayUnderTest = start_gateway()
    key = "boom-key-" + new_id()
    with gateway.client("boom") as client:
        connector = create_connector(
            client, echo.url, {"type": "apiKey", "in": "header", "name": "X-Key"}
        )
        connection = create_connection(client, connector["id"], {"api_key": key})
        assert client.get(f"/api/connections/{connection['id']}/invoke/ok").status_code == 200

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"something broke near {key}")

        # A bug inside a service (not a GatewayError): this instance only.
        gateway.state.invocations._run = broken
        caplog.set_level(logging.ERROR, logger="functions.api")
        response = client.get(f"/api/connections/{connection['id']}/invoke/x")
    problem = assert_problem(response, 500, "internal_error")
    assert problem["correlationId"] == response.headers["x-correlation-id"]
    assert problem["correlationId"] in problem["detail"]
    assert key not in response.text and "RuntimeError" not in response.text
    records = [r for r in caplog.records if problem["correlationId"] in r.getMessage()]
    assert records and records[0].exc_info is not None
    formatter = logging.Formatter()
    # The traceback is logged, and redacted: the key the exception quoted is not in it.
    assert "RuntimeError" in formatter.format(records[0])
    assert all(key not in formatter.format(r) for r in caplog.records)
