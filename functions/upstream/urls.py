"""Upstream URLs that cannot escape the connector's base URL.

The caller controls the path after `/invoke/`. We never concatenate it into a URL
string: the scheme, host and port come only from the connector's base URL, and the
caller's path is split into segments, each checked and re-encoded, and appended below
the base path. Anything that could change the target (dot segments, encoded slashes or
backslashes, empty segments from `//`, control characters) is refused with 400
`invalid_path` rather than normalised, because a normalised path may not be what the
caller meant.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, unquote, urlsplit

import httpx

from functions.errors import BadRequestError

# Characters kept literally in a path segment (RFC 3986 pchar minus "/" ), so a
# re-encoded segment looks as the caller sent it.
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"
# What JavaScript's encodeURIComponent leaves alone besides letters, digits and `-_.~`:
# how Power Platform encodes path and query values.
COMPONENT_SAFE = "!'()*"
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def encode_component(text: str) -> str:
    """Percent-encode a value as encodeURIComponent does (UTF-8; space as %20, never
    `+`; every reserved character, `;,=+&/?#%` included, escaped)."""
    return quote(text, safe=COMPONENT_SAFE)


def requote(text: str, safe: str) -> str:
    """Encode what must be encoded in `text`, keeping its valid `%XX` escapes as they
    are (upper-cased): the sender chose them, and decoding one may change its meaning."""
    pieces = []
    position = 0
    for match in _ESCAPE.finditer(text):
        pieces.append(quote(text[position : match.start()], safe=safe))
        pieces.append(match.group().upper())
        position = match.end()
    pieces.append(quote(text[position:], safe=safe))
    return "".join(pieces)


def encode_query(pairs: list[tuple[str, str]]) -> str:
    """`name=value&...`, each part encoded with `encode_component`."""
    return "&".join(f"{encode_component(name)}={encode_component(value)}" for name, value in pairs)


def validate_base_url(value: str, *, field: str = "baseUrl") -> str:
    """Check an absolute http(s) base URL and return it without a trailing slash.

    Userinfo, query strings and fragments are refused: they would be silently added
    to or lost from every call.
    """
    from functions.errors import ValidationFailedError

    def fail(message: str) -> ValidationFailedError:
        return ValidationFailedError(
            f"{field}: {message}", errors=[{"field": field, "message": message}]
        )

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise fail(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise fail("must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise fail("must include a host")
    if parts.username is not None or parts.password is not None:
        raise fail("must not contain user information")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise fail("must not contain a query string or fragment")
    if port == 0:
        raise fail("port must be between 1 and 65535")
    for segment in parts.path.split("/")[1:]:
        if unquote(segment) in (".", ".."):
            raise fail("must not contain '.' or '..' path segments")
    if any(ord(ch) < 0x21 or ch in "\\" for ch in value):
        raise fail("must not contain spaces, control characters or backslashes")
    return value.rstrip("/")


def encode_relative_path(raw_path: str) -> str:
    """Validate a caller-supplied relative path and return it re-encoded.

    `raw_path` is what followed `/invoke` in the request target, still percent-encoded
    where the client encoded it. Returns "" or "/seg/seg..." with each segment
    percent-encoded. Raises BadRequestError(code="invalid_path").
    """
    if raw_path in ("", "/"):
        return raw_path
    if not raw_path.startswith("/"):
        raise _invalid("the path must start with '/'")
    segments = raw_path[1:].split("/")
    encoded: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "":
            if last:  # a trailing slash is meaningful to some APIs; keep it
                encoded.append("")
                continue
            raise _invalid("empty path segments ('//') are not allowed")
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            raise _invalid("path segments must be valid UTF-8 when percent-decoded") from None
        if decoded in (".", ".."):
            raise _invalid("'.' and '..' path segments are not allowed")
        if "/" in decoded or "\\" in decoded:
            raise _invalid("encoded slashes and backslashes are not allowed in the path")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
            raise _invalid("control characters are not allowed in the path")
        # The caller's own escapes are kept: `%3B` stays `%3B` (a literal `;` would
        # start path parameters upstream).
        encoded.append(requote(segment, _SEGMENT_SAFE))
    return "/" + "/".join(encoded)


def build_upstream_url(base_url: str, path: str, query: list[tuple[str, str]]) -> httpx.URL:
    """Join a validated base URL and an already-encoded relative path.

    The host, port and scheme are taken from `base_url` alone; `path` is appended to
    the base path as raw bytes, so nothing in it can be read as an authority.
    """
    if "?" in path or "#" in path:  # callers pass encoded paths; never reinterpret one
        raise _invalid("the path must be percent-encoded ('?' or '#' found)")
    origin, base_path = _parsed_base(base_url)
    full_path = base_path + path
    if not full_path.startswith("/"):
        full_path = "/" + full_path
    if query:
        full_path += "?" + encode_query(query)
    # One parse of the whole URL (cheaper than copy_with); the origin comes from the
    # validated base alone and the path is percent-encoded, so nothing in it can be
    # read as an authority or a fragment.
    return httpx.URL(origin + full_path)


@functools.lru_cache(maxsize=4096)
def _parsed_base(base_url: str) -> tuple[str, str]:
    """A base URL parsed once (there are few, and parsing one is a visible share of a
    call): its origin (scheme://host:port) and its path without a trailing slash."""
    base = httpx.URL(base_url)
    path = base.raw_path.split(b"?", 1)[0].rstrip(b"/").decode("ascii")
    return f"{base.scheme}://{base.netloc.decode('ascii')}", path


def _invalid(message: str) -> BadRequestError:
    return BadRequestError(message, code="invalid_path")
