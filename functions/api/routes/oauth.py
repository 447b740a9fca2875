"""`GET /api/oauth/callback`: where providers send the user back after consent.

Anonymous by necessity; protected by the single-use, expiring `state` bound to the
connection and the user who started the consent, and by PKCE. Answers a small HTML page
saying what happened, without echoing anything from the request.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from functions.api.deps import GatewayDep
from functions.api.openapi import ANONYMOUS, CALLBACK_RESPONSES

router = APIRouter(prefix="/api/oauth", tags=["oauth"])

TITLES = {
    "connected": "Connected",
    "denied": "Access not granted",
    "invalid_state": "Sign-in link not valid",
    "expired_state": "Sign-in link expired",
    "provider_error": "Sign-in failed",
    "error": "Sign-in failed",
}
STATUS = {
    "connected": 200,
    "denied": 400,
    "invalid_state": 400,
    "expired_state": 400,
    "provider_error": 502,
    "error": 500,
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Connector Gateway</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}</style>
</head><body><h1 id="outcome" data-outcome="{outcome}">{title}</h1><p id="message">{message}</p>{back}</body></html>
"""
# issue 16: back to the connection in the portal (which offers to reauthorize on failure).
BACK = '<p><a id="back" href="/portal/connection.html?id={id}">{label}</a></p>'


@router.get(
    "/callback",
    response_class=HTMLResponse,
    summary="OAuth redirect target (providers send the user here)",
    openapi_extra=ANONYMOUS,
    responses=CALLBACK_RESPONSES,
)
async def callback(request: Request, gateway: GatewayDep) -> HTMLResponse:
    params = {
        key: value
        for key, value in request.query_params.items()
        if key in ("code", "state", "error", "iss")
    }
    result = await gateway.oauth.handle_callback(params)
    body = PAGE.format(
        title=escape(TITLES[result.outcome]),
        outcome=escape(result.outcome),
        message=escape(result.message),
        back=BACK.format(
            id=quote(result.connection_id, safe=""),
            label="Back to the connection"
            if result.outcome == "connected"
            else "Back to the connection to try again",
        )
        if result.connection_id
        else "",
    )
    return HTMLResponse(
        body,
        status_code=STATUS[result.outcome],
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
