"""OAuth errors, in the gateway's one exception tree (`functions.errors`).

    GatewayError
    ├── ConfigurationError
    │   └── CatalogError                  500 oauth_catalog_invalid (provider catalog)
    ├── BadRequestError
    │   └── OAuthStateError               400 oauth_state_invalid (unknown, tampered, replayed)
    │       └── OAuthStateExpiredError    400 oauth_state_expired
    ├── ReauthorizationRequiredError      401 connection_needs_reauthorization
    ├── UpstreamError
    │   └── ProviderError                 502 oauth_provider_error (RFC 6749 §5.2 error)
    │       ├── InvalidGrantError         502 invalid_grant (code or refresh token rejected)
    │       └── TransientProviderError    503 oauth_provider_unavailable (5xx, 429, timeout)
    └── DependencyUnavailableError
        └── RefreshBackoffError           503 refresh_backoff (+ Retry-After)

`ProviderError.error` and `.description` carry the provider's RFC 6749 §5.2 `error` and
`error_description`; neither ever holds a token, code or secret (descriptions are cut to a
short length, and tokens are never echoed by providers in error responses).
"""

from __future__ import annotations

import math
from typing import Any

from functions.errors import (
    BadRequestError,
    ConfigurationError,
    DependencyUnavailableError,
    GatewayError,
    UpstreamError,
)


class CatalogError(ConfigurationError):
    """The provider catalog, or a connector's provider settings, are invalid."""

    code = "oauth_catalog_invalid"
    title = "OAuth provider configuration is invalid"


class OAuthStateError(BadRequestError):
    """The callback's `state` is unknown: never issued, tampered with, or already used."""

    code = "oauth_state_invalid"
    title = "Invalid OAuth state"


class OAuthStateExpiredError(OAuthStateError):
    """The state was issued but is older than its lifetime (consent took too long)."""

    code = "oauth_state_expired"
    title = "OAuth state expired"


class ReauthorizationRequiredError(GatewayError):
    """The connection's grant is dead (revoked, expired refresh token): consent again."""

    status = 401
    code = "connection_needs_reauthorization"
    title = "Connection needs reauthorization"


class ProviderError(UpstreamError):
    """The authorization server answered with an error (RFC 6749 §5.2) or nonsense."""

    code = "oauth_provider_error"
    title = "OAuth provider error"

    def __init__(
        self,
        detail: str,
        *,
        error: str | None = None,
        description: str | None = None,
        status_code: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detail, **kwargs)
        self.error = error
        self.description = (description or "")[:300] or None
        self.status_code = status_code


class InvalidGrantError(ProviderError):
    """`invalid_grant`: the code, verifier or refresh token was rejected (RFC 6749 §5.2)."""

    code = "invalid_grant"


class TransientProviderError(ProviderError):
    """The provider is briefly unavailable (5xx, 429, timeout, network); retry later."""

    status = 503
    code = "oauth_provider_unavailable"

    def __init__(self, detail: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after


class RefreshBackoffError(DependencyUnavailableError):
    """A refresh failed recently; callers wait `retry_after` seconds instead of retrying."""

    code = "refresh_backoff"
    title = "Token refresh is backing off"

    def __init__(self, detail: str, *, retry_after: float, **kwargs: Any) -> None:
        seconds = max(1, math.ceil(retry_after))
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Retry-After"] = str(seconds)
        extra = dict(kwargs.pop("extra", None) or {})
        extra["retryAfter"] = seconds
        super().__init__(detail, headers=headers, extra=extra, **kwargs)
        self.retry_after = float(seconds)
