"""What a person fills in to create a connection to a connector (issue 16).

The portal draws its "new connection" form from this, never from the raw definition:
native connectors get the fields their scheme needs; imported Power Platform connectors
get their `connectionParameters` (or one choice per parameter set) with the
`uiDefinition` texts and constraints: displayName, description, tooltip, required,
hidden, allowedValues and tabIndex. The texts are the maker's, so the portal renders
them as text only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from functions.domain.models import Connector
from functions.powerplatform.model import AuthOption, ConnectionParameter, ConnectorDefinition

# Field kinds the portal knows how to draw.
TEXT, SECRET, NUMBER, BOOLEAN, CHOICE, GATEWAY = (
    "text",
    "secret",
    "number",
    "boolean",
    "choice",
    "gateway",
)

_NATIVE_FIELDS: Mapping[str, tuple[dict[str, Any], ...]] = {
    "basic": (
        {"name": "username", "label": "User name", "kind": TEXT},
        {"name": "password", "label": "Password", "kind": SECRET},
    ),
    "apiKey": ({"name": "api_key", "label": "API key", "kind": SECRET},),
    "windows": (
        {"name": "gatewayId", "label": "On-premises data gateway", "kind": GATEWAY},
        {"name": "username", "label": "User name (DOMAIN\\user)", "kind": TEXT},
        {"name": "password", "label": "Password", "kind": SECRET},
    ),
}


def connection_form(connector: Connector, definition: ConnectorDefinition | None) -> dict[str, Any]:
    """`{connectorId, connectorName, description, parameterSets: [...]}`; one set for
    connectors without parameter sets (its `name` is null)."""
    if definition is None:
        sets = [_native_set(connector)]
    else:
        sets = [_imported_set(option) for option in definition.auth_options]
    return {
        "connectorId": connector.id,
        "connectorName": connector.name,
        "description": connector.description,
        "source": connector.source,
        "parameterSets": sets,
    }


def _native_set(connector: Connector) -> dict[str, Any]:
    auth = connector.auth.type
    fields = [
        {
            **spec,
            "description": None,
            "tooltip": None,
            "required": True,
            "allowedValues": [],
            "default": None,
        }
        for spec in _NATIVE_FIELDS.get(auth, ())
    ]
    return {
        "name": None,
        "displayName": None,
        "description": None,
        "authType": auth,
        "gateway": auth == "windows",
        "fields": fields,
    }


def _imported_set(option: AuthOption) -> dict[str, Any]:
    visible = [p for p in option.parameters if not p.hidden and p.type != "oauthSetting"]
    # Stable sort: tabIndex first, declaration order for the rest (as Power Platform).
    ordered = sorted(enumerate(visible), key=lambda item: (_tab_index(item[1]), item[0]))
    return {
        "name": option.name,
        "displayName": option.display_name,
        "description": None,
        "authType": option.type,
        "gateway": option.gateway,
        "fields": [_imported_field(p) for _, p in ordered],
    }


def _ui(parameter: ConnectionParameter) -> Mapping[str, Any]:
    ui = parameter.raw.get("uiDefinition")
    return ui if isinstance(ui, Mapping) else {}


def _tab_index(parameter: ConnectionParameter) -> float:
    ui = _ui(parameter)
    constraints = ui.get("constraints")
    for source in (constraints if isinstance(constraints, Mapping) else {}, ui):
        value = source.get("tabIndex")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return float("inf")


def _choices(parameter: ConnectionParameter) -> list[dict[str, str]]:
    """Allowed values with the labels the definition gives them (`text`), if any."""
    labels: dict[str, str] = {}
    ui = _ui(parameter)
    constraints = ui.get("constraints")
    raw_lists = (
        parameter.raw.get("allowedValues"),
        constraints.get("allowedValues") if isinstance(constraints, Mapping) else None,
    )
    for raw in raw_lists:
        for entry in raw if isinstance(raw, list) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get("text"), str):
                labels[str(entry.get("value"))] = entry["text"]
    return [{"value": v, "label": labels.get(v, v)} for v in parameter.allowed_values]


def _kind(parameter: ConnectionParameter) -> str:
    if parameter.type == "gatewaySetting":
        return GATEWAY
    if parameter.secret:
        return SECRET
    if parameter.allowed_values:
        return CHOICE
    if parameter.type == "int":
        return NUMBER
    if parameter.type == "bool":
        return BOOLEAN
    return TEXT


def _imported_field(parameter: ConnectionParameter) -> dict[str, Any]:
    tooltip = _ui(parameter).get("tooltip")
    return {
        "name": parameter.name,
        "label": parameter.display_name or parameter.name,
        "kind": _kind(parameter),
        "description": parameter.description,
        "tooltip": tooltip if isinstance(tooltip, str) and tooltip else None,
        "required": parameter.required,
        "allowedValues": _choices(parameter),
        "default": parameter.default,
    }
