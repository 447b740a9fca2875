from __future__ import annotations

from fastapi import APIRouter, Request, Response

from functions.api.bodies import json_body
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.schemas import ConnectionCreate, ConnectionPublic, ItemList
from functions.services.connections import ConnectionInput

router = APIRouter(prefix="/api", tags=["connections"])


@router.post("/connectors/{connector_id}/connections", status_code=201, response_model=ConnectionPublic)
async def create_connection(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectionPublic:
    body = await json_body(request, ConnectionCreate)
    created = await gateway.connections.create(
        caller, connector_id, ConnectionInput(
            display_name=body.displayName, parameters=body.parameters, parameter_set=body.parameterSet
        )
    )
    return ConnectionPublic.of(created.connection, created.consent_url)


@router.get("/connections", response_model=ItemList)
async def list_connections(caller: CurrentCaller, gateway: GatewayDep) -> ItemList:
    items = await gateway.connections.list_visible(caller)
    return ItemList(value=[ConnectionPublic.of(c) for c in items])


@router.get("/connections/{connection_id}", response_model=ConnectionPublic)
async def get_connection(connection_id: str, caller: CurrentCaller, gateway: GatewayDep) -> ConnectionPublic:
    return ConnectionPublic.of(await gateway.connections.get_visible(caller, connection_id))


@router.post("/connections/{connection_id}/reauthorize")
async def reauthorize(connection_id: str, caller: CurrentCaller, gateway: GatewayDep) -> dict[str, str | None]:
    """A fresh consent URL for an OAuth connection; its id (and shares) stay."""
    url = await gateway.connections.reauthorize(caller, connection_id)
    return {"id": connection_id, "consentUrl": url or None}


@router.delete("/connections/{connection_id}", status_code=204)
async def delete_connection(connection_id: str, caller: CurrentCaller, gateway: GatewayDep) -> Response:
    await gateway.connections.delete(caller, connection_id)
    return Response(status_code=204)
