"""Reading connector definitions without changing anything (issue 16).

    GET  /api/connectors/{id}/connection-form   the fields a new connection asks for
    POST /api/connectors/inspect                what an import would give, nothing stored

The portal uses both, like any other client: the form is drawn from the first, and
makers see the second (auth options, operations, policies, warnings) before saving with
`POST /api/connectors/import`, which the inspect answer's `files` can be sent to as is.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from functions.api.bodies import check_json_depth, json_body, read_body, validate_model
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.openapi import IMPORT_MULTIPART, request_body
from functions.api.schemas import ConnectorImport
from functions.errors import ValidationFailedError
from functions.powerplatform import (
    API_DEFINITION_FILE,
    API_PROPERTIES_FILE,
    inspect_dict,
    parse_json_document,
)
from functions.services.connection_forms import connection_form
from functions.services.connectors import ImportedDefinition
from functions.services.definition_packages import read_package

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
FORM_FIELDS = ("apiDefinition", "apiProperties", "script", "package")

router = APIRouter(prefix="/api/connectors", tags=["connectors"])


@router.get(
    "/{connector_id}/connection-form",
    summary="The form a user fills in to create a connection to a connector",
)
async def get_connection_form(
    connector_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> dict[str, Any]:
    connector = await gateway.connectors.get_visible(caller, connector_id)
    definition = (
        (await gateway.connectors.definition(connector)).parsed
        if connector.source == "powerplatform"
        else None
    )
    return connection_form(connector, definition)


@router.post(
    "/inspect",
    summary="Inspect a Power Platform definition before importing it (nothing is stored)",
    openapi_extra=request_body(ConnectorImport, extra_content=IMPORT_MULTIPART),
)
async def inspect_upload(request: Request, caller: CurrentCaller) -> dict[str, Any]:
    """Multipart files `apiDefinition`, `apiProperties` (and `script`), or one zip of
    the folder as `package`; or the JSON body `POST /api/connectors/import` takes.
    Answers `{inspect, files}`: the inspect summary and the files as read."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        files = await _multipart_files(request)
    else:
        body = await json_body(request, ConnectorImport, limit=MAX_UPLOAD_BYTES)
        files = {
            "apiDefinition": body.apiDefinition,
            "apiProperties": body.apiProperties,
            "script": body.script,
        }
    parsed = ImportedDefinition(
        files["apiDefinition"], files["apiProperties"], files["script"]
    ).parse()
    return {"inspect": inspect_dict(parsed), "files": files}


async def _multipart_files(request: Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_UPLOAD_BYTES)
    request._body = raw  # the form parser reads the body we already bounded
    form = await request.form(max_files=4, max_fields=4, max_part_size=MAX_UPLOAD_BYTES)
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        errors = [{"field": name, "message": "unknown field"} for name in unknown]
        raise ValidationFailedError("unknown form fields: " + ", ".join(unknown), errors=errors)

    async def content(field: str) -> bytes | None:
        part = form.get(field)
        if part is None:
            return None
        return await part.read() if isinstance(part, UploadFile) else part.encode("utf-8")

    package = await content("package")
    if package is not None:
        files = read_package(package)
        check_json_depth(files, what="the uploaded package")
        return files
    definition = await content("apiDefinition")
    if definition is None:
        message = f"upload {API_DEFINITION_FILE} (field apiDefinition) or a zip (field package)"
        raise ValidationFailedError(
            message, errors=[{"field": "apiDefinition", "message": "required"}]
        )
    properties = await content("apiProperties")
    script = await content("script")
    data = {
        "apiDefinition": parse_json_document(API_DEFINITION_FILE, definition),
        "apiProperties": parse_json_document(API_PROPERTIES_FILE, properties)
        if properties is not None
        else {},
        "script": script.decode("utf-8", errors="replace") if script is not None else None,
    }
    check_json_depth(data, what="the uploaded files")
    validate_model(ConnectorImport, data)
    return data
