"""Credentials are plaintext only inside the agent: not in envelopes, tables, queues or blobs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions.onprem import names
from functions.onprem.errors import UpstreamAuthenticationFailedError
from functions.onprem.relay import GatewayRelay
from functions.onprem.storage import blob_service, queue_service, table_service
from functions.upstream.request import OutgoingRequest
from tests.doubles.ntlm_server import NtlmServer
from tests.onprem.conftest import TENANT, USERS


def _needles(*values: str) -> list[str]:
    found = []
    for value in values:
        raw = value.encode()
        found += [value, base64.b64encode(raw).decode(), raw.hex()]
    return found


def _storage_text(storage: str, prefix: str) -> str:
    chunks: list[str] = []
    tables = table_service(storage)
    for table in tables.list_tables():
        if table.name.startswith(prefix):
            for entity in tables.get_table_client(table.name).list_entities():
                chunks.append(json.dumps(dict(entity), default=str))
    queues = queue_service(storage)
    for queue in queues.list_queues(name_starts_with=prefix):
        for message in queues.get_queue_client(queue.name).peek_messages(max_messages=32):
            chunks.append(message.content)
    container = blob_service(storage).get_container_client(names.body_container(prefix))
    for blob in container.list_blobs():
        chunks.append(container.download_blob(blob.name).readall().decode("latin-1"))
    return "\n".join(chunks)


async def test_no_plaintext_credentials_anywhere(
    relay: GatewayRelay,
    make_gateway: Any,
    start_agent: Any,
    ntlm: NtlmServer,
    storage: str,
    prefix: str,
) -> None:
    gw = await make_gateway()
    agent = await start_agent(gw)
    good = gw.credential("conn1", "alice")
    bad_password = "Wrong-Password-7"
    bad = gw.credential("conn2", "bob", password=bad_password)
    secrets = _needles(USERS["alice"], USERS["bob"], bad_password, "alice", "bob")

    for sealed in (good, bad):
        assert not any(s in sealed for s in secrets)

    request = OutgoingRequest("POST", ntlm.url, "/x", body=b"z" * 100_000)
    assert (
        await relay.send(TENANT, gw.record.id, "conn1", good, request, timeout=15)
    ).status == 200
    with pytest.raises(UpstreamAuthenticationFailedError):
        await relay.send(
            TENANT, gw.record.id, "conn2", bad, OutgoingRequest("GET", ntlm.url, "/"), timeout=15
        )

    text = _storage_text(storage, prefix)
    assert "gwclaims" not in text  # sanity: entities, not table names
    assert gw.record.id in text  # the scan did see the gateway's entities
    leaked = [s for s in secrets if s in text]
    assert leaked == []
    output = agent.output()
    assert not any(s in output for s in _needles(USERS["alice"], bad_password))
