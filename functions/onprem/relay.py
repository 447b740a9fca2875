"""The cloud side of the on-premises relay: send a request, wait for the agent's answer.

Flow of `GatewayRelay.send` (see README.md in this folder for the whole protocol):

1. Read the gateway and its last heartbeat; unknown -> 404 `gateway_not_found`, not seen
   within the online window -> 503 `gateway_offline` at once (no waiting).
2. Put a request message on the gateway's queue `{prefix}gw-{gateway id}-req`, with a
   fresh correlation id, the deadline, the credential envelope (opaque here) and the
   name of this process's response queue. Bodies too large for a message go to blob
   storage first. The message's time-to-live is the timeout: storage drops it if no
   agent takes it in time.
3. Wait for the response on this process's own queue `{prefix}gwr-{instance id}`. One
   poller task per process receives responses in batches (only while requests are in
   flight) and hands each to the waiting request by correlation id, so any number of
   gateway instances run side by side without seeing each other's responses.
4. No response by the deadline -> 504 `gateway_timeout`. Storage errors -> 503
   `relay_unavailable`. An upstream 401 -> 502 `upstream_authentication_failed` naming
   the gateway and the Windows user (the agent reports the user; never the password).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from functions.errors import (
    DependencyUnavailableError,
    PayloadTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)
from functions.onprem import names, protocol
from functions.onprem.errors import (
    CredentialEnvelopeError,
    GatewayNotFoundError,
    GatewayOfflineError,
    GatewayTimeoutError,
    RelayUnavailableError,
    UpstreamAuthenticationFailedError,
)
from functions.onprem.protocol import RelayRequest, RelayResponse
from functions.onprem.registry import GatewayRecord, GatewayRegistry
from functions.onprem.storage import run_storage
from functions.upstream.request import OutgoingRequest
from functions.upstream.urls import build_upstream_url

log = logging.getLogger("functions.onprem.relay")

# While requests are in flight the response queue is polled this often; when none are,
# it is not polled at all.
RESPONSE_POLL_SECONDS = 0.05
# A received response stays hidden this long; it is deleted right after it is read.
RESPONSE_VISIBILITY_SECONDS = 30
# The response queue's metadata is refreshed this often while in use, so a sweep can
# tell live queues from those of processes that are gone.
QUEUE_TOUCH_SECONDS = 300
MAX_TIMEOUT_SECONDS = 120.0
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class RelayResult:
    """The internal API's response, as the agent received it (hop-by-hop headers removed)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = field(repr=False, default=b"")

    def to_httpx(self, request: httpx.Request | None = None) -> httpx.Response:
        """As an httpx.Response (body already read), for code written against httpx."""
        return httpx.Response(self.status, headers=self.headers, content=self.body, request=request)


