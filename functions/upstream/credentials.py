"""Credential injection: one `httpx.Auth` per scheme, as httpx does it.

Each class sets exactly the credential its scheme defines and nothing else. They are
built per call from the connection's secret parameters (held in memory only).
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from functions.domain.models import AuthScheme
from functions.upstream.headers import is_framing_header


class NoAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


class ApiKeyAuth(httpx.Auth):
    """An API key in a header or a query parameter, replacing any caller-supplied one."""

    def __init__(self, location: str, name: str, value: str) -> None:
        self.location = location
        self.name = name
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.location == "header":
            # A framing header never carries a credential: it would desynchronise the request.
            if not is_framing_header(self.name):
                request.headers[self.name] = self.value
        else:
            params: list[tuple[str, str | int | float | bool | None]] = [
                (k, v) for k, v in request.url.params.multi_items() if k != self.name
            ]
            params.append((self.name, self.value))
            request.url = request.url.copy_with(params=httpx.QueryParams(params))
        yield request


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <access token>` (RFC 6750 section 2.1)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def auth_for(scheme: AuthScheme, parameters: dict[str, str]) -> httpx.Auth:
    """The httpx.Auth that applies `scheme` with a connection's secret parameters."""
    if scheme.type == "basic":
        return httpx.BasicAuth(parameters["username"], parameters["password"])
    if scheme.type == "apiKey":
        assert scheme.api_key_in is not None and scheme.api_key_name is not None
        return ApiKeyAuth(scheme.api_key_in, scheme.api_key_name, parameters["api_key"])
    return NoAuth()


def credential_header_names(scheme: AuthScheme) -> tuple[str, ...]:
    """Headers the credential occupies; callers may not send their own."""
    if scheme.type in ("basic", "oauth2", "windows"):
        return ("authorization",)
    if scheme.type == "apiKey" and scheme.api_key_in == "header" and scheme.api_key_name:
        return (scheme.api_key_name,)
    return ()
