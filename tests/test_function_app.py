"""The Azure Functions entry point serves the same routes as uvicorn.

We call the HTTP function that `function_app.py` registers, with `func.HttpRequest`
objects, the way the Functions host does (RECIPES.md), and compare with what the
uvicorn-served gateway answers for the same requests.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from tests.api.helpers import create_connection, create_connector
from tests.conftest import GatewayUnderTest, settings_env

REPO = Path(__file__).resolve().parents[1]


class Context(func.Context):
    def __init__(self) -> None:
        self._invocation_id = "test-invocation"

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return "http_app_func"

    @property
    def function_directory(self) -> str:
        return str(REPO)

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return None


class FunctionsHost:
    """Loads function_app.py and invokes its HTTP function on one event loop."""

    def __init__(self) -> None:
        spec = importlib.util.spec_from_file_location(
            "function_app_under_test", REPO / "function_app.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        functions = module.app.get_functions()
        http = [f for f in functions if f.get_function_name() == "http_app_func"]
        assert len(http) == 1
        timers = [
            f for f in functions if f.get_bindings_dict()["bindings"][0]["type"] == "timerTrigger"
        ]
        self.timers = {f.get_function_name(): f.get_bindings_dict()["bindings"][0] for f in timers}
        self.timer_functions = {f.get_function_name(): f.get_user_function() for f in timers}
        self.app = module.app
        self.trigger = http[0]
        self.handler = self.trigger.get_user_function()
        self.loop = asyncio.new_event_loop()

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> func.HttpResponse:
        request = func.HttpRequest(
            method, "http://localhost:7071" + path, headers=headers or {}, body=body
        )
        return self.loop.run_until_complete(self.handler(request, Context()))


@pytest.fixture(scope="module")
def host(gateway: GatewayUnderTest) -> Iterator[FunctionsHost]:
    mp = pytest.MonkeyPatch()
    for name, value in settings_env(gateway.settings).items():
        mp.setenv(name, value)
    functions_host = FunctionsHost()
    yield functions_host
    # Shut the app down on its own loop, as the host would at exit.
    if functions_host.app.startup_task_done:
        functions_host.loop.run_until_complete(functions_host.app.middleware.notify_shutdown())
        functions_host.app.startup_task_done = False
    functions_host.loop.close()
    mp.undo()


def test_registered_function_is_anonymous_catch_all(host: FunctionsHost) -> None:
    trigger = host.trigger.get_bindings_dict()["bindings"][0]
    assert trigger["type"] == "httpTrigger"
    assert trigger["route"] == "/{*route}"
    assert trigger["authLevel"] == func.AuthLevel.ANONYMOUS


def test_timer_jobs_are_registered_and_run(host: FunctionsHost) -> None:
    from azure.functions.timer import TimerRequest

    assert host.timers["cleanup_connections"]["schedule"] == "0 */15 * * * *"
    assert host.timers["refresh_due_tokens"]["schedule"] == "0 */5 * * * *"
    assert host.timers["deliver_webhooks"]["schedule"] == "*/30 * * * * *"  # issue 19
    # As the host would fire them: each builds its own container from the environment.
    for name in ("cleanup_connections", "refresh_due_tokens", "deliver_webhooks"):
        host.loop.run_until_complete(host.timer_functions[name](TimerRequest(past_due=False)))


def test_host_json_routes_everything_to_the_app() -> None:
    host_json = json.loads((REPO / "host.json").read_text())
    assert host_json["version"] == "2.0"
    assert host_json["extensions"]["http"]["routePrefix"] == ""
    assert host_json["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def comparable(status: int, content_type: str, body: bytes) -> tuple[int, str, Any]:
    data: Any = json.loads(body) if body else None
    if isinstance(data, dict):
        data.pop("correlationId", None)
    return status, content_type.split(";")[0], data


def test_same_answers_as_uvicorn(host: FunctionsHost, gateway: GatewayUnderTest, echo: Any) -> None:
    token = gateway.token("host-user")
    auth = {"Authorization": f"Bearer {token}"}
    with gateway.client("host-user") as client:
        connector = create_connector(
            client, echo.url + "/base", {"type": "apiKey", "in": "query", "name": "code"}
        )
        connection = create_connection(client, connector["id"], {"api_key": "host-test-key-1"})
        cases: list[tuple[str, str, dict[str, str], bytes]] = [
            ("GET", "/api/health", {}, b""),
            ("GET", "/api/connectors", {}, b""),
            ("GET", "/api/connectors", auth, b""),
            ("GET", f"/api/connectors/{connector['id']}", auth, b""),
            ("GET", f"/api/connectors/{'0' * 32}", auth, b""),
            (
                "POST",
                "/api/connectors",
                {**auth, "Content-Type": "application/json"},
                b'{"name": 1}',
            ),
            ("GET", f"/api/connections/{connection['id']}", auth, b""),
            ("GET", "/api/nowhere", auth, b""),
            ("GET", f"/api/connections/{connection['id']}/invoke/%00x", auth, b""),
        ]
        for method, path, headers, body in cases:
            with gateway.client(user=None) as plain:
                expected = plain.request(method, path, headers=headers, content=body)
            actual = host.request(method, path, headers=headers, body=body)
            assert comparable(
                actual.status_code, actual.mimetype or "", actual.get_body()
            ) == comparable(
                expected.status_code, expected.headers.get("content-type", ""), expected.content
            ), (method, path)

        # Invoke through the Functions host: the echo sees the same request as via uvicorn.
        via_host = host.request(
            "PUT",
            f"/api/connections/{connection['id']}/invoke/items/7?x=1",
            headers={**auth, "X-Custom": "a"},
            body=b"payload",
        )
        via_uvicorn = client.put(
            f"/api/connections/{connection['id']}/invoke/items/7?x=1",
            headers={"X-Custom": "a"},
            content=b"payload",
        )
        assert via_host.status_code == via_uvicorn.status_code == 200
        host_report, uvicorn_report = json.loads(via_host.get_body()), via_uvicorn.json()
        for key in ("method", "path", "query", "body"):
            assert host_report[key] == uvicorn_report[key], key
        assert host_report["query"] == "x=1&code=host-test-key-1"

        # A connector created through the Functions host is visible through uvicorn.
        created = host.request(
            "POST",
            "/api/connectors",
            headers={**auth, "Content-Type": "application/json"},
            body=json.dumps({"name": "via-host", "baseUrl": echo.url}).encode(),
        )
        assert created.status_code == 201
        assert (
            client.get(f"/api/connectors/{json.loads(created.get_body())['id']}").json()["name"]
            == "via-host"
        )


@pytest.fixture(scope="module")
def small_host(gateway: GatewayUnderTest) -> Iterator[FunctionsHost]:
    """The same function app, loaded with small body limits (the host's request limit,
    the gateway's buffered-response limit)."""
    mp = pytest.MonkeyPatch()
    for name, value in settings_env(gateway.settings).items():
        mp.setenv(name, value)
    mp.setenv("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", "1000")
    mp.setenv("GATEWAY_BUFFERED_RESPONSE_LIMIT_BYTES", "200000")
    functions_host = FunctionsHost()
    yield functions_host
    if functions_host.app.startup_task_done:
        functions_host.loop.run_until_complete(functions_host.app.middleware.notify_shutdown())
    functions_host.loop.close()
    mp.undo()


def test_bodies_beyond_the_host_limits_are_refused_in_both_directions(
    small_host: FunctionsHost, gateway: GatewayUnderTest, echo: Any
) -> None:
    auth = {"Authorization": f"Bearer {gateway.token('host-limits')}"}
    with gateway.client("host-limits") as client:
        connector = create_connector(
            client, echo.url, {"type": "apiKey", "in": "header", "name": "X-Key"}
        )
        connection = create_connection(client, connector["id"], {"api_key": "limits-key-1"})
    invoke = f"/api/connections/{connection['id']}/invoke"

    small = small_host.request("PUT", f"{invoke}/items", headers=auth, body=b"x" * 1000)
    assert small.status_code == 200 and json.loads(small.get_body())["body"] == "x" * 1000
    large = small_host.request("PUT", f"{invoke}/items", headers=auth, body=b"x" * 1001)
    assert large.status_code == 413
    problem = json.loads(large.get_body())
    assert problem["code"] == "request_too_large" and "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT" in problem["detail"]

    whole = small_host.request("GET", f"{invoke}/bytes/200000", headers=auth)
    assert whole.status_code == 200 and len(whole.get_body()) == 200000
    too_big = small_host.request("GET", f"{invoke}/bytes/200001", headers=auth)
    assert too_big.status_code == 502
    problem = json.loads(too_big.get_body())
    assert problem["code"] == "upstream_response_too_large"
    assert "python -m functions serve" in problem["detail"]
    assert too_big.mimetype == "application/problem+json"


async def test_limits_without_content_length_are_kept_as_bytes_arrive() -> None:
    """A chunked request and a chunked response (no Content-Length) are cut at the limit."""
    from functions.api.buffered_host import BodyLimits, BufferedHostLimits

    chunks_read: list[int] = []
    chunks_sent = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal chunks_sent
        if scope["path"] == "/upload":
            from functions.errors import GatewayError

            try:
                while True:
                    message = await receive()
                    chunks_read.append(len(message.get("body", b"")))
                    if not message.get("more_body"):
                        break
            except GatewayError as exc:
                await send({"type": "http.response.start", "status": exc.status, "headers": []})
                await send({"type": "http.response.body", "body": exc.code.encode()})
                return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(10):  # 10 x 40 bytes, chunked: the wrapper stops it at the 3rd
            chunks_sent += 1
            await send({"type": "http.response.body", "body": b"y" * 40, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    wrapped = BufferedHostLimits(app, BodyLimits(request_bytes=100, response_bytes=100))

    async def run(path: str) -> list[dict[str, Any]]:
        incoming = [{"type": "http.request", "body": b"z" * 60, "more_body": True}] * 3
        out: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(message: dict[str, Any]) -> None:
            out.append(message)

        await wrapped({"type": "http", "path": path, "headers": []}, receive, send)
        return out

    upload = await run("/upload")
    assert upload[0]["status"] == 413 and upload[1]["body"] == b"request_too_large"
    assert chunks_read == [60]  # the second chunk (past 100 bytes) never reached the app
    download = await run("/download")
    assert [m["type"] for m in download] == ["http.response.start", "http.response.body"]
    assert download[0]["status"] == 502
    assert json.loads(download[1]["body"])["code"] == "upstream_response_too_large"
    assert chunks_sent == 3  # the app was stopped at the first chunk past the limit
