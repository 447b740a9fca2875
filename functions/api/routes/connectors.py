from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from functions.api.bodies import json_body, read_body, validate_model
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.schemas import (
    ConnectorCreate,
    ConnectorImport,
    ConnectorPublic,
    ConnectorShareCreate,
    ItemList,
    OAuthClientUpdate,
    ShareDelete,
    SharePublic,
    auth_scheme,
    oauth_client_input,
)
from functions.errors import ValidationFailedError
from functions.powerplatform import (
    API_DEFINITION_FILE,
    API_PROPERTIES_FILE,
    inspect_dict,
    parse_json_document,
)
from functions.services.connectors import ConnectorInput, ImportedDefinition, OAuthClientInput

# Imported definitions are documents of a few MiB at most.
MAX_IMPORT_BYTES = 16 * 1024 * 1024

router = APIRouter(prefix="/api/connectors", tags=["connectors"])


def _input(body: ConnectorCreate) -> ConnectorInput:
    return ConnectorInput(
        name=body.name,
        base_url=body.baseUrl,
        auth=auth_scheme(body.auth),
        description=body.description,
        oauth_client=oauth_client_input(body.auth),
        allow_connection_sharing=body.allowConnectionSharing,
        propagate_trace_context=body.traceContextPropagation,
    )


@router.post("", status_code=201, response_model=ConnectorPublic)
async def create_connector(
    request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    body = await json_body(request, ConnectorCreate)
    connector = await gateway.connectors.create(caller, _input(body))
    return ConnectorPublic.of(connector)


@router.post("/import", status_code=201, response_model=ConnectorPublic)
async def import_connector(
    request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    """Import a Power Platform definition pair, unchanged: multipart files
    `apiDefinition`, `apiProperties` (and `script`), or JSON {apiDefinition, apiProperties}."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        body = await _multipart_import(request)
    else:
        body = await json_body(request, ConnectorImport, limit=MAX_IMPORT_BYTES)
    imported = ImportedDefinition(body.apiDefinition, body.apiProperties, body.script)
    connector, definition = await gateway.connectors.import_definition(
        caller, imported, base_url=body.baseUrl, name=body.name
    )
    return ConnectorPublic.of(connector, inspect_dict(definition))


async def _multipart_import(request: Request) -> ConnectorImport:
    raw = await read_body(request, MAX_IMPORT_BYTES)
    request._body = raw  # the form parser reads the body we already bounded
    form = await request.form(max_files=3, max_fields=10, max_part_size=MAX_IMPORT_BYTES)
    data: dict[str, Any] = {}
    files = {"apiDefinition": API_DEFINITION_FILE, "apiProperties": API_PROPERTIES_FILE}
    for field, file_name in files.items():
        part = form.get(field)
        if part is None:
            continue
        content = await part.read() if isinstance(part, UploadFile) else part.encode("utf-8")
        # Errors name the file as makers know it, with line and column.
        data[field] = parse_json_document(file_name, content)
    if "apiDefinition" not in data:
        message = f"the {API_DEFINITION_FILE} file is required (form field apiDefinition)"
        raise ValidationFailedError(
            message, errors=[{"field": "apiDefinition", "message": "required"}]
        )
    script = form.get("script")
    if script is not None:
        content = await script.read() if isinstance(script, UploadFile) else script.encode("utf-8")
        data["script"] = content.decode("utf-8", errors="replace")
    for field in ("baseUrl", "name"):
        value = form.get(field)
        if isinstance(value, str) and value:
            data[field] = value
    unknown = set(form.keys()) - {*files, "script", "baseUrl", "name"}
    if unknown:
        errors = [{"field": name, "message": "unknown field"} for name in sorted(unknown)]
        raise ValidationFailedError(
            "unknown form fields: " + ", ".join(sorted(unknown)), errors=errors
        )
    return validate_model(ConnectorImport, data)


@router.get("", response_model=ItemList)
async def list_connectors(caller: CurrentCaller, gateway: GatewayDep) -> ItemList:
    items = await gateway.connectors.list_visible(caller)
    return ItemList(value=[ConnectorPublic.of(c) for c in items])


@router.get("/{connector_id}", response_model=ConnectorPublic)
async def get_connector(
    connector_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    connector = await gateway.connectors.get_visible(caller, connector_id)
    summary = None
    if connector.source == "powerplatform":
        summary = inspect_dict((await gateway.connectors.definition(connector)).parsed)
    return ConnectorPublic.of(connector, summary)


@router.get("/{connector_id}/export")
async def export_connector(
    connector_id: str,
    caller: CurrentCaller,
    gateway: GatewayDep,
    connectionId: str | None = None,
    clientId: str | None = None,
) -> dict[str, Any]:
    """A Power Platform definition pair that calls this connector through the gateway.

    Hosts it at the gateway, routes every operation through `connections/{connectionId}/
    invoke` (the gateway matches the operation and runs its policies and credentials), and
    authenticates with Entra ID for the gateway's own app registration. It carries no
    credentials and no policies. `connectionId` bakes one of the caller's connections in.
    """
    exported = await gateway.connectors.export(
        caller, connector_id, connection_id=connectionId, client_id=clientId
    )
    return {"apiDefinition": exported[0], "apiProperties": exported[1]}


@router.get("/{connector_id}/shares", response_model=ItemList)
async def list_connector_shares(
    connector_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ItemList:
    return ItemList(
        value=[
            SharePublic.of(s) for s in await gateway.connectors.list_shares(caller, connector_id)
        ]
    )


@router.post("/{connector_id}/shares", status_code=201, response_model=SharePublic)
async def share_connector(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> SharePublic:
    """Let others see the connector and create their own connections (`user`), or
    co-own it (`owner`). Grantees never see the OAuth client secret."""
    body = await json_body(request, ConnectorShareCreate)
    share = await gateway.connectors.share(
        caller, connector_id, body.principal.type, body.principal.id, body.role
    )
    return SharePublic.of(share)


@router.delete("/{connector_id}/shares", status_code=204)
async def unshare_connector(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> Response:
    body = await json_body(request, ShareDelete)
    await gateway.connectors.unshare(caller, connector_id, body.principal.type, body.principal.id)
    return Response(status_code=204)


@router.put("/{connector_id}/oauth-client", response_model=ConnectorPublic)
async def set_oauth_client(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    """Set or rotate the connector's OAuth client (imported connectors get theirs here)."""
    body = await json_body(request, OAuthClientUpdate)
    connector = await gateway.connectors.set_oauth_client(
        caller, connector_id, OAuthClientInput(body.clientId, body.clientSecret, body.redirectUri)
    )
    return ConnectorPublic.of(connector)


@router.put("/{connector_id}", response_model=ConnectorPublic)
async def replace_connector(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    body = await json_body(request, ConnectorCreate)
    return ConnectorPublic.of(await gateway.connectors.replace(caller, connector_id, _input(body)))


@router.delete("/{connector_id}", status_code=204)
async def delete_connector(
    connector_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> Response:
    await gateway.connectors.delete(caller, connector_id)
    return Response(status_code=204)
