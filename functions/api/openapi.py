"""The OpenAPI document and the interactive docs (`/api/docs`), offline.

FastAPI's automatic body parsing is not used (api/bodies.py says why), so request bodies
are documented here: routes name their model with `request_body(Model)` in
`openapi_extra`, and `build_openapi` adds the models' schemas to the components. The
document also declares the bearer scheme (Swagger UI's Authorize button takes a token
from `python -m functions token`), documents every error as problem+json, and marks the
anonymous operations (`security: []`).

Swagger UI's files are vendored under `functions/api/static/swagger-ui/` (SOURCE.txt
names the version and checksums; docs/decisions.md says why not a CDN or node_modules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from starlette.requests import Request
from starlette.staticfiles import StaticFiles

from functions.api.problems import PROBLEM_JSON

DOCS_URL = "/api/docs"
OPENAPI_URL = "/api/openapi.json"
ASSETS_URL = "/api/docs/assets"
ASSETS_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
BEARER_SCHEME = "bearerAuth"

DESCRIPTION = """\
A self-hosted gateway for custom connectors: makers define connectors (base URL and
authentication), users create connections holding their credentials, and callers invoke
the upstream APIs through the gateway without ever holding those credentials.

Every operation but `/api/health` and `/api/oauth/callback` needs a bearer token: an
Entra ID token for the gateway's API, or locally a development token from
`python -m functions token --user alice` (use **Authorize** above). Errors are RFC 9457
problem+json documents with a stable `code`.
"""

# Models documented as request bodies, by schema name (filled by `request_body`).
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def request_body(
    model: type[BaseModel],
    *,
    example: dict[str, Any] | None = None,
    description: str | None = None,
    extra_content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`openapi_extra` for a route that parses `model` from a JSON body by hand. The
    example defaults to the model's first `json_schema_extra` example."""
    _BODY_MODELS[model.__name__] = model
    if example is None:
        extra = model.model_config.get("json_schema_extra")
        examples = extra.get("examples") if isinstance(extra, dict) else None
        if not isinstance(examples, list) or not examples or not isinstance(examples[0], dict):
            raise ValueError(f"{model.__name__} has no example to document")
        example = dict(examples[0])
    content: dict[str, Any] = {
        "application/json": {
            "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
            "example": example,
        }
    }
    content.update(extra_content or {})
    body: dict[str, Any] = {"required": True, "content": content}
    if description:
        body["description"] = description
    return {"requestBody": body}


# `openapi_extra` of the operations that need no token.
ANONYMOUS: dict[str, Any] = {"security": []}

_BINARY = {"type": "string", "format": "binary"}

# The import route also takes the folder's files as they are (the CLI sends these).
IMPORT_MULTIPART: dict[str, Any] = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["apiDefinition"],
            "properties": {
                "apiDefinition": {**_BINARY, "description": "apiDefinition.swagger.json"},
                "apiProperties": {**_BINARY, "description": "apiProperties.json"},
                "script": {**_BINARY, "description": "script.csx"},
                "baseUrl": {"type": "string", "description": "replaces the definition's host"},
                "name": {"type": "string", "description": "default: the definition's title"},
            },
        }
    }
}

GATEWAY_EXAMPLE: dict[str, Any] = {
    "name": "datacenter-1",
    "publicKey": "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC...\n-----END PUBLIC KEY-----\n",
}

# The raw invoke route forwards any body, and relays whatever the upstream answers.
INVOKE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "Forwarded to the upstream unchanged (with its Content-Type)",
        "content": {
            "application/json": {"schema": {}},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}
UPSTREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The upstream's answer, relayed: status, headers and body",
        "content": {"*/*": {"schema": {}}},
    },
    "default": {
        "description": "The upstream's answer with another status, or a gateway error as "
        "problem+json (`code` says which)",
        "content": {"*/*": {"schema": {}}},
    },
}

_HTML_PAGE = {"text/html": {"schema": {"type": "string"}}}
CALLBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Connected: a page saying so", "content": _HTML_PAGE},
    400: {"description": "Denied, or a state that is unknown or expired", "content": _HTML_PAGE},
    500: {"description": "The gateway failed to complete the connection", "content": _HTML_PAGE},
    502: {"description": "The provider refused the code", "content": _HTML_PAGE},
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; `code` is stable, `detail` says what and where.",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "correlationId": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

_PROBLEM_RESPONSE: dict[str, Any] = {
    "description": "An error, as problem+json",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=DESCRIPTION,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, model in sorted(_BODY_MODELS.items()):
        schema = model.model_json_schema(
            ref_template="#/components/schemas/{model}", mode="validation"
        )
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        schemas[name] = schema
    schemas["Problem"] = PROBLEM_SCHEMA
    # FastAPI's own validation-error shapes are never sent: errors are problem+json.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {
        BEARER_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Entra ID access token for the gateway's API; locally "
            "`python -m functions token --user alice`.",
        }
    }
    document["security"] = [{BEARER_SCHEME: []}]
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {**_PROBLEM_RESPONSE, "description": "Validation failed"}
            responses.setdefault("default", _PROBLEM_RESPONSE)
    app.openapi_schema = document
    return document


def install_docs(app: FastAPI) -> None:
    """`/api/openapi.json`, `/api/docs` and its assets; no request leaves the gateway."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            # No validator badge (it would send the document's URL to swagger.io), and
            # the token typed into Authorize is not persisted (Swagger UI would keep it
            # in localStorage).
            swagger_ui_parameters={"validatorUrl": None, "displayRequestDuration": True},
        )

    app.add_route(DOCS_URL, docs, include_in_schema=False)
