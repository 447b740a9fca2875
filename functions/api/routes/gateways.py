"""On-premises gateways: register an agent's public key, list gateways with status.

    POST /api/gateways          {name, publicKey}  -> 201 the gateway (owner = the caller)
    GET  /api/gateways          the caller's gateways, each with status/lastSeen/version
    GET  /api/gateways/{id}     one of the caller's gateways (others: 404)

Heartbeats do not come through here: agents write them to Table Storage (see
functions/onprem/README.md), so no long-lived gateway token lives on agent machines.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from functions.api.bodies import json_body
from functions.api.deps import CurrentCaller
from functions.api.openapi import GATEWAY_EXAMPLE, request_body
from functions.errors import ValidationFailedError
from functions.onprem import names
from functions.onprem.errors import GatewayNotFoundError
from functions.onprem.keys import load_public_key
from functions.onprem.registry import GatewayRecord, GatewayRegistry
from functions.services.ids import is_valid_id

router = APIRouter(prefix="/api/gateways", tags=["gateways"])


async def get_registry(request: Request) -> GatewayRegistry:
    registry: GatewayRegistry = request.app.state.gateway.onprem_registry
    return registry


RegistryDep = Annotated[GatewayRegistry, Depends(get_registry)]


class GatewayCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    # A 16384-bit RSA key in PEM is about 2.8 KB; anything far bigger is not a key.
    publicKey: str = Field(min_length=1, max_length=16 * 1024)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ord(ch) < 32 for ch in value):
            raise ValueError("must be non-blank text without control characters")
        return value


class GatewayRelayInfo(BaseModel):
    """Where the agent finds its work; names only, no credentials."""

    tablePrefix: str
    requestQueue: str
    bodyContainer: str
    claimsTable: str
    heartbeatsTable: str
    queueEndpoint: str | None = None
    blobEndpoint: str | None = None
    tableEndpoint: str | None = None


class GatewayPublic(BaseModel):
    id: str
    tenantId: str
    name: str
    status: str
    lastSeen: datetime | None
    version: str | None
    fingerprint: str
    publicKey: str
    createdAt: datetime | None
    relay: GatewayRelayInfo

    @classmethod
    def of(cls, record: GatewayRecord, registry: GatewayRegistry, settings: Any) -> GatewayPublic:
        prefix = registry.prefix
        return cls(
            id=record.id,
            tenantId=record.tenant_id,
            name=record.name,
            status=record.status(window=registry.online_window),
            lastSeen=record.last_seen,
            version=record.agent_version,
            fingerprint=record.fingerprint,
            publicKey=record.public_key_pem,
            createdAt=record.created_at,
            relay=GatewayRelayInfo(
                tablePrefix=prefix,
                requestQueue=names.request_queue(prefix, record.id),
                bodyContainer=names.body_container(prefix),
                claimsTable=names.claims_table(prefix),
                heartbeatsTable=names.heartbeats_table(prefix),
                # Endpoints only (identity-based access); never a connection string.
                queueEndpoint=getattr(settings, "queue_endpoint", None),
                blobEndpoint=getattr(settings, "blob_endpoint", None),
                tableEndpoint=getattr(settings, "table_endpoint", None),
            ),
        )


class GatewayList(BaseModel):
    value: list[GatewayPublic]


def _settings(request: Request) -> Any:
    return getattr(request.app.state.gateway, "settings", None)


@router.post(
    "",
    status_code=201,
    response_model=GatewayPublic,
    summary="Register an on-premises gateway agent",
    openapi_extra=request_body(GatewayCreate, example=GATEWAY_EXAMPLE),
)
async def register_gateway(
    request: Request, caller: CurrentCaller, registry: RegistryDep
) -> GatewayPublic:
    body = await json_body(request, GatewayCreate)
    try:
        load_public_key(body.publicKey)
    except ValueError as exc:
        raise ValidationFailedError(
            f"publicKey: {exc}", errors=[{"field": "publicKey", "message": str(exc)}]
        ) from None
    record = await registry.register(caller.tenant_id, caller.object_id, body.name, body.publicKey)
    return GatewayPublic.of(record, registry, _settings(request))


@router.get("", response_model=GatewayList, summary="List your on-premises gateways")
async def list_gateways(
    request: Request, caller: CurrentCaller, registry: RegistryDep
) -> GatewayList:
    records = await registry.list_for_owner(caller.tenant_id, caller.object_id)
    settings = _settings(request)
    return GatewayList(value=[GatewayPublic.of(r, registry, settings) for r in records])


@router.get("/{gateway_id}", response_model=GatewayPublic, summary="Get an on-premises gateway")
async def get_gateway(
    gateway_id: str, request: Request, caller: CurrentCaller, registry: RegistryDep
) -> GatewayPublic:
    record = await registry.get(caller.tenant_id, gateway_id) if is_valid_id(gateway_id) else None
    # Someone else's gateway answers exactly like a missing one: ids are not confirmed.
    if record is None or record.owner_id != caller.object_id:
        raise GatewayNotFoundError(f"gateway {gateway_id} not found")
    return GatewayPublic.of(record, registry, _settings(request))
