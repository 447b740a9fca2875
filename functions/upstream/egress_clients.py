"""The outbound address policy wired into each HTTP client the gateway calls out with.

Each piece checks the address the client is about to connect to, after resolution,
so what was checked is what is connected to:

- `EgressResolver`: aiohttp's resolver (data plane). aiohttp caches its answers for
  `ttl_dns_cache` seconds, so warm calls neither resolve nor check again.
- `socket_guard`: aiohttp's socket factory; re-checks every new socket's address
  (IP-literal hosts skip the resolver; this is the last line for anything else).
- `EgressNetworkBackend`: httpcore's network backend (control plane: OAuth token,
  revocation, discovery): resolves, checks, connects to the checked address; TLS
  still verifies the host name.
- `egress_requests_adapter`: the same for urllib3, under msal's `requests.Session`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpcore

from functions.errors import EgressDeniedError
from functions.upstream.egress import EgressPolicy

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver, ResolveResult


def egress_resolver(policy: EgressPolicy, inner: AbstractResolver | None = None) -> Any:
    """An aiohttp resolver that checks every resolved address (class built lazily:
    aiohttp is imported only once the app serves calls)."""
    from aiohttp.abc import AbstractResolver
    from aiohttp.resolver import DefaultResolver

    class EgressResolver(AbstractResolver):
        def __init__(self) -> None:
            self.inner = inner or DefaultResolver()
            self.lookups = 0  # names resolved (tests and the bench read it)

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            policy.check_name(host, port)
            self.lookups += 1
            results = await self.inner.resolve(host, port, family)
            policy.check_resolved(host, port, [result["host"] for result in results])
            return results

        async def close(self) -> None:
            await self.inner.close()

    return EgressResolver()


class EgressRefusedOSError(OSError):
    """A socket the policy refused at creation (aiohttp reports it as unreachable)."""


def socket_guard(
    policy: EgressPolicy, connects: list[tuple[str, int]] | None = None
) -> Callable[[Any], socket.socket]:
    """aiohttp `socket_factory`: check the address, then create the socket as aiohttp
    would. `connects`, when given, records every address a socket was made for."""
    from aiohappyeyeballs import AddrInfoType

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, address = addr_info
        host, port = str(address[0]), int(address[1])
        try:
            policy.check_literal(host, port)
        except EgressDeniedError as exc:
            raise EgressRefusedOSError(exc.detail) from None
        if connects is not None:
            connects.append((host, port))
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


class EgressNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend: resolve, check, then connect to a checked address."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._policy.resolve(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host}: no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not upstreams")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def egress_requests_adapter(policy: EgressPolicy) -> Any:
    """A `requests` adapter whose urllib3 connections resolve, check and connect to
    the checked address (the TLS name stays the host's)."""
    import requests.adapters
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def checked(base: Any) -> Any:
        class Checked(base):  # type: ignore[misc]
            def _new_conn(self) -> socket.socket:
                original: str = getattr(self, "_dns_host")  # noqa: B009 - untyped in urllib3
                addresses = policy.resolve_sync(original, self.port)
                self._dns_host = addresses[0]
                try:
                    sock: socket.socket = super()._new_conn()
                    return sock
                finally:
                    self._dns_host = original

        return Checked

    class CheckedHTTPPool(HTTPConnectionPool):
        ConnectionCls = checked(HTTPConnection)

    class CheckedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = checked(HTTPSConnection)

    class Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": CheckedHTTPPool,
                "https": CheckedHTTPSPool,
            }

    return Adapter()
