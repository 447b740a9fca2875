"""The "new connection" form generated from a Power Platform definition: uiDefinition
texts, required / hidden / allowedValues / tabIndex, masked securestring, parameter sets
as a choice, and the on-premises gateway for Windows connections."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.portal.conftest import Browsing, Portal

SWAGGER: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Form API", "version": "1.0", "description": "Sets and constraints"},
    "host": "form.example.test",
    "basePath": "/",
    "schemes": ["https"],
    "paths": {"/things": {"get": {"operationId": "ListThings", "responses": {"200": {}}}}},
    "securityDefinitions": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
}
PROPERTIES: dict[str, Any] = {
    "properties": {
        "connectionParameterSets": {
            "uiDefinition": {"displayName": "Authentication type"},
            "values": [
                {
                    "name": "key",
                    "uiDefinition": {"displayName": "API key", "description": "With a key"},
                    "parameters": {
                        "api_key": {
                            "type": "securestring",
                            "uiDefinition": {
                                "displayName": "Secret key",
                                "description": "Your key.",
                                "tooltip": "Find it under Settings.",
                                "constraints": {"required": "true", "tabIndex": 2},
                            },
                        },
                        "region": {
                            "type": "string",
                            "uiDefinition": {
                                "displayName": "Region",
                                "constraints": {
                                    "required": "true",
                                    "tabIndex": 1,
                                    "allowedValues": [
                                        {"text": "Europe", "value": "eu"},
                                        {"text": "United States", "value": "us"},
                                    ],
                                },
                            },
                        },
                        "internal": {
                            "type": "string",
                            "defaultValue": "x",
                            "uiDefinition": {
                                "displayName": "Internal",
                                "constraints": {"hidden": "true"},
                            },
                        },
                    },
                },
                {
                    "name": "onprem",
                    "uiDefinition": {"displayName": "Windows (on-premises)"},
                    "parameters": {
                        "gateway": {
                            "type": "gatewaySetting",
                            "gatewaySettings": {"dataSourceType": "CustomConnector"},
                            "uiDefinition": {
                                "displayName": "Gateway",
                                "constraints": {"required": "true"},
                            },
                        },
                        "authType": {
                            "type": "string",
                            "allowedValues": [{"value": "windows"}],
                            "uiDefinition": {
                                "displayName": "Authentication",
                                "constraints": {
                                    "required": "true",
                                    "allowedValues": [{"text": "Windows", "value": "windows"}],
                                },
                            },
                        },
                        "username": {
                            "type": "securestring",
                            "uiDefinition": {
                                "displayName": "User name",
                                "constraints": {"required": "true"},
                            },
                        },
                        "password": {
                            "type": "securestring",
                            "uiDefinition": {
                                "displayName": "Password",
                                "constraints": {"required": "true"},
                            },
                        },
                    },
                },
            ],
        }
    }
}


def imported(portal: Portal, user: str) -> str:
    with portal.gateway.client(user) as client:
        answer = client.post(
            "/api/connectors/import",
            json={
                "apiDefinition": SWAGGER,
                "apiProperties": PROPERTIES,
                "baseUrl": portal.return_origin + "/form",
            },
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def test_form_description_from_the_definition(portal: Portal) -> None:
    connector_id = imported(portal, "former")
    with portal.gateway.client("former") as client:
        form = client.get(f"/api/connectors/{connector_id}/connection-form").json()
        # Others cannot read it.
        assert client.get("/api/connectors/" + "0" * 32 + "/connection-form").status_code == 404
    key, onprem = form["parameterSets"]
    assert (key["name"], key["displayName"], key["authType"]) == ("key", "API key", "apiKey")
    assert [f["name"] for f in key["fields"]] == ["region", "api_key"]  # tabIndex, hidden left out
    region, secret = key["fields"]
    assert region["kind"] == "choice" and region["allowedValues"] == [
        {"value": "eu", "label": "Europe"},
        {"value": "us", "label": "United States"},
    ]
    assert secret == {
        "name": "api_key",
        "label": "Secret key",
        "kind": "secret",
        "description": "Your key.",
        "tooltip": "Find it under Settings.",
        "required": True,
        "allowedValues": [],
        "default": None,
    }
    assert onprem["authType"] == "windows" and onprem["gateway"] is True
    assert [f["kind"] for f in onprem["fields"]] == ["gateway", "choice", "secret", "secret"]


def test_generated_form_in_the_browser(browse: Callable[[], Browsing], portal: Portal) -> None:
    connector_id = imported(portal, "former2")
    b = browse()
    b.sign_in("former2")
    b.goto(f"/portal/new-connection.html?connector={connector_id}")
    sets = b.page.get_by_role("group", name="How do you want to connect?")
    expect(sets.get_by_role("radio")).to_have_count(2)
    expect(b.page.get_by_label("API key")).to_be_checked()
    secret = b.page.get_by_label("Secret key")
    expect(secret).to_have_attribute("type", "password")
    expect(secret).to_have_accessible_description("Your key. Find it under Settings.")
    labels = b.page.locator("#parameters label").all_inner_texts()
    assert labels.index("Region (required)") < labels.index("Secret key (required)")
    assert "Internal" not in " ".join(labels)
    expect(b.page.get_by_label("Region")).to_have_value("eu")
    assert b.axe() == []
    b.screenshot("new-connection-sets")

    # Windows: asks for the on-premises gateway.
    b.page.get_by_label("Windows (on-premises)").check()
    expect(b.page.get_by_label("Gateway", exact=False).first).to_be_visible()
    expect(b.page.locator("#parameters")).to_contain_text("no on-premises data gateway yet")
    assert b.axe() == []
    b.page.get_by_label("API key").check()

    b.page.get_by_label("Connection name").fill("form conn")
    b.page.get_by_label("Region").select_option("us")
    b.page.get_by_label("Secret key").fill("form-secret")
    b.page.get_by_role("button", name="Create").click()
    b.page.wait_for_url(re.compile(r".*/portal/connection\.html\?id=[0-9a-f]{32}&created=1$"))
    b.page.get_by_label("Path").fill("/things")
    b.page.get_by_role("button", name="Send GET").click()
    expect(b.page.locator("#test-status")).to_contain_text("Status 200")
    report = json.loads(b.page.locator("#test-body").text_content() or "")
    assert ["x-key", "form-secret"] in [[k.lower(), v] for k, v in report["headers"]]
    connection_id = b.page.url.split("id=", 1)[1].split("&", 1)[0]
    with portal.gateway.client("former2") as client:
        connection = client.get(f"/api/connections/{connection_id}").json()
    assert connection["parameterSet"] == "key"
    assert "region" in connection["parametersSet"]
