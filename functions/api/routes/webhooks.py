"""Webhook subscriptions and the connection-health summary (issue 19)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from functions.api.bodies import json_body
from functions.api.deps import CurrentCaller, GatewayDep
from functions.api.openapi import request_body
from functions.api.schemas import ItemList, Strict

if TYPE_CHECKING:
    # At run time the webhook service (and its storage clients) load with the app's
    # container, not when function_app.py is imported (the cold start).
    from functions.webhooks.store import Subscription

router = APIRouter(prefix="/api", tags=["webhooks"])


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] = Field(min_length=1, max_length=20)
    connectorId: str | None = Field(default=None, max_length=64)


class WebhookPublic(BaseModel):
    id: str
    url: str
    events: list[str]
    connectorId: str | None
    # "owner": events of the owner's connections; "all": every connection (admins).
    scope: str
    # "failing" once a delivery was given up after a day of retries.
    status: str
    lastError: str | None
    lastDeliveryAt: datetime | None
    failingSince: datetime | None
    createdAt: datetime | None
    owner: str
    # Only in the answers to create and rotate: the signing secret, shown once.
    secret: str | None = None

    @classmethod
    def of(cls, s: Subscription, secret: str | None = None) -> WebhookPublic:
        return cls(
            id=s.id,
            url=s.url,
            events=list(s.events),
            connectorId=s.connector_id,
            scope=s.scope,
            status=s.status,
            lastError=s.last_error,
            lastDeliveryAt=s.last_delivery_at,
            failingSince=s.failing_since,
            createdAt=s.created_at,
            owner=s.owner_id,
            secret=secret,
        )


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookPublic,
    response_model_exclude_none=True,
    summary="Subscribe to connection-health events (the signing secret is shown once)",
    openapi_extra=request_body(
        WebhookCreate,
        example={"url": "https://hooks.example.com/gateway", "events": ["connection.reauthorization_required"]},
    ),
)
async def create_webhook(request: Request, caller: CurrentCaller, gateway: GatewayDep) -> WebhookPublic:
    from functions.webhooks.service import WebhookInput

    body = await json_body(request, WebhookCreate)
    subscription, secret = await gateway.webhooks.create(
        caller, WebhookInput(body.url, tuple(body.events), body.connectorId)
    )
    return WebhookPublic.of(subscription, secret)


@router.get("/webhooks", response_model=ItemList, summary="List the webhooks you can see")
async def list_webhooks(caller: CurrentCaller, gateway: GatewayDep) -> ItemList:
    return ItemList(
        value=[
            WebhookPublic.of(s).model_dump(exclude={"secret"})
            for s in await gateway.webhooks.visible(caller)
        ]
    )


@router.get(
    "/webhooks/{webhook_id}",
    response_model=WebhookPublic,
    response_model_exclude={"secret"},
    summary="Get a webhook and its delivery state",
)
async def get_webhook(webhook_id: str, caller: CurrentCaller, gateway: GatewayDep) -> WebhookPublic:
    return WebhookPublic.of(await gateway.webhooks.get(caller, webhook_id))


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Delete a webhook")
async def delete_webhook(webhook_id: str, caller: CurrentCaller, gateway: GatewayDep) -> Response:
    await gateway.webhooks.delete(caller, webhook_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookPublic,
    summary="Replace a webhook's signing secret (the new one is shown once)",
)
async def rotate_webhook_secret(
    webhook_id: str, caller: CurrentCaller, gateway: GatewayDep
) -> WebhookPublic:
    subscription, secret = await gateway.webhooks.rotate_secret(caller, webhook_id)
    return WebhookPublic.of(subscription, secret)


@router.get("/admin/connection-health", summary="Connections by status and last failure, per connector (admins)")
async def connection_health(caller: CurrentCaller, gateway: GatewayDep) -> dict[str, Any]:
    """Per connector: connections by status and the last failure (admins)."""
    return {"value": await gateway.webhooks.health_summary(caller)}
