"""Operation requests leave the gateway exactly as built: every reserved character in
path, query and `x-ms-url-encoding: double` values, sent through the real data-plane
client (httpx over aiohttp) and checked at a raw socket, not at the request object.

The expectations are written here from the rules (JavaScript's encodeURIComponent over
UTF-8), not computed with the gateway's own encoder.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from functions.powerplatform import parse_definition
from functions.powerplatform.operations import prepare_operation
from functions.upstream.client import data_plane_client
from functions.upstream.credentials import ApiKeyAuth
from functions.upstream.egress import EgressPolicy
from functions.upstream.request import OutgoingRequest
from functions.upstream.urls import build_upstream_url, encode_relative_path
from tests.powerplatform.recorder import Recorded, Recorder

RESERVED = ":/?#[]@!$&'()*+,;="
TRICKY = [
    RESERVED,
    "a;b",
    "a b",
    "100%+1",
    "x=1&y=2",
    "'q' (p) *!~",
    "café ü 日本",
    "%3B already",
    "tab\there",
]
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")


def encode_uri_component(text: str) -> str:
    """JavaScript's encodeURIComponent, written out: UTF-8 bytes, %XX upper case, all
    but letters, digits and `-_.!~*'()`."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append(char if byte < 128 and char in UNRESERVED else f"%{byte:02X}")
    return "".join(out)


def definition() -> Any:
    swagger = {
        "swagger": "2.0",
        "info": {"title": "Encoding", "version": "1"},
        "host": "api.example.test",
        "basePath": "/base",
        "schemes": ["https"],
        "paths": {
            "/items/{id}/twice/{twice}": {
                "get": {
                    "operationId": "Get",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "type": "string"},
                        {
                            "name": "twice",
                            "in": "path",
                            "required": True,
                            "type": "string",
                            "x-ms-url-encoding": "double",
                        },
                        {"name": "q", "in": "query", "type": "string"},
                        {"name": "a&b", "in": "query", "type": "string"},
                    ],
                    "responses": {"200": {"description": "ok"}},
                },
                "post": {
                    "operationId": "Touch",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "type": "string"},
                        {"name": "twice", "in": "path", "required": True, "type": "string"},
                    ],
                    "responses": {"200": {"description": "ok"}},
                },
            }
        },
    }
    return parse_definition(swagger, {"properties": {}})


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    with Recorder() as running:
        yield running


def send(recorder: Recorder, request: OutgoingRequest) -> Recorded:
    """Send through the gateway's data-plane client; what the socket received."""

    async def run() -> int:
        client = data_plane_client(
            ssl.create_default_context(), httpx.Timeout(10.0), egress=EgressPolicy(allow_loopback=True)
        )
        try:
            url = build_upstream_url(request.base_url, request.path, request.query)
            response = await client.request(
                request.method, url, headers=request.headers, content=request.body
            )
            assert response.status_code == 200, response.text
            return int(response.headers["x-recorded"])
        finally:
            await client.aclose()

    return recorder.get(asyncio.run(run()))


@pytest.mark.parametrize("value", TRICKY)
def test_path_query_and_double_values_arrive_fully_encoded(
    recorder: Recorder, value: str
) -> None:
    prepared = prepare_operation(
        definition(),
        "Get",
        recorder.url + "/base",
        {"id": value, "twice": value, "q": value, "a&b": value},
    )
    received = send(recorder, prepared.request)
    once = encode_uri_component(value)
    assert received.path == f"/base/items/{once}/twice/{encode_uri_component(once)}"
    assert received.query == f"q={once}&a%26b={once}"
    assert "+" not in received.query.replace("%2B", "")  # spaces are %20, never '+'


def test_every_reserved_character_is_escaped_in_path_values(recorder: Recorder) -> None:
    prepared = prepare_operation(
        definition(), "Get", recorder.url + "/base", {"id": RESERVED, "twice": "x"}
    )
    received = send(recorder, prepared.request)
    segment = received.path.split("/")[3]
    assert segment == "%3A%2F%3F%23%5B%5D%40!%24%26'()*%2B%2C%3B%3D"
    assert not set(segment) & set(":/?#[]@$&+,;=")


def test_empty_post_has_no_content_type(recorder: Recorder) -> None:
    prepared = prepare_operation(
        definition(), "Touch", recorder.url + "/base", {"id": "1", "twice": "2"}
    )
    received = send(recorder, prepared.request)
    assert received.method == "POST"
    assert received.header_values("content-type") == []
    assert received.body == b""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a%3Bb", "/a%3Bb"),  # the caller's escapes are kept
        ("/a%3bb%2c%3D%2B", "/a%3Bb%2C%3D%2B"),
        ("/a;b=c", "/a;b=c"),  # and its literals too
        ("/caf%C3%A9/x y", "/caf%C3%A9/x%20y"),
    ],
)
def test_raw_invoke_paths_keep_the_callers_escapes(
    recorder: Recorder, raw: str, expected: str
) -> None:
    request = OutgoingRequest(
        method="GET",
        base_url=recorder.url + "/base",
        path=encode_relative_path(raw),
        query=[("k", "a b+c")],
    )
    received = send(recorder, request)
    assert received.path == "/base" + expected
    assert received.query == "k=a%20b%2Bc"


def test_api_key_in_query_keeps_the_built_query(recorder: Recorder) -> None:
    """The key is added to the encoded query text; nothing else is re-encoded."""

    async def run() -> int:
        client = data_plane_client(
            ssl.create_default_context(), httpx.Timeout(10.0), egress=EgressPolicy(allow_loopback=True)
        )
        try:
            url = build_upstream_url(recorder.url, "/k", [("q", "a b;c"), ("key", "caller")])
            auth = ApiKeyAuth("query", "key", "s e;c+")
            response = await client.request("GET", url, auth=auth)
            return int(response.headers["x-recorded"])
        finally:
            await client.aclose()

    assert recorder.get(asyncio.run(run())).query == "q=a%20b%3Bc&key=s%20e%3Bc%2B"
