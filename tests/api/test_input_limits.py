"""Issue 12: hostile JSON answers 400 problem+json with a stable code on every JSON
route (never a 500), and imports are bounded (size, operation count) and parsed off the
event loop."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from functions.identity.dev_issuer import object_id
from functions.services.connectors import ImportedDefinition
from functions.settings import DEV_TENANT_ID
from tests.api.helpers import assert_problem, create_connection, create_connector
from tests.conftest import GatewayUnderTest

DEEP = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"  # Python's parser gives out
NESTED = b'{"a":' + b"[" * 200 + b"]" * 200 + b"}"  # parses, deeper than the limit
LONG_NUMBER = b'{"a":' + b"7" * 5000 + b"}"


def json_routes(client: Any, echo_url: str) -> list[tuple[str, str]]:
    connector = create_connector(client, echo_url)
    connection = create_connection(client, connector["id"])
    c, k = connection["id"], connector["id"]
    someone = object_id(DEV_TENANT_ID, "user", "someone")
    return [
        ("POST", "/api/connectors"),
        ("PUT", f"/api/connectors/{k}"),
        ("POST", "/api/connectors/import"),
        ("POST", f"/api/connectors/{k}/shares"),
        ("DELETE", f"/api/connectors/{k}/shares"),
        ("PUT", f"/api/connectors/{k}/oauth-client"),
        ("POST", f"/api/connectors/{k}/connections"),
        ("PATCH", f"/api/connections/{c}"),
        ("POST", f"/api/connections/{c}/shares"),
        ("DELETE", f"/api/connections/{c}/shares"),
        ("POST", f"/api/connections/{c}/confirm-origin"),
        ("POST", f"/api/admin/principals/{someone}/offboard"),
        ("POST", "/api/gateways"),
        ("POST", f"/api/connections/{c}/operations/op"),
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [(DEEP, "json_too_deep"), (NESTED, "json_too_deep"), (LONG_NUMBER, "json_number_too_long")],
    ids=["recursion", "deeper-than-limit", "5000-digits"],
)
def test_hostile_json_is_a_400_on_every_json_route(
    gateway: GatewayUnderTest, echo: Any, body: bytes, code: str
) -> None:
    with gateway.client("hostile", roles=["Gateway.Admin"]) as client:
        for method, path in json_routes(client, echo.url):
            response = client.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, (method, path, response.text)
            assert_problem(response, 400, code)


def test_hostile_json_in_an_uploaded_definition_file(gateway: GatewayUnderTest) -> None:
    with gateway.client("hostile-upload") as client:
        for content, code in ((NESTED, "json_too_deep"), (LONG_NUMBER, "json_number_too_long")):
            response = client.post(
                "/api/connectors/import",
                files={"apiDefinition": ("apiDefinition.swagger.json", content)},
            )
            problem = assert_problem(response, 400, code)
            assert "apiDefinition.swagger.json" in problem["detail"]


def _swagger(operations: int) -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": "Many", "version": "1.0"},
        "host": "api.example.com",
        "basePath": "/",
        "schemes": ["https"],
        "paths": {
            f"/items{i}": {
                "get": {"operationId": f"get{i}", "responses": {"200": {"description": "ok"}}}
            }
            for i in range(operations)
        },
    }


def test_imports_are_bounded_by_size_and_operation_count(start_gateway: Any) -> None:
    gateway = start_gateway(max_definition_bytes=200_000, max_definition_operations=50)
    with gateway.client("big-importer") as client:
        too_many = client.post("/api/connectors/import", json={"apiDefinition": _swagger(51)})
        problem = assert_problem(too_many, 422, "too_many_operations")
        assert problem["limit"] == 50 and problem["operations"] == 51
        big = _swagger(10)
        big["info"]["description"] = "x" * 250_000
        assert_problem(
            client.post("/api/connectors/import", json={"apiDefinition": big}),
            413,
            "definition_too_large",
        )
        assert_problem(
            client.post(
                "/api/connectors/import",
                files={"apiDefinition": ("apiDefinition.swagger.json", json.dumps(big).encode())},
            ),
            413,
            "definition_too_large",
        )
        # Nothing was stored by the refusals.
        assert client.get("/api/connectors").json()["value"] == []
        accepted = client.post("/api/connectors/import", json={"apiDefinition": _swagger(50)})
        assert accepted.status_code == 201, accepted.text


def test_a_definition_is_parsed_off_the_event_loop(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing 40,000 operations took 3.6 s of the event loop, stalling every call."""
    parsed_on: list[threading.Thread] = []
    original = ImportedDefinition.parse

    def recording(self: ImportedDefinition) -> Any:
        parsed_on.append(threading.current_thread())
        return original(self)

    monkeypatch.setattr(ImportedDefinition, "parse", recording)
    with gateway.client("loop-watcher") as client:
        created = client.post("/api/connectors/import", json={"apiDefinition": _swagger(300)})
        assert created.status_code == 201, created.text
        # A fresh instance's first read of the definition parses it too.
        gateway.state.connectors._parsed.clear()
        assert client.get(f"/api/connectors/{created.json()['id']}").status_code == 200
    loop_thread = gateway.server.thread
    assert len(parsed_on) == 2
    assert all(thread is not loop_thread for thread in parsed_on)


def test_hostile_json_in_files_for_inspection(gateway: GatewayUnderTest) -> None:
    """`POST /api/connectors/inspect` (the portal's look before saving) reads uploads the
    same way: hostile files are a 400 with a stable code, never a 500."""
    with gateway.client("hostile-inspect") as client:
        for content, code in ((NESTED, "json_too_deep"), (LONG_NUMBER, "json_number_too_long")):
            response = client.post(
                "/api/connectors/inspect",
                files={"apiDefinition": ("apiDefinition.swagger.json", content)},
            )
            assert_problem(response, 400, code)
