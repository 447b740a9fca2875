"""The webhook delivery worker (issue 19).

One pass (`run_once`), run by a timer job in Azure and by a loop in the local runner:

1. drain the events queue: each event updates the connection's health row (which
   turns a refresh after failures into `recovered` and drops repeats of
   `reauthorization_required`) and becomes one outbox row per matching subscription;
   the queue message is deleted only after that (at least once);
2. deliver due outbox rows, in RowKey order per (subscription, connection): a failure
   stops that connection's line until its retry time (exponential backoff), so events
   of one connection arrive in order; after `retry_window` (a day) the row is given up
   and the subscription is marked `failing` (visible in the API) until a delivery
   succeeds again.

`webhook-id` is the event id (stable across retries: receivers deduplicate on it).
Requests go through the gateway's data-plane client (functions/upstream/client.py), so
the outbound address policy applies to them as to upstream calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from functions import telemetry
from functions.errors import GatewayError
from functions.stores.secrets.cache import CachedSecretStore
from functions.webhooks import events as ev
from functions.webhooks import signing
from functions.webhooks.options import WorkerOptions
from functions.webhooks.store import Delivery, Health, Subscription, WebhookStore

log = logging.getLogger(__name__)

FAILING_STATES = ("refresh_failing", "reauthorization_required")


def _payload(event_type: str, event: dict[str, Any], **extra: Any) -> str:
    data = {
        "connectionId": event["connectionId"],
        "connectorId": event["connectorId"],
        "status": event["status"],
        "reasonCode": event.get("reasonCode"),
        **(event.get("data") or {}),
        **extra,
    }
    body = {"type": event_type, "timestamp": event["time"], "data": data}
    return json.dumps(body, separators=(",", ":"))


class DeliveryWorker:
    def __init__(
        self,
        queues: Any,
        store: WebhookStore,
        secrets: CachedSecretStore,
        http: httpx.AsyncClient,
        prefix: str = "",
        options: WorkerOptions | None = None,
    ) -> None:
        self._queue = queues.get_queue_client(ev.queue_name(prefix))
        self._store = store
        self._secrets = secrets
        self._http = http
        self.options = options or WorkerOptions()
        self.delivered = 0
        self.failed_attempts = 0

    async def run_once(self) -> dict[str, int]:
        drained = await self.drain()
        delivered, failed = await self.deliver_due()
        return {"events": drained, "delivered": delivered, "failedAttempts": failed}

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """The local runner's loop (`make run`, tests)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.run_once()
            except (GatewayError, OSError) as exc:
                log.warning("webhook delivery pass failed: %s", exc)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad pass
                log.exception("webhook delivery pass failed")
            try:
                await asyncio.wait_for(stop.wait(), self.options.interval_seconds)
            except TimeoutError:
                pass

    # -- 1. events -> health + outbox --------------------------------------------------

    async def drain(self) -> int:
        count = 0
        while True:
            messages = await asyncio.to_thread(
                lambda: list(self._queue.receive_messages(messages_per_page=32, max_messages=32,
                                                          visibility_timeout=60))
            )
            if not messages:
                return count
            # In sequence order, so a batch holding several events of one connection
            # updates its health row in the order they happened.
            parsed: list[tuple[int, dict[str, Any], Any]] = []
            for message in messages:
                try:
                    event = json.loads(message.content)
                    parsed.append((int(event["seq"]), event, message))
                except (ValueError, KeyError, TypeError):
                    log.warning("dropping a malformed webhook event message")
                    await asyncio.to_thread(self._queue.delete_message, message)
            for _, event, message in sorted(parsed, key=lambda item: item[0]):
                await self._accept(event)
                await asyncio.to_thread(self._queue.delete_message, message)
                count += 1

    async def _accept(self, event: dict[str, Any]) -> None:
        outgoing = await self._apply_health(event)
        if not outgoing:
            return
        subscriptions = await self._store.subscriptions(event["tenantId"])
        for index, (event_id, payload, event_type) in enumerate(outgoing):
            for subscription in subscriptions:
                if not subscription.matches({**event, "type": event_type}):
                    continue
                await self._store.add_delivery(
                    Delivery(
                        subscription_id=subscription.id,
                        row_key=f"{event['connectionId']}|{int(event['seq']):020d}|{index}|{event_id}",
                        tenant_id=event["tenantId"],
                        payload=payload,
                        event_id=event_id,
                    )
                )

    async def _apply_health(self, event: dict[str, Any]) -> list[tuple[str, str, str]]:
        """Update the connection's health row; return the (id, payload, type) of each
        event to deliver (none, one, or two: consent completed + recovered)."""
        kind = event["type"]
        health = await self._store.health(event["tenantId"], event["connectionId"]) or Health(
            event["tenantId"], event["connectionId"], event["connectorId"]
        )
        was_failing = health.state in FAILING_STATES
        now = datetime.now(UTC)
        out: list[tuple[str, str, str]] = []
        changed = True
        if kind == ev.TOKEN_REFRESHED:
            if not was_failing:
                return []
            health.state, health.failures = "healthy", 0
            out.append((event["id"], _payload(ev.RECOVERED, {**event, "reasonCode": "token_refreshed"}), ev.RECOVERED))
        elif kind == ev.REFRESH_FAILED:
            if health.state == "reauthorization_required":
                return []  # already reported; nothing new until a new consent
            health.failures += 1
            health.state = "refresh_failing"
            health.last_failure_at, health.last_reason = now, event.get("reasonCode")
            out.append((event["id"], _payload(kind, event, attempt=health.failures), kind))
        elif kind == ev.REAUTHORIZATION_REQUIRED:
            if health.state == "reauthorization_required":
                return []
            health.state = "reauthorization_required"
            health.last_failure_at, health.last_reason = now, event.get("reasonCode")
            out.append((event["id"], _payload(kind, event), kind))
        elif kind == ev.CONSENT_COMPLETED:
            health.state, health.failures = "healthy", 0
            out.append((event["id"], _payload(kind, event), kind))
            if was_failing:
                recovered = {**event, "reasonCode": "consent_completed"}
                out.append((event["id"] + "_r", _payload(ev.RECOVERED, recovered), ev.RECOVERED))
        elif kind == ev.DISABLED:
            health.state = "disabled"
            out.append((event["id"], _payload(kind, event), kind))
        elif kind == ev.RECOVERED:
            health.state, health.failures = "healthy", 0
            out.append((event["id"], _payload(kind, event), kind))
        elif kind == ev.DELETED:
            health.state = "deleted"
            out.append((event["id"], _payload(kind, event), kind))
        elif kind in ev.EVENT_TYPES:
            changed = False
            out.append((event["id"], _payload(kind, event), kind))
        else:
            return []
        if changed:
            await self._store.save_health(health)
        return out

    # -- 2. outbox -> receivers --------------------------------------------------------

    async def deliver_due(self) -> tuple[int, int]:
        rows = await self._store.outbox()
        lines: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for row in rows:
            lines[(row.subscription_id, row.connection_id)].append(row)
        subscriptions: dict[tuple[str, str], Subscription | None] = {}
        for row in rows:
            key = (row.tenant_id, row.subscription_id)
            if key not in subscriptions:
                subscriptions[key] = await self._store.get(*key)
        gate = asyncio.Semaphore(self.options.concurrency)
        totals = [0, 0]

        async def line(items: list[Delivery]) -> None:
            async with gate:
                for delivery in sorted(items, key=lambda d: d.row_key):
                    subscription = subscriptions[(delivery.tenant_id, delivery.subscription_id)]
                    if subscription is None:
                        await self._store.remove_delivery(delivery)
                        continue
                    now = datetime.now(UTC)
                    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
                        return  # later rows of this connection wait behind it
                    error = await self._post(subscription, delivery)
                    if error is None:
                        totals[0] += 1
                        await self._store.remove_delivery(delivery)
                        if subscription.status != "active" or subscription.last_error:
                            subscription.status, subscription.last_error = "active", None
                            await self._store.update(
                                subscription.tenant_id, subscription.id,
                                Status="active", LastError="", FailingSince=None,
                                LastDeliveryAt=now,
                            )
                        continue
                    totals[1] += 1
                    delivery.attempts += 1
                    delivery.last_error = error
                    if now - delivery.created_at >= self.options.retry_window:
                        await self._give_up(subscription, delivery, now)
                        continue
                    delay = min(
                        self.options.backoff_max,
                        self.options.backoff_initial * 2 ** (delivery.attempts - 1),
                    )
                    delivery.next_attempt_at = now + timedelta(seconds=delay)
                    await self._store.retry_later(delivery)
                    return

        await asyncio.gather(*(line(items) for items in lines.values()))
        self.delivered += totals[0]
        self.failed_attempts += totals[1]
        return totals[0], totals[1]

    async def _give_up(self, subscription: Subscription, delivery: Delivery, now: datetime) -> None:
        log.warning(
            "webhook %s: giving up on event %s after %d attempts",
            subscription.id, delivery.event_id, delivery.attempts,
        )
        await self._store.remove_delivery(delivery)
        values: dict[str, Any] = {"Status": "failing", "LastError": (delivery.last_error or "")[:500]}
        if subscription.status != "failing":
            values["FailingSince"] = now
        subscription.status = "failing"
        await self._store.update(subscription.tenant_id, subscription.id, **values)

    async def _post(self, subscription: Subscription, delivery: Delivery) -> str | None:
        """Send one delivery; None on a 2xx answer, else what went wrong."""
        try:
            secret = (
                await self._secrets.get_secret(subscription.secret_name, subscription.secret_version)
            ).value
        except GatewayError as exc:
            return f"signing secret unavailable ({exc.code})"
        body = delivery.payload.encode()
        headers = signing.headers(secret, delivery.event_id, int(time.time()), body)
        with telemetry.span("gateway.webhook.deliver", subscription_id=subscription.id) as span:
            try:
                response = await self._http.post(
                    subscription.url, content=body, headers=headers,
                    timeout=self.options.timeout_seconds,
                )
                await response.aclose()
            except httpx.HTTPError as exc:
                telemetry.set_attributes(span, error_code=type(exc).__name__)
                return f"{type(exc).__name__} calling the receiver"
            except GatewayError as exc:  # the outbound address policy (issue 12)
                telemetry.set_attributes(span, error_code=exc.code)
                return exc.code
            telemetry.set_attributes(span, status=response.status_code)
        if 200 <= response.status_code < 300:
            return None
        return f"receiver answered HTTP {response.status_code}"
