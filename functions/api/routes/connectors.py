from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.datastructures import UploadFile

from functions.api.bodies import check_json_depth, json_body, read_body, validate_model
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.openapi import IMPORT_MULTIPART, request_body
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
    describe_definition,
    oauth_client_input,
)
from functions.errors import BadRequestError, ValidationFailedError
from functions.mcp.service import McpService
from functions.powerplatform import (
    API_DEFINITION_FILE,
    API_PROPERTIES_FILE,
    parse_json_document,
)
from functions.services.connectors import ConnectorInput, ImportedDefinition, OAuthClientInput

router = APIRouter(prefix="/api/connectors", tags=["connectors"])


def _input(body: ConnectorCreate) -> ConnectorInput:
    return ConnectorInput(
        name=body.name,
        base_url=body.baseUrl,
        auth=auth_scheme(body.auth),
        description=body.description,
        oauth_client=oauth_client_input(body.auth),
        allow_connection_sharing=body.allowConnectionSharing,
        calls_per_minute=body.callsPerMinute,
        propagate_trace_context=body.traceContextPropagation,
    )


@router.post(
    "",
    status_code=201,
    response_model=ConnectorPublic,
    summary="Create a connector",
    openapi_extra=request_body(ConnectorCreate),
)
async def create_connector(
    request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    body = await json_body(request, ConnectorCreate)
    connector = await gateway.connectors.create(caller, _input(body))
    return ConnectorPublic.of(connector)


@router.post(
    "/import",
    status_code=201,
    response_model=ConnectorPublic,
    summary="Import a Power Platform connector",
    openapi_extra=request_body(ConnectorImport, extra_content=IMPORT_MULTIPART),
)
async def import_connector(
    request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    """Import a Power Platform definition pair, unchanged: multipart files
    `apiDefinition`, `apiProperties` (and `script`), or JSON {apiDefinition, apiProperties}.
    Optional `clientSecret` (form field or JSON): the secret of the definition's own
    OAuth client id (write-only, as `paconn create --secret`)."""
    # The whole upload is bounded by GATEWAY_MAX_DEFINITION_BYTES (413
    # definition_too_large); the operation count by the service (422).
    limit = gateway.settings.max_definition_bytes
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        body = await _multipart_import(request, limit)
    else:
        body = await json_body(
            request, ConnectorImport, limit=limit, too_large="definition_too_large"
        )
    imported = ImportedDefinition(body.apiDefinition, body.apiProperties, body.script)
    connector, definition = await gateway.connectors.import_definition(
        caller, imported, base_url=body.baseUrl, name=body.name, client_secret=body.clientSecret
    )
    return ConnectorPublic.of(connector, await asyncio.to_thread(describe_definition, definition))


def _parse_file(file_name: str, content: bytes) -> dict[str, Any]:
    """Parse one uploaded file (in a worker thread); errors name the file."""
    try:
        document = parse_json_document(file_name, content)
    except ValueError:
        # Not a syntax error (those are DefinitionErrors): an integer literal longer
        # than Python converts.
        raise BadRequestError(
            f"{file_name} holds a number with too many digits", code="json_number_too_long"
        ) from None
    check_json_depth(document, what=file_name)
    return document


async def _multipart_import(request: Request, limit: int) -> ConnectorImport:
    raw = await read_body(request, limit, code="definition_too_large")
    request._body = raw  # the form parser reads the body we already bounded
    form = await request.form(max_files=3, max_fields=10, max_part_size=limit)
    data: dict[str, Any] = {}
    files = {"apiDefinition": API_DEFINITION_FILE, "apiProperties": API_PROPERTIES_FILE}
    for field, file_name in files.items():
        part = form.get(field)
        if part is None:
            continue
        content = await part.read() if isinstance(part, UploadFile) else part.encode("utf-8")
        # Errors name the file as makers know it, with line and column.
        data[field] = await asyncio.to_thread(_parse_file, file_name, content)
    if "apiDefinition" not in data:
        message = f"the {API_DEFINITION_FILE} file is required (form field apiDefinition)"
        raise ValidationFailedError(
            message, errors=[{"field": "apiDefinition", "message": "required"}]
        )
    script = form.get("script")
    if script is not None:
        content = await script.read() if isinstance(script, UploadFile) else script.encode("utf-8")
        data["script"] = content.decode("utf-8", errors="replace")
    for field in ("baseUrl", "name", "clientSecret"):
        value = form.get(field)
        if isinstance(value, str) and value:
            data[field] = value
    unknown = set(form.keys()) - {*files, "script", "baseUrl", "name", "clientSecret"}
    if unknown:
        errors = [{"field": name, "message": "unknown field"} for name in sorted(unknown)]
        raise ValidationFailedError(
            "unknown form fields: " + ", ".join(sorted(unknown)), errors=errors
        )
    return validate_model(ConnectorImport, data)


@router.get("", response_model=ItemList, summary="List the connectors you can see")
async def list_connectors(caller: CurrentCaller, gateway: GatewayDep) -> ItemList:
    items = await gateway.connectors.list_visible(caller)
    return ItemList(value=[ConnectorPublic.of(c) for c in items])


@router.get("/{connector_id}", response_model=ConnectorPublic, summary="Get a connector")
async def get_connector(
    connector_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    connector = await gateway.connectors.get_visible(caller, connector_id)
    summary = None
    if connector.source == "powerplatform":
        parsed = (await gateway.connectors.definition(connector)).parsed
        summary = await asyncio.to_thread(describe_definition, parsed)
    return ConnectorPublic.of(connector, summary)


@router.get("/{connector_id}/export", summary="Export a connector for Power Platform")
async def export_connector(
    connector_id: str,
    caller: CurrentCaller,
    gateway: GatewayDep,
    connectionId: str | None = None,
    clientId: str | None = None,
    as_: Annotated[Literal["powerplatform", "mcp"], Query(alias="as")] = "powerplatform",
) -> dict[str, Any]:
    """A Power Platform definition pair that calls this connector through the gateway.

    `as=mcp`: instead, the custom connector Copilot Studio uses to add the gateway's MCP
    endpoint to an agent (functions/mcp/export.py, docs/mcp.md): one POST operation on
    `/api/mcp/connections/{connectionId}` (or `/api/mcp` without a connection) marked
    `x-ms-agentic-protocol: mcp-streamable-1.0`, Entra ID sign-in to the gateway.

    Hosts it at the gateway, routes every operation through `connections/{connectionId}/
    invoke` (the gateway matches the operation and runs its policies and credentials), and
    authenticates with Entra ID for the gateway's own app registration. It carries no
    credentials and no policies. `connectionId` bakes one of the caller's connections in.
    """
    if as_ == "mcp":
        exported = await McpService.from_gateway(gateway).export_for_copilot_studio(
            caller, connector_id, connection_id=connectionId, client_id=clientId
        )
        return {"apiDefinition": exported[0], "apiProperties": exported[1]}
    exported = await gateway.connectors.export(
        caller, connector_id, connection_id=connectionId, client_id=clientId
    )
    return {"apiDefinition": exported[0], "apiProperties": exported[1]}


@router.get("/{connector_id}/shares", response_model=ItemList, summary="List a connector's shares")
async def list_connector_shares(
    connector_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ItemList:
    return ItemList(
        value=[
            SharePublic.of(s) for s in await gateway.connectors.list_shares(caller, connector_id)
        ]
    )


@router.post(
    "/{connector_id}/shares",
    status_code=201,
    response_model=SharePublic,
    summary="Share a connector",
    openapi_extra=request_body(ConnectorShareCreate),
)
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


@router.delete(
    "/{connector_id}/shares",
    status_code=204,
    summary="Stop sharing a connector",
    openapi_extra=request_body(ShareDelete),
)
async def unshare_connector(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> Response:
    body = await json_body(request, ShareDelete)
    await gateway.connectors.unshare(caller, connector_id, body.principal.type, body.principal.id)
    return Response(status_code=204)


@router.put(
    "/{connector_id}/oauth-client",
    response_model=ConnectorPublic,
    summary="Set a connector's OAuth client",
    openapi_extra=request_body(OAuthClientUpdate),
)
async def set_oauth_client(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    """Set or rotate the connector's OAuth client (imported connectors get theirs here)."""
    body = await json_body(request, OAuthClientUpdate)
    if body.clientSecret is not None and body.clientCertificate is not None:
        message = "give clientSecret or clientCertificate, not both"
        raise ValidationFailedError(
            message, errors=[{"field": "clientCertificate", "message": message}]
        )
    if body.clientCertificate is not None and "-----BEGIN " not in body.clientCertificate:
        message = "clientCertificate must be PEM: the private key and its certificate"
        raise ValidationFailedError(
            message, errors=[{"field": "clientCertificate", "message": message}]
        )
    credential = body.clientCertificate or body.clientSecret
    connector = await gateway.connectors.set_oauth_client(
        caller, connector_id, OAuthClientInput(body.clientId, credential, body.redirectUri)
    )
    return ConnectorPublic.of(connector)


@router.put(
    "/{connector_id}",
    response_model=ConnectorPublic,
    summary="Replace a connector",
    openapi_extra=request_body(ConnectorCreate),
)
async def replace_connector(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    body = await json_body(request, ConnectorCreate)
    return ConnectorPublic.of(await gateway.connectors.replace(caller, connector_id, _input(body)))


@router.delete("/{connector_id}", status_code=204, summary="Delete a connector")
async def delete_connector(
    connector_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> Response:
    await gateway.connectors.delete(caller, connector_id)
    return Response(status_code=204)
