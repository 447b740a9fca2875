"""A token endpoint that answers the way GitHub documents, and one that is always down.

`GitHubLikeProvider.app` (ASGI) serves `POST /login/oauth/access_token`:
* responses are `application/x-www-form-urlencoded` unless the request's Accept header
  asks for `application/json` (GitHub's documented behaviour);
* errors come with status 200 and `error=bad_verification_code` / `bad_refresh_token`;
* user tokens expire (8 h) and come with a refresh token (6 months) when `expiring` is
  set, as for GitHub Apps with expiring user tokens; otherwise no expiry and no refresh
  token (classic OAuth apps). Refresh tokens rotate.

* `DELETE /applications/{client_id}/grant` ("delete an app authorization"): HTTP Basic
  with the app's client id and secret, JSON `{"access_token": ...}`; deletes every token
  of that user for the app and answers 204; 404 for wrong client credentials, 422 for an
  unknown token (as GitHub documents it). Not RFC 7009.

`UnavailableProvider.app` answers every token request 503 with Retry-After and counts them.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

CLIENT_ID = "Iv1.test-client"
CLIENT_SECRET = "gh-test-secret"  # noqa: S105 - test double's fixed secret


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(
    send: Any,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@dataclass
class GitHubLikeProvider:
    expiring: bool = True
    codes: dict[str, str] = field(default_factory=dict)  # code -> user
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # live refresh token -> user
    access_tokens: dict[str, str] = field(default_factory=dict)  # live access token -> user
    requests: list[dict[str, Any]] = field(default_factory=list)
    revoked_users: list[str] = field(default_factory=list)

    def issue_code(self, user: str = "octocat") -> str:
        code = secrets.token_hex(10)
        self.codes[code] = user
        return code

    def _tokens(self, user: str) -> dict[str, str]:
        body = {"access_token": "ghu_" + secrets.token_hex(18), "token_type": "bearer", "scope": ""}
        self.access_tokens[body["access_token"]] = user
        if self.expiring:
            refresh = "ghr_" + secrets.token_hex(30)
            self.refresh_tokens[refresh] = user
            body.update(
                expires_in="28800", refresh_token=refresh, refresh_token_expires_in="15811200"
            )
        return body

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        raw = await _body(receive)
        if scope["method"] == "DELETE" and scope["path"] == f"/applications/{CLIENT_ID}/grant":
            self.requests.append({"path": scope["path"], "method": "DELETE", "headers": headers})
            await self._delete_grant(send, headers, raw)
            return
        form = dict(parse_qsl(raw.decode()))
        self.requests.append(
            {"path": scope["path"], "accept": headers.get("accept", ""), "form": form}
        )
        if scope["method"] != "POST" or scope["path"] != "/login/oauth/access_token":
            await _send(send, 404, b"Not Found", "text/plain")
            return
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            body: dict[str, str] = {"error": "incorrect_client_credentials"}
        elif (
            form.get("grant_type", "authorization_code") == "authorization_code" and "code" in form
        ):
            user = self.codes.pop(form["code"], None)
            body = self._tokens(user) if user else {"error": "bad_verification_code"}
        elif form.get("grant_type") == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            body = self._tokens(user) if user else {"error": "bad_refresh_token"}
        else:
            body = {"error": "unsupported_grant_type"}
        if "application/json" in headers.get("accept", ""):
            await _send(send, 200, json.dumps(body).encode(), "application/json; charset=utf-8")
        else:
            await _send(
                send,
                200,
                urlencode(body).encode(),
                "application/x-www-form-urlencoded; charset=utf-8",
            )

    async def _delete_grant(self, send: Any, headers: dict[str, str], raw: bytes) -> None:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if headers.get("authorization") != f"Basic {expected}":
            await _send(send, 404, b'{"message":"Not Found"}', "application/json")
            return
        try:
            token = json.loads(raw or b"{}").get("access_token")
        except ValueError:
            token = None
        user = self.access_tokens.get(token) if isinstance(token, str) else None
        if user is None:
            await _send(send, 422, b'{"message":"Validation Failed"}', "application/json")
            return
        for table in (self.access_tokens, self.refresh_tokens):
            for key in [k for k, v in table.items() if v == user]:
                del table[key]
        self.revoked_users.append(user)
        await _send(send, 204, b"", "application/json")


@dataclass
class UnavailableProvider:
    retry_after: int = 2
    attempts: int = 0

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await _body(receive)
        self.attempts += 1
        await _send(
            send,
            503,
            b'{"error":"temporarily_unavailable"}',
            "application/json",
            [(b"retry-after", str(self.retry_after).encode())],
        )
