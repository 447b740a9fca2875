from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


def create_connector(
    client: httpx.Client, base_url: str, auth: dict[str, Any] | None = None, name: str = "Echo"
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "baseUrl": base_url}
    if auth is not None:
        body["auth"] = auth
    response = client.post("/api/connectors", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_connection(
    client: httpx.Client, connector_id: str, parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = client.post(
        f"/api/connectors/{connector_id}/connections",
        json={"displayName": "test", "parameters": parameters or {}},
    )
    assert response.status_code == 201, response.text
    return response.json()
