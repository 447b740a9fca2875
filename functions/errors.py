"""The gateway's one exception tree.

Every error a caller can see is a `GatewayError` with a stable `code` (part of the API:
clients branch on it) and an HTTP `status`. One handler in `functions/api/problems.py`
renders them as RFC 9457 problem+json; services raise them without knowing about HTTP
frameworks. Details never contain secret values.

    GatewayError
    ├── ConfigurationError            500 configuration_error (startup, settings)
    ├── BadRequestError               400 (invalid_json, invalid_path, ...)
    │   └── ValidationFailedError     422 validation_error (names each field)
    ├── UnauthenticatedError          401 (unauthenticated, invalid_token)
    ├── ForbiddenError                403 (not_owner, ...)
    ├── NotFoundError                 404 (connector_not_found, connection_not_found)
    │   └── SecretNotFoundError       404 secret_not_found (internal)
    ├── ConflictError                 409
    ├── PayloadTooLargeError          413 request_too_large
    ├── UnsupportedMediaTypeError     415 unsupported_media_type
    ├── ConnectionNotUsableError      409 connection_not_usable
    ├── UpstreamError                 502 upstream_unreachable / upstream_error
    │   └── UpstreamTimeoutError      504 upstream_timeout
    └── DependencyUnavailableError    503 (storage_unavailable, secret_store_unavailable)
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error with a stable machine-readable `code` and an HTTP `status`."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra: dict[str, Any] = extra or {}
        self.headers: dict[str, str] = headers or {}


class ConfigurationError(GatewayError):
    code = "configuration_error"
    title = "Gateway configuration error"


class BadRequestError(GatewayError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class ValidationFailedError(BadRequestError):
    """Input that parsed but does not fit the schema. `errors` names each field."""

    status = 422
    code = "validation_error"
    title = "Validation failed"

    def __init__(self, detail: str, errors: list[dict[str, str]], **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra", None) or {})
        extra["errors"] = errors
        super().__init__(detail, extra=extra, **kwargs)
        self.errors = errors


class UnauthenticatedError(GatewayError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("WWW-Authenticate", 'Bearer realm="connector-gateway"')
        super().__init__(detail, headers=headers, **kwargs)


class ForbiddenError(GatewayError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFoundError(GatewayError):
    status = 404
    code = "not_found"
    title = "Not found"


class SecretNotFoundError(NotFoundError):
    """A secret name or version that does not exist. Internal: services translate it."""

    code = "secret_not_found"


class ConflictError(GatewayError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLargeError(GatewayError):
    status = 413
    code = "request_too_large"
    title = "Request body too large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ConnectionNotUsableError(GatewayError):
    status = 409
    code = "connection_not_usable"
    title = "Connection cannot be used"


class UpstreamError(GatewayError):
    status = 502
    code = "upstream_error"
    title = "Upstream API error"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"
    title = "Upstream API timed out"


class DependencyUnavailableError(GatewayError):
    status = 503
    code = "dependency_unavailable"
    title = "A service the gateway depends on is unavailable"


# --- issue 12 (data plane): egress control, limits, loops, response caps ---------------


class EgressDeniedError(GatewayError):
    """An upstream address the outbound address policy refuses (functions/upstream/egress.py)."""

    status = 403
    code = "egress_denied"
    title = "Upstream address not allowed"


class RateLimitedError(GatewayError):
    """Too many calls (or calls at once) on one connection; `Retry-After` says when."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"


class LoopDetectedError(GatewayError):
    """A request that already went through this gateway (its hop marker) came back."""

    status = 508
    code = "loop_detected"
    title = "Loop detected"


class UpstreamResponseTooLargeError(UpstreamError):
    """An upstream body read whole (response policies) exceeded the decoded-size cap."""

    status = 502
    code = "upstream_response_too_large"
    title = "Upstream response too large"
# -- issue 16: connect links ---------------------------------------------------------------


class ConnectSessionError(BadRequestError):
    """A connect link that cannot be used; `code` says why (the page shows it in words)."""

    status = 400
    code = "connect_session_invalid"
    title = "Connect link not usable"


class ConnectSessionExpiredError(ConnectSessionError):
    status = 410
    code = "connect_session_expired"


class ConnectSessionUsedError(ConnectSessionError):
    status = 410
    code = "connect_session_used"
# --- issue 12 (control plane): credential binding, input limits, storage bounds -------


class ConnectionOriginChangedError(ConnectionNotUsableError):
    """The connector's origin or credential injection changed since the connection's
    owner entered the credentials; nothing is sent until the owner confirms."""

    code = "connection_origin_changed"
    title = "The connector changed where credentials go: its owner must confirm"
# --- issue 17: the MCP endpoint (functions/mcp) ------------------------------------------


class ToolNotFoundError(NotFoundError):
    """A tool name the caller's MCP endpoint does not serve (another user's, a revoked
    share's, a typo). Rendered as a JSON-RPC error, not as a tool result."""

    code = "tool_not_found"
# -- issue 18: Entra ID on-behalf-of ---------------------------------------------------------


class OnBehalfOfInteractionRequiredError(GatewayError):
    """The identity provider needs the caller to sign in again interactively (MFA,
    conditional access) before it exchanges their token; `claims` (when given) is the
    claims challenge the caller's sign-in must pass on."""

    status = 401
    code = "obo_interaction_required"
    title = "Sign-in interaction required"


class OnBehalfOfConsentRequiredError(GatewayError):
    """Nobody consented to the gateway's app calling the downstream API for this user:
    an administrator (or the user) must grant it; no per-connection consent exists."""

    status = 403
    code = "obo_consent_required"
    title = "Consent required for on-behalf-of"


class OnBehalfOfAssertionRejectedError(GatewayError):
    """The identity provider refused the caller's own token as an on-behalf-of assertion."""

    status = 401
    code = "obo_assertion_rejected"
    title = "Caller token rejected for on-behalf-of"
