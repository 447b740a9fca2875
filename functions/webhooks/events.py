"""Connection-health events: what services emit (issue 19).

`emit()` never blocks and never raises: the event is queued in memory and a background
task puts it on a Storage queue, so a slow or dead webhook receiver (or a slow queue)
never slows the call that caused the event. The delivery worker (worker.py) takes it
from there.

An event carries ids, status, a reason code and a time; never a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError

from functions.domain.models import Connection
from functions.errors import GatewayError

log = logging.getLogger(__name__)

# Delivered to subscribers.
CONNECTION_CREATED = "connection.created"
CONSENT_COMPLETED = "connection.consent_completed"
REFRESH_FAILED = "connection.refresh_failed"
REAUTHORIZATION_REQUIRED = "connection.reauthorization_required"
RECOVERED = "connection.recovered"
DISABLED = "connection.disabled"
DELETED = "connection.deleted"
SHARE_GRANTED = "connection.share_granted"
SHARE_REVOKED = "connection.share_revoked"
EVENT_TYPES: tuple[str, ...] = (
    CONNECTION_CREATED,
    CONSENT_COMPLETED,
    REFRESH_FAILED,
    REAUTHORIZATION_REQUIRED,
    RECOVERED,
    DISABLED,
    DELETED,
    SHARE_GRANTED,
    SHARE_REVOKED,
)
# Internal: a token was refreshed. The worker turns it into `recovered` when the
# connection was failing, and drops it otherwise.
TOKEN_REFRESHED = "internal.token_refreshed"  # noqa: S105 - an event name

_last_seq = 0
_seq_lock = threading.Lock()


def _next_seq() -> int:
    """Nanoseconds since the epoch, strictly increasing within the process."""
    global _last_seq
    with _seq_lock:
        _last_seq = max(_last_seq + 1, time.time_ns())
        return _last_seq


def queue_name(prefix: str) -> str:
    # Queue names: lowercase letters, digits and hyphens.
    return f"{prefix}webhookevents".lower()


def new_event(
    event_type: str,
    connection: Connection,
    *,
    reason: str | None = None,
    status: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    """The event document. `seq` orders the events of one connection."""
    now = datetime.now(UTC)
    return {
        "id": "msg_" + secrets.token_hex(12),
        "type": event_type,
        "time": now.isoformat(),
        "seq": _next_seq(),
        "tenantId": connection.tenant_id,
        "connectionId": connection.id,
        "connectorId": connection.connector_id,
        "ownerId": connection.owner_id,
        "status": status or connection.status.value,
        "reasonCode": reason,
        "data": data,
    }


class EventSink(Protocol):
    def emit(
        self,
        event_type: str,
        connection: Connection,
        *,
        reason: str | None = None,
        status: str | None = None,
        **data: Any,
    ) -> None: ...


class NoEvents:
    """The sink of services built without a queue (unit tests, tools)."""

    def emit(
        self,
        event_type: str,
        connection: Connection,
        *,
        reason: str | None = None,
        status: str | None = None,
        **data: Any,
    ) -> None:
        return None


NO_EVENTS = NoEvents()


class EventEmitter:
    """Puts events on the webhook events queue from a background task."""

    def __init__(self, queues: Any, prefix: str = "", *, max_pending: int = 10_000) -> None:
        self._queue = queues.get_queue_client(queue_name(prefix))
        self._pending: deque[dict[str, Any]] = deque()
        self._max_pending = max_pending
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.sent = 0

    async def ensure_queue(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await asyncio.to_thread(self._queue.create_queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def emit(
        self,
        event_type: str,
        connection: Connection,
        *,
        reason: str | None = None,
        status: str | None = None,
        **data: Any,
    ) -> None:
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("webhook event queue full: %d event(s) dropped", self.dropped)
        self._pending.append(new_event(event_type, connection, reason=reason, status=status, **data))
        self._wake.set()

    async def flush(self) -> None:
        """Send everything queued so far (tests, shutdown)."""
        while self._pending:
            event = self._pending[0]
            await asyncio.to_thread(
                self._queue.send_message, json.dumps(event, separators=(",", ":"))
            )
            self._pending.popleft()
            self.sent += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(AzureError):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except AzureError:
                log.warning("could not queue webhook events; will retry", exc_info=True)
                await asyncio.sleep(1.0)
                self._wake.set()


def emit_refresh_failure(sink: EventSink, connection: Connection, exc: GatewayError) -> None:
    """A failed token refresh: `refresh_failed` (with whether the gateway will retry),
    and `reauthorization_required` when only a new consent can fix it. Refusals during
    a backoff (no attempt was made) are not events."""
    from functions.oauth.errors import ReauthorizationRequiredError, RefreshBackoffError

    if isinstance(exc, RefreshBackoffError) and exc.__cause__ is None:
        return
    dead = isinstance(exc, ReauthorizationRequiredError)
    sink.emit(REFRESH_FAILED, connection, reason=exc.code, willRetry=not dead)
    if dead:
        sink.emit(
            REAUTHORIZATION_REQUIRED, connection, reason=exc.code, status="reauthorization_required"
        )
