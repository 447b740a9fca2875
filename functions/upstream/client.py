"""The HTTP clients the gateway calls out with.

Two `httpx.AsyncClient`s, both with the upstream trust store, no proxy variables, no
redirects followed and no cookie jar:

- **data plane** (`invoke`, operations): httpx's API over aiohttp's connection pool
  (`httpx-aiohttp`). httpcore's pool scans every pooled connection, with a syscall
  each, on every request start and end; at 32 concurrent calls that made a bare
  FastAPI + httpx proxy spend 3 ms of CPU per call in the pool alone (bench/RESULTS.md).
  aiohttp's pool does not, and cut the same proxy's cost per call by about 5x.
- **control plane** (OAuth token, revocation and discovery calls, a few per
  connection per hour): httpx's own transport, whose error types the OAuth code
  relies on.

Both pass the outbound address policy (functions/upstream/egress.py): every address
is checked after resolution and connected to as checked. The data plane also frames
requests itself only (no smuggling headers), marks them with a `Via` hop, and bounds
each call by a total deadline (docs/security.md).

Cookies: a gateway client is shared by every connection and every caller, so a
`Set-Cookie` from one upstream must never come back on another caller's request.
Both clients refuse to store cookies (httpx's jar and aiohttp's).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import warnings
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import httpx

from functions.observability import count_security_event
from functions.upstream.egress import EgressPolicy
from functions.upstream.egress_clients import EgressNetworkBackend, egress_resolver, socket_guard
from functions.upstream.headers import FRAMING_HEADERS, is_framing_header
from functions.upstream.resolve import ResolvingTransport, parse_overrides

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

# One pool for all upstream calls: how many sockets at once, how many kept idle.
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)

Failure = Literal["timeout", "unreachable", "failed"]


def no_cookies() -> CookieJar:
    """A jar that accepts nothing, so nothing is ever sent back."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class _NoCookies(httpx.Cookies):
    """Cookies that are never stored: httpx offers every response to the client's jar
    (`extract_cookies`), and even a jar that refuses everything costs a urllib request
    and response wrapper per call (6% of the gateway's CPU per call in the profile)."""

    def __init__(self) -> None:
        super().__init__(no_cookies())

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """An AsyncClient whose `cookies` is always the empty, never-filled `_NoCookies`."""

    _none = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass  # httpx sets it in __init__; nothing is ever kept


def control_plane_client(
    tls: ssl.SSLContext,
    timeout: httpx.Timeout,
    resolve: str | None = None,
    *,
    egress: EgressPolicy,
) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(verify=tls, limits=LIMITS, trust_env=False)
    # httpx does not take a network backend; its pool does. Every connection the pool
    # opens goes through the policy (resolve, check, connect to the checked address).
    transport._pool._network_backend = EgressNetworkBackend(egress)
    return _client(_ControlPlaneGuard(transport, egress), timeout, resolve)


def data_plane_client(
    tls: ssl.SSLContext,
    timeout: httpx.Timeout,
    resolve: str | None = None,
    *,
    egress: EgressPolicy,
    per_host: int = 50,
    deadline: float | None = None,
    hop_marker: str | None = None,
    resolver: Any = None,
    connects: list[tuple[str, int]] | None = None,
) -> httpx.AsyncClient:
    """The data plane client. `egress` is applied to every connection; `per_host`
    bounds one upstream host's share of the pool; `deadline` bounds a whole call
    (headers and body); `hop_marker` is added as a `Via` entry (loop detection).
    `resolver` (an aiohttp resolver, checked by the policy) and `connects` (addresses
    sockets were made for) are for tests and the bench."""
    # Imported here: aiohttp is only needed once the app serves calls, not to import
    # function_app.py (the Functions cold start).
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def session() -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, as aiohttp requires.
        connector = aiohttp.TCPConnector(
            limit=LIMITS.max_connections or 0,
            limit_per_host=per_host,
            keepalive_timeout=LIMITS.keepalive_expiry or 5.0,
            ssl=tls,
            # Checks every resolved address; aiohttp caches what it returns (10 s).
            resolver=egress_resolver(egress, resolver),
            socket_factory=socket_guard(egress, connects),
        )
        return _encoded_url_session_class()(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            # aiohttp adds `Content-Type: application/octet-stream` to every POST/PUT/
            # PATCH, body or not (ASP.NET back-ends answer 415); the gateway sets the
            # Content-Type itself whenever it sends a body.
            skip_auto_headers=("Content-Type",),
        )

    inner = AiohttpTransport(verify=tls, limits=LIMITS, trust_env=False, client=session)
    transport: httpx.AsyncBaseTransport = _AiohttpErrors(inner)
    if resolve:
        transport = ResolvingTransport(transport, parse_overrides(resolve))
    guarded = _DataPlaneGuard(transport, egress, deadline=deadline, hop_marker=hop_marker)
    return _client(guarded, timeout, None)


