"""Dependencies shared by routes: the gateway container and the authenticated caller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from functions.identity.principal import Principal

if TYPE_CHECKING:
    from functions.container import Gateway


async def get_gateway(request: Request) -> Gateway:
    # `async` on purpose: FastAPI runs a plain `def` dependency in its thread pool,
    # a thread hand-off on every request for what is an attribute read.
    gateway: Gateway = request.app.state.gateway
    return gateway


if TYPE_CHECKING:
    GatewayDep = Annotated[Gateway, Depends(get_gateway)]
else:
    # At run time the container module (and everything it builds: SDK clients, msal,
    # the on-premises relay) is imported only when the app starts, not when
    # function_app.py is imported: the Functions cold start pays for routes only.
    GatewayDep = Annotated[Any, Depends(get_gateway)]


async def get_caller(request: Request, gateway: GatewayDep) -> Principal:
    principal = await gateway.tokens.authenticate(request.headers.get("authorization"))
    request.state.principal = principal
    return principal


CurrentCaller = Annotated[Principal, Depends(get_caller)]
