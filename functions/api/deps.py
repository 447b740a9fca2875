"""Dependencies shared by routes: the gateway container and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from functions.container import Gateway
from functions.identity.principal import Principal


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_caller(request: Request, gateway: GatewayDep) -> Principal:
    principal = await gateway.tokens.authenticate(request.headers.get("authorization"))
    request.state.principal = principal
    return principal


CurrentCaller = Annotated[Principal, Depends(get_caller)]
