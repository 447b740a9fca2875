from __future__ import annotations

from fastapi import APIRouter, Request, Response

from functions.api.bodies import json_body
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.schemas import ConnectorCreate, ConnectorPublic, ItemList, auth_scheme
from functions.services.connectors import ConnectorInput

router = APIRouter(prefix="/api/connectors", tags=["connectors"])


def _input(body: ConnectorCreate) -> ConnectorInput:
    return ConnectorInput(
        name=body.name, base_url=body.baseUrl, auth=auth_scheme(body.auth), description=body.description
    )


@router.post("", status_code=201, response_model=ConnectorPublic)
async def create_connector(request: Request, caller: CurrentCaller, gateway: GatewayDep) -> ConnectorPublic:
    body = await json_body(request, ConnectorCreate)
    connector = await gateway.connectors.create(caller, _input(body))
    return ConnectorPublic.of(connector)


@router.get("", response_model=ItemList)
async def list_connectors(caller: CurrentCaller, gateway: GatewayDep) -> ItemList:
    items = await gateway.connectors.list_visible(caller)
    return ItemList(value=[ConnectorPublic.of(c) for c in items])


@router.get("/{connector_id}", response_model=ConnectorPublic)
async def get_connector(connector_id: str, caller: CurrentCaller, gateway: GatewayDep) -> ConnectorPublic:
    return ConnectorPublic.of(await gateway.connectors.get_visible(caller, connector_id))


@router.put("/{connector_id}", response_model=ConnectorPublic)
async def replace_connector(
    connector_id: str, request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> ConnectorPublic:
    body = await json_body(request, ConnectorCreate)
    return ConnectorPublic.of(await gateway.connectors.replace(caller, connector_id, _input(body)))


@router.delete("/{connector_id}", status_code=204)
async def delete_connector(connector_id: str, caller: CurrentCaller, gateway: GatewayDep) -> Response:
    await gateway.connectors.delete(caller, connector_id)
    return Response(status_code=204)
