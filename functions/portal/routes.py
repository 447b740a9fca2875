"""Routes of the portal: its pages and assets, its sign-in configuration, and (in
development only) the dev sign-in that mints local tokens.

Every page is a static HTML file that loads one ES module; no page is built from data,
so nothing a connector definition says can become markup on the server. Headers:
a strict Content-Security-Policy (scripts and styles from this origin only, no inline
code), no framing (the connect page may be framed by `GATEWAY_CONNECT_FRAME_ANCESTORS`),
no referrer, no caching of pages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import Field

from functions.api.bodies import json_body
from functions.api.deps import GatewayDep
from functions.api.schemas import Strict
from functions.errors import NotFoundError
from functions.identity.dev_issuer import mint_token
from functions.settings import Settings

STATIC = Path(__file__).parent / "static"
PAGES = frozenset(
    {
        "index",
        "signin",
        "connection",
        "new-connection",
        "connectors",
        "connector",
        "new-connector",
        "import",
        "admin",
        "connect",
    }
)
ASSET = re.compile(r"^(?:js|vendor|css)/[a-z0-9][a-z0-9.-]*\.(?:js|css|txt)$")
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# The users the dev sign-in page offers; any other name works too.
DEV_USERS = ("alice", "bob")
DEV_ADMIN = "admin"
ENTRA_LOGIN = "https://login.microsoftonline.com"

router = APIRouter(prefix="/portal", include_in_schema=False)


def content_security_policy(settings: Settings, *, page: str) -> str:
    connect = "'self'"
    if not settings.is_development:
        # MSAL redeems the authorization code (PKCE) at Entra ID's token endpoint.
        connect += f" {ENTRA_LOGIN}"
    ancestors = "'none'"
    if page == "connect" and settings.connect_frame_ancestors:
        ancestors = " ".join(settings.connect_frame_ancestors)
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "form-action 'self'",
            "base-uri 'none'",
            f"frame-ancestors {ancestors}",
        )
    )


def _security_headers(settings: Settings, page: str) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": content_security_policy(settings, page=page),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
    if page != "connect" or not settings.connect_frame_ancestors:
        # X-Frame-Options cannot name origins: only sent when nobody may frame the page.
        headers["X-Frame-Options"] = "DENY"
    return headers


@router.get("")
async def portal_root() -> RedirectResponse:
    return RedirectResponse("/portal/", status_code=307)


@router.get("/")
async def portal_index(gateway: GatewayDep) -> FileResponse:
    return _page(gateway.settings, "index")


@router.get("/{page}.html")
async def portal_page(page: str, gateway: GatewayDep) -> FileResponse:
    if page not in PAGES:
        raise NotFoundError(f"no portal page {page}", code="page_not_found")
    return _page(gateway.settings, page)


def _page(settings: Settings, page: str) -> FileResponse:
    return FileResponse(
        STATIC / f"{page}.html",
        media_type="text/html; charset=utf-8",
        headers=_security_headers(settings, page),
    )


@router.get("/static/{path:path}")
async def portal_asset(path: str) -> FileResponse:
    if not ASSET.match(path) or not (STATIC / path).is_file():
        raise NotFoundError(f"no portal asset {path}", code="asset_not_found")
    return FileResponse(
        STATIC / path,
        media_type=MEDIA_TYPES[Path(path).suffix],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


@router.get("/config.json")
async def portal_config(request: Request, gateway: GatewayDep) -> JSONResponse:
    """How the pages sign in: the dev sign-in (development) or Entra ID with MSAL."""
    settings: Settings = gateway.settings
    body: dict[str, Any]
    if _dev_sign_in_available(settings):
        body = {"mode": "development", "devUsers": [*DEV_USERS], "devAdmin": DEV_ADMIN}
    else:
        tenant = settings.tenant_ids[0] if settings.tenant_ids else "organizations"
        base = (settings.public_base_url or str(request.base_url)).rstrip("/")
        body = {
            "mode": "entra",
            "clientId": settings.portal_client_id,
            "authority": f"{ENTRA_LOGIN}/{tenant}",
            "scopes": [settings.portal_api_scope] if settings.portal_api_scope else [],
            "redirectUri": f"{base}/portal/signin.html",
        }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


class DevSignIn(Strict):
    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    admin: bool = False


def _dev_sign_in_available(settings: Settings) -> bool:
    return settings.is_development and bool(settings.dev_issuer_private_key)


@router.post("/dev-sign-in")
async def dev_sign_in(request: Request, gateway: GatewayDep) -> Response:
    """Development only: a token for any user name, the same principal that
    `python -m functions token --user NAME` mints (admins get the admin app role).
    In production this route answers 404, like any path that does not exist."""
    settings: Settings = gateway.settings
    if not _dev_sign_in_available(settings):
        raise NotFoundError("not found", code="not_found")
    _check_same_origin(request)
    body = await json_body(request, DevSignIn)
    assert settings.dev_issuer_private_key is not None  # checked above
    roles = (settings.admin_role,) if body.admin else ()
    token = mint_token(settings.dev_issuer_private_key, user=body.user, roles=roles)
    return JSONResponse(
        {"accessToken": token, "user": body.user, "admin": body.admin},
        headers={"Cache-Control": "no-store"},
    )


def _check_same_origin(request: Request) -> None:
    """Browsers send Origin on cross-site POSTs: refuse them (no minting for other sites)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = urlsplit(str(request.base_url))
    if origin.rstrip("/") != f"{own.scheme}://{own.netloc}":
        raise NotFoundError("not found", code="not_found")
