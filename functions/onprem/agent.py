"""The on-premises agent: polls its gateway's request queue and calls internal APIs.

It runs inside the private network with the gateway's private key (keys.py). For each
request message it:

1. parses it; drops it if malformed, addressed to another gateway, or past its deadline;
2. **claims** it: inserts `{prefix}gwclaims` (PartitionKey = gateway id, RowKey =
   correlation id). The insert is conditional (it fails if the entity exists), so of
   all deliveries of one correlation id (redelivery after a crash, a duplicate send,
   several agent instances) exactly one wins. Losers delete the message and stop;
3. deletes the queue message (so it is never delivered again), *before* executing;
4. decrypts the credentials, fetches a large body from blob storage if needed, calls
   the API with NTLM/Negotiate, and puts the response on the message's `replyTo` queue.

Steps 2-3 make execution at-most-once for every method: a crash after the claim loses
the request (its caller gets `gateway_timeout`) but never repeats it. The claim is the
guarantee; deleting the message only saves redeliveries.

Concurrency: `concurrency` workers, each with its own single-connection httpx client
(NTLM authenticates connections; sharing a pool mixes handshakes). A worker's client is
replaced when the next request uses different credentials, so a connection
authenticated as one user never carries another user's request.

Polling: after a message, the queue is polled again at once and then every 50 ms for
2 s; after that the interval doubles up to `idle_poll_seconds` (0.5 s). A request waits
at most that long to be picked up, and an idle agent costs 3,600/0.5 = 7,200 receives
plus 1,200 heartbeats (table upserts every 3 s) per hour, plus one claim sweep query
every 10 minutes. A clean stop (SIGINT/SIGTERM) records the agent's departure first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import ssl
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from cryptography.hazmat.primitives.asymmetric import rsa

from functions import telemetry
from functions.errors import GatewayError
from functions.onprem import envelope, names, protocol
from functions.onprem.protocol import RelayRequest, RelayResponse
from functions.onprem.registry import HEARTBEAT_INTERVAL_SECONDS, GatewayRegistry
from functions.onprem.relay import MAX_TIMEOUT_SECONDS
from functions.onprem.storage import run_storage
from functions.onprem.windows_auth import SpnegoAuth, WindowsAuthError
from functions.upstream.headers import HOP_BY_HOP

log = logging.getLogger("functions.onprem.agent")

AGENT_VERSION = "1.0.0"
# Longer than any deadline: while one agent holds a message, no other sees it.
VISIBILITY_SECONDS = int(MAX_TIMEOUT_SECONDS) + 10
IDLE_POLL_SECONDS = 0.5
FIRST_IDLE_POLL_SECONDS = 0.05
ACTIVE_WINDOW_SECONDS = 2.0
# A duplicate of a message can arrive only while a copy lives (time-to-live <= the
# longest deadline), so claims are kept a generous hour and then swept.
CLAIM_RETENTION = timedelta(hours=1)
CLAIM_SWEEP_SECONDS = 600.0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
STORAGE_CONNECTION_STRING_ENV = "GATEWAY_AGENT_STORAGE_CONNECTION_STRING"

_REQUEST_DROP = HOP_BY_HOP | {"authorization", "host", "content-length"}
# Connection-level authentication results mean nothing to the gateway's caller; the
# body is relayed decoded, so its original encoding header no longer applies.
_RESPONSE_DROP = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "www-authenticate",
    "persistent-auth",
}


@dataclass
class AgentConfig:
    """What `register` saved next to the key (no secrets: ids, names, endpoints)."""

    gateway_id: str
    tenant_id: str
    name: str
    gateway_url: str
    fingerprint: str
    table_prefix: str
    queue_endpoint: str | None = None
    blob_endpoint: str | None = None
    table_endpoint: str | None = None

    @property
    def request_queue(self) -> str:
        return names.request_queue(self.table_prefix, self.gateway_id)

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


@dataclass
class AgentStats:
    """Counters for tests and benchmarks."""

    received: int = 0
    executed: int = 0
    duplicates: int = 0
    expired: int = 0
    receives: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class _Worker:
    client: httpx.AsyncClient | None = None
    credential_key: str | None = None


class GatewayAgent:
    """Runs the agent loop until `stop` is set. Storage clients are given, not built."""

    def __init__(
        self,
        config: AgentConfig,
        private_key: rsa.RSAPrivateKey,
        queues: QueueServiceClient,
        blobs: BlobServiceClient,
        tables: TableServiceClient,
        *,
        concurrency: int = 8,
        idle_poll_seconds: float = IDLE_POLL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_INTERVAL_SECONDS,
        ca_file: str | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        version: str = AGENT_VERSION,
    ) -> None:
        if envelope_fingerprint_mismatch(config, private_key):
            raise GatewayError(
                "the agent key does not match the registered gateway "
                f"(expected fingerprint {config.fingerprint[:16]}…)",
                code="agent_key_mismatch",
            )
        self.config = config
        self._key = private_key
        self._queue = queues.get_queue_client(config.request_queue)
        self._queues = queues
        self._container = blobs.get_container_client(names.body_container(config.table_prefix))
        self._tables = tables
        self._claims = tables.get_table_client(names.claims_table(config.table_prefix))
        self._registry = GatewayRegistry(tables, config.table_prefix)
        self._concurrency = max(1, concurrency)
        self._idle_poll = idle_poll_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._tls = ssl.create_default_context()
        if ca_file:
            self._tls.load_verify_locations(cafile=ca_file)
        self._max_response = max_response_bytes
        self.version = version
        self.instance_id = uuid.uuid4().hex[:12]
        self.stats = AgentStats()
        # Messages received and not yet handled: never more than `concurrency`, so a
        # received message never waits while its visibility timeout runs.
        self._outstanding = 0

    # Lifecycle ----------------------------------------------------------------------
    async def prepare(self) -> None:
        """Create the request queue, claims table and body container if missing.

        Best effort: with least-privilege roles the agent may not create resources; the
        gateway creates them too, and real access problems show on first use.
        """
        steps = (
            (self._queue.create_queue, "queue"),
            (partial(self._tables.create_table_if_not_exists, self._claims.table_name), "table"),
            (self._container.create_container, "blob storage"),
        )
        for step, what in steps:
            try:
                await run_storage(step, what)
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                log.warning(
                    "cannot create the %s resource (%s); assuming it exists", what, exc.status_code
                )

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Heartbeat and serve requests until `stop` is set; in-flight requests finish."""
        stop = stop or asyncio.Event()
        await self.prepare()
        await self._heartbeat_once()
        work: asyncio.Queue[Any] = asyncio.Queue(maxsize=self._concurrency)
        workers = [asyncio.create_task(self._work(work)) for _ in range(self._concurrency)]
        background = [
            asyncio.create_task(self._heartbeats(stop)),
            asyncio.create_task(self._sweep_claims(stop)),
        ]
        try:
            await self._receive(work, stop)
        finally:
            if stop.is_set():
                # A clean stop: say so before finishing the work in hand, so callers
                # get `gateway_offline` at once instead of waiting for their deadline.
                # The heartbeat loop ends by itself once `stop` is set; waiting for it
                # means no heartbeat in flight can land after the departure and undo it.
                await asyncio.gather(background[0], return_exceptions=True)
                await self._leave()
            await work.join()
            for task in [*workers, *background]:
                task.cancel()
            await asyncio.gather(*workers, *background, return_exceptions=True)

    async def _heartbeat_once(self) -> None:
        try:
            await self._registry.touch(self.config.tenant_id, self.config.gateway_id, self.version)
        except GatewayError as exc:
            log.warning("heartbeat failed: %s", exc.detail)

    async def _leave(self) -> None:
        try:
            await self._registry.leave(self.config.tenant_id, self.config.gateway_id)
        except GatewayError as exc:
            log.warning("could not record the agent's departure: %s", exc.detail)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._heartbeat_seconds)
            if not stop.is_set():
                await self._heartbeat_once()

    async def _sweep_claims(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CLAIM_SWEEP_SECONDS)
            if stop.is_set():
                return
            cutoff = datetime.now(UTC) - CLAIM_RETENTION
            query = f"PartitionKey eq '{self.config.gateway_id}' and ClaimedAt lt @cutoff"

            def sweep(query: str = query, cutoff: datetime = cutoff) -> None:
                for entity in self._claims.query_entities(query, parameters={"cutoff": cutoff}):
                    self._claims.delete_entity(entity["PartitionKey"], entity["RowKey"])

            try:
                await run_storage(sweep, "table")
            except GatewayError as exc:
                log.warning("claim sweep failed: %s", exc.detail)

    # Receiving ----------------------------------------------------------------------
    async def _receive(self, work: asyncio.Queue[Any], stop: asyncio.Event) -> None:
        idle = FIRST_IDLE_POLL_SECONDS
        last_message = 0.0
        while not stop.is_set():
            free = self._concurrency - self._outstanding
            if free <= 0:
                await asyncio.sleep(0.01)
                continue
            try:
                self.stats.receives += 1
                messages = await run_storage(partial(self._receive_batch, min(32, free)), "queue")
            except ResourceNotFoundError:
                with contextlib.suppress(Exception):
                    await self.prepare()
                messages = []
            except GatewayError as exc:
                log.warning("receive failed: %s", exc.detail)
                messages = []
                idle = self._idle_poll
            if messages:
                idle = FIRST_IDLE_POLL_SECONDS
                last_message = time.monotonic()
                for message in messages:
                    self.stats.received += 1
                    self._outstanding += 1
                    await work.put(message)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), idle)
            # Requests come in bursts: stay quick for a moment after one, then back off.
            if time.monotonic() - last_message > ACTIVE_WINDOW_SECONDS:
                idle = min(idle * 2, self._idle_poll)

    def _receive_batch(self, count: int) -> list[Any]:
        return list(
            self._queue.receive_messages(
                messages_per_page=count, max_messages=count, visibility_timeout=VISIBILITY_SECONDS
            )
        )

    async def _work(self, work: asyncio.Queue[Any]) -> None:
        worker = _Worker()
        try:
            while True:
                message = await work.get()
                try:
                    await self._handle(worker, message)
                except Exception as exc:  # noqa: BLE001 - one bad request must not stop a worker
                    log.exception("request handling failed")
                    self.stats.failures.append(type(exc).__name__)
                finally:
                    self._outstanding -= 1
                    work.task_done()
        finally:
            if worker.client is not None:
                await worker.client.aclose()

    # One request --------------------------------------------------------------------
    async def _handle(self, worker: _Worker, message: Any) -> None:
        try:
            request = RelayRequest.from_json(message.content)
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed request message")
            await self._delete(message)
            return
        if request.gateway_id != self.config.gateway_id:
            log.warning(
                "dropping request %s addressed to gateway %s", request.id, request.gateway_id
            )
            await self._delete(message)
            return
        if time.time() >= request.deadline:
            self.stats.expired += 1
            await self._delete(message)
            return
        if not await self._claim(request):
            self.stats.duplicates += 1
            await self._delete(message)
            return
        await self._delete(message)
        self.stats.executed += 1
        with telemetry.relay_hop(request.headers, telemetry.queued_seconds(message)):
            response = await self._execute(worker, request)
        await self._reply(request, response)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self._claims.upsert_entity,
                {
                    "PartitionKey": self.config.gateway_id,
                    "RowKey": request.id,
                    "State": "done",
                    "Status": response.status,
                },
                mode=UpdateMode.MERGE,
            )

    async def _claim(self, request: RelayRequest) -> bool:
        """True if this delivery won the right to execute the request (conditional insert)."""
        entity = {
            "PartitionKey": self.config.gateway_id,
            "RowKey": request.id,
            "State": "claimed",
            "ClaimedAt": datetime.now(UTC),
            "Instance": self.instance_id,
            "Method": request.method,
        }
        try:
            await run_storage(lambda: self._claims.create_entity(entity), "table")
        except ResourceExistsError:
            return False
        return True

    async def _delete(self, message: Any) -> None:
        # A failed delete (pop receipt expired) is harmless: the claim already decided.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._queue.delete_message, message)

    async def _execute(self, worker: _Worker, request: RelayRequest) -> RelayResponse:
        try:
            credentials = envelope.decrypt(
                self._key, request.gateway_id, request.connection_id, request.credential
            )
            username, password = str(credentials["username"]), str(credentials["password"])
        except (GatewayError, KeyError) as exc:
            detail = exc.detail if isinstance(exc, GatewayError) else "incomplete credentials"
            return _failure(request.id, protocol.ERROR_CREDENTIALS, detail)
        body = request.body
        if request.body_blob is not None:
            blob = self._container.get_blob_client(request.body_blob)
            try:
                body = await run_storage(lambda: blob.download_blob().readall(), "blob storage")
            except (GatewayError, ResourceNotFoundError):
                return _failure(request.id, protocol.ERROR_INTERNAL, "request body not found")
        remaining = request.deadline - time.time()
        if remaining <= 0:
            return _failure(request.id, protocol.ERROR_TIMEOUT, "deadline passed")
        client = await self._client_for(worker, username, password)
        headers = [(k, v) for k, v in request.headers if k.lower() not in _REQUEST_DROP]
        upstream = client.build_request(
            request.method,
            request.url,
            headers=headers,
            content=body,
            timeout=httpx.Timeout(remaining, connect=min(10.0, remaining)),
        )
        # "anonymous": an on-premises API without Windows authentication (Power Platform
        # connectors with a gateway and no credentials); the agent only relays.
        auth: httpx.Auth | None = None
        if request.protocol != "anonymous":
            auth = SpnegoAuth(
                username,
                password,
                request.protocol if request.protocol in ("ntlm", "negotiate") else "negotiate",
            )
        try:
            # Not streamed: the Windows handshake reads every response body (the
            # connection must stay usable), the last one included.
            response = await client.send(
                upstream, auth=auth or httpx.USE_CLIENT_DEFAULT, follow_redirects=False
            )
        except httpx.TimeoutException:
            await self._discard_client(worker)
            return _failure(
                request.id, protocol.ERROR_TIMEOUT, "the internal API did not answer in time"
            )
        except (httpx.HTTPError, WindowsAuthError) as exc:
            await self._discard_client(worker)
            return _failure(request.id, protocol.ERROR_UNREACHABLE, type(exc).__name__)
        if len(response.content) > self._max_response:
            return _failure(
                request.id,
                protocol.ERROR_TOO_LARGE,
                f"response larger than {self._max_response} bytes",
            )
        result = RelayResponse(
            id=request.id,
            status=response.status_code,
            headers=[
                (k, v) for k, v in response.headers.multi_items() if k.lower() not in _RESPONSE_DROP
            ],
            body=response.content,
        )
        if response.status_code == 401 and auth is not None:
            # Named so the caller can fix the connection; the password never leaves here.
            result.error = {
                "code": protocol.ERROR_AUTH_FAILED,
                "detail": "the internal API answered 401",
                "user": username,
            }
            result.body = None
            await self._discard_client(worker)
        return result

    async def _client_for(self, worker: _Worker, username: str, password: str) -> httpx.AsyncClient:
        key = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        if worker.client is not None and worker.credential_key == key:
            return worker.client
        await self._discard_client(worker)
        worker.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            verify=self._tls,
            trust_env=False,
            follow_redirects=False,
        )
        worker.credential_key = key
        return worker.client

    async def _discard_client(self, worker: _Worker) -> None:
        if worker.client is not None:
            await worker.client.aclose()
        worker.client, worker.credential_key = None, None

    async def _reply(self, request: RelayRequest, response: RelayResponse) -> None:
        text = response.to_json()
        if len(text) > protocol.MAX_MESSAGE_CHARS and response.body:
            name = protocol.response_blob_name(request.id)
            blob = self._container.get_blob_client(name)
            body = response.body
            try:
                await run_storage(lambda: blob.upload_blob(body, overwrite=True), "blob storage")
            except GatewayError as exc:
                log.warning("cannot store response body of %s: %s", request.id, exc.detail)
                return
            response.body, response.body_blob = None, name
            text = response.to_json()
        queue = self._queues.get_queue_client(request.reply_to)
        # Kept a minute past the deadline; after that nobody waits for it.
        ttl = max(1, int(request.deadline - time.time()) + 60)
        try:
            await run_storage(lambda: queue.send_message(text, time_to_live=ttl), "queue")
        except (GatewayError, ResourceNotFoundError) as exc:
            log.warning("cannot deliver response %s to %s: %s", request.id, request.reply_to, exc)


def envelope_fingerprint_mismatch(config: AgentConfig, key: rsa.RSAPrivateKey) -> bool:
    from functions.onprem.keys import fingerprint

    return bool(config.fingerprint) and fingerprint(key) != config.fingerprint


def _failure(correlation_id: str, code: str, detail: str) -> RelayResponse:
    return RelayResponse(id=correlation_id, status=502, error={"code": code, "detail": detail})
