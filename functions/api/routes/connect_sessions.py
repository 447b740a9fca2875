"""Connect links (issue 16); the rules are in functions/services/connect_sessions.py.

    POST /api/connect-sessions           {connectorId, displayName?, returnUrl, expiresInSeconds?}
                                         (apps and admins) -> 201 {link, expiresAt, ...}
    POST /api/connect-sessions/open      {token} -> the connector's connection form
    POST /api/connect-sessions/complete  {token, displayName, parameters, parameterSet?}
                                         -> 201 {connection, redirectUrl}

The token travels in bodies, never in a URL the gateway logs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from functions.api.bodies import json_body
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.openapi import request_body
from functions.api.schemas import ConnectionPublic, Strict
from functions.services.connections import ConnectionInput

router = APIRouter(prefix="/api/connect-sessions", tags=["connect sessions"])


class ConnectSessionCreate(Strict):
    connectorId: str = Field(min_length=1, max_length=64)
    displayName: str | None = Field(default=None, min_length=1, max_length=200)
    returnUrl: str = Field(min_length=1, max_length=2048)
    expiresInSeconds: int = Field(default=1800, ge=5, le=7 * 24 * 3600)


class ConnectSessionToken(Strict):
    token: str = Field(min_length=1, max_length=200)


class ConnectSessionComplete(Strict):
    token: str = Field(min_length=1, max_length=200)
    displayName: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameterSet: str | None = Field(default=None, min_length=1, max_length=200)


@router.post(
    "",
    status_code=201,
    summary="Create a single-use connect link for one connector (apps and admins)",
    openapi_extra=request_body(
        ConnectSessionCreate,
        example={"connectorId": "0" * 32, "returnUrl": "https://app.example.com/connected"},
    ),
)
async def create_connect_session(
    request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> dict[str, Any]:
    body = await json_body(request, ConnectSessionCreate)
    created = await gateway.connect_sessions.create(
        caller,
        body.connectorId,
        body.returnUrl,
        body.displayName,
        timedelta(seconds=body.expiresInSeconds),
        base_url=str(request.base_url),
    )
    return {
        "link": created.link,
        "token": created.token,
        "connectorId": created.session.connector_id,
        "expiresAt": created.session.expires_at.isoformat(),
    }


@router.post(
    "/open",
    summary="Open a connect link: the connector and its connection form",
    openapi_extra=request_body(ConnectSessionToken, example={"token": "link-token-from-the-fragment"}),
)
async def open_connect_session(
    request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> dict[str, Any]:
    body = await json_body(request, ConnectSessionToken)
    result: dict[str, Any] = await gateway.connect_sessions.open(caller, body.token)
    return result


@router.post(
    "/complete",
    status_code=201,
    summary="Create your connection through a connect link",
    openapi_extra=request_body(
        ConnectSessionComplete,
        example={"token": "link-token-from-the-fragment", "displayName": "My account", "parameters": {"api_key": "..."}},
    ),
)
async def complete_connect_session(
    request: Request, caller: CurrentCaller, gateway: GatewayDep
) -> dict[str, Any]:
    body = await json_body(request, ConnectSessionComplete)
    completed = await gateway.connect_sessions.complete(
        caller,
        body.token,
        ConnectionInput(body.displayName, body.parameters, body.parameterSet),
    )
    connection = ConnectionPublic.of(completed.created.connection, completed.created.consent_url)
    return {"connection": connection.model_dump(mode="json"), "redirectUrl": completed.redirect_url}
