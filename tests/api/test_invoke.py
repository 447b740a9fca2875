"""The raw proxy route: what is forwarded, what is injected, what never leaves."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from typing import Any

import httpx
import pytest

from functions.identity.dev_issuer import object_id
from functions.services.ids import new_id
from functions.settings import DEV_TENANT_ID
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest
from tests.doubles.echo import header_values


@pytest.fixture(scope="module")
def api_key_conn(gateway: GatewayUnderTest, echo: Any) -> dict[str, Any]:
    key = "hdr-key-" + new_id()
    with gateway.client("invoker") as client:
        connector = create_connector(
            client, echo.url + "/v1", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        )
        connection = create_connection(client, connector["id"], {"api_key": key})
    return {"id": connection["id"], "key": key}


def invoke_url(connection_id: str, rest: str = "") -> str:
    return f"/api/connections/{connection_id}/invoke{rest}"


def test_forwards_method_path_query_body_and_headers(
    gateway: GatewayUnderTest, api_key_conn: dict[str, Any]
) -> None:
    with gateway.client("invoker") as client:
        response = client.post(
            invoke_url(api_key_conn["id"], "/items/a%20b/42?x=1&x=2&empty=&q=caf%C3%A9"),
            content=b'{"hello": "world"}',
            headers={
                "Content-Type": "application/json",
                "X-Custom": "kept",
                "Cookie": "session=caller-cookie",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "dropped",
                "Proxy-Authorization": "Basic abc",
                "X-Forwarded-For": "10.0.0.1",
                "X-API-Key": "caller-tries-to-override",
            },
        )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["method"] == "POST"
    assert report["path"] == "/v1/items/a%20b/42"
    assert report["query"] == "x=1&x=2&empty=&q=caf%C3%A9"
    assert report["body"] == '{"hello": "world"}'
    assert header_values(report, "x-custom") == ["kept"]
    assert header_values(report, "content-type") == ["application/json"]
    # The credential, exactly once, replacing the caller's attempt.
    assert header_values(report, "x-api-key") == [api_key_conn["key"]]
    for name in ("authorization", "cookie", "x-hop", "proxy-authorization", "x-forwarded-for"):
        assert header_values(report, name) == [], name
    assert header_values(report, "host") == [f"127.0.0.1:{report_port(report)}"]
    # The gateway's caller token is nowhere in what the upstream received.
    assert gateway.token("invoker").split(".")[2] not in response.text


def report_port(report: dict[str, Any]) -> str:
    return header_values(report, "host")[0].rsplit(":", 1)[1]


def test_api_key_in_query_replaces_caller_value(gateway: GatewayUnderTest, echo: Any) -> None:
    key = "q-key-" + new_id()
    with gateway.client("invoker-q") as client:
        connector = create_connector(
            client, echo.url, {"type": "apiKey", "in": "query", "name": "api_key"}
        )
        connection = create_connection(client, connector["id"], {"api_key": key})
        report = client.get(invoke_url(connection["id"], "/search?api_key=mine&term=x")).json()
    assert report["query"] == f"term=x&api_key={key}"
    assert report["path"] == "/search"


def test_basic_auth_is_injected(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("invoker-b") as client:
        connector = create_connector(client, echo.url, {"type": "basic"})
        connection = create_connection(
            client, connector["id"], {"username": "svc", "password": "s3cr3t-pw"}
        )
        report = client.get(invoke_url(connection["id"], "/me")).json()
    expected = "Basic " + base64.b64encode(b"svc:s3cr3t-pw").decode()
    assert header_values(report, "authorization") == [expected]


def test_no_auth_connector_forwards_no_authorization(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("invoker-n") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        report = client.get(invoke_url(connection["id"])).json()
    assert report["path"] == "/"
    assert header_values(report, "authorization") == []


@pytest.mark.parametrize(
    "rest",
    [
        "/../secret",
        "/a/../../secret",
        "/%2e%2e/secret",
        "/.%2E/secret",
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "//evil.example/x",
        "/http://evil.example/x",
        "/a//b",
        "/%00x",
        "/a%0Db",
    ],
)
def test_paths_that_could_escape_are_refused(
    gateway: GatewayUnderTest, api_key_conn: dict[str, Any], rest: str
) -> None:
    status, body = raw_get(gateway, invoke_url(api_key_conn["id"], rest))
    assert status == 400, body
    assert json.loads(body)["code"] == "invalid_path"


@pytest.mark.parametrize("rest", ["/../../../connectors", "/%0d%0aX-Injected:%201"])
def test_targets_that_leave_the_invoke_route_never_reach_upstream(
    gateway: GatewayUnderTest, api_key_conn: dict[str, Any], rest: str
) -> None:
    status, body = raw_get(gateway, invoke_url(api_key_conn["id"], rest))
    assert status in (400, 404), body
    assert json.loads(body)["code"] in ("invalid_path", "route_not_found")


def raw_get(gateway: GatewayUnderTest, target: str) -> tuple[int, str]:
    """Send the request target byte for byte (httpx would normalise dot segments)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.server.port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.putheader("Authorization", f"Bearer {gateway.token('invoker')}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "rest", ["/@evil.example/x", "/x?u=http://evil.example", "/evil.example:80/x"]
)
def test_authority_lookalikes_stay_on_the_base_host(
    gateway: GatewayUnderTest, api_key_conn: dict[str, Any], echo: Any, rest: str
) -> None:
    status, body = raw_get(gateway, invoke_url(api_key_conn["id"], rest))
    assert status == 200, body
    report = json.loads(body)
    assert report["path"].startswith("/v1/")
    assert header_values(report, "host") == [echo.url.removeprefix("http://")]


