"""Building small imported connectors (a definition plus policies) for issue 12 tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

DEFINITION: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Raw", "version": "1.0"},
    "host": "api.example.com",
    "basePath": "/",
    "schemes": ["https"],
    "paths": {
        "/things": {
            "post": {
                "operationId": "Send",
                "consumes": ["text/plain"],
                "parameters": [
                    {"name": "body", "in": "body", "required": False, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "ok"}},
            },
            "get": {
                "operationId": "List",
                "responses": {"200": {"description": "ok"}},
            },
        }
    },
}


def setheader(
    name: str, value: str, *, section: str = "Request", operations: list[str] | None = None
) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "x-ms-apimTemplateParameter.name": name,
        "x-ms-apimTemplateParameter.value": value,
        "x-ms-apimTemplate-policySection": section,
    }
    if operations is not None:
        parameters["x-ms-apimTemplate-operationName"] = operations
    return {"templateId": "setheader", "title": f"set {name}", "parameters": parameters}


def dynamic_host(template: str) -> dict[str, Any]:
    return {
        "templateId": "dynamichosturl",
        "title": "host",
        "parameters": {"x-ms-apimTemplateParameter.urlTemplate": template},
    }


def import_connector(
    client: httpx.Client,
    policies: list[dict[str, Any]],
    base_url: str,
    *,
    parameters: tuple[str, ...] = ("h", "v"),
    definition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    properties = {
        "properties": {
            "connectionParameters": {name: {"type": "string"} for name in parameters},
            "policyTemplateInstances": policies,
        }
    }
    files = {
        "apiDefinition": (
            "apiDefinition.swagger.json",
            json.dumps(definition or DEFINITION).encode(),
        ),
        "apiProperties": ("apiProperties.json", json.dumps(properties).encode()),
    }
    response = client.post("/api/connectors/import", files=files, data={"baseUrl": base_url})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def connect(client: httpx.Client, connector_id: str, parameters: dict[str, str]) -> str:
    response = client.post(
        f"/api/connectors/{connector_id}/connections",
        json={"displayName": "t", "parameters": parameters},
    )
    assert response.status_code == 201, response.text
    connection_id: str = response.json()["id"]
    return connection_id
