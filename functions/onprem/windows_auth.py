"""NTLM and Negotiate (SPNEGO) client authentication for httpx, through pyspnego.

Both schemes authenticate the TCP connection, not the request: the handshake's
messages must travel on one connection, and the server then treats that connection as
the user. So a client using this must own exactly one connection
(`httpx.Limits(max_connections=1)`) and must not reuse it for another user; see
agent.py, which keeps one such client per worker and per credential.
"""

from __future__ import annotations

import base64
from collections.abc import Generator

import httpx
import spnego
from spnego.exceptions import SpnegoError

PROTOCOLS = {"negotiate": "Negotiate", "ntlm": "NTLM"}


class WindowsAuthError(Exception):
    """The handshake could not be carried out (not: the server refused the user)."""


def _offered(response: httpx.Response) -> dict[str, bytes | None]:
    """Schemes in WWW-Authenticate (lowercase) -> their token, if the server sent one."""
    offered: dict[str, bytes | None] = {}
    for value in response.headers.get_list("www-authenticate", split_commas=True):
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        try:
            offered[scheme.lower()] = base64.b64decode(token) if token else None
        except ValueError:
            offered[scheme.lower()] = None
    return offered


class SpnegoAuth(httpx.Auth):
    """Answers a 401 `WWW-Authenticate: Negotiate|NTLM` challenge with a pyspnego handshake.

    `protocol` is the preferred scheme ("negotiate" or "ntlm"); the other one is used
    when the server offers only that. Requests on an already-authenticated connection
    pass without a handshake (the server answers them directly).
    """

    requires_request_body = True
    # The 401 bodies must be read, or httpx closes the connection the handshake is on.
    requires_response_body = True

    def __init__(self, username: str, password: str, protocol: str = "negotiate") -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
        self.username = username
        self._password = password
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"SpnegoAuth(username={self.username!r}, protocol={self.protocol!r})"

    def _choose(self, offered: dict[str, bytes | None]) -> str | None:
        order = [self.protocol] + [p for p in PROTOCOLS if p != self.protocol]
        return next((p for p in order if p in offered), None)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code != 401:
            return
        protocol = self._choose(_offered(response))
        if protocol is None:
            return
        scheme = PROTOCOLS[protocol]
        try:
            context = spnego.client(
                self.username,
                self._password,
                hostname=request.url.host,
                service="HTTP",
                protocol=protocol,
            )
            token = context.step()
        except SpnegoError as exc:
            raise WindowsAuthError(f"{scheme} initiation failed: {exc}") from None
        # NTLM takes two legs, Kerberos one; bound the loop against a confused server.
        for _ in range(4):
            if token is None:
                return
            request.headers["Authorization"] = f"{scheme} {base64.b64encode(token).decode()}"
            response = yield request
            challenge = _offered(response).get(protocol)
            if response.status_code != 401 or challenge is None or context.complete:
                return
            try:
                token = context.step(challenge)
            except SpnegoError as exc:
                raise WindowsAuthError(f"{scheme} handshake failed: {exc}") from None
