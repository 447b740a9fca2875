"""Connector CRUD, ownership and bad input (nothing stored on error)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import assert_problem, create_connector
from tests.conftest import GatewayUnderTest


def test_create_get_list_replace_delete(gateway: GatewayUnderTest) -> None:
    with gateway.client("crud-owner") as client:
        created = create_connector(
            client,
            "http://127.0.0.1:9000/v1",
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        )
        assert len(created["id"]) == 32
        assert created["auth"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        assert created["baseUrl"] == "http://127.0.0.1:9000/v1"

        fetched = client.get(f"/api/connectors/{created['id']}").json()
        assert fetched == created
        listed = client.get("/api/connectors").json()["value"]
        assert [c["id"] for c in listed] == [created["id"]]

        replaced = client.put(
            f"/api/connectors/{created['id']}",
            json={
                "name": "Renamed",
                "baseUrl": "https://api.example.com/v2/",
                "auth": {"type": "basic"},
            },
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["name"] == "Renamed"
        assert replaced.json()["baseUrl"] == "https://api.example.com/v2"
        assert replaced.json()["auth"] == {"type": "basic"}

        assert client.delete(f"/api/connectors/{created['id']}").status_code == 204
        assert_problem(client.get(f"/api/connectors/{created['id']}"), 404, "connector_not_found")
        assert client.get("/api/connectors").json()["value"] == []


def test_other_users_cannot_see_change_or_delete(gateway: GatewayUnderTest) -> None:
    with gateway.client("owner-1") as owner, gateway.client("stranger-1") as stranger:
        connector = create_connector(owner, "http://127.0.0.1:9000")
        cid = connector["id"]
        missing = "0" * 32
        # "Exists but not yours" answers exactly like "does not exist".
        for path in (f"/api/connectors/{cid}", f"/api/connectors/{missing}"):
            body = assert_problem(stranger.get(path), 404, "connector_not_found")
            assert set(body) >= {"type", "title", "status", "detail", "code"}
        assert_problem(
            stranger.put(f"/api/connectors/{cid}", json={"name": "x", "baseUrl": "http://h"}),
            404,
            "connector_not_found",
        )
        assert_problem(stranger.delete(f"/api/connectors/{cid}"), 404, "connector_not_found")
        assert stranger.get("/api/connectors").json()["value"] == []
        assert owner.get(f"/api/connectors/{cid}").json()["name"] == "Echo"


BAD_BODIES: list[tuple[Any, int, str, str]] = [
    ({"name": "x", "baseUrl": "http://h", "colour": "red"}, 422, "validation_error", "colour"),
    ({"name": 5, "baseUrl": "http://h"}, 422, "validation_error", "name"),
    ({"baseUrl": "http://h"}, 422, "validation_error", "name"),
    ({"name": "x"}, 422, "validation_error", "baseUrl"),
    ({"name": "x", "baseUrl": "ftp://h"}, 422, "validation_error", "baseUrl"),
    ({"name": "x", "baseUrl": "not a url"}, 422, "validation_error", "baseUrl"),
    ({"name": "x", "baseUrl": "http://user:pw@h/"}, 422, "validation_error", "baseUrl"),
    ({"name": "x", "baseUrl": "http://h/?q=1"}, 422, "validation_error", "baseUrl"),
    ({"name": "x", "baseUrl": "http://h:99999/"}, 422, "validation_error", "baseUrl"),
    (
        {"name": "x", "baseUrl": "http://h", "auth": {"type": "oauth3"}},
        422,
        "validation_error",
        "auth",
    ),
    (
        {"name": "x", "baseUrl": "http://h", "auth": {"type": "apiKey", "in": "body", "name": "k"}},
        422,
        "validation_error",
        "auth.apiKey.in",
    ),
    (
        {"name": "x", "baseUrl": "http://h", "auth": {"type": "apiKey", "in": "header"}},
        422,
        "validation_error",
        "auth.apiKey.name",
    ),
    (
        {
            "name": "x",
            "baseUrl": "http://h",
            "auth": {"type": "apiKey", "in": "header", "name": "Bad Header"},
        },
        422,
        "validation_error",
        "auth.apiKey",
    ),
    ([1, 2], 422, "validation_error", "(body)"),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_BODIES)
def test_bad_input_names_the_field_and_stores_nothing(
    gateway: GatewayUnderTest, body: Any, status: int, code: str, field: str
) -> None:
    with gateway.client("bad-input-user") as client:
        problem = assert_problem(client.post("/api/connectors", json=body), status, code)
        fields = [e["field"] for e in problem["errors"]]
        assert any(f.startswith(field) for f in fields), fields
        assert client.get("/api/connectors").json()["value"] == []


def test_non_json_and_oversized_and_wrong_media_type(gateway: GatewayUnderTest) -> None:
    with gateway.client("bad-input-user-2") as client:
        problem = assert_problem(
            client.post(
                "/api/connectors",
                content=b'{"name": "x",\n "baseUrl": }',
                headers={"content-type": "application/json"},
            ),
            400,
            "invalid_json",
        )
        assert problem["line"] == 2 and problem["column"] == 13
        assert_problem(client.post("/api/connectors", content=b""), 400, "invalid_json")
        assert_problem(
            client.post(
                "/api/connectors",
                content=b"name=x",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            415,
            "unsupported_media_type",
        )
        huge = b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        assert_problem(
            client.post(
                "/api/connectors", content=huge, headers={"content-type": "application/json"}
            ),
            413,
            "request_too_large",
        )
        assert client.get("/api/connectors").json()["value"] == []


def test_malformed_ids_are_not_found(gateway: GatewayUnderTest) -> None:
    with gateway.client() as client:
        for cid in ("x", "not-an-id.json", "0" * 31 + "Z"):
            assert_problem(client.get(f"/api/connectors/{cid}"), 404, "connector_not_found")


def test_connector_with_connections_cannot_be_deleted_or_change_auth(
    gateway: GatewayUnderTest, echo: Any
) -> None:
    with gateway.client("in-use-owner") as client:
        connector = create_connector(client, echo.url, {"type": "basic"})
        connection = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={"displayName": "c", "parameters": {"username": "u", "password": "p4ssword"}},
        ).json()
        assert_problem(client.delete(f"/api/connectors/{connector['id']}"), 409, "connector_in_use")
        assert_problem(
            client.put(
                f"/api/connectors/{connector['id']}",
                json={"name": "x", "baseUrl": echo.url, "auth": {"type": "none"}},
            ),
            409,
            "connector_in_use",
        )
        # Renaming keeps the scheme: allowed.
        renamed = client.put(
            f"/api/connectors/{connector['id']}",
            json={"name": "y", "baseUrl": echo.url, "auth": {"type": "basic"}},
        )
        assert renamed.status_code == 200
        assert client.delete(f"/api/connections/{connection['id']}").status_code == 204
        assert client.delete(f"/api/connectors/{connector['id']}").status_code == 204
