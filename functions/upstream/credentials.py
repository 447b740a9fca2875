"""Credential injection: one `httpx.Auth` per scheme, as httpx does it.

Each class sets exactly the credential its scheme defines and nothing else. They are
built per call from the connection's secret parameters (held in memory only).
"""

from __future__ import annotations

from collections.abc import Generator
from urllib.parse import unquote

import httpx

from functions.domain.models import AuthScheme
from functions.upstream.headers import is_framing_header
from functions.upstream.urls import encode_query


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
            # The query is edited as encoded text: re-encoding it through
            # httpx.QueryParams would turn every `%20` into `+` and change other
            # escapes the gateway built on purpose (upstream/urls.py).
            kept = [
                pair
                for pair in request.url.query.decode("ascii").split("&")
                if pair and unquote(pair.split("=", 1)[0]) != self.name
            ]
            kept.append(encode_query([(self.name, self.value)]))
            request.url = request.url.copy_with(query="&".join(kept).encode("ascii"))
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