class GatewayRelay:
    """Sends requests to on-premises agents through Storage queues. One per process."""

    def __init__(
        self,
        queues: QueueServiceClient,
        blobs: BlobServiceClient,
        registry: GatewayRegistry,
        prefix: str = "",
        *,
        instance_id: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        poll_seconds: float = RESPONSE_POLL_SECONDS,
    ) -> None:
        self._queues = queues
        self._blobs = blobs
        self._registry = registry
        self._prefix = prefix
        self.instance_id = instance_id or uuid.uuid4().hex[:20]
        self.response_queue = names.response_queue(prefix, self.instance_id)
        self._responses = queues.get_queue_client(self.response_queue)
        self._container = blobs.get_container_client(names.body_container(prefix))
        self._max_body = max_body_bytes
        self._poll_seconds = poll_seconds
        self._pending: dict[str, asyncio.Future[RelayResponse]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._poll_error: BaseException | None = None
        self._started = False
        self._start_lock = asyncio.Lock()
        self._known_queues: set[str] = set()
        self._touched = 0.0

    # Lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Create this process's response queue and the body container (idempotent)."""
        async with self._start_lock:
            if self._started:
                return
            with contextlib.suppress(ResourceExistsError):
                await run_storage(
                    lambda: self._responses.create_queue(metadata=_touch_metadata()), "queue"
                )
            with contextlib.suppress(ResourceExistsError):
                await run_storage(self._container.create_container, "blob storage")
            self._touched = time.monotonic()
            self._started = True

    async def close(self) -> None:
        """Stop polling and delete this process's response queue."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
        for future in self._pending.values():
            future.cancel()
        if self._started:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._responses.delete_queue)
        self._started = False

    # Sending ------------------------------------------------------------------------
    async def send(
        self,
        tenant_id: str,
        gateway_id: str,
        connection_id: str,
        credential: str,
        request: OutgoingRequest,
        *,
        timeout: float,
        protocol_name: str = "negotiate",
    ) -> RelayResult:
        """Relay `request` through the gateway's agent and return the API's response.

        `credential` is the connection's envelope (encrypted for this gateway; never
        opened here). `timeout` (seconds, at most MAX_TIMEOUT_SECONDS) bounds the whole
        exchange. Raises GatewayNotFoundError, GatewayOfflineError, GatewayTimeoutError,
        RelayUnavailableError, UpstreamAuthenticationFailedError, CredentialEnvelopeError,
        UpstreamError/UpstreamTimeoutError (the agent could not reach the API).
        """
        timeout = min(max(timeout, 1.0), MAX_TIMEOUT_SECONDS)
        started = time.monotonic()
        gateway = await self._online_gateway(tenant_id, gateway_id)
        body = request.body or b""
        if len(body) > self._max_body:
            raise PayloadTooLargeError(
                f"request body exceeds the on-premises relay limit of {self._max_body} bytes",
                extra={"limit": self._max_body},
            )
        await self.start()
        correlation_id = uuid.uuid4().hex
        message = RelayRequest(
            id=correlation_id,
            tenant_id=tenant_id,
            gateway_id=gateway_id,
            connection_id=connection_id,
            reply_to=self.response_queue,
            deadline=time.time() + timeout,
            method=request.method.upper(),
            url=str(build_upstream_url(request.base_url, request.path, request.query)),
            headers=list(request.headers),
            credential=credential,
            protocol=protocol_name,
            body=body or None,
        )
        text = message.to_json()
        request_blob: str | None = None
        if len(text) > protocol.MAX_MESSAGE_CHARS:
            request_blob = protocol.request_blob_name(correlation_id)
            blob = self._container.get_blob_client(request_blob)
            await run_storage(lambda: blob.upload_blob(body, overwrite=True), "blob storage")
            message.body, message.body_blob = None, request_blob
            text = message.to_json()
        future: asyncio.Future[RelayResponse] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            await self._enqueue(gateway_id, text, ttl=math.ceil(timeout) + 1)
            self._ensure_poller()
            await self._maybe_touch()
            remaining = timeout - (time.monotonic() - started)
            try:
                response = await asyncio.wait_for(future, max(remaining, 0.01))
            except TimeoutError:
                if self._poll_error is not None:
                    raise RelayUnavailableError(
                        "the on-premises relay's response queue is unavailable; try again shortly"
                    ) from self._poll_error
                raise GatewayTimeoutError(
                    f"on-premises gateway '{gateway.name}' ({gateway.id}) did not answer within "
                    f"{timeout:g} s",
                    extra={"gatewayId": gateway.id, "timeoutSeconds": timeout},
                ) from None
        finally:
            self._pending.pop(correlation_id, None)
            if request_blob is not None:
                await self._delete_blob(request_blob)
        return await self._result(gateway, response)

    async def _online_gateway(self, tenant_id: str, gateway_id: str) -> GatewayRecord:
        try:
            gateway = await self._registry.get(tenant_id, gateway_id)
        except DependencyUnavailableError as exc:
            raise RelayUnavailableError(
                "the on-premises relay cannot read gateway status (Table Storage unavailable)"
            ) from exc
        if gateway is None:
            raise GatewayNotFoundError(
                f"on-premises gateway {gateway_id} does not exist", extra={"gatewayId": gateway_id}
            )
        if gateway.status(window=self._registry.online_window) != "online":
            seen = gateway.last_seen.isoformat() if gateway.last_seen else "never"
            raise GatewayOfflineError(
                f"on-premises gateway '{gateway.name}' ({gateway.id}) is offline "
                f"(last seen: {seen}); start its agent and try again",
                extra={"gatewayId": gateway.id, "lastSeen": seen},
            )
        return gateway

    async def _enqueue(self, gateway_id: str, text: str, ttl: int) -> None:
        queue_name = names.request_queue(self._prefix, gateway_id)
        queue = self._queues.get_queue_client(queue_name)
        try:
            await run_storage(lambda: queue.send_message(text, time_to_live=ttl), "queue")
        except ResourceNotFoundError:
            # The agent creates its queue on start; create it here if it has not yet.
            with contextlib.suppress(ResourceExistsError):
                await run_storage(queue.create_queue, "queue")
            await run_storage(lambda: queue.send_message(text, time_to_live=ttl), "queue")

    async def _result(self, gateway: GatewayRecord, response: RelayResponse) -> RelayResult:
        body = response.body or b""
        if response.body_blob is not None:
            blob = self._container.get_blob_client(response.body_blob)
            try:
                body = await run_storage(lambda: blob.download_blob().readall(), "blob storage")
            except ResourceNotFoundError as exc:
                raise RelayUnavailableError(
                    "the on-premises gateway's response body was not found in blob storage"
                ) from exc
            await self._delete_blob(response.body_blob)
        error = response.error
        if error is not None:
            raise _error_for(gateway, error)
        return RelayResult(response.status, response.headers, body)

    async def _delete_blob(self, name: str) -> None:
        blob = self._container.get_blob_client(name)
        with contextlib.suppress(Exception):  # leftovers expire by lifecycle rule
            await asyncio.to_thread(blob.delete_blob)

    async def _maybe_touch(self) -> None:
        if time.monotonic() - self._touched < QUEUE_TOUCH_SECONDS:
            return
        self._touched = time.monotonic()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._responses.set_queue_metadata, _touch_metadata())

    # Receiving ----------------------------------------------------------------------
    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._pending:
            try:
                messages = await run_storage(
                    lambda: list(
                        self._responses.receive_messages(
                            messages_per_page=32,
                            max_messages=32,
                            visibility_timeout=RESPONSE_VISIBILITY_SECONDS,
                        )
                    ),
                    "queue",
                )
                self._poll_error = None
            except ResourceNotFoundError:
                # Deleted by a sweep while this process was idle: recreate it. Responses
                # sent to the old queue are lost; their requests time out.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(
                        self._responses.create_queue, metadata=_touch_metadata()
                    )
                continue
            except RelayUnavailableError as exc:
                self._poll_error = exc
                await asyncio.sleep(max(self._poll_seconds, 0.5))
                continue
            if not messages:
                await asyncio.sleep(self._poll_seconds)
                continue
            await asyncio.gather(*(self._dispatch(m) for m in messages))

    async def _dispatch(self, message: Any) -> None:
        try:
            response = RelayResponse.from_json(message.content)
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed message on response queue %s", self.response_queue)
            response = None
        future = self._pending.get(response.id) if response is not None else None
        if future is not None and not future.done():
            future.set_result(response)  # type: ignore[arg-type]
        elif response is not None and response.body_blob is not None:
            await self._delete_blob(response.body_blob)  # a late answer nobody waits for
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._responses.delete_message, message)


def _touch_metadata() -> dict[str, str]:
    return {"lastactive": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _error_for(gateway: GatewayRecord, error: dict[str, Any]) -> Exception:
    code = str(error.get("code") or protocol.ERROR_INTERNAL)
    detail = str(error.get("detail") or "")
    where = f"on-premises gateway '{gateway.name}' ({gateway.id})"
    extra: dict[str, Any] = {"gatewayId": gateway.id, "gatewayName": gateway.name}
    if code == protocol.ERROR_AUTH_FAILED:
        user = str(error.get("user") or "(unknown)")
        extra["windowsUser"] = user
        return UpstreamAuthenticationFailedError(
            f"the internal API refused the Windows credentials of user '{user}' sent by {where} "
            "(HTTP 401); update the connection's username and password",
            extra=extra,
        )
    if code == protocol.ERROR_CREDENTIALS:
        return CredentialEnvelopeError(
            f"{where} cannot decrypt this connection's credentials ({detail}); "
            "enter them again for this gateway",
            extra=extra,
        )
    if code == protocol.ERROR_TIMEOUT:
        return UpstreamTimeoutError(
            f"{where}: the internal API did not answer in time", extra=extra
        )
    if code == protocol.ERROR_UNREACHABLE:
        return UpstreamError(
            f"{where}: the internal API is unreachable ({detail})",
            code="upstream_unreachable",
            extra=extra,
        )
    return UpstreamError(f"{where} failed the request ({code}: {detail})", extra=extra)


async def sweep_stale_response_queues(
    queues: QueueServiceClient, prefix: str = "", max_idle_seconds: float = 3600.0
) -> list[str]:
    """Delete response queues of processes gone for `max_idle_seconds` (a timer job).

    Live processes refresh their queue's `lastactive` metadata every QUEUE_TOUCH_SECONDS
    while in use and recreate the queue if it disappears.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=max_idle_seconds)
    start = names.response_queue_prefix(prefix)

    def sweep() -> list[str]:
        deleted = []
        for item in queues.list_queues(name_starts_with=start, include_metadata=True):
            stamp = (item.metadata or {}).get("lastactive")
            try:
                seen = datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            except ValueError:
                seen = datetime.min.replace(tzinfo=UTC)
            if seen < cutoff:
                with contextlib.suppress(ResourceNotFoundError):
                    queues.delete_queue(item.name)
                deleted.append(item.name)
        return deleted

    return await run_storage(sweep, "queue")
