"""Secrets never leak: not to tables, logs or responses, even on error paths."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from functions.services.ids import new_id
from tests.api.helpers import create_connection, create_connector
from tests.api.storage_scan import all_table_text
from tests.conftest import GatewayUnderTest


def test_secret_values_appear_nowhere_but_the_vault(
    gateway: GatewayUnderTest, echo: Any, keyvault_double: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "azure", "uvicorn", "functions"):
        caplog.set_level(logging.DEBUG, logger=name)
    query_key = "leakcheck-q-" + new_id()
    header_key = "leakcheck-h-" + new_id()
    password = "leakcheck-pw-" + new_id()
    responses: list[str] = []
    with gateway.client("leak-owner") as client:
        targets = [
            ({"type": "apiKey", "in": "query", "name": "key"}, {"api_key": query_key}),
            ({"type": "apiKey", "in": "header", "name": "X-Key"}, {"api_key": header_key}),
            ({"type": "basic"}, {"username": "leak-user", "password": password}),
        ]
        for auth, parameters in targets:
            for base in (echo.url, "http://127.0.0.1:9"):  # reachable, and refused (502)
                connector = create_connector(client, base, auth)
                connection = create_connection(client, connector["id"], parameters)
                for path in ("/ok", "/status/500", "/a%2Fb"):
                    response = client.get(f"/api/connections/{connection['id']}/invoke{path}")
                    # What the echo upstream sends back is the upstream's business;
                    # everything the gateway itself answers is checked.
                    if base != echo.url or path == "/a%2Fb":
                        responses.append(response.text)
                responses.append(client.get(f"/api/connections/{connection['id']}").text)
                responses.append(client.get("/api/connections").text)
        # Bad input that carries a secret is not echoed back either.
        responses.append(
            client.post(
                f"/api/connectors/{connector['id']}/connections",
                json={"displayName": "x", "parameters": {"password": password, "bogus": password}},
            ).text
        )
    logs = "\n".join(record.getMessage() for record in caplog.records)
    logs += "\n".join(str(record.exc_info) for record in caplog.records if record.exc_info)
    tables = all_table_text(gateway.settings)
    vault = "\n".join(keyvault_double.raw_values())
    for secret in (query_key, header_key, password):
        assert secret in vault
        assert secret not in tables
        assert secret not in logs
        for text in responses:
            assert secret not in text
    assert caplog.records, "logging was captured"
