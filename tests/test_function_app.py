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
