"""Issue 12, attack 4 and "also found": one user cannot stall everyone, bodies read
whole are capped, odd header bytes do not crash the invoke path.

A gateway with short limits (settings, as an operator sets them) against misbehaving
loopback upstreams: one that never answers, one that trickles a byte at a time, a gzip
bomb, one answering with UTF-8 header values.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from functions.upstream.client import data_plane_client
from functions.upstream.egress import EgressPolicy
from tests.api.helpers import assert_problem
from tests.conftest import GatewayUnderTest
from tests.servers import ThreadedServer
from tests.upstream.helpers import connect, import_connector, setheader
from tests.upstream.rawserver import RawServer

DEADLINE = 1.5


@pytest.fixture(scope="module")
def limited(start_gateway: Callable[..., GatewayUnderTest]) -> GatewayUnderTest:
    # upstream_timeout_seconds (per read) stays 5 s: only the total deadline can end
    # a trickle that sends a byte every half second.
    return start_gateway(
        upstream_deadline_seconds=DEADLINE,
        connection_calls_per_minute=4,
        connection_max_concurrent=1,
        max_response_bytes=1_000_000,
    )


def native_connection(gateway: GatewayUnderTest, user: str, base_url: str) -> str:
    with gateway.client(user) as client:
        response = client.post("/api/connectors", json={"name": "lim", "baseUrl": base_url})
        assert response.status_code == 201, response.text
        return connect(client, response.json()["id"], {})


@pytest.fixture
def silent() -> Iterator[RawServer]:
    async def never(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    with RawServer(respond=never) as server:
        yield server


@pytest.fixture
def trickle() -> Iterator[RawServer]:
    async def drip(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.5)

    with RawServer(respond=drip) as server:
        yield server


def test_an_upstream_that_never_answers_ends_at_the_deadline(
    limited: GatewayUnderTest, silent: RawServer
) -> None:
    connection = native_connection(limited, "lim-silent", silent.url)
    with limited.client("lim-silent") as client:
        started = time.monotonic()
        response = client.get(f"/api/connections/{connection}/invoke/x")
        elapsed = time.monotonic() - started
    assert_problem(response, 504, "upstream_timeout")
    assert elapsed < 4.5  # the 5 s read timeout did not end it; the deadline did


def test_a_trickling_upstream_cannot_hold_a_call(
    limited: GatewayUnderTest, trickle: RawServer
) -> None:
    connection = native_connection(limited, "lim-trickle", trickle.url)
    with limited.client("lim-trickle") as client:
        started = time.monotonic()
        response = client.get(f"/api/connections/{connection}/invoke/x")
        elapsed = time.monotonic() - started
    assert_problem(response, 504, "upstream_timeout")
    assert elapsed < 4.5  # a byte every 0.5 s would take 50 s


def test_a_trickling_stream_is_cut_at_the_deadline(limited: GatewayUnderTest) -> None:
    """Unsized answers stream through; the deadline still ends them (the caller sees
    the stream break off, not a call held for minutes)."""

    async def drip(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.5)

    with RawServer(respond=drip) as upstream:
        connection = native_connection(limited, "lim-stream", upstream.url)
        with limited.client("lim-stream") as client:
            started = time.monotonic()
            with pytest.raises(httpx.TransportError):
                with client.stream("GET", f"/api/connections/{connection}/invoke/x") as response:
                    assert response.status_code == 200
                    for _ in response.iter_bytes():
                        pass
            assert time.monotonic() - started < 4.5


def test_calls_a_minute_per_connection_answer_429_with_retry_after(
    limited: GatewayUnderTest, echo: ThreadedServer
) -> None:
    busy = native_connection(limited, "lim-rate", echo.url)
    calm = native_connection(limited, "lim-rate", echo.url)
    with limited.client("lim-rate") as client:
        statuses = [client.get(f"/api/connections/{busy}/invoke/x").status_code for _ in range(4)]
        assert statuses == [200] * 4
        refused = client.get(f"/api/connections/{busy}/invoke/x")
        problem = assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        assert problem["connectionId"] == busy
        # Another connection has its own budget.
        assert client.get(f"/api/connections/{calm}/invoke/x").status_code == 200


def test_calls_in_flight_per_connection_are_bounded(limited: GatewayUnderTest) -> None:
    release = threading.Event()

    async def held(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        while not release.is_set():
            await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    results: list[int] = []
    with RawServer(respond=held) as upstream:
        connection = native_connection(limited, "lim-conc", upstream.url)

        def first_call() -> None:
            with limited.client("lim-conc") as client:
                results.append(client.get(f"/api/connections/{connection}/invoke/x").status_code)

        thread = threading.Thread(target=first_call)
        thread.start()
        deadline = time.monotonic() + 10
        while upstream.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the first call is now waiting on the upstream
        with limited.client("lim-conc") as client:
            refused = client.get(f"/api/connections/{connection}/invoke/x")
        release.set()
        thread.join(10)
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "1"
    assert results == [200]
    assert upstream.requests == 1


def test_one_upstream_host_cannot_take_the_pool() -> None:
    """With two sockets per host, six parked calls to one upstream hold two sockets,
    and a call to another upstream goes through while they wait."""

    async def hold(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.6)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    with RawServer(respond=hold) as slow, RawServer() as fast:

        async def run() -> tuple[float, float]:
            async with data_plane_client(
                ssl.create_default_context(),
                httpx.Timeout(10.0),
                egress=EgressPolicy(allow_loopback=True),
                per_host=2,
            ) as client:
                started = time.monotonic()
                parked = [asyncio.create_task(client.get(slow.url)) for _ in range(6)]
                await asyncio.sleep(0.1)
                other = await client.get(fast.url)
                other_done = time.monotonic() - started
                assert other.status_code == 200
                responses = await asyncio.gather(*parked)
                assert [r.status_code for r in responses] == [200] * 6
                return other_done, time.monotonic() - started

        other_done, all_done = asyncio.run(run())
    assert slow.most_open <= 2
    assert other_done < all_done  # not queued behind the parked calls (3 rounds of 0.6 s)


# --- bodies read whole are capped -------------------------------------------------------


def gzip_bomb(decoded_bytes: int) -> bytes:
    """`decoded_bytes` zeros, gzip-compressed, built without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(decoded_bytes // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


def test_a_gzip_bomb_under_a_response_policy_is_refused_before_full_decoding(
    limited: GatewayUnderTest,
) -> None:
    bomb = gzip_bomb(200 * 1024 * 1024)
    assert len(bomb) < 400_000
    assert gzip.decompress(gzip_bomb(2 * 1024 * 1024)) == bytes(2 * 1024 * 1024)

    async def send_bomb(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb
        )
        await writer.drain()

    with RawServer(respond=send_bomb) as upstream, limited.client("lim-bomb") as client:
        connector = import_connector(
            client, [setheader("X-Seen", "1", section="Response")], upstream.url
        )
        connection = connect(client, connector["id"], {})
        tracemalloc.start()
        try:
            response = client.get(f"/api/connections/{connection}/invoke/things")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    problem = assert_problem(response, 502, "upstream_response_too_large")
    assert problem["limit"] == 1_000_000
    assert peak < 24 * 1024 * 1024  # 200 MB decoded had it been read whole


# --- header bytes -------------------------------------------------------------------------


def test_utf8_header_values_pass_both_ways_and_undecodable_ones_are_400(
    gateway: GatewayUnderTest,
) -> None:
    value = "Zoë 漢字".encode()

    async def utf8(server: RawServer, request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Name: " + value + b"\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    with RawServer(respond=utf8) as upstream:
        connection = native_connection(gateway, "utf8", upstream.url)
        with gateway.client("utf8") as client:
            response = client.get(
                f"/api/connections/{connection}/invoke/x", headers={"X-Caller": value}
            )
            assert response.status_code == 200, response.text
            assert (b"x-name", value) in response.headers.raw
            received = bytes(upstream.received)
            assert b"x-caller: " + value in received
            refused = client.get(
                f"/api/connections/{connection}/invoke/x", headers={"X-Caller": b"\xe9t\xe9"}
            )
            assert_problem(refused, 400, "invalid_header")
        assert upstream.requests == 1


def test_the_limit_is_a_connector_setting(gateway: GatewayUnderTest, echo: ThreadedServer) -> None:
    """The shared gateway keeps the default (500 a minute); this connector asks 2."""
    with gateway.client("lim-connector") as client:
        created = client.post(
            "/api/connectors", json={"name": "two", "baseUrl": echo.url, "callsPerMinute": 2}
        )
        assert created.status_code == 201, created.text
        assert created.json()["callsPerMinute"] == 2
        assert client.get(f"/api/connectors/{created.json()['id']}").json()["callsPerMinute"] == 2
        connection = connect(client, created.json()["id"], {})
        url = f"/api/connections/{connection}/invoke/x"
        assert [client.get(url).status_code for _ in range(2)] == [200, 200]
        refused = client.get(url)
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 20  # 2 a minute: one every 30 s
        invalid = client.post(
            "/api/connectors", json={"name": "x", "baseUrl": echo.url, "callsPerMinute": 0}
        )
        assert_problem(invalid, 422, "validation_error")


def test_the_token_bucket_refills_evenly_and_frees_slots() -> None:
    from functions.errors import RateLimitedError
    from functions.upstream.limits import ConnectionLimiter

    now = [0.0]
    limiter = ConnectionLimiter(60, 2, clock=lambda: now[0])
    for _ in range(60):  # a burst up to the minute's budget passes
        limiter.take("c")
    with pytest.raises(RateLimitedError) as refused:
        limiter.take("c")
    assert refused.value.headers["Retry-After"] == "1"  # one call a second comes back
    now[0] = 1.0
    limiter.take("c")
    limiter.take("other")  # its own budget
    # A connector's own limit replaces the default for its connections.
    limiter.take("slow", 2)
    limiter.take("slow", 2)
    with pytest.raises(RateLimitedError) as slow:
        limiter.take("slow", 2)
    assert slow.value.headers["Retry-After"] == "30"
    # In-flight slots: two at once, the third refused until one is released.
    limiter = ConnectionLimiter(1000, 2, clock=lambda: now[0])
    limiter.acquire("c")
    limiter.acquire("c")
    with pytest.raises(RateLimitedError):
        limiter.acquire("c")
    limiter.release("c")
    limiter.acquire("c")
