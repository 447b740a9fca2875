"""Webhook subscriptions and connection health: the API's rules (issue 19).

Owners subscribe to events of their own connections (optionally one connector's);
admins' subscriptions cover every connection of the tenant. The signing secret is
shown once (on create and on rotate) and kept in the secret store, never in a table.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from functions.domain.models import ConnectionStatus
from functions.errors import ForbiddenError, GatewayError, NotFoundError, ValidationFailedError
from functions.identity.principal import Principal
from functions.services.connectors import ConnectorService
from functions.services.ids import is_valid_id, new_id
from functions.stores.secrets.cache import CachedSecretStore
from functions.stores.tables import MetadataStore
from functions.upstream.egress import EgressPolicy
from functions.webhooks import signing
from functions.webhooks.events import EVENT_TYPES
from functions.webhooks.store import Subscription, WebhookStore

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS_PER_OWNER = 25
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class WebhookInput:
    url: str
    events: tuple[str, ...]
    connector_id: str | None = None


def webhook_not_found(subscription_id: str) -> NotFoundError:
    return NotFoundError(f"webhook {subscription_id} not found", code="webhook_not_found")


def check_webhook_url(url: str, *, allow_http: bool) -> str:
    """An absolute http(s) URL without credentials or fragment (https outside
    development). The outbound address policy is applied at the marked call site."""
    errors: list[dict[str, str]] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        errors.append(
            {"field": "url", "message": f"must be an absolute {' or '.join(schemes)} URL"}
        )
    elif parts.username is not None or parts.password is not None:
        errors.append({"field": "url", "message": "must not carry credentials"})
    elif parts.fragment:
        errors.append({"field": "url", "message": "must not have a fragment"})
    if len(url) > MAX_URL_LENGTH:
        errors.append({"field": "url", "message": f"longer than {MAX_URL_LENGTH} characters"})
    if errors:
        raise ValidationFailedError("; ".join(e["message"] for e in errors), errors=errors)
    return url


class WebhookService:
    def __init__(
        self,
        store: WebhookStore,
        secrets: CachedSecretStore,
        metadata: MetadataStore,
        connectors: ConnectorService,
        *,
        is_admin: Callable[[Principal], bool],
        allow_http: bool,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._metadata = metadata
        self._connectors = connectors
        self._is_admin = is_admin
        self._allow_http = allow_http
        self._egress = egress

    async def create(self, caller: Principal, data: WebhookInput) -> tuple[Subscription, str]:
        """Subscribe; returns the subscription and its signing secret (shown once)."""
        url = check_webhook_url(data.url, allow_http=self._allow_http)
        if self._egress is not None:
            # The outbound address policy, as for upstreams: a webhook must not reach the
            # metadata endpoint, private ranges or the gateway itself (422 at create; the
            # delivery client checks the resolved address again before each connect).
            url = self._egress.validate_url(url, field="url")
        events = _check_events(data.events)
        if data.connector_id is not None:
            await self._connectors.get_visible(caller, data.connector_id)
        admin = self._is_admin(caller)
        mine = await self._store.subscriptions(caller.tenant_id, owner_id=caller.object_id)
        if len(mine) >= MAX_SUBSCRIPTIONS_PER_OWNER:
            raise ValidationFailedError(
                f"at most {MAX_SUBSCRIPTIONS_PER_OWNER} webhooks per owner",
                errors=[{"field": "url", "message": "too many webhooks; delete one first"}],
            )
        subscription = Subscription(
            id=new_id(),
            tenant_id=caller.tenant_id,
            owner_id=caller.object_id,
            url=url,
            events=events,
            scope="all" if admin else "owner",
            secret_name="",
            connector_id=data.connector_id,
            created_at=datetime.now(UTC),
        )
        subscription.secret_name = f"webhook-{subscription.id}"
        secret = signing.new_secret()
        # Secret first, row second: a row never points at a secret that is not there;
        # a failed row write takes its secret back.
        subscription.secret_version = await self._secrets.set_secret(
            subscription.secret_name, secret, tags={"webhook": subscription.id}
        )
        try:
            await self._store.insert(subscription)
        except BaseException:
            await self._forget_secret(subscription)
            raise
        return subscription, secret

    async def visible(self, caller: Principal) -> list[Subscription]:
        """The caller's webhooks; admins see every webhook of the tenant."""
        owner = None if self._is_admin(caller) else caller.object_id
        return await self._store.subscriptions(caller.tenant_id, owner_id=owner)

    async def get(self, caller: Principal, subscription_id: str) -> Subscription:
        subscription = (
            await self._store.get(caller.tenant_id, subscription_id)
            if is_valid_id(subscription_id)
            else None
        )
        if subscription is None or (
            subscription.owner_id != caller.object_id and not self._is_admin(caller)
        ):
            raise webhook_not_found(subscription_id)
        return subscription

    async def delete(self, caller: Principal, subscription_id: str) -> None:
        subscription = await self.get(caller, subscription_id)
        await self._store.delete(caller.tenant_id, subscription.id)
        await self._forget_secret(subscription)

    async def rotate_secret(
        self, caller: Principal, subscription_id: str
    ) -> tuple[Subscription, str]:
        """A new signing secret (shown once); deliveries from now on use it."""
        subscription = await self.get(caller, subscription_id)
        secret = signing.new_secret()
        subscription.secret_version = await self._secrets.set_secret(
            subscription.secret_name, secret, tags={"webhook": subscription.id}
        )
        await self._store.update(
            caller.tenant_id, subscription.id, SecretVersion=subscription.secret_version
        )
        return subscription, secret

    async def _forget_secret(self, subscription: Subscription) -> None:
        try:
            await self._secrets.delete_secret(subscription.secret_name)
        except GatewayError as exc:
            log.warning("could not delete webhook secret %s: %s", subscription.id, exc.code)

    # -- health ------------------------------------------------------------------------

    async def health_summary(self, caller: Principal) -> list[dict[str, Any]]:
        """Per connector: connections by status and the last failure (admins)."""
        if not self._is_admin(caller):
            raise ForbiddenError("this route is for gateway administrators", code="admin_required")
        connections = await self._metadata.list_connections(caller.tenant_id)
        hidden = (ConnectionStatus.PENDING, ConnectionStatus.DELETING)
        counts: dict[str, Counter[str]] = {}
        for connection in connections:
            if connection.status not in hidden:
                counts.setdefault(connection.connector_id, Counter())[connection.status.value] += 1
        last: dict[str, dict[str, Any]] = {}
        for health in await self._store.health_of_tenant(caller.tenant_id):
            if health.last_failure_at is None or health.state == "deleted":
                continue
            current = last.get(health.connector_id)
            if current is None or health.last_failure_at > current["at"]:
                last[health.connector_id] = {
                    "at": health.last_failure_at,
                    "connectionId": health.connection_id,
                    "reasonCode": health.last_reason,
                }
        return [
            {
                "connectorId": connector_id,
                "counts": dict(sorted(counts.get(connector_id, Counter()).items())),
                "lastFailure": last.get(connector_id),
            }
            for connector_id in sorted(set(counts) | set(last))
        ]


def _check_events(events: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown or not events:
        message = (
            f"unknown event type(s) {', '.join(unknown)}" if unknown else "name at least one event"
        )
        raise ValidationFailedError(
            f"{message}; known: {', '.join(EVENT_TYPES)}",
            errors=[{"field": "events", "message": message}],
        )
    return tuple(dict.fromkeys(events))
