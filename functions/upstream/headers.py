"""Which headers cross the gateway, in each direction.

Request headers from the caller are forwarded except: hop-by-hop headers (RFC 9110
section 7.6.1, plus any named in `Connection`), the caller's own credentials for the
gateway (`Authorization`, `Cookie`, `Proxy-Authorization`), headers the platform or the
gateway adds (`X-Forwarded-*`, Azure front-end headers, `X-Gateway-*`, identity headers
such as `Metadata` and `X-IDENTITY-HEADER`, `Via`), `Host` and `Content-Length` (httpx
sets both), and any header the connector's credential uses (a caller must not override
or learn the credential by supplying it).

Framing headers (`FRAMING_HEADERS`) never come from a policy or a definition either:
`strip_framing_headers` removes and counts them before sending (issue 12, request
smuggling; docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Never forwarded upstream: the caller's credentials for the gateway and what the
# hosting platform adds about the caller's connection.
_REQUEST_DROP = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "content-length",
        "forwarded",
        "x-real-ip",
        "client-ip",
        "max-forwards",
        "disguised-host",
        "was-default-hostname",
        "x-original-url",
        "x-waws-unencoded-url",
        "x-site-deployment-id",
        "x-arr-log-id",
        "x-arr-ssl",
        "x-appservice-proto",
        "x-client-ip",
        "x-client-port",
        "x-correlation-id",
    }
)
_REQUEST_DROP_PREFIXES = (
    "x-forwarded-",
    "x-ms-client-principal",
    "x-gateway-",
    "x-ms-functions-",
    # App Service authentication's token headers, and any proxy-only header.
    "x-ms-token-",
    "proxy-",
)
# Platform headers with meaning to cloud metadata and identity endpoints (issue 12): a
# caller must not be able to make an upstream call look like a managed-identity one.
_PLATFORM_DROP = frozenset(
    {"metadata", "x-identity-header", "x-ms-identity-header", "x-arr-clientcert", "via"}
)

# Framing and hop-by-hop headers (RFC 9112 section 6, RFC 9110 section 7.6.1) and Host:
# only the HTTP client sets them, from the URL and the body it sends. A policy, a
# connection parameter or a caller setting one could desynchronise a pooled
# connection shared with other users (request smuggling), or retarget the request.
FRAMING_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "host",
    }
)


def is_framing_header(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered in FRAMING_HEADERS or lowered.startswith("proxy-")


def strip_framing_headers(headers: list[tuple[str, str]], *, source: str) -> list[tuple[str, str]]:
    """`headers` without framing and hop-by-hop ones; each removal is counted."""
    kept = [(name, value) for name, value in headers if not is_framing_header(name)]
    if len(kept) != len(headers):
        from functions.observability import count_security_event

        names = sorted({name.lower() for name, _ in headers if is_framing_header(name)})
        count_security_event(
            "framing_header_stripped",
            f"{', '.join(names)} set by {source}, not sent",
            len(headers) - len(kept),
        )
    return kept

# Not returned to the caller: hop-by-hop, cookies the upstream sets (the gateway's
# origin is shared by every connector; an upstream cookie must not land there), and
# Date and Server: the server answering the caller (uvicorn, the Functions host) sets
# its own, and two of a single-valued header is a malformed answer; the upstream's
# Server would also tell callers what runs behind the gateway.
_RESPONSE_DROP = frozenset({"set-cookie", "content-length", "date", "server"})


def _connection_listed(headers: Iterable[tuple[str, str]]) -> set[str]:
    listed: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            listed.update(token.strip().lower() for token in value.split(",") if token.strip())
    return listed


def forwardable_request_headers(
    headers: Iterable[tuple[str, str]], *, credential_headers: Iterable[str] = ()
) -> list[tuple[str, str]]:
    items = list(headers)
    blocked = HOP_BY_HOP | _REQUEST_DROP | _PLATFORM_DROP | _connection_listed(items)
    blocked |= {name.lower() for name in credential_headers}
    return [
        (name, value)
        for name, value in items
        if name.lower() not in blocked and not name.lower().startswith(_REQUEST_DROP_PREFIXES)
    ]


def returnable_response_headers(
    headers: Iterable[tuple[str, str]], *, keep_content_length: bool = True
) -> list[tuple[str, str]]:
    items = list(headers)
    blocked = HOP_BY_HOP | _RESPONSE_DROP | _connection_listed(items)
    result = [(name, value) for name, value in items if name.lower() not in blocked]
    if keep_content_length:
        result += [(name, value) for name, value in items if name.lower() == "content-length"]
    return result