@functools.cache
def _encoded_url_session_class() -> type[aiohttp.ClientSession]:
    """An aiohttp session that takes the URL it is given as already encoded.

    httpx-aiohttp hands aiohttp `str(request.url)`, and aiohttp parses it with
    `yarl.URL(text)`, which re-normalises percent-escapes: `%3B`, `%2C`, `%3D`, `%2B`
    become literals again (a literal `;` cuts a Tomcat path value). The gateway builds
    every URL fully encoded (`upstream/urls.py`), so it is parsed with `encoded=True`
    and goes out byte for byte.
    """
    import aiohttp
    import yarl

    with warnings.catch_warnings():  # aiohttp discourages subclassing; one method only
        warnings.simplefilter("ignore", DeprecationWarning)

        class EncodedURLSession(aiohttp.ClientSession):
            def _build_url(self, str_or_url: str | URL) -> URL:
                if isinstance(str_or_url, str):
                    str_or_url = yarl.URL(str_or_url, encoded=True)
                return super()._build_url(str_or_url)

    return EncodedURLSession


def _client(
    transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout, resolve: str | None
) -> httpx.AsyncClient:
    if resolve:
        transport = ResolvingTransport(transport, parse_overrides(resolve))
    client = _CookielessClient(
        timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
    )
    # httpx's default `Connection: keep-alive` is the transport's business (HTTP/1.1
    # keeps connections alive anyway); the framing guard would count it on every call.
    del client.headers["Connection"]
    return client


