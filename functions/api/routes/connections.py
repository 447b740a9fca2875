from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from functions.api.bodies import json_body, parse_json, read_body, validate_model
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.openapi import request_body
from functions.api.schemas import (
    ConfirmOrigin,
    ConnectionCreate,
    ConnectionPublic,
    ConnectionShareCreate,
    ConnectionUpdate,
    ItemList,
    Offboard,
    ShareDelete,
    SharePublic,
)
from functions.domain.models import ConnectionStatus
from functions.services.connections import ConnectionInput

router = APIRouter(prefix="/api", tags=["connections"])


@router.post(
    "/connectors/{connector_id}/connections",
    status_code=201,
    response_model=ConnectionPublic,
    summary="Create a connection to a connector",
    openapi_extra=request_body(ConnectionCreate),
)
async def create_connection(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectionPublic:
    body = await json_body(request, ConnectionCreate)
    created = await gateway.connections.create(
        caller,
        connector_id,
        ConnectionInput(
            display_name=body.displayName,
            parameters=body.parameters,
            parameter_set=body.parameterSet,
        ),
    )
    return ConnectionPublic.of(created.connection, created.consent_url)


@router.get("/connections", response_model=ItemList, summary="List the connections you can use")
async def list_connections(
    caller: CurrentCaller, gateway: GatewayDep, status: ConnectionStatus | None = None
) -> ItemList:
    items = await gateway.connections.list_visible(caller)
    # ?status=reauthorization_required etc. (issue 19)
    return ItemList(value=[ConnectionPublic.of(c) for c in items if status in (None, c.status)])


@router.get(
    "/connections/{connection_id}", response_model=ConnectionPublic, summary="Get a connection"
)
async def get_connection(
    connection_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectionPublic:
    return ConnectionPublic.of(await gateway.connections.get_visible(caller, connection_id))


SHARING_STATEMENT = (
    "The grantee can now call the API through this connection with the credentials of its "
    "owner ({owner}): every call they make acts as the owner at the third-party service. "
    "They cannot read or change the credentials and cannot share the connection further. "
    "Revoke with DELETE /api/connections/{id}/shares."
)


@router.patch(
    "/connections/{connection_id}",
    response_model=ConnectionPublic,
    summary="Rename a connection or replace its credentials",
    openapi_extra=request_body(ConnectionUpdate),
)
async def update_connection(
    connection_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectionPublic:
    """Rename, or replace the credentials (owner only)."""
    body = await json_body(request, ConnectionUpdate)
    connection = await gateway.connections.update(
        caller, connection_id, body.displayName, body.parameters
    )
    return ConnectionPublic.of(connection)


@router.get(
    "/connections/{connection_id}/shares",
    response_model=ItemList,
    summary="List a connection's shares",
)
async def list_connection_shares(
    connection_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ItemList:
    return ItemList(
        value=[
            SharePublic.of(s) for s in await gateway.connections.list_shares(caller, connection_id)
        ]
    )


@router.post(
    "/connections/{connection_id}/shares",
    status_code=201,
    response_model=SharePublic,
    summary="Share a connection",
    openapi_extra=request_body(ConnectionShareCreate),
)
async def share_connection(
    connection_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> SharePublic:
    body = await json_body(request, ConnectionShareCreate)
    share = await gateway.connections.share(
        caller, connection_id, body.principal.type, body.principal.id
    )
    return SharePublic.of(
        share, SHARING_STATEMENT.format(owner=caller.name or caller.object_id, id=connection_id)
    )


@router.delete(
    "/connections/{connection_id}/shares",
    status_code=204,
    summary="Stop sharing a connection",
    openapi_extra=request_body(ShareDelete),
)
async def unshare_connection(
    connection_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> Response:
    body = await json_body(request, ShareDelete)
    await gateway.connections.unshare(caller, connection_id, body.principal.type, body.principal.id)
    return Response(status_code=204)


@router.get("/connections/{connection_id}/activity", summary="A connection's recent activity")
async def connection_activity(
    connection_id: str,
    caller: CurrentCaller,
    gateway: GatewayDep,
    hours: int = Query(default=24, ge=1, le=24 * 90),
) -> dict[str, Any]:
    """Audit records of the connection, newest first (owner and admins)."""
    records = await gateway.connections.activity(caller, connection_id, timedelta(hours=hours))
    return {"value": records}


@router.get("/me/activity", summary="Your recent activity")
async def my_activity(
    caller: CurrentCaller, gateway: GatewayDep, hours: int = Query(default=24, ge=1, le=24 * 90)
) -> dict[str, Any]:
    """What the caller did through the gateway, newest first."""
    records = await gateway.connections.my_activity(caller, timedelta(hours=hours))
    return {"value": records}


@router.delete("/me", status_code=200, summary="Delete your connections and grants")
async def delete_my_data(caller: CurrentCaller, gateway: GatewayDep) -> dict[str, int]:
    """Delete the caller's connections (credentials purged, so grants on them stop
    working) and the grants they hold. Connectors they own stay until an admin
    reassigns them (POST /api/admin/principals/{id}/offboard)."""
    return await gateway.connections.delete_my_data(caller)


@router.get("/admin/connections", response_model=ItemList, summary="List every connection (admins)")
async def admin_list_connections(caller: CurrentCaller, gateway: GatewayDep) -> ItemList:
    return ItemList(
        value=[ConnectionPublic.of(c) for c in await gateway.connections.admin_list(caller)]
    )


@router.post(
    "/admin/connections/{connection_id}/disable",
    response_model=ConnectionPublic,
    summary="Disable a connection (admins)",
)
async def admin_disable(
    connection_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectionPublic:
    return ConnectionPublic.of(
        await gateway.connections.admin_set_disabled(caller, connection_id, True)
    )


@router.post(
    "/admin/connections/{connection_id}/enable",
    response_model=ConnectionPublic,
    summary="Enable a connection again (admins)",
)
async def admin_enable(
    connection_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectionPublic:
    return ConnectionPublic.of(
        await gateway.connections.admin_set_disabled(caller, connection_id, False)
    )


@router.post(
    "/admin/principals/{object_id}/offboard",
    summary="Offboard a user or app (admins)",
    openapi_extra=request_body(Offboard),
)
async def admin_offboard(
    object_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> dict[str, int]:
    """A principal leaves: transfer their connections and connectors to a named new
    owner, or disable their connections."""
    body = await json_body(request, Offboard)
    return await gateway.connections.offboard(caller, object_id, body.action, body.newOwner)


@router.post(
    "/connections/{connection_id}/reauthorize", summary="Start a new OAuth consent for a connection"
)
async def reauthorize(
    connection_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> dict[str, str | None]:
    """A fresh consent URL for an OAuth connection; its id (and shares) stay."""
    url = await gateway.connections.reauthorize(caller, connection_id)
    return {"id": connection_id, "consentUrl": url or None}


@router.post(
    "/connections/{connection_id}/confirm-origin",
    response_model=ConnectionPublic,
    summary="Confirm a connection's credentials may go to its connector's new origin",
    openapi_extra=request_body(ConfirmOrigin, example={"origin": "https://api.example.com:443"}),
)
async def confirm_origin(
    connection_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectionPublic:
    """The owner agrees that the connection's credentials go where the connector points
    now (after its maker changed its origin or credential injection). Optional body
    {"origin": "https://host"}: confirm only if that is still the connector's origin."""
    raw = await read_body(request, 64 * 1024)
    body = validate_model(ConfirmOrigin, parse_json(raw)) if raw.strip() else ConfirmOrigin()
    connection = await gateway.connections.confirm_origin(caller, connection_id, body.origin)
    return ConnectionPublic.of(connection)


@router.delete("/connections/{connection_id}", status_code=204, summary="Delete a connection")
async def delete_connection(
    connection_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> Response:
    await gateway.connections.delete(caller, connection_id)
    return Response(status_code=204)
