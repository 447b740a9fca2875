"""Issue 12, attack 1: request smuggling through a maker's policy.

Framing and hop-by-hop headers never come from a policy, a connection parameter or a
caller: refused at import (the policy is unsupported, with a warning), stripped and
counted at send. Checked on the wire, at a raw socket recorder, through the gateway's
real data-plane client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import httpx
import pytest

from functions.observability import security_counts
from functions.powerplatform.templates import parse_policy_instance
from functions.upstream.client import data_plane_client
from functions.upstream.credentials import ApiKeyAuth
from functions.upstream.egress import EgressPolicy
from tests.api.helpers import assert_problem
from tests.conftest import GatewayUnderTest
from tests.upstream.helpers import DEFINITION, connect, import_connector, setheader
from tests.upstream.rawserver import RawServer

SMUGGLED = b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal\r\n\r\n"
FRAMING = [
    "Transfer-Encoding",
    "Content-Length",
    "Host",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Trailer",
    "Proxy-Authorization",
    "proxy-anything",
]


@pytest.fixture
def recorder() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


@pytest.mark.parametrize("name", FRAMING)
def test_a_literal_framing_header_policy_is_refused_at_import(name: str) -> None:
    policy = parse_policy_instance(setheader(name, "x"), 0)
    assert not policy.supported
    assert policy.problem and "framing" in policy.problem


def test_import_lists_the_refusal_and_covered_operations_answer_501(
    gateway: GatewayUnderTest, recorder: RawServer
) -> None:
    with gateway.client("smuggle-import") as client:
        connector = import_connector(
            client, [setheader("Transfer-Encoding", "chunked", operations=["Send"])], recorder.url
        )
        assert any("Transfer-Encoding" in w for w in connector["definition"]["warnings"])
        connection = connect(client, connector["id"], {})
        response = client.post(f"/api/connections/{connection}/operations/Send", json={"body": "x"})
        assert_problem(response, 501, "policy_not_supported")
        assert recorder.connections == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "0"),
        ("Host", "internal.example"),
        ("Connection", "keep-alive, Upgrade"),
        ("Upgrade", "h2c"),
    ],
)
def test_a_framing_header_named_by_a_connection_parameter_is_stripped_and_counted(
    gateway: GatewayUnderTest, recorder: RawServer, name: str, value: str
) -> None:
    """The name comes from a user's connection parameter, so import cannot see it."""
    with gateway.client("smuggle-send") as client:
        connector = import_connector(
            client,
            [setheader("@connectionParameters('h')", "@connectionParameters('v')")],
            recorder.url,
        )
        connection = connect(client, connector["id"], {"h": name, "v": value})
        before = security_counts().get("framing_header_stripped", 0)
        response = client.post(
            f"/api/connections/{connection}/invoke/things",
            content=SMUGGLED,
            headers={"Content-Type": "text/plain"},
        )
        assert response.status_code == 200, response.text
    raw = bytes(recorder.received)
    head, _, body = raw.partition(b"\r\n\r\n")
    lower = head.lower()
    assert recorder.requests == 1  # the smuggled request stayed body
    assert body == SMUGGLED
    assert b"transfer-encoding" not in lower
    assert f"content-length: {len(SMUGGLED)}".encode() in lower
    assert lower.count(b"content-length") == 1
    assert f"host: 127.0.0.1:{recorder.port}".encode() in lower
    assert b"internal.example" not in lower and b"upgrade" not in lower
    assert security_counts().get("framing_header_stripped", 0) > before


def test_caller_framing_and_platform_headers_are_not_forwarded(
    gateway: GatewayUnderTest, recorder: RawServer
) -> None:
    with gateway.client("smuggle-caller") as client:
        connector = client.post(
            "/api/connectors", json={"name": "raw", "baseUrl": recorder.url}
        ).json()
        connection = connect(client, connector["id"], {})
        response = client.post(
            f"/api/connections/{connection}/invoke/x",
            content=b"abc",
            headers={
                "Connection": "keep-alive, X-Keep",
                "X-Keep": "1",
                "Keep-Alive": "timeout=5",
                "Upgrade": "websocket",
                "TE": "trailers",
                "Trailer": "X-T",
                "Proxy-Foo": "1",
                "Metadata": "true",
                "X-IDENTITY-HEADER": "stolen",
                "X-Forwarded-For": "10.0.0.1",
                "X-MS-TOKEN-AAD-ACCESS-TOKEN": "t",
                "Via": "1.1 proxy.corp",
                "X-Fine": "kept",
            },
        )
        assert response.status_code == 200, response.text
    head = bytes(recorder.received).partition(b"\r\n\r\n")[0].lower()
    for name in (
        b"x-keep",
        b"keep-alive",
        b"upgrade",
        b"te:",
        b"trailer",
        b"proxy-foo",
        b"metadata",
        b"x-identity-header",
        b"x-forwarded-for",
        b"x-ms-token",
    ):
        assert name not in head, name
    assert b"x-fine: kept" in head
    assert b"content-length: 3" in head
    # The caller's Via is not passed on; the gateway's hop marker is (loop detection).
    assert b"proxy.corp" not in head
    assert head.count(b"via: ") == 1 and b"via: 1.1 gateway.example.test" in head


def test_the_client_never_sends_length_and_chunking_together(recorder: RawServer) -> None:
    """Whatever headers reach the client (here set directly, and by an API key whose
    name is a framing header), one Content-Length frames the body, and Host is the
    URL's."""

    async def run() -> None:
        async with data_plane_client(
            ssl.create_default_context(),
            httpx.Timeout(5.0),
            egress=EgressPolicy(allow_loopback=True),
        ) as client:
            request = client.build_request(
                "POST",
                recorder.url + "/p",
                headers={"Transfer-Encoding": "chunked", "Host": "other", "Connection": "close"},
                content=SMUGGLED,
            )
            response = await client.send(request, auth=ApiKeyAuth("header", "Content-Length", "0"))
            assert response.status_code == 200
            await response.aclose()

    asyncio.run(run())
    raw = bytes(recorder.received)
    head = raw.partition(b"\r\n\r\n")[0].lower()
    assert recorder.requests == 1
    assert b"transfer-encoding" not in head and b"connection: close" not in head
    assert head.count(b"content-length") == 1
    assert f"content-length: {len(SMUGGLED)}".encode() in head
    assert f"host: 127.0.0.1:{recorder.port}".encode() in head


@pytest.mark.parametrize("name", ["Transfer-Encoding", "Content-Length", "Host", "Proxy-Token"])
def test_an_api_key_header_may_not_be_a_framing_header(
    gateway: GatewayUnderTest, name: str
) -> None:
    with gateway.client("smuggle-key") as client:
        response = client.post(
            "/api/connectors",
            json={
                "name": "k",
                "baseUrl": "https://api.example.com",
                "auth": {"type": "apiKey", "in": "header", "name": name},
            },
        )
        problem = assert_problem(response, 422, "validation_error")
        assert "framing" in response.text, problem


def test_an_imported_api_key_in_a_framing_header_is_refused_with_a_warning(
    gateway: GatewayUnderTest, recorder: RawServer
) -> None:
    definition = {
        **DEFINITION,
        "securityDefinitions": {
            "key": {"type": "apiKey", "in": "header", "name": "Content-Length"}
        },
        "security": [{"key": []}],
    }
    with gateway.client("smuggle-key-import") as client:
        connector = import_connector(client, [], recorder.url, definition=definition)
        warnings = connector["definition"]["warnings"]
        assert any("Content-Length" in w and "framing" in w for w in warnings), warnings
