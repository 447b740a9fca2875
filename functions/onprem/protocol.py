"""The relay's message formats (queue messages are JSON text, version 1).

Request (cloud -> `{prefix}gw-{gateway id}-req`):

    {"v": 1, "type": "request", "id": "<correlation id, 32 hex>",
     "tenantId": "...", "gatewayId": "...", "connectionId": "...",
     "replyTo": "<response queue name>", "deadline": <unix seconds, float>,
     "method": "POST", "url": "https://intranet.example/api/x?y=1",
     "headers": [["Content-Type", "application/json"], ...],
     "body": "<base64>" | null, "bodyBlob": "<blob name>" | null,
     "credential": "<envelope JSON, see envelope.py>", "protocol": "negotiate" | "ntlm"}

Response (agent -> the `replyTo` queue):

    {"v": 1, "type": "response", "id": "<correlation id>",
     "status": 200, "headers": [[name, value], ...],
     "body": "<base64>" | null, "bodyBlob": "<blob name>" | null,
     "error": null | {"code": "...", "detail": "...", "user": "<windows user, for 401 only>"}}

A body whose message would exceed `MAX_MESSAGE_CHARS` goes to the body container as
`{correlation id}/request` or `{correlation id}/response`; the reader deletes it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
# Azure queue messages hold at most 64 KiB; stay well below to leave room for the XML
# envelope the service wraps them in and for future fields.
MAX_MESSAGE_CHARS = 48 * 1024

# Agent error codes the relay maps to gateway errors (see relay.py).
ERROR_AUTH_FAILED = "upstream_authentication_failed"
ERROR_UNREACHABLE = "upstream_unreachable"
ERROR_TIMEOUT = "upstream_timeout"
ERROR_CREDENTIALS = "credentials_unreadable"
ERROR_TOO_LARGE = "upstream_response_too_large"
ERROR_INTERNAL = "agent_error"


def b64encode(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def b64decode(data: str | None) -> bytes | None:
    return None if data is None else base64.b64decode(data)


def request_blob_name(correlation_id: str) -> str:
    return f"{correlation_id}/request"


def response_blob_name(correlation_id: str) -> str:
    return f"{correlation_id}/response"


@dataclass
class RelayRequest:
    id: str
    tenant_id: str
    gateway_id: str
    connection_id: str
    reply_to: str
    deadline: float
    method: str
    url: str
    headers: list[tuple[str, str]]
    credential: str = field(repr=False)
    protocol: str = "negotiate"
    body: bytes | None = field(default=None, repr=False)
    body_blob: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": VERSION,
                "type": "request",
                "id": self.id,
                "tenantId": self.tenant_id,
                "gatewayId": self.gateway_id,
                "connectionId": self.connection_id,
                "replyTo": self.reply_to,
                "deadline": self.deadline,
                "method": self.method,
                "url": self.url,
                "headers": [list(h) for h in self.headers],
                "body": b64encode(self.body),
                "bodyBlob": self.body_blob,
                "credential": self.credential,
                "protocol": self.protocol,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> RelayRequest:
        doc = json.loads(text)
        if doc.get("v") != VERSION or doc.get("type") != "request":
            raise ValueError("not a version 1 relay request")
        return cls(
            id=str(doc["id"]),
            tenant_id=str(doc["tenantId"]),
            gateway_id=str(doc["gatewayId"]),
            connection_id=str(doc["connectionId"]),
            reply_to=str(doc["replyTo"]),
            deadline=float(doc["deadline"]),
            method=str(doc["method"]),
            url=str(doc["url"]),
            headers=[(str(k), str(v)) for k, v in doc.get("headers") or []],
            credential=str(doc["credential"]),
            protocol=str(doc.get("protocol") or "negotiate"),
            body=b64decode(doc.get("body")),
            body_blob=doc.get("bodyBlob"),
        )


@dataclass
class RelayResponse:
    """The internal API's answer as the agent saw it (or the agent's error)."""

    id: str
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = field(default=None, repr=False)
    body_blob: str | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": VERSION,
                "type": "response",
                "id": self.id,
                "status": self.status,
                "headers": [list(h) for h in self.headers],
                "body": b64encode(self.body),
                "bodyBlob": self.body_blob,
                "error": self.error,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> RelayResponse:
        doc = json.loads(text)
        if doc.get("v") != VERSION or doc.get("type") != "response":
            raise ValueError("not a version 1 relay response")
        return cls(
            id=str(doc["id"]),
            status=int(doc["status"]),
            headers=[(str(k), str(v)) for k, v in doc.get("headers") or []],
            body=b64decode(doc.get("body")),
            body_blob=doc.get("bodyBlob"),
            error=doc.get("error"),
        )