def test_upstream_status_headers_and_repeated_headers(gateway: GatewayUnderTest, echo: Any) -> None:
    with gateway.client("invoker-h") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        response = client.get(invoke_url(connection["id"], "/headers-out"))
        assert response.headers.get_list("link") == ["<a>; rel=next", "<b>; rel=prev"]
        assert response.headers["x-upstream"] == "yes"
        assert "set-cookie" not in response.headers
        # The upstream's Date and Server are not passed on next to the gateway's own.
        assert len(response.headers.get_list("date")) == 1
        assert response.headers.get_list("server") in ([], ["uvicorn"])
        teapot = client.delete(invoke_url(connection["id"], "/status/418"))
        assert teapot.status_code == 418 and teapot.json()["method"] == "DELETE"


def test_an_upstream_cookie_never_reaches_another_call(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    """The gateway's HTTP client is shared by every connection: a cookie one upstream
    sets must not be stored and sent on later calls (another caller's, or the same)."""
    with gateway.client("cookie-setter") as setter, gateway.client("cookie-victim") as victim:
        setter_conn = create_connection(setter, create_connector(setter, echo.url)["id"])
        victim_conn = create_connection(victim, create_connector(victim, echo.url)["id"])
        for _ in range(2):  # Set-Cookie: upstream=1
            assert setter.get(invoke_url(setter_conn["id"], "/headers-out")).status_code == 200
        for client, conn in ((victim, victim_conn), (setter, setter_conn)):
            report = client.get(invoke_url(conn["id"], "/after-cookie")).json()
            assert header_values(report, "cookie") == []


def test_upstream_closing_without_answer_is_502(gateway: GatewayUnderTest) -> None:
    """A server that accepts and hangs up is `upstream_unreachable`, not a timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def hang_up() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                peer, _ = server.accept()
            except TimeoutError:
                continue
            peer.recv(65536)
            peer.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        with gateway.client("invoker-hangup") as client:
            base = f"http://127.0.0.1:{server.getsockname()[1]}"
            connection = create_connection(client, create_connector(client, base)["id"])
            problem = assert_problem(
                client.get(invoke_url(connection["id"], "/x")), 502, "upstream_unreachable"
            )
            assert connection["id"] in problem["detail"]
    finally:
        stop.set()
        thread.join()
        server.close()


def test_streams_large_responses(gateway: GatewayUnderTest, echo: Any) -> None:
    size = 20 * 1024 * 1024
    with gateway.client("invoker-s") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        received = 0
        with client.stream("GET", invoke_url(connection["id"], f"/bytes/{size}")) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(size)
            for chunk in response.iter_raw():
                received += len(chunk)
    assert received == size


def test_request_body_limit(start_gateway: Any, echo: Any) -> None:
    small = start_gateway(max_request_bytes=1024)
    with small.client("invoker-l") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        assert (
            client.post(invoke_url(connection["id"], "/x"), content=b"a" * 1024).status_code == 200
        )
        problem = assert_problem(
            client.post(invoke_url(connection["id"], "/x"), content=b"a" * 1025),
            413,
            "request_too_large",
        )
        assert problem["limit"] == 1024


def test_upstream_timeout_is_504_naming_connection_and_host(start_gateway: Any, echo: Any) -> None:
    impatient = start_gateway(upstream_timeout_seconds=0.5)
    with impatient.client("invoker-t") as client:
        connector = create_connector(client, echo.url)
        connection = create_connection(client, connector["id"])
        problem = assert_problem(
            client.get(invoke_url(connection["id"], "/slow/3")), 504, "upstream_timeout"
        )
    assert connection["id"] in problem["detail"] and "127.0.0.1" in problem["detail"]
    assert problem["connectionId"] == connection["id"]
    assert problem["upstreamHost"] == "127.0.0.1"


def test_unreachable_upstream_is_502(gateway: GatewayUnderTest) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with gateway.client("invoker-u") as client:
        for base in (f"http://127.0.0.1:{port}", "http://no-such-host.invalid"):
            connector = create_connector(client, base)
            connection = create_connection(client, connector["id"])
            problem = assert_problem(
                client.get(invoke_url(connection["id"], "/x")), 502, "upstream_unreachable"
            )
            assert connection["id"] in problem["detail"]
            assert httpx.URL(base).host in problem["detail"]


def test_only_the_owner_may_invoke(gateway: GatewayUnderTest, api_key_conn: dict[str, Any]) -> None:
    with gateway.client("someone-else") as client:
        assert_problem(
            client.get(invoke_url(api_key_conn["id"], "/x")), 404, "connection_not_found"
        )
    with gateway.client(user=None) as anonymous:
        assert_problem(anonymous.get(invoke_url(api_key_conn["id"], "/x")), 401, "unauthenticated")


def test_warm_invocations_read_no_table_and_no_vault(
    gateway: GatewayUnderTest, api_key_conn: dict[str, Any]
) -> None:
    with gateway.client("invoker") as client:
        client.get(invoke_url(api_key_conn["id"], "/warm-up")).raise_for_status()
        table_reads = gateway.state.metadata.counters.reads
        vault_reads = gateway.state.secrets.reads
        for _ in range(20):
            client.get(invoke_url(api_key_conn["id"], "/warm")).raise_for_status()
    assert gateway.state.metadata.counters.reads == table_reads
    assert gateway.state.secrets.reads == vault_reads


def test_cold_reads_one_row_per_connection(gateway: GatewayUnderTest, echo: Any) -> None:
    """Cold, a connection costs one Table read and one Key Vault read on an instance:
    its connector row is shared by the connector's connections, and its grants are
    read only when someone other than the owner calls."""
    grantee = "cold-grantee"
    with gateway.client("cold-owner") as owner, gateway.client(grantee) as other:
        connector = create_connector(owner, echo.url)
        first = create_connection(owner, connector["id"])
        second = create_connection(owner, connector["id"])
        state = gateway.state

        def counts() -> list[int]:
            c = state.metadata.counters
            return [c.reads, c.queries, state.shares.reads, state.secrets.reads]

        def cost(call: Any) -> tuple[int, ...]:
            before = counts()
            call().raise_for_status()
            return tuple(b - a for a, b in zip(before, counts(), strict=True))

        gateway.state.connections._resolved.clear()  # as a fresh instance would be
        gateway.state.connectors._for_invoke.clear()
        with state.secrets._lock:
            state.secrets._entries.clear()
        # (Table reads, Table queries, grant queries, Key Vault reads)
        assert cost(lambda: owner.get(invoke_url(first["id"], "/a"))) == (2, 0, 0, 1)  # + connector
        assert cost(lambda: owner.get(invoke_url(second["id"], "/a"))) == (1, 0, 0, 1)
        assert cost(lambda: owner.get(invoke_url(second["id"], "/b"))) == (0, 0, 0, 0)
        owner.post(
            f"/api/connections/{second['id']}/shares",
            json={"principal": {"type": "user", "id": object_id(DEV_TENANT_ID, "user", grantee)}},
        ).raise_for_status()
        # The connection row is cached already; only its grants are read, once.
        assert cost(lambda: other.get(invoke_url(second["id"], "/c"))) == (0, 0, 1, 0)
        assert cost(lambda: other.get(invoke_url(second["id"], "/d"))) == (0, 0, 0, 0)


def test_concurrent_cold_calls_share_one_load(gateway: GatewayUnderTest, echo: Any) -> None:
    """Calls in flight when a connection's cache entry is missing (first use, or
    expiry under load) read its rows once between them, not once each."""
    from concurrent.futures import ThreadPoolExecutor

    with gateway.client("herd-owner") as client:
        connection = create_connection(client, create_connector(client, echo.url)["id"])
        client.get(invoke_url(connection["id"], "/warm")).raise_for_status()  # pool, token
        state = gateway.state
        state.connections._resolved.clear()
        state.connectors._for_invoke.clear()
        before = state.metadata.counters.reads

        def call(index: int) -> int:
            return client.get(invoke_url(connection["id"], f"/slow/0.2?i={index}")).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(call, range(16)))
    assert statuses == [200] * 16
    assert state.metadata.counters.reads - before == 2  # the connection row + its connector


def test_startup_objects_are_kept_out_of_full_collections(gateway: GatewayUnderTest) -> None:
    """Full collections over the startup heap took 50-70 ms under load (every call in
    flight waited); the app freezes what start-up built (`gc.freeze`)."""
    import gc

    assert gateway.state is not None
    assert gc.get_freeze_count() > 10_000


def test_invoke_routes_are_documented_and_served_without_fastapi_handling(
    gateway: GatewayUnderTest,
) -> None:
    from fastapi.routing import APIRoute
    from starlette.routing import Match

    from functions.app import create_app

    app = create_app(gateway.settings)
    paths = app.openapi()["paths"]
    assert "/api/connections/{connection_id}/invoke/{path}" in paths
    assert "post" in paths["/api/connections/{connection_id}/operations/{operation_id}"]
    for method, path in (
        ("GET", "/api/connections/c1/invoke/v1/x"),
        ("DELETE", "/api/connections/c1/invoke"),
        ("POST", "/api/connections/c1/operations/Op"),
    ):
        scope = {"type": "http", "method": method, "path": path}
        serving = next(r for r in app.router.routes if r.matches(scope)[0] == Match.FULL)
        assert not isinstance(serving, APIRoute), (method, path)
