"""Operation calls through the running gateway, checked at a raw-socket recorder:
operationIds containing `/`, header parameters whose names are not HTTP tokens, and
empty-body POST/PUT/PATCH without a Content-Type."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import assert_problem
from tests.conftest import GatewayUnderTest
from tests.powerplatform.recorder import Recorder


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    with Recorder() as running:
        yield running


def import_swagger(
    client: httpx.Client, swagger: dict[str, Any], base_url: str
) -> dict[str, Any]:
    files = {
        "apiDefinition": ("apiDefinition.swagger.json", json.dumps(swagger).encode()),
        "apiProperties": ("apiProperties.json", b'{"properties": {}}'),
    }
    response = client.post("/api/connectors/import", files=files, data={"baseUrl": base_url})
    assert response.status_code == 201, response.text
    return dict(response.json())


def connect(client: httpx.Client, connector: dict[str, Any]) -> str:
    response = client.post(
        f"/api/connectors/{connector['id']}/connections",
        json={"displayName": "calls", "parameters": {}},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


SWAGGER: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Calls", "version": "1"},
    "host": "api.example.test",
    "paths": {
        "/items/{id}": {
            "get": {
                "operationId": "Items/Get",
                "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
                "responses": {"200": {"description": "ok"}},
            },
            "post": {
                "operationId": "Touch",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "type": "string"},
                    {"name": "Account Id", "in": "header", "type": "string"},
                    {"name": "X-Ok", "in": "header", "type": "string"},
                ],
                "responses": {"200": {"description": "ok"}},
            },
            "put": {
                "operationId": "Replace",
                "consumes": ["application/json"],
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "type": "string"},
                    {"name": "body", "in": "body", "schema": {"type": "object"}},
                ],
                "responses": {"200": {"description": "ok"}},
            },
            "patch": {
                "operationId": "Mend",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "type": "string"},
                    {"name": "content-type:", "in": "header", "required": True, "type": "string"},
                ],
                "responses": {"200": {"description": "ok"}},
            },
        }
    },
}


@pytest.fixture(scope="module")
def setup(gateway: GatewayUnderTest, recorder: Recorder) -> tuple[dict[str, Any], str]:
    with gateway.client("calls-user") as client:
        connector = import_swagger(client, SWAGGER, recorder.url + "/api")
        return connector, connect(client, connector)


def call(
    gateway: GatewayUnderTest, connection: str, encoded_id: str, payload: dict[str, Any]
) -> httpx.Response:
    with gateway.client("calls-user") as client:
        return client.post(f"/api/connections/{connection}/operations/{encoded_id}", json=payload)


def test_operation_ids_with_a_slash_are_listed_encoded_and_callable(
    gateway: GatewayUnderTest, recorder: Recorder, setup: tuple[dict[str, Any], str]
) -> None:
    connector, connection = setup
    listed = {op["operationId"]: op for op in connector["definition"]["operations"]}
    assert listed["Items/Get"]["encodedOperationId"] == "Items%2FGet"
    assert listed["Touch"]["encodedOperationId"] == "Touch"
    response = call(gateway, connection, "Items%2FGet", {"parameters": {"id": "a;b"}})
    assert response.status_code == 200, response.text
    received = recorder.get(int(response.headers["x-recorded"]))
    assert received.request_line == "GET /api/items/a%3Bb HTTP/1.1"
    # An id that is not defined is still a 404, encoded or not.
    assert_problem(
        call(gateway, connection, "Items%2FNope", {"parameters": {}}), 404, "operation_not_found"
    )


def test_invalid_header_names_warn_at_import_and_are_never_sent(
    gateway: GatewayUnderTest, recorder: Recorder, setup: tuple[dict[str, Any], str]
) -> None:
    connector, connection = setup
    warnings = connector["definition"]["warnings"]
    assert any("'Account Id'" in w and "not a valid HTTP header name" in w for w in warnings)
    assert any("'content-type:'" in w for w in warnings)
    # Optional and not given: the call goes out without it.
    response = call(gateway, connection, "Touch", {"parameters": {"id": "1", "X-Ok": "y"}})
    assert response.status_code == 200, response.text
    received = recorder.get(int(response.headers["x-recorded"]))
    assert [name for name, _ in received.headers if "account" in name.lower()] == []
    assert received.header_values("x-ok") == ["y"]
    # Given a value: refused, nothing sent.
    before = len(recorder.records)
    problem = assert_problem(
        call(gateway, connection, "Touch", {"parameters": {"id": "1", "Account Id": "7"}}),
        422,
        "invalid_header_name",
    )
    assert problem["errors"][0]["field"] == "parameters.Account Id"
    # Required: the operation can never be sent.
    assert_problem(
        call(gateway, connection, "Mend", {"parameters": {"id": "1"}}), 422, "invalid_header_name"
    )
    assert len(recorder.records) == before
    assert recorder.malformed == []


@pytest.mark.parametrize(("operation", "method"), [("Touch", "POST"), ("Replace", "PUT")])
def test_empty_bodies_go_out_without_content_type(
    gateway: GatewayUnderTest,
    recorder: Recorder,
    setup: tuple[dict[str, Any], str],
    operation: str,
    method: str,
) -> None:
    _, connection = setup
    response = call(gateway, connection, operation, {"parameters": {"id": "1"}})
    assert response.status_code == 200, response.text
    received = recorder.get(int(response.headers["x-recorded"]))
    assert received.method == method
    assert received.header_values("content-type") == []
    assert received.body == b""
    # With a body, the operation's consumes type is sent.
    if operation == "Replace":
        response = call(gateway, connection, operation, {"parameters": {"id": "1"}, "body": {}})
        received = recorder.get(int(response.headers["x-recorded"]))
        assert received.header_values("content-type") == ["application/json"]
        assert received.body == b"{}"