class _ControlPlaneGuard(httpx.AsyncBaseTransport):
    """Refuses plain-http identity endpoints outside development and hosts the policy
    refuses without a lookup; the network backend checks resolved addresses."""

    def __init__(self, inner: httpx.AsyncBaseTransport, egress: EgressPolicy) -> None:
        self._inner = inner
        self._egress = egress

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._egress.check_url(str(request.url), control_plane=True)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _DataPlaneGuard(httpx.AsyncBaseTransport):
    """What every data-plane request passes, after httpx applied credentials:

    - framing: hop-by-hop headers are removed and Host is the URL's, whatever set
      them (the invocation service already strips policy and caller ones; this also
      covers credential injection), and never Content-Length with Transfer-Encoding;
    - egress: IP-literal hosts are checked here (aiohttp resolves only names);
    - a `Via` hop marker, so a request that loops back is refused on arrival;
    - a total deadline over the response headers and the body.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        egress: EgressPolicy,
        *,
        deadline: float | None,
        hop_marker: str | None,
    ) -> None:
        self._inner = inner
        self._egress = egress
        self._deadline = deadline
        self._hop_marker = hop_marker

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        self._egress.check_host(url.host, url.port or (443 if url.scheme == "https" else 80))
        _enforce_framing(request)
        if self._hop_marker:
            request.headers["Via"] = self._hop_marker
        if self._deadline is None:
            return await self._inner.handle_async_request(request)
        end = asyncio.get_running_loop().time() + self._deadline
        try:
            async with asyncio.timeout_at(end):
                response = await self._inner.handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"no answer within the {self._deadline:g} s deadline", request=request
            ) from None
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _DeadlineStream(stream, end, self._deadline)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


_FRAMING_BYTES = frozenset(name.encode() for name in FRAMING_HEADERS)


def _enforce_framing(request: httpx.Request) -> None:
    """Only the client frames a request: hop-by-hop headers and Transfer-Encoding go
    (aiohttp frames a streamed body itself; a bytes body has a Content-Length), Host
    is the URL's, Content-Length is the body's. Never both length and chunking.

    One pass over the raw header list: this runs on every call (bench/egress.py)."""
    host: bytes | None = None
    length: bytes | None = None
    suspicious = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered in _FRAMING_BYTES or lowered.startswith(b"proxy-"):
            if lowered == b"host" and host is None:
                host = value
            elif lowered == b"content-length" and length is None:
                length = value
            else:
                suspicious = True
    try:
        body_length = str(len(request.content)).encode()
    except httpx.RequestNotRead:
        body_length = None
    if (
        not suspicious
        and (host is None or host == request.url.netloc)
        and (length is None or length == body_length)
    ):
        return
    headers = request.headers
    removed = sorted(
        {name.lower() for name in headers if is_framing_header(name)} - {"host", "content-length"}
    )
    for name in removed:
        del headers[name]
    expected_host = request.url.netloc.decode("ascii")
    if headers.get_list("host") not in ([], [expected_host]):
        headers["Host"] = expected_host
        removed.append("host")
    if "content-length" in headers:
        if body_length is None:
            del headers["content-length"]  # a streamed body is chunked by aiohttp
            removed.append("content-length")
        elif headers.get_list("content-length") != [body_length.decode()]:
            headers["Content-Length"] = body_length.decode()
            removed.append("content-length")
    if removed:
        count_security_event("framing_header_stripped", f"{', '.join(removed)} not sent as set")


class _DeadlineStream(httpx.AsyncByteStream):
    """The body under the call's total deadline (a trickling upstream cannot hold a
    call, and the pool's connection, forever)."""

    def __init__(self, inner: httpx.AsyncByteStream, end: float, seconds: float) -> None:
        self._inner = inner
        self._end = end
        self._seconds = seconds

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._inner.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(self._end):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise httpx.ReadTimeout(
                    f"the answer did not complete within the {self._seconds:g} s deadline"
                ) from None
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def classify_failure(exc: BaseException) -> Failure | None:
    """What a failed upstream call means for the caller; None if `exc` is not one."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(
        exc, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError
    ):
        return "unreachable"
    if isinstance(exc, httpx.HTTPError):
        return "failed"
    return None


class _AiohttpErrors(httpx.AsyncBaseTransport):
    """httpx-aiohttp maps every `aiohttp.ClientConnectionError` (refused, reset,
    server disconnected) to `httpx.ConnectTimeout`, and lets others through as aiohttp
    types. Map them by what happened, in the request and while the body streams, so a
    refused connection is a 502 and only a real timeout is a 504."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised as is
            _raise_mapped(exc)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _MappedStream(stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _MappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised as is
            _raise_mapped(exc)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except Exception as exc:  # noqa: BLE001 - mapped, or re-raised as is
            _raise_mapped(exc)


def _raise_mapped(exc: Exception) -> NoReturn:
    mapped = _mapped(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _mapped(exc: Exception) -> Exception:
    import aiohttp

    root: BaseException = exc
    if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None:
        root = exc.__cause__  # httpx-aiohttp's own (too coarse) mapping
    message = str(root) or type(root).__name__
    if isinstance(root, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(root, asyncio.TimeoutError):  # aiohttp's read timeouts are subclasses
        return httpx.ReadTimeout(message)
    if isinstance(root, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(root, aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    if isinstance(root, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)
    if isinstance(root, aiohttp.ClientOSError | OSError):
        return httpx.ReadError(message)
    if isinstance(root, aiohttp.ClientError):
        return httpx.TransportError(message)
    return exc
