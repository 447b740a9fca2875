"""Issue 12: storage outages and a frozen storage backend answer 503 with a stable code,
quickly, on every management route; never a 500 and never a hang for the SDK's default
timeouts. Table traffic goes through a loopback proxy that can stall or cut it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.devtools.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, AzuritePorts
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest
from tests.stores.tcp_proxy import TcpProxy

BOUND = 1.0


@pytest.fixture
def proxied(
    start_gateway: Any, azurite: AzuritePorts
) -> Iterator[tuple[GatewayUnderTest, TcpProxy]]:
    proxy = TcpProxy(azurite.table)
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{azurite.blob}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{azurite.queue}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{proxy.port}/{DEV_ACCOUNT};"
    )
    gateway = start_gateway(
        storage_connection_string=connection_string, storage_timeout_seconds=BOUND
    )
    try:
        yield gateway, proxy
    finally:
        proxy.mode = "pass"
        proxy.close()


def test_a_frozen_table_backend_answers_503_within_the_bound(
    proxied: tuple[GatewayUnderTest, TcpProxy], echo: Any
) -> None:
    gateway, proxy = proxied
    with gateway.client("frozen") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        proxy.mode = "freeze"
        for method, path in [
            ("GET", "/api/connectors"),
            ("GET", f"/api/connectors/{connector['id']}"),
            ("GET", "/api/connections"),
            ("GET", f"/api/connections/{connection['id']}"),
            ("GET", f"/api/connections/{connection['id']}/activity"),
            ("POST", "/api/connectors"),
        ]:
            started = time.monotonic()
            body = {"name": "x", "baseUrl": echo.url} if method == "POST" else None
            response = client.request(method, path, json=body)
            elapsed = time.monotonic() - started
            assert_problem(response, 503, "storage_timeout")
            # The SDK's defaults would hold this for minutes; the bound is 1 s (generous
            # margin for a loaded machine).
            assert elapsed < 10 * BOUND, (path, elapsed)
        proxy.mode = "pass"
        # Back to normal once the backend answers again.
        deadline = time.monotonic() + 30
        while client.get("/api/connectors").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def assert_unavailable(response: Any) -> None:
    """503 problem+json: `storage_unavailable`, or `storage_timeout` when the SDK's
    retries of the failing call outlast the bound."""
    assert response.status_code == 503, response.text
    assert response.json()["code"] in ("storage_unavailable", "storage_timeout")
    assert_problem(response, 503, response.json()["code"])


def test_storage_down_is_a_503_on_every_listing_never_a_500(
    proxied: tuple[GatewayUnderTest, TcpProxy], echo: Any
) -> None:
    gateway, proxy = proxied
    prefix = gateway.settings.table_prefix
    with gateway.client("down") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        # Only the grants table fails: its store used to call the SDK unmapped.
        proxy.block = f"/{prefix}shares".encode()
        assert_unavailable(client.get("/api/connections"))
        assert_unavailable(client.get("/api/connectors"))
        # Only the audit table: the activity routes.
        proxy.block = f"/{prefix}audit".encode()
        assert_unavailable(client.get(f"/api/connections/{connection['id']}/activity"))
        assert_unavailable(client.get("/api/me/activity"))
        # Everything down.
        proxy.block = None
        proxy.mode = "down"
        for path in ("/api/connections", "/api/connectors", f"/api/connections/{connection['id']}"):
            assert_unavailable(client.get(path))
