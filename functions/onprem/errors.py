"""Errors of the on-premises relay, in the gateway's one exception tree.

    GatewayError (functions/errors.py)
    ├── NotFoundError               404 gateway_not_found
    ├── ValidationFailedError       422 validation_error (publicKey, name)
    ├── UpstreamError               502
    │   ├── UpstreamAuthenticationFailedError  502 upstream_authentication_failed
    │   └── UpstreamTimeoutError               504 upstream_timeout (the agent's own call)
    ├── GatewayTimeoutError         504 gateway_timeout  (no answer from the agent by the deadline)
    └── DependencyUnavailableError  503
        ├── GatewayOfflineError     503 gateway_offline   (agent not seen recently; raised at once)
        └── RelayUnavailableError   503 relay_unavailable (queues, blobs or tables unreachable)

Messages name gateways by name and id, and Windows users by name; never a password.
"""

from __future__ import annotations

from typing import Any

from functions.errors import DependencyUnavailableError, GatewayError, NotFoundError, UpstreamError


class GatewayNotFoundError(NotFoundError):
    code = "gateway_not_found"
    title = "On-premises gateway not found"


class GatewayOfflineError(DependencyUnavailableError):
    """The gateway's agent has not been seen within the online window."""

    code = "gateway_offline"
    title = "On-premises gateway is offline"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("Retry-After", "10")
        super().__init__(detail, headers=headers, **kwargs)


class RelayUnavailableError(DependencyUnavailableError):
    """Storage queues, blobs or tables used by the relay could not be reached."""

    code = "relay_unavailable"
    title = "On-premises relay is unavailable"


class GatewayTimeoutError(GatewayError):
    """The agent did not answer by the request's deadline (dead, overloaded, or slow)."""

    status = 504
    code = "gateway_timeout"
    title = "On-premises gateway did not answer in time"


class UpstreamAuthenticationFailedError(UpstreamError):
    """The internal API refused the connection's Windows credentials (HTTP 401)."""

    code = "upstream_authentication_failed"
    title = "Windows authentication failed"


class CredentialEnvelopeError(UpstreamError):
    """A credential envelope that cannot be opened: wrong key, tampered, or bound to
    another gateway or connection. The connection's credentials must be entered again."""

    code = "credentials_unreadable"
    title = "Connection credentials cannot be decrypted by the gateway"
