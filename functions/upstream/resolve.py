"""Development only: send requests for a host:port to another address, like curl's
`--resolve`, keeping the Host header and the TLS server name (SNI and certificate
check) of the original host.

Lets a connector whose definition fixes part of its host (e.g. a `dynamichosturl`
template `https://@connectionParameters('site').example.net`) be run against a local
or staging server without editing the definition. The settings refuse it outside
development.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from functions.errors import ConfigurationError


def parse_overrides(value: str) -> dict[tuple[str, int], tuple[str, int]]:
    """`host:port=address:port,...` -> {(host, port): (address, port)}."""
    overrides: dict[tuple[str, int], tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            source, target = item.split("=", 1)
            host, port = source.rsplit(":", 1)
            address, target_port = target.rsplit(":", 1)
            overrides[(host.lower(), int(port))] = (address, int(target_port))
        except ValueError:
            raise ConfigurationError(
                f"GATEWAY_DEV_UPSTREAM_RESOLVE: expected host:port=address:port, got {item!r}"
            ) from None
    return overrides


class ResolvingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self, inner: httpx.AsyncBaseTransport, overrides: Mapping[tuple[str, int], tuple[str, int]]
    ) -> None:
        self._inner = inner
        self._overrides = dict(overrides)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self._overrides.get(
            (request.url.host.lower(), request.url.port or _default_port(request.url))
        )
        if target is not None:
            request.extensions = {**request.extensions, "sni_hostname": request.url.host}
            request.url = request.url.copy_with(host=target[0], port=target[1])
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80
