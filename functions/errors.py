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
