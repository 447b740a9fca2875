"""On-premises gateways: Windows authentication for APIs inside a private network.

Cloud side (imported by the gateway app): `registry` (gateways and heartbeats),
`envelope.encrypt_for_gateway` (credentials sealed for one gateway's key), `relay`
(requests out through Storage queues, responses back). Agent side (runs on the
private network; imports pyspnego): `agent`, `windows_auth`, `keys`. See README.md.
"""

from __future__ import annotations

from functions.onprem.envelope import encrypt_for_gateway
from functions.onprem.errors import (
    CredentialEnvelopeError,
    GatewayNotFoundError,
    GatewayOfflineError,
    GatewayTimeoutError,
    RelayUnavailableError,
    UpstreamAuthenticationFailedError,
)
from functions.onprem.registry import GatewayRecord, GatewayRegistry
from functions.onprem.relay import GatewayRelay, RelayResult

__all__ = [
    "CredentialEnvelopeError",
    "GatewayNotFoundError",
    "GatewayOfflineError",
    "GatewayRecord",
    "GatewayRegistry",
    "GatewayRelay",
    "GatewayTimeoutError",
    "RelayResult",
    "RelayUnavailableError",
    "UpstreamAuthenticationFailedError",
    "encrypt_for_gateway",
]
